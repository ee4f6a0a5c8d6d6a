package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/bench/vncsim"
	"vncedge/routing"
)

// Tests of the limits an internet-facing proxy needs (issue 10, section 2)
// and of the defects that need the engine's insides to show.

// metricValue returns the value of one exact series line in /metrics.
func (ts *testServer) metricValue(series string) string {
	ts.t.Helper()
	for _, line := range strings.Split(ts.metricsText(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// dialFrom opens a TCP connection from a chosen loopback source address.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// upgradeFrom sends an upgrade from src and returns the response status.
func upgradeFrom(t *testing.T, src, addr, path string, extra ...string) (int, net.Conn) {
	t.Helper()
	c := dialFrom(t, src, addr)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, upgradeRequest(path, extra...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("upgrade from %s: %v", src, err)
	}
	_ = c.SetDeadline(time.Time{})
	return resp.StatusCode, c
}

func TestSessionsPerClientLimit(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.MaxSessionsPerIP = 2 })
	for i := range 2 {
		if st, _ := upgradeFrom(t, "127.0.0.5", ts.Addr(), "/vnc/"+echo.addr()); st != 101 {
			t.Fatalf("session %d from 127.0.0.5: status %d", i+1, st)
		}
	}
	if st, _ := upgradeFrom(t, "127.0.0.5", ts.Addr(), "/vnc/"+echo.addr()); st != 429 {
		t.Fatalf("third session from one address: status %d, want 429", st)
	}
	if st, _ := upgradeFrom(t, "127.0.0.6", ts.Addr(), "/vnc/"+echo.addr()); st != 101 {
		t.Fatalf("another address: status %d, want 101", st)
	}
	if v := ts.metricValue(`vncedge_upgrades_failed_total{reason="client_capacity"}`); v != "1" {
		t.Errorf("client_capacity rejections = %q, want 1", v)
	}
}

func TestUpgradeRatePerClient(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.UpgradeRate, c.UpgradeBurst = 0.1, 3 })
	for i := range 3 {
		if st, c := upgradeFrom(t, "127.0.0.7", ts.Addr(), "/vnc/"+echo.addr()); st != 101 {
			t.Fatalf("upgrade %d: status %d", i+1, st)
		} else {
			_ = c.Close()
		}
	}
	if st, _ := upgradeFrom(t, "127.0.0.7", ts.Addr(), "/vnc/"+echo.addr()); st != 429 {
		t.Fatalf("fourth upgrade in a burst of 3: status %d, want 429", st)
	}
	if st, _ := upgradeFrom(t, "127.0.0.8", ts.Addr(), "/vnc/"+echo.addr()); st != 101 {
		t.Fatalf("another address is not limited: status %d", st)
	}
}

// readStatus reads an HTTP status line from c, or reports why not.
func readStatus(c net.Conn, d time.Duration) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func TestHandshakeLimits(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.MaxHandshakesPerIP, c.MaxHandshakes = 3, 5 })
	for range 3 {
		dialFrom(t, "127.0.0.9", ts.Addr()) // idle: no HTTP byte
	}
	waitUntil(t, 5*time.Second, "three handshakes counted", func() bool { return ts.handshakes.Load() == 3 })
	if st, err := readStatus(dialFrom(t, "127.0.0.9", ts.Addr()), 5*time.Second); st != 503 {
		t.Fatalf("fourth idle connection from one address: status %d (%v), want 503 at once", st, err)
	}
	dialFrom(t, "127.0.0.10", ts.Addr())
	dialFrom(t, "127.0.0.11", ts.Addr())
	waitUntil(t, 5*time.Second, "five handshakes counted", func() bool { return ts.handshakes.Load() == 5 })
	if st, err := readStatus(dialFrom(t, "127.0.0.12", ts.Addr()), 5*time.Second); st != 503 {
		t.Fatalf("sixth idle connection in all: status %d (%v), want 503", st, err)
	}
	for _, r := range []string{"client_handshakes", "handshakes"} {
		if v := ts.metricValue(`vncedge_connections_shed_total{reason="` + r + `"}`); v != "1" {
			t.Errorf("shed %s = %q, want 1", r, v)
		}
	}
}

