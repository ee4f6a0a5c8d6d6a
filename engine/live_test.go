package engine

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
)

// A reload swaps the allow-list, origins, trusted proxies and limits:
// a target newly allowed works, one removed is refused for new sessions
// while the session already open on it goes on, and a bad value keeps
// everything in force and counts as a reload error.
func TestReloadWithLiveSettings(t *testing.T) {
	vm1 := startEcho(t, "127.0.0.2:0", nil)
	vm2 := startEcho(t, "127.0.0.3:0", nil)
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		rc.Allow = []string{"127.0.0.2/32:1-65535"}
	})
	live := ts.cfg.Live([]string{"127.0.0.2/32:1-65535"})
	reload := func(l Live) error { return ts.ReloadWith(func() (Live, error) { return l, nil }) }

	running := mustDialWS(t, ts.url+"/vnc/"+vm1.addr())
	running.writeFrame(true, ws.OpBinary, []byte("one"))
	running.readData(3, 5*time.Second)
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+vm2.addr())); status != http.StatusForbidden {
		t.Fatalf("vm2 before the reload: %d, want 403", status)
	}

	next := live
	next.Allow = []string{"127.0.0.3/32:1-65535"}
	if err := reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	c := mustDialWS(t, ts.url+"/vnc/"+vm2.addr())
	c.writeFrame(true, ws.OpBinary, []byte("two"))
	if got := string(c.readData(3, 5*time.Second)); got != "two" {
		t.Fatalf("newly allowed vm2: %q", got)
	}
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+vm1.addr())); status != http.StatusForbidden {
		t.Errorf("vm1 after it left the allow-list: %d, want 403", status)
	}
	running.writeFrame(true, ws.OpBinary, []byte("still"))
	if got := string(running.readData(5, 5*time.Second)); got != "still" {
		t.Errorf("the session open on vm1 must go on: %q", got)
	}

	// Origins: a foreign page is refused until the reload names it.
	foreign := "Origin: https://console.example.com\r\n"
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+vm2.addr(), foreign)); status != http.StatusForbidden {
		t.Fatalf("foreign origin: %d, want 403", status)
	}
	next.Origins = []string{"https://*.example.com"}
	if err := reload(next); err != nil {
		t.Fatal(err)
	}
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+vm2.addr(), foreign)); status != http.StatusSwitchingProtocols {
		t.Errorf("origin after the reload: %d, want 101", status)
	}

	// Limits: lowered below the sessions in use, new ones get 503, the
	// open ones go on; the gauge says what is in force.
	next.MaxSessions = 2
	if err := reload(next); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the foreign-origin session to end", func() bool { return ts.limits.sessions() == 2 })
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+vm2.addr())); status != http.StatusServiceUnavailable {
		t.Errorf("over the lowered max-sessions: %d, want 503", status)
	}
	if got := ts.metricValue("vncedge_limit_max_sessions"); got != "2" {
		t.Errorf("vncedge_limit_max_sessions = %q, want 2", got)
	}
	c.writeFrame(true, ws.OpBinary, []byte("on"))
	if got := string(c.readData(2, 5*time.Second)); got != "on" {
		t.Errorf("a session over the new limit must go on: %q", got)
	}

	// Bad values: nothing of the new set applies, and the error counts.
	errsBefore := ts.metricValue("vncedge_reload_errors_total")
	bad := next
	bad.Allow = []string{"127.0.0.2/32:1-65535"}
	bad.Origins = []string{"console.example.com"} // no scheme
	err := reload(bad)
	if err == nil || !strings.Contains(err.Error(), "settings not applied") {
		t.Fatalf("bad origin: %v, want settings not applied", err)
	}
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+vm1.addr())); status != http.StatusForbidden {
		t.Errorf("the bad set's allow-list applied: vm1 answers %d", status)
	}
	if err := ts.ReloadWith(func() (Live, error) { return Live{}, errors.New("config file: line 3: bad") }); err == nil ||
		!strings.Contains(err.Error(), "config not re-read") {
		t.Errorf("unreadable config: %v", err)
	}
	if got := ts.metricValue("vncedge_reload_errors_total"); got == errsBefore {
		t.Errorf("vncedge_reload_errors_total stayed %s after two failed reloads", got)
	}
	if got := ts.current().MaxSessions; got != 2 {
		t.Errorf("max sessions after the failed reloads: %d, want 2 (the last good set)", got)
	}
}

