package strace

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

const table = `strace: Process 22206 attached
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.000060           3        20           read
 30.00    0.000030           1        25         5 write
 10.00    0.000010           0        10           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    0.000100           1        55         5 total
`

func TestParse(t *testing.T) {
	s, err := Parse([]byte(table))
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 55 || s.Calls["read"] != 20 || s.Calls["write"] != 25 || len(s.Calls) != 3 {
		t.Fatalf("summary %+v", s)
	}
	if top := s.Top(2); len(top) != 2 || top[0] != "write 25" || top[1] != "read 20" {
		t.Fatalf("top %v", top)
	}
	// strace 6 leaves usecs/call blank on the total line when it rounds to nothing.
	s, err = Parse([]byte("% time     seconds  usecs/call     calls    errors syscall\n" +
		"100.00    0.000010                     7         2 total\n"))
	if err != nil || s.Total != 7 {
		t.Fatalf("blank columns: %+v %v", s, err)
	}
	for _, bad := range []string{"", "strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n", "% time     seconds  usecs/call     calls    errors syscall\n 60.00    0.000060           3         x           read\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(table))
	f.Add([]byte("% a calls\n  1 2 3 total\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		for k, v := range s.Calls {
			if v < 0 || k == "" {
				t.Fatalf("bad row %q %d", k, v)
			}
		}
		_ = s.Top(3)
	})
}

// A real strace on a real process: its calls are counted.
func TestTraceRealProcess(t *testing.T) {
	if _, err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("strace is missing under CI=true: %v", err)
		}
		t.Skip("SKIPPED: strace is not installed (apt-get install strace): syscall counts untested")
	}
	cmd := exec.Command("sh", "-c", "while :; do cat /dev/null; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	s, err := Trace(cmd.Process.Pid, func() error { time.Sleep(300 * time.Millisecond); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if s.Total == 0 || s.Calls["execve"] == 0 {
		t.Fatalf("no calls counted: %+v", s)
	}
}