// The per-client limits follow the client a trusted proxy names, and a
// trusted proxy that names nobody is not limited as one client.
func TestClientLimitsBehindTrustedProxy(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.MaxSessionsPerIP = 1
		c.TrustedProxies = []string{"127.0.0.20/32"}
	})
	xff := func(ip string) string { return "X-Forwarded-For: " + ip + "\r\n" }
	if st, _ := upgradeFrom(t, "127.0.0.20", ts.Addr(), "/vnc/"+echo.addr(), xff("198.51.100.1")); st != 101 {
		t.Fatalf("first client via the proxy: %d", st)
	}
	if st, _ := upgradeFrom(t, "127.0.0.20", ts.Addr(), "/vnc/"+echo.addr(), xff("198.51.100.2")); st != 101 {
		t.Fatalf("second client via the proxy: %d (limits keyed by the proxy, not the client)", st)
	}
	if st, _ := upgradeFrom(t, "127.0.0.20", ts.Addr(), "/vnc/"+echo.addr(), xff("198.51.100.1")); st != 429 {
		t.Fatalf("the first client again: %d, want 429", st)
	}
	for range 3 { // the proxy itself, naming nobody
		if st, _ := upgradeFrom(t, "127.0.0.20", ts.Addr(), "/vnc/"+echo.addr()); st != 101 {
			t.Fatalf("the trusted proxy without X-Forwarded-For: %d", st)
		}
	}
}

// Descriptors: past the budget derived from RLIMIT_NOFILE new connections
// are refused at accept with a 503, the sessions running keep working, and
// accepting resumes when descriptors free up.
func TestDescriptorBudget(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	echo := startEcho(t, "127.0.0.2:0", nil)
	// A budget of 6: a session takes 2 (browser and VM), an idle
	// connection 1 (2 while it is being enrolled).
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.FDReserve = int(rl.Cur) - 6 })
	live := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	var idle []net.Conn
	refused := 0
	for range 10 {
		c := dialFrom(t, "127.0.0.3", ts.Addr())
		if st, err := readStatus(c, 300*time.Millisecond); err == nil {
			if st != 503 {
				t.Fatalf("a refused connection got %d, want 503", st)
			}
			refused++
			continue
		}
		_ = c.SetReadDeadline(time.Time{})
		idle = append(idle, c)
	}
	if refused == 0 || len(idle) > 4 {
		t.Fatalf("%d idle connections kept, %d refused: the budget of 6 was not applied", len(idle), refused)
	}
	live.writeFrame(true, ws.OpBinary, []byte("still here"))
	if got := live.readData(10, 5*time.Second); string(got) != "still here" {
		t.Fatalf("the live session echoed %q", got)
	}
	// A new session needs two descriptors: refused with a 503, never a hang.
	if st, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+echo.addr())); st != 503 {
		t.Fatalf("upgrade at the ceiling: %d, want 503", st)
	}
	for _, c := range idle {
		_ = c.Close()
	}
	waitUntil(t, 5*time.Second, "descriptors given back", func() bool { return ts.fds.used.Load() <= 2 })
	mustDialWS(t, ts.url+"/vnc/"+echo.addr())
}

// Defect 3: pipelined static requests from a client that never reads were
// all answered at once, each response copied into gnet's queue.
func TestStaticPipeliningBounded(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.js"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.WebDir = dir })
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := dialFrom(t, "127.0.0.4", ts.Addr())
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(64 << 10)
	}
	req := "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
	_, _ = io.WriteString(c, strings.Repeat(req, 9900/len(req)))
	time.Sleep(time.Second)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d pipelined requests for a 1 MiB file, never read: heap grew %.1f MiB, %d static bytes queued",
		9900/len(req), float64(growth)/(1<<20), ts.staticQueued.Load())
	if growth > 8<<20 {
		t.Fatalf("heap grew %d MiB for one client pipelining static requests", growth>>20)
	}
	// It still gets every answer in order once it reads.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReaderSize(c, 64<<10)
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		if n, _ := io.Copy(io.Discard, resp.Body); n != 1<<20 || resp.StatusCode != 200 {
			t.Fatalf("response %d: %d with %d bytes", i+1, resp.StatusCode, n)
		}
	}
}

// Defect 8: after a park the VM's backlog went out as one frame of up to
// --max-buffered; frames are at most ChunkSize now.
func TestVMFramesCapped(t *testing.T) {
	s, browser, vm := benchSession(t, modeBinary)
	frames := &frameCounter{fakeConn: browser}
	s.browser.c = frames
	vm.in = make([]byte, 1<<20+5)
	s.relayFromVM(vm)
	if frames.n != 5 || frames.max > s.srv.cfg.ChunkSize {
		t.Fatalf("1 MiB+5 from the VM went out as %d frames, the largest %d bytes; want 5 of at most %d",
			frames.n, frames.max, s.srv.cfg.ChunkSize)
	}
}

