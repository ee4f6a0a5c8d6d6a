package load

import (
	"bytes"
	"strings"
	"testing"
)

// A run where nothing opened prints n/a, never a zero latency or a negative share, and
// counts as failed.
func TestNothingOpenedIsNA(t *testing.T) {
	direct := &Result{Scenario: "sessions", Kind: KindHold, Target: Target{Name: "direct", Direct: true}, Sessions: 10, Opened: 10, SetupPerSec: 900}
	dead := &Result{Scenario: "sessions", Kind: KindHold, Target: Target{Name: "vncedge", RatioTo: []string{"direct"}}, Sessions: 10, OpenFailed: 10,
		ErrorKinds: map[string]int64{"connection refused": 10}, Proxy: &ProxyMem{}}
	var out bytes.Buffer
	dead.Print(&out)
	s := out.String()
	for _, bad := range []string{"0.00 ms", "0.000 ms", " 0% returned", "-0%"} {
		if strings.Contains(s, bad) {
			t.Errorf("summary says %q:\n%s", bad, s)
		}
	}
	if !strings.Contains(s, "setup p50 n/a, p99 n/a") || !strings.Contains(s, "n/a returned") || !strings.Contains(s, "CPU: n/a per session setup") {
		t.Errorf("summary lacks n/a:\n%s", s)
	}
	if f := dead.Failures(); len(f) != 2 {
		t.Errorf("failures %v", f)
	}
	if f := direct.Failures(); len(f) != 0 {
		t.Errorf("clean run failed: %v", f)
	}
	out.Reset()
	PrintTable(&out, []*Result{direct, dead})
	table := out.String()
	for _, want := range []string{"vncedge/direct", "better", "higher", "lower"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		// case words..., metric, better, direct, vncedge, vncedge/direct
		if strings.Contains(line, "setup/s") && (len(f) < 3 || f[len(f)-1] != "n/a" || f[len(f)-2] != "n/a") {
			t.Errorf("setup/s of a run that opened nothing is not n/a: %q", line)
		}
	}
}

func TestRatioPairs(t *testing.T) {
	rs := []*Result{
		{Target: Target{Name: "direct"}},
		{Target: Target{Name: "vncedge", RatioTo: []string{"direct", "haproxy", "websockify", "absent"}}},
		{Target: Target{Name: "haproxy", RatioTo: []string{"direct"}}},
		{Target: Target{Name: "websockify", RatioTo: []string{"direct"}}},
	}
	got := RatioPairs(rs)
	want := [][2]string{{"vncedge", "direct"}, {"vncedge", "haproxy"}, {"vncedge", "websockify"}, {"haproxy", "direct"}, {"websockify", "direct"}}
	if len(got) != len(want) {
		t.Fatalf("pairs %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pairs %v, want %v", got, want)
		}
	}
	// Results of older runs have no RatioTo: baseline first, then the proxy under test.
	old := RatioPairs([]*Result{{Target: Target{Name: "direct"}}, {Target: Target{Name: "vncedge"}}, {Target: Target{Name: "websockify"}}})
	if len(old) != 3 || old[2] != [2]string{"vncedge", "websockify"} {
		t.Fatalf("old pairs %v", old)
	}
}

func TestFailuresKinds(t *testing.T) {
	r := &Result{Scenario: "x", Kind: KindDesktop, Target: Target{Name: "v"}, Sessions: 2, Opened: 2, Errors: 1, Corrupt: 1,
		Desktop: &DesktopResult{InputSent: 10, InputLost: 3}}
	if f := r.Failures(); len(f) != 3 {
		t.Fatalf("failures %v", f)
	}
	c := &Result{Scenario: "churn", Kind: KindChurn, Target: Target{Name: "v"}}
	if f := c.Failures(); len(f) != 1 {
		t.Fatalf("churn with nothing churned: %v", f)
	}
}

// A run on a host whose hypervisor took a large share of the CPUs says so beside its figures;
// a quiet one says nothing.
func TestHostStealNoted(t *testing.T) {
	for _, c := range []struct {
		steal float64
		noted bool
	}{{0.4, false}, {NoisySteal, false}, {32, true}} {
		r := &Result{Scenario: "latency", Kind: KindEcho, Target: Target{Name: "vncedge"}, Sessions: 1, HostStealPct: c.steal}
		r.merge(nil)
		var out bytes.Buffer
		r.Print(&out)
		if got := strings.Contains(out.String(), "(steal) during the run"); got != c.noted {
			t.Errorf("steal %.1f%%: noted %v, want %v:\n%s", c.steal, got, c.noted, out.String())
		}
	}
}

// A measured busy share decides over the load average, which remembers the last minute.
func TestMachineBusy(t *testing.T) {
	quiet, busy := 12.0, 80.0
	for _, c := range []struct {
		m    Machine
		want bool
	}{
		{Machine{CPUs: 2, Load: 4.8, BusyPct: &quiet}, false},
		{Machine{CPUs: 2, Load: 0.3, BusyPct: &busy}, true},
		{Machine{CPUs: 2, Load: 4.8}, true}, // a result written before BusyPct
		{Machine{CPUs: 2, Load: 1.0}, false},
	} {
		if got := c.m.Busy(); got != c.want {
			t.Errorf("%s: busy %v, want %v", c.m.Busyness(), got, c.want)
		}
	}
	if m := ThisMachine(); m.BusyPct == nil || *m.BusyPct < 0 || *m.BusyPct > 100 {
		t.Errorf("this machine's busy share: %v", m.BusyPct)
	}
}
