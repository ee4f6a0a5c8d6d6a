package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
)

// newUnstarted is a Server on listen and admin, built like startServer's
// but not serving: for the tests of Listen itself.
func newUnstarted(t *testing.T, listen, admin string, takeover bool) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen, cfg.Admin, cfg.Loops, cfg.Takeover = listen, admin, 1, takeover
	cfg.Logger = discardLogger()
	r, err := routing.New(routing.Config{Allow: []string{"127.0.0.0/8:1-65535"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Router = r
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.closeListeners)
	return srv
}

// A second instance on a running one's address is refused with the clear
// error, unless it asks to take over.
func TestSecondInstanceRefused(t *testing.T) {
	a := startServer(t, nil)

	b := newUnstarted(t, a.Addr(), "127.0.0.1:0", false)
	err := b.Listen()
	var inUse *AddrInUseError
	if !errors.As(err, &inUse) || !inUse.Shared {
		t.Fatalf("second instance: %v, want a shared *AddrInUseError", err)
	}
	want := "another vncedge listens on " + a.Addr() + "; start with --takeover to take over its listener"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}

	c := newUnstarted(t, "127.0.0.1:0", a.AdminAddr(), false)
	if err := c.Listen(); !errors.As(err, &inUse) || !strings.Contains(err.Error(), "admin listener") {
		t.Errorf("second instance on the admin address: %v, want the admin listener refused", err)
	}

	d := newUnstarted(t, a.Addr(), a.AdminAddr(), true)
	if err := d.Listen(); err != nil {
		t.Fatalf("with takeover: %v", err)
	}
	if n, err := d.lns[0].sock.siblings(); err != nil || n != 1 {
		t.Errorf("the takeover's listener sees %d others (%v), want the first instance's", n, err)
	}
}

// An address held by a program that does not share it is refused with
// and without takeover, and the error says takeover cannot help.
func TestAddressHeldByAnotherProgram(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, takeover := range []bool{false, true} {
		s := newUnstarted(t, ln.Addr().String(), "", takeover)
		err := s.Listen()
		var inUse *AddrInUseError
		if !errors.As(err, &inUse) || inUse.Shared || !strings.Contains(err.Error(), "cannot take it over") {
			t.Errorf("takeover=%v: %v, want an unshared *AddrInUseError", takeover, err)
		}
	}
}