type frameCounter struct {
	*fakeConn
	n, max int
}

func (f *frameCounter) Writev(bs [][]byte) (int, error) {
	f.n++
	f.max = max(f.max, len(bs[1]))
	return f.fakeConn.Writev(bs)
}

// Defect 12: the per-VM limit counted a VM reached by name and by address
// as two VMs.
func TestPerVMLimitByAddress(t *testing.T) {
	echo := startEcho(t, "127.0.0.1:0", nil)
	_, port, _ := net.SplitHostPort(echo.addr())
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("vm1: localhost:"+port+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := routing.NewTokenFile(tokens)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.MaxSessionsPerVM = 1
		rc.Sources = []routing.TokenSource{tf}
	})
	mustDialWS(t, ts.url+"/websockify?token=vm1")
	if st, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/127.0.0.1:"+port)); st != 503 {
		t.Fatalf("the same VM by address after a session by name: %d, want 503", st)
	}
}

// The global memory budget sheds the biggest queue first.
func TestMemoryBudgetShedsBiggest(t *testing.T) {
	stream := func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
	fast := startEcho(t, "127.0.0.2:0", stream)
	quiet := startEcho(t, "127.0.0.3:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.MemoryBudget = 2 << 20
		c.PingInterval = 0
	})
	small := mustDialWS(t, ts.url+"/vnc/"+quiet.addr())
	big := mustDialWS(t, ts.url+"/vnc/"+fast.addr())
	if tc, ok := big.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10) // and never read: its queue grows to the high mark
	}
	waitUntil(t, 20*time.Second, "a budget shed", func() bool {
		return ts.metricValue("vncedge_memory_budget_sheds_total") != "0"
	})
	waitUntil(t, 10*time.Second, "the big session closed", func() bool {
		return ts.metricValue(`vncedge_sessions_closed_total{reason="memory_budget"}`) == "1"
	})
	small.writeFrame(true, ws.OpBinary, []byte("ok"))
	if got := small.readData(2, 5*time.Second); string(got) != "ok" {
		t.Fatalf("the small session echoed %q after the shed", got)
	}
}

// Defect 10: a panic outside OnTraffic (in OnOpen, OnClose, a sweep, a
// runnable) killed the process; now each is recovered and counted.
func TestPanicsRecoveredEverywhere(t *testing.T) {
	s, _, _ := benchSession(t, modeBinary)
	h := &handler{s.srv}
	boom := &panicConn{ref: &s.browserRef}
	s.browser.c = boom
	s.ls.sessions.add(s)
	calls := map[string]func(){
		"OnOpen": func() { h.OnOpen(&panicOpen{}) },
		"OnClose": func() {
			c := &panicOpen{}
			hc := &httpConn{browser: browserConn{c: c}} // no loop: onClose dereferences nil
			c.ctx = hc
			h.OnClose(c, nil)
		},
		"runnable": func() {
			_ = s.srv.guarded(func() { panic("in a runnable") }).Run(context.Background())
		},
		"sweep": func() {
			s.pingSent, s.lastPong, s.srv.cfg.PingInterval = 0, -int64(time.Hour), time.Second
			s.ls.sweep() // pings the browser: boom's Write panics
		},
	}
	for name, call := range calls {
		before := s.srv.met.panics.Get()
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: the panic escaped: %v\n%s", name, r, debug.Stack())
				}
			}()
			call()
		}()
		if s.srv.met.panics.Get() != before+1 {
			t.Errorf("%s: the panic was not counted", name)
		}
	}
}

// panicOpen is a socket whose context and address blow up.
type panicOpen struct {
	fakeConn
	ctx any
}

func (p *panicOpen) Context() any {
	if p.ctx != nil {
		return p.ctx
	}
	return &acceptMark{}
}
func (p *panicOpen) Close() error         { return nil }
func (p *panicOpen) RemoteAddr() net.Addr { panic("boom in OnOpen") }
func (p *panicOpen) SetContext(any)       {}
func (p *panicOpen) EventLoop() gnet.EventLoop {
	panic("boom: no loop")
}

func (p *panicConn) Write([]byte) (int, error) { panic("boom in Write") }
func (p *panicConn) Close() error              { return nil }

