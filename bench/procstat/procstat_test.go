package procstat

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParsers(t *testing.T) {
	rss, err := ParseVmRSS([]byte("Name:\tx\nVmPeak:\t  900 kB\nVmRSS:\t    1234 kB\n"))
	if err != nil || rss != 1234 {
		t.Fatalf("ParseVmRSS = %d, %v", rss, err)
	}
	if _, err := ParseVmRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Fatal("missing VmRSS accepted")
	}
	lim, err := ParseFDLimit([]byte("Limit                     Soft Limit           Hard Limit           Units\nMax open files            20000                20000                files\n"))
	if err != nil || lim != 20000 {
		t.Fatalf("ParseFDLimit = %d, %v", lim, err)
	}
	pss, err := ParsePss([]byte("55d0-7ff [rollup]\nRss:                1000 kB\nPss:                 420 kB\nPss_Anon:  1 kB\n"))
	if err != nil || pss != 420 {
		t.Fatalf("ParsePss = %d, %v", pss, err)
	}
	ticks, ok := ParseCPUTicks([]byte("11062 (c) a) R 11058 11058 8239 0 -1 4194304 102 0 0 0 150 25 7 9 20 0 1 0"))
	if !ok || ticks != 175 {
		t.Fatalf("ParseCPUTicks = %d, %v; want 175 (utime 150 + stime 25, children not counted)", ticks, ok)
	}
	for _, bad := range []string{"1 (x) R 1 2 3", "1 (x) R 1 1 1 0 -1 0 0 0 0 0 -5 2 0 0", "no paren 1 2 3 4 5 6 7 8 9 10 11 12 13"} {
		if _, ok := ParseCPUTicks([]byte(bad)); ok {
			t.Errorf("ParseCPUTicks(%q) accepted", bad)
		}
	}
	pp, ok := ParsePPid([]byte("42 (we ird) name)) S 7 42 42 0 -1"))
	if !ok || pp != 7 {
		t.Fatalf("ParsePPid = %d, %v", pp, ok)
	}
}

func TestReadSelfAndChild(t *testing.T) {
	self, err := Read("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU so the tick counter moves past zero.
	for end := time.Now().Add(30 * time.Millisecond); time.Now().Before(end); {
	}
	self, err = Read("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.RSSKiB <= 0 || self.FDs <= 0 || self.Processes < 1 || self.FDLimit == 0 || self.CPUSeconds <= 0 {
		t.Fatalf("self: %+v", self)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var withChild Sample
	for i := 0; i < 200; i++ { // the child shows up once exec'd
		withChild, err = Read("/proc", os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if withChild.Processes > self.Processes {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if withChild.Processes <= self.Processes {
		t.Fatalf("child not counted: %+v vs %+v", withChild, self)
	}
	if _, err := Read("/proc", 1<<30); err == nil {
		t.Fatal("nonexistent pid read without error")
	}
}

// FuzzParsers: the /proc parsers never panic on any text, and what they accept is sane.
func FuzzParsers(f *testing.F) {
	f.Add([]byte("VmRSS:\t  12 kB\nPss:  3 kB\nMax open files  20000  20000  files\n"))
	f.Add([]byte("1 (a) b) S 7 1"))
	f.Add([]byte("VmRSS: x kB\nMax open files unlimited unlimited files"))
	f.Add([]byte("cpu  921740 2105 437549 1133393 4104 0 71465 72209 0 0\ncpu0 1 2 3 4\n"))
	f.Add([]byte("cpu 1 2 3 4"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := ParseVmRSS(b); err == nil && v < 0 && !bytes.Contains(b, []byte("-")) {
			t.Fatalf("negative VmRSS %d", v)
		}
		_, _ = ParsePss(b)
		if v, ok := ParseCPUTicks(b); ok && v < 0 {
			t.Fatalf("negative CPU ticks %d", v)
		}
		_, _ = ParseFDLimit(b)
		if h, ok := ParseHostCPU(b); ok && (h.Total < 0 || h.Idle < 0 || h.Steal < 0 || h.Idle+h.Steal > h.Total) {
			t.Fatalf("host CPU %+v: a part above the whole", h)
		}
		if pp, ok := ParsePPid(b); ok && !bytes.Contains(b, []byte(")")) {
			t.Fatalf("ppid %d from text without ')'", pp)
		}
	})
}

func TestParseHostCPU(t *testing.T) {
	h, ok := ParseHostCPU([]byte("cpu  921740 2105 437549 1133393 4104 0 71465 72209 0 0\ncpu0 1 2 3 4 5 6 7 8\n"))
	want := HostCPU{Total: 921740 + 2105 + 437549 + 1133393 + 4104 + 71465 + 72209, Idle: 1133393 + 4104, Steal: 72209}
	if !ok || h != want {
		t.Fatalf("got %+v %v, want %+v", h, ok, want)
	}
	if h, ok := ParseHostCPU([]byte("cpu 1 2 3 4\n")); !ok || h.Steal != 0 || h.Total != 10 {
		t.Fatalf("an old kernel's line without steal: %+v %v", h, ok)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4", "cpu 1 2 x 4", "cpu 1 2 -3 4", "intr 1 2 3 4"} {
		if _, ok := ParseHostCPU([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	a := HostCPU{Total: 1000, Steal: 10}
	if got := StealPct(a, HostCPU{Total: 1200, Steal: 60}); got != 25 {
		t.Errorf("StealPct = %v, want 25", got)
	}
	if got := BusyPct(HostCPU{Total: 1000, Idle: 900}, HostCPU{Total: 1200, Idle: 950}); got != 75 {
		t.Errorf("BusyPct = %v, want 75", got)
	}
	if got := StealPct(a, a); got != 0 {
		t.Errorf("StealPct over no time = %v", got)
	}
	if _, err := ReadHostCPU("/proc"); err != nil {
		t.Errorf("this machine's /proc/stat: %v", err)
	}
}
