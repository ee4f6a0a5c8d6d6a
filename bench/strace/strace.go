// Package strace counts a running process's system calls with `strace -c -f -p PID`
// (Debian's strace): attach before a ramp, stop after it, read the summary table. Tracing
// slows the process by an order of magnitude, so a traced ramp gives counts, never times or
// rates.
package strace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vncedge/bench/child"
)

// Summary is strace -c's table: calls per system call and the total.
type Summary struct {
	Calls map[string]int64
	Total int64
}

// Top lists the n most frequent calls as "name count", most frequent first.
func (s Summary) Top(n int) []string {
	names := make([]string, 0, len(s.Calls))
	for k := range s.Calls {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := s.Calls[names[i]], s.Calls[names[j]]
		return a > b || a == b && names[i] < names[j]
	})
	var out []string
	for _, k := range names[:min(n, len(names))] {
		out = append(out, fmt.Sprintf("%s %d", k, s.Calls[k]))
	}
	return out
}

// Parse reads the table strace -c writes:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 60.00    0.000060           3        20           read
//	...
//	100.00    0.000100           1       100         5 total
//
// Columns are right-aligned under their headings and some may be blank (errors, and
// usecs/call on the total line), so the calls figure is the field that ends where the
// "calls" heading ends, and the name is the last field.
func Parse(b []byte) (Summary, error) {
	s := Summary{Calls: map[string]int64{}}
	callsEnd := -1
	seenTotal := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "---") || strings.HasPrefix(line, "strace:") {
			continue
		}
		if f[0] == "%" {
			i := strings.Index(line, " calls")
			if i < 0 {
				return s, errors.New("strace: summary heading without a calls column")
			}
			callsEnd = i + len(" calls")
			continue
		}
		if callsEnd < 0 || len(f) < 3 {
			continue
		}
		if len(line) < callsEnd {
			return s, fmt.Errorf("strace: short row %q", line)
		}
		left := strings.Fields(line[:callsEnd])
		if len(left) == 0 || len(f) < 2 {
			return s, fmt.Errorf("strace: bad row %q", line)
		}
		calls, err := strconv.ParseInt(left[len(left)-1], 10, 64)
		if err != nil || calls < 0 {
			return s, fmt.Errorf("strace: bad row %q", line)
		}
		name := f[len(f)-1]
		if name == "total" {
			s.Total, seenTotal = calls, true
			continue
		}
		s.Calls[name] += calls
	}
	if callsEnd < 0 || !seenTotal {
		return s, errors.New("strace: no summary table (was the process traced at all?)")
	}
	return s, nil
}

// Tracer is strace attached to a process.
type Tracer struct {
	proc *child.Process
	out  string
	dir  string
}

// Available says whether strace is installed.
func Available() (string, error) { return child.Look("strace") }

// Attach starts `strace -c -f -q -p PID` (every thread of PID, and children it forks).
func Attach(pid int) (*Tracer, error) {
	bin, err := Available()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-strace-")
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "summary.txt")
	p, err := child.Start("strace", bin, []string{"-c", "-f", "-q", "-o", out, "-p", strconv.Itoa(pid)}, filepath.Join(dir, "strace.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	t := &Tracer{proc: p, out: out, dir: dir}
	// strace attaches each thread in turn; give it a moment, and fail when it could not.
	time.Sleep(300 * time.Millisecond)
	if done, err := p.Exited(); done {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("strace -p %d ended at once (%v): %s (ptrace not permitted here?)", pid, err, p.Tail(1024))
	}
	return t, nil
}

// Stop detaches (SIGTERM makes strace detach and write its summary) and reads the table.
func (t *Tracer) Stop() (Summary, error) {
	defer os.RemoveAll(t.dir)
	_ = syscall.Kill(t.proc.Pid(), syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if done, _ := t.proc.Exited(); done {
			break
		}
		if time.Now().After(deadline) {
			_ = t.proc.Stop(time.Second)
			return Summary{}, errors.New("strace did not detach within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = t.proc.Stop(0)
	b, err := os.ReadFile(t.out)
	if err != nil {
		return Summary{}, fmt.Errorf("strace: %w", err)
	}
	return Parse(b)
}

// Trace runs strace on pid around fn, for a caller that only wants the summary.
func Trace(pid int, fn func() error) (Summary, error) {
	t, err := Attach(pid)
	if err != nil {
		return Summary{}, err
	}
	ferr := fn()
	s, err := t.Stop()
	if ferr != nil {
		return s, ferr
	}
	return s, err
}
