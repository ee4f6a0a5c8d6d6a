// Package procstat reads a process's resident memory and open descriptors from /proc, summed
// over the process and its descendants (websockify forks one process per connection, so its
// cost is the whole tree's).
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sample is one reading of a process tree.
type Sample struct {
	Processes int   `json:"processes"`
	RSSKiB    int64 `json:"rss_kib"` // VmRSS summed over the tree
	// PSSKiB is the proportional set size summed over the tree: pages shared between forked
	// processes count once in all, where RSS counts them in every process.
	PSSKiB  int64 `json:"pss_kib,omitempty"`
	FDs     int   `json:"fds"`      // entries of /proc/PID/fd summed over the tree
	FDLimit int64 `json:"fd_limit"` // the root process's soft "Max open files"
	// CPUSeconds is user plus system time summed over the tree since each process started:
	// the difference of two samples is the CPU the tree spent between them (a child that
	// exited in between takes its share with it).
	CPUSeconds float64 `json:"cpu_s"`
	// At is when the sample was taken.
	At time.Time `json:"at"`
}

// ClockTicks is USER_HZ, the unit of the times in /proc/PID/stat. Linux fixes it at 100
// for user space whatever the kernel's own HZ, and Go has no sysconf without cgo.
const ClockTicks = 100

// Read samples pid and its descendants under the /proc mounted at root ("/proc").
func Read(root string, pid int) (Sample, error) {
	s := Sample{At: time.Now()}
	pids, err := tree(root, pid)
	if err != nil {
		return s, err
	}
	for _, p := range pids {
		rss, err := vmRSS(filepath.Join(root, strconv.Itoa(p), "status"))
		if err != nil {
			if p == pid {
				return s, err
			}
			continue // a child that exited meanwhile
		}
		s.Processes++
		s.RSSKiB += rss
		if b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(p), "stat")); err == nil {
			if ticks, ok := ParseCPUTicks(b); ok {
				s.CPUSeconds += float64(ticks) / ClockTicks
			}
		}
		if b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(p), "smaps_rollup")); err == nil {
			if pss, err := ParsePss(b); err == nil {
				s.PSSKiB += pss
			}
		}
		ents, err := os.ReadDir(filepath.Join(root, strconv.Itoa(p), "fd"))
		if err == nil {
			s.FDs += len(ents)
		}
	}
	s.FDLimit, _ = fdLimit(filepath.Join(root, strconv.Itoa(pid), "limits"))
	return s, nil
}

// vmRSS parses the "VmRSS:   1234 kB" line of a status file.
func vmRSS(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	return ParseVmRSS(b)
}

// ParseVmRSS extracts VmRSS in KiB from the text of /proc/PID/status.
func ParseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("procstat: malformed VmRSS line %q", line)
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("procstat: VmRSS: %w", err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("procstat: no VmRSS line (a kernel thread or a zombie?)")
}

// ParsePss extracts Pss in KiB from the text of /proc/PID/smaps_rollup.
func ParsePss(rollup []byte) (int64, error) {
	for _, line := range strings.Split(string(rollup), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("procstat: no Pss line")
}

func fdLimit(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return ParseFDLimit(b)
}

// ParseFDLimit extracts the soft "Max open files" limit from /proc/PID/limits.
func ParseFDLimit(limits []byte) (int64, error) {
	for _, line := range strings.Split(string(limits), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			if f[0] == "unlimited" {
				return -1, nil
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("procstat: no Max open files line")
}

// tree lists pid and all its descendants, from the PPid fields of /proc/*/stat.
func tree(root string, pid int) ([]int, error) {
	if _, err := os.Stat(filepath.Join(root, strconv.Itoa(pid))); err != nil {
		return nil, fmt.Errorf("procstat: process %d: %w", pid, err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if pp, ok := ParsePPid(b); ok {
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// ParsePPid extracts the parent pid from /proc/PID/stat; the command name in parentheses
// may itself hold spaces and parentheses, so fields are counted after the last ')'.
func ParsePPid(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// ParseCPUTicks extracts utime+stime (fields 14 and 15, in ClockTicks) from /proc/PID/stat,
// counting fields after the last ')' as ParsePPid does.
func ParseCPUTicks(stat []byte) (int64, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || ut < 0 || st < 0 || ut > math.MaxInt64-st {
		return 0, false
	}
	return ut + st, true
}

// ReadOne samples pid alone, without its descendants (a generator whose children include
// the proxies it started).
func ReadOne(root string, pid int) (Sample, error) {
	s := Sample{At: time.Now(), Processes: 1}
	rss, err := vmRSS(filepath.Join(root, strconv.Itoa(pid), "status"))
	if err != nil {
		return s, err
	}
	s.RSSKiB = rss
	if b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat")); err == nil {
		if ticks, ok := ParseCPUTicks(b); ok {
			s.CPUSeconds = float64(ticks) / ClockTicks
		}
	}
	if ents, err := os.ReadDir(filepath.Join(root, strconv.Itoa(pid), "fd")); err == nil {
		s.FDs = len(ents)
	}
	s.FDLimit, _ = fdLimit(filepath.Join(root, strconv.Itoa(pid), "limits"))
	return s, nil
}

// HostCPU is the first line of /proc/stat: every CPU's time since boot, in ClockTicks.
type HostCPU struct {
	// Total is the sum of every state; Idle counts idle and iowait.
	Total, Idle int64
	// Steal is time the hypervisor ran something else while this guest wanted the CPU: on a
	// shared host it is the one figure that says a slow run was the machine's, not ours.
	Steal int64
}

// ReadHostCPU reads /proc/stat under the /proc mounted at root.
func ReadHostCPU(root string) (HostCPU, error) {
	b, err := os.ReadFile(filepath.Join(root, "stat"))
	if err != nil {
		return HostCPU{}, err
	}
	h, ok := ParseHostCPU(b)
	if !ok {
		return HostCPU{}, fmt.Errorf("%s: no cpu line", filepath.Join(root, "stat"))
	}
	return h, nil
}

// ParseHostCPU reads the aggregate "cpu" line of /proc/stat: user nice system idle iowait irq
// softirq steal (guest and guest_nice are already inside user and nice, so they are not added
// again). Kernels before 2.6.11 had no steal field: it reads as 0.
func ParseHostCPU(stat []byte) (HostCPU, bool) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return HostCPU{}, false
	}
	var h HostCPU
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 || h.Total > math.MaxInt64-v {
			return HostCPU{}, false
		}
		h.Total += v
		switch i {
		case 3, 4:
			h.Idle += v
		case 7:
			h.Steal = v
		}
	}
	return h, true
}

// BusyPct is the share of the CPUs' time not idle between two readings (steal counts as busy:
// the CPUs were not this guest's); 0 when no time passed.
func BusyPct(from, to HostCPU) float64 {
	d := to.Total - from.Total
	if d <= 0 {
		return 0
	}
	return 100 * (1 - float64(to.Idle-from.Idle)/float64(d))
}

// StealPct is the share of the CPUs' time the hypervisor took between two readings (0 when
// no time passed).
func StealPct(from, to HostCPU) float64 {
	d := to.Total - from.Total
	if d <= 0 || to.Steal < from.Steal {
		return 0
	}
	return 100 * float64(to.Steal-from.Steal) / float64(d)
}
