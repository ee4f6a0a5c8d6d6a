package load

import (
	"bytes"
	"strings"
	"testing"

	"vncedge/bench/procstat"
)

func TestVerdicts(t *testing.T) {
	direct := Target{Name: "direct", Direct: true}
	edge := Target{Name: "vncedge", RatioTo: []string{"direct", "haproxy"}}
	relay := Target{Name: "haproxy", Relay: true, RatioTo: []string{"direct"}}
	rtt := func(p99, p999 float64) *Latency { return &Latency{Count: 10, P50: 0.1, P99: p99, P999: p999} }
	rs := []*Result{
		{Kind: KindDown, Target: direct, Sessions: 1, MBps: 2000, Opened: 1},
		{Kind: KindDown, Target: edge, Sessions: 1, MBps: 1300, Opened: 1},
		{Kind: KindDown, Target: relay, Sessions: 1, MBps: 1000, Opened: 1},
		{Kind: KindEcho, Target: direct, Sessions: 1000, Rate: 10, RTT: rtt(1, 2), Opened: 1000},
		{Kind: KindEcho, Target: edge, Sessions: 1000, Rate: 10, RTT: rtt(2, 3), Opened: 1000},
		{Scenario: "sessions", Kind: KindHold, Target: edge, Sessions: 9900, Opened: 9900,
			Proxy: &ProxyMem{Opened: procstat.Sample{CPUSeconds: 1}, SetupCPUMicros: 80, PerSessionKiB: 2.5, ReturnedPct: 93, Grew: true}},
	}
	rs[5].Proxy.Opened.At = rs[5].Proxy.Opened.At.AddDate(2026, 0, 0)
	got := map[string]bool{}
	for _, v := range Verdicts(rs) {
		got[v.Goal] = v.Met
	}
	want := map[string]bool{
		"throughput VM->browser, 1 session(s), MB/s: vncedge >= 0.6x direct":           true,  // 0.65x
		"throughput VM->browser, 1 session(s), MB/s: vncedge >= 1.2x the C relay":      true,  // 1.3x
		"latency, 1000 sessions x 10 msg/s, round trip p99 ms: vncedge <= 1.5x direct": false, // 2x
		"latency, 1000 sessions x 10 msg/s, round trip p99.9 ms: vncedge <= 2x direct": true,  // 1.5x
		"sessions, 9900, proxy CPU us/setup: vncedge <= 100 us":                        true,
		"sessions, 9900, KiB/session: vncedge <= 1.5 KiB":                              false,
		"sessions, 9900, % returned: vncedge >= 90%":                                   true,
	}
	for g, met := range want {
		if m, ok := got[g]; !ok || m != met {
			t.Errorf("%q: got %v (present %v), want %v; all: %v", g, m, ok, met, got)
		}
	}
	var out bytes.Buffer
	PrintTable(&out, rs)
	if !strings.Contains(out.String(), "issue 14 targets:") || !strings.Contains(out.String(), "MISSED") {
		t.Fatalf("table without verdicts:\n%s", out.String())
	}
	if Verdicts(nil) != nil {
		t.Fatal("verdicts of nothing")
	}
}