// handOver takes what the kernel queued without losing a connection, and
// the address goes with it.
func TestListenSocketHandOver(t *testing.T) {
	sock, err := newListenSocket("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	var clients []net.Conn
	for range 5 {
		c, err := net.DialTimeout("tcp", sock.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	accepted := make(chan net.Conn, 8)
	var acceptErr error
	go func() { // an acceptor waiting in the poller, as the engine's is
		defer close(accepted)
		for {
			c, err := sock.Accept()
			if err != nil {
				acceptErr = err
				return
			}
			accepted <- c
		}
	}()
	// Let the acceptor take some before the handover takes the rest.
	first := <-accepted
	defer first.Close()
	if _, err := sock.handOver(); err != nil {
		t.Fatalf("handOver: %v", err)
	}
	got := []net.Conn{first}
	timeout := time.After(5 * time.Second)
collect:
	for {
		select {
		case c, ok := <-accepted:
			if !ok {
				break collect
			}
			defer c.Close()
			got = append(got, c)
		case <-timeout:
			t.Fatalf("Accept did not end after the handover (%d connections so far)", len(got))
		}
	}
	if len(got) != len(clients) {
		t.Fatalf("%d of %d connections came out of the handover", len(got), len(clients))
	}
	if !errors.Is(acceptErr, net.ErrClosed) {
		t.Errorf("Accept after the handover: %v, want net.ErrClosed", acceptErr)
	}
	// Every taken connection works: none was reset.
	for i, c := range clients {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	seen := map[byte]bool{}
	for _, c := range got {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			t.Fatalf("read from a taken connection: %v", err)
		}
		seen[b[0]] = true
	}
	if len(seen) != len(clients) {
		t.Errorf("bytes from %d distinct clients, want %d", len(seen), len(clients))
	}
	if c, err := net.DialTimeout("tcp", sock.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the address still takes connections after the handover")
	}
}

// upgradeLoop opens sessions to path on addr back to back until stop,
// checks each with an echo, and counts the outcomes.
type upgradeLoop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
}

func (u *upgradeLoop) run(t *testing.T, addr, path string, stop <-chan struct{}) {
	msg := []byte("handover")
	for {
		select {
		case <-stop:
			return
		default:
		}
		err := func() error {
			d := ws.Dialer{Timeout: 5 * time.Second}
			conn, br, _, err := d.Dial(context.Background(), "ws://"+addr+path)
			if err != nil {
				return err
			}
			defer conn.Close()
			c := &wsClient{t: t, conn: conn, br: br}
			if c.br == nil {
				c.br = bufio.NewReader(conn)
			}
			if _, err := conn.Write(wsframeMasked(msg)); err != nil {
				return err
			}
			h, p, err := c.readFrame(5 * time.Second)
			if err != nil {
				return err
			}
			if h.OpCode != ws.OpBinary || string(p) != string(msg) {
				return fmt.Errorf("echo: %v %q", h.OpCode, p)
			}
			return nil
		}()
		if err != nil {
			u.failed.Add(1)
			u.mu.Lock()
			if len(u.errs) < 5 {
				u.errs = append(u.errs, err.Error())
			}
			u.mu.Unlock()
			continue
		}
		u.ok.Add(1)
	}
}

// The whole handover, in one process: a session opened on the old
// instance keeps working through its drain and then gets 1001, while
// sessions opened during the handover all succeed.
func TestTakeoverHandsOverListeners(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	path := "/vnc/" + echo.addr()
	old := startServer(t, func(c *Config, _ *routing.Config) { c.DrainTimeout = 3 * time.Second })
	c := mustDialWS(t, old.url+path)
	c.writeFrame(true, ws.OpBinary, []byte("before"))
	if got := string(c.readData(6, 5*time.Second)); got != "before" {
		t.Fatalf("echo before: %q", got)
	}

	succ := startServer(t, func(c *Config, _ *routing.Config) {
		c.Listen, c.Admin, c.Takeover = old.Addr(), old.AdminAddr(), true
	})
	<-succ.Ready()

	var loop upgradeLoop
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { loop.run(t, old.Addr(), path, stop) })
	}
	time.Sleep(200 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- old.Shutdown(context.Background()) }()
	waitUntil(t, 5*time.Second, "the handover", old.handedOver.Load)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("upgrades during the handover: %d succeeded, %d failed %v", loop.ok.Load(), loop.failed.Load(), loop.errs)
	if loop.failed.Load() != 0 || loop.ok.Load() == 0 {
		t.Errorf("%d of %d upgrades failed during the handover: %v", loop.failed.Load(),
			loop.ok.Load()+loop.failed.Load(), loop.errs)
	}

	// The old session still relays during the drain.
	c.writeFrame(true, ws.OpBinary, []byte("during"))
	if got := string(c.readData(6, 5*time.Second)); got != "during" {
		t.Fatalf("echo during the drain: %q", got)
	}
	// Everything new reaches the successor, the admin port too.
	if n, err := succ.lns[0].sock.siblings(); err != nil || n != 0 {
		t.Errorf("the successor still shares its address with %d listeners (%v)", n, err)
	}
	resp, err := http.Get("http://" + old.AdminAddr() + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("readyz on the admin port after the handover: %v %v, want the successor's 200", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if code, _ := c.expectClose(10 * time.Second); code != ws.StatusGoingAway {
		t.Fatalf("old session closed with %d, want 1001 at the end of the drain", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Without a successor the drain keeps the listener and refuses new
// upgrades with 503, and hands over as soon as a successor binds.
func TestDrainHandsOverWhenSuccessorAppears(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	path := "/vnc/" + echo.addr()
	old := startServer(t, func(c *Config, _ *routing.Config) { c.DrainTimeout = 5 * time.Second })
	held := mustDialWS(t, old.url+path) // a session keeps the drain going
	held.writeFrame(true, ws.OpBinary, []byte("hold"))
	held.readData(4, 5*time.Second)
	done := make(chan error, 1)
	go func() { done <- old.Shutdown(context.Background()) }()
	waitUntil(t, 5*time.Second, "draining", old.refusing.Load)
	if status, _ := rawRequest(t, old.Addr(), upgradeRequest(path)); status != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while draining without a successor: %d, want 503", status)
	}
	if old.handedOver.Load() {
		t.Fatal("handed over with no successor")
	}

	succ := startServer(t, func(c *Config, _ *routing.Config) {
		c.Listen, c.Admin, c.Takeover = old.Addr(), old.AdminAddr(), true
	})
	<-succ.Ready()
	waitUntil(t, 5*time.Second, "the handover to the late successor", old.handedOver.Load)
	if old.refusing.Load() {
		t.Error("still refusing after the handover")
	}
	c := mustDialWS(t, "ws://"+old.Addr()+path) // the successor's now
	c.writeFrame(true, ws.OpBinary, []byte("late"))
	if got := string(c.readData(4, 5*time.Second)); got != "late" {
		t.Fatalf("echo through the successor: %q", got)
	}
	if got := succ.limits.sessions(); got != 1 {
		t.Errorf("successor has %d sessions, want 1", got)
	}
	_ = held.conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