// An enroll that never reports back (gnet's worker panicked on the conn,
// say) must not leave its session waiting: waitEnroll gives up.
func TestWaitEnrollGivesUp(t *testing.T) {
	ch := make(chan gnet.RegisteredResult)
	t0 := time.Now()
	if err := waitEnroll(ch, 50*time.Millisecond); !errors.Is(err, errEnrollTimeout) {
		t.Fatalf("waitEnroll = %v, want errEnrollTimeout", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("waitEnroll took %v", d)
	}
	closed := make(chan gnet.RegisteredResult)
	close(closed)
	if err := waitEnroll(closed, time.Second); !errors.Is(err, errEnrollTimeout) {
		t.Fatalf("a closed result channel: %v", err)
	}
}

// TestRecordingFilesCounted: a recording's files are descriptors too, so a
// recorded session counts them in the budget until it ends.
func TestRecordingFilesCounted(t *testing.T) {
	vm := startSimVM(t, vncsim.Config{})
	tf := tokenFile(t, "rec: "+vm.Addr().String()+" record\nplain: "+vm.Addr().String()+"\n")
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.RecordDir, c.RecordInput = t.TempDir(), true
		rc.Sources = []routing.TokenSource{tf}
	})
	plain := mustDialWS(t, ts.url+"/websockify?token=plain")
	plain.rfbLogin()
	waitUntil(t, 5*time.Second, "a plain session counting 2 descriptors", func() bool { return ts.fds.used.Load() == 2 })
	rec := mustDialWS(t, ts.url+"/websockify?token=rec")
	rec.rfbLogin()
	// 2 sockets, the .fbs file and the input log.
	waitUntil(t, 5*time.Second, "a recorded session counting 4 more", func() bool { return ts.fds.used.Load() == 6 })
	_ = rec.conn.Close()
	_ = plain.conn.Close()
	waitUntil(t, 5*time.Second, "every descriptor given back", func() bool { return ts.fds.used.Load() == 0 })
}

// TestAdminConnectionsBounded: past MaxAdminConns an admin client waits in
// the accept queue instead of holding one more descriptor.
func TestAdminConnectionsBounded(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.MaxAdminConns = 2 })
	admin := ts.AdminAddr()
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", admin)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		defer c.Close()
	}
	third, err := net.Dial("tcp", admin) // the kernel completes the handshake; nobody accepts it yet
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if _, err := third.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := third.Read(buf); err == nil {
		t.Fatalf("a third admin connection was served while two were open: %q", buf[:n])
	}
	idle[0].Close()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(third, buf, 12)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("after one closed: %q, %v", buf[:n], err)
	}
}

// An IPv6 client is limited by its /64: changing the interface identifier
// (which every host on a /64 may do at will) opens no new slots. IPv4 and
// IPv4-mapped addresses stay per address, and the same.
func TestClientLimitsIPv6Prefix(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UpgradeRate, cfg.MaxSessionsPerIP, cfg.MaxHandshakesPerIP = 0, 2, 2
	l := newClientLimits(&cfg)
	same := []string{"2001:db8:1:2::1", "2001:db8:1:2:aaaa::5", "2001:db8:1:2:ffff:ffff:ffff:ffff"}
	for i, s := range same[:2] {
		if ok, _ := l.admitUpgrade(netip.MustParseAddr(s)); !ok {
			t.Fatalf("session %d from %s refused", i+1, s)
		}
	}
	if ok, why := l.admitUpgrade(netip.MustParseAddr(same[2])); ok || why != rejectClientCap {
		t.Fatalf("a third session from the same /64: %v %v, want the per-address cap", ok, why)
	}
	if ok, _ := l.admitUpgrade(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Fatal("another /64 refused")
	}
	l.releaseSession(netip.MustParseAddr(same[0])) // released under the /64 it was counted in
	if ok, _ := l.admitUpgrade(netip.MustParseAddr(same[2])); !ok {
		t.Fatal("a slot given back in the /64 was not reusable")
	}
	for _, s := range []string{"2001:db8:9::1", "2001:db8:9::2"} {
		if !l.acquireHandshake(netip.MustParseAddr(s)) {
			t.Fatalf("handshake from %s refused", s)
		}
	}
	if l.acquireHandshake(netip.MustParseAddr("2001:db8:9::3")) {
		t.Fatal("a third handshake from the same /64 was let in")
	}
	v4, mapped := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("::ffff:192.0.2.7")
	if !l.acquireHandshake(v4) || !l.acquireHandshake(mapped) || l.acquireHandshake(v4) {
		t.Fatal("an IPv4 client and its mapped form are one client with 2 handshakes")
	}
	if !l.acquireHandshake(netip.MustParseAddr("192.0.2.8")) {
		t.Fatal("the next IPv4 address shares the first one's limit")
	}
}