func TestCompileLiveRefuses(t *testing.T) {
	def := DefaultConfig()
	base := def.Live(nil)
	for name, mutate := range map[string]func(*Live){
		"allow":              func(l *Live) { l.Allow = []string{"10.0.0.1/8"} },
		"origin":             func(l *Live) { l.Origins = []string{"https://a.*.example.com"} },
		"trusted-proxy":      func(l *Live) { l.TrustedProxies = []string{"proxy.example"} },
		"negative limit":     func(l *Live) { l.MaxSessionsPerIP = -1 },
		"proxy-protocol":     func(l *Live) { l.TrustedProxies = nil },
		"negative handshake": func(l *Live) { l.MaxHandshakes = -5 },
	} {
		l := base
		l.TrustedProxies = []string{"10.0.0.0/8"}
		mutate(&l)
		if _, err := compileLive(l, true); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := compileLive(base, false); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

// Reloaded per-client limits reach the buckets of addresses already seen.
func TestClientLimitsSetLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UpgradeRate, cfg.UpgradeBurst, cfg.MaxSessionsPerIP = 1, 1, 0
	l := newClientLimits(&cfg)
	a := netip.MustParseAddr("192.0.2.1")
	if ok, _ := l.admitUpgrade(a); !ok {
		t.Fatal("first upgrade refused")
	}
	if ok, why := l.admitUpgrade(a); ok || why != rejectRateLimited {
		t.Fatalf("second upgrade within the burst of 1: %v %v", ok, why)
	}
	l.setLimits(0, 0, 0, 0) // rate limit off
	if ok, _ := l.admitUpgrade(a); !ok {
		t.Error("refused with the rate limit turned off")
	}
	l.setLimits(1, 0, 1000, 10)
	if ok, why := l.admitUpgrade(a); ok || why != rejectClientCap {
		t.Errorf("over the new max sessions per address: %v %v", ok, why)
	}
	l.releaseSession(a)
	l.releaseSession(a)
	l.releaseSession(a)
	if ok, _ := l.admitUpgrade(a); !ok {
		t.Error("refused under the new limits")
	}
}

func TestCapacitySetMax(t *testing.T) {
	c := newCapacity(1, 1)
	if !c.acquireSession() || c.acquireSession() {
		t.Fatal("max 1 does not hold")
	}
	c.setMax(2, 2)
	if !c.acquireSession() {
		t.Error("raised max refused")
	}
	if !c.acquireVM("vm") || !c.acquireVM("vm") || c.acquireVM("vm") {
		t.Error("per-VM max 2 does not hold")
	}
	c.setMax(0, 0)
	if !c.acquireSession() || !c.acquireVM("vm") {
		t.Error("0 must mean no limit")
	}
}

// Reading the live settings costs an upgrade or an accept no allocation.
func TestLiveReadsAllocateNothing(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.TrustedProxies = []string{"10.0.0.0/8"}
		c.Origins = []string{"https://*.example.com"}
	})
	a := netip.MustParseAddr("10.1.2.3")
	if n := testing.AllocsPerRun(1000, func() {
		_ = ts.proxies.contains(a)
		_ = ts.current().origins.allow("", "vnc.example.com")
		_ = ts.limits.acquireSession()
		ts.limits.releaseSession()
	}); n != 0 {
		t.Errorf("live reads allocate %.1f times, want 0", n)
	}
}

func BenchmarkLiveReads(b *testing.B) {
	s := &Server{}
	l, err := compileLive(Live{TrustedProxies: []string{"10.0.0.0/8"}}, false)
	if err != nil {
		b.Fatal(err)
	}
	s.live.Store(l)
	s.proxies = proxySet{s}
	a := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		_ = s.proxies.contains(a)
	}
}
