package engine

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
	"vncedge/wsframe"
)

// TestVMEndReachesLaggingBrowser: a VM that resets while its browser lags
// behind (the proxy's queue for it over the high mark, the VM parked) must
// not cost the browser what the proxy holds for it: once it reads again it
// gets those bytes, in order, then the close frame (1011: the VM's reset
// destroyed what its socket still held, so less than it wrote arrives).
func TestVMEndReachesLaggingBrowser(t *testing.T) {
	var written atomic.Int64
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) {
		// Write until the proxy stops taking bytes, then reset.
		_ = c.SetWriteDeadline(time.Now().Add(1500 * time.Millisecond))
		patternSource(1<<30, &written)(c)
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.PingInterval = 0
		c.HighWater, c.LowWater = 256<<10, 64<<10
	})
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	waitUntil(t, 10*time.Second, "the VM parked", func() bool { return ts.met.backpressure.Get() > 0 })
	time.Sleep(2500 * time.Millisecond) // the VM has reset; the proxy noticed (park check)

	var off int64
	want := make([]byte, 64<<10)
	got := make([]byte, len(want))
	for {
		h, err := readHeaderDeadline(c, 10*time.Second)
		if err != nil {
			t.Fatalf("after %d of the %d bytes the VM wrote: %v", off, written.Load(), err)
		}
		if h.OpCode == ws.OpClose {
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(c.br, p); err != nil {
				t.Fatal(err)
			}
			code, reason, err := wsframe.ParseClose(p)
			if err != nil || code != ws.StatusInternalServerError {
				t.Fatalf("close %d %q (%v), want 1011", code, reason, err)
			}
			break
		}
		for rem := h.Length; rem > 0; {
			n := min(rem, int64(len(want)))
			if _, err := io.ReadFull(c.br, got[:n]); err != nil {
				t.Fatalf("payload after %d bytes: %v", off, err)
			}
			fillPattern(want[:n], off)
			if string(got[:n]) != string(want[:n]) {
				t.Fatalf("bytes differ at offset %d", off)
			}
			off += n
			rem -= n
		}
	}
	if off < 256<<10 || off > written.Load() {
		t.Fatalf("browser got %d bytes before the close; the VM wrote %d, the high mark is 256 KiB", off, written.Load())
	}
}

// TestClosingFlooderCut: a browser that floods pings without reading keeps
// sending after its session ended; the proxy stops reading and discarding
// its bytes after CloseDiscardMax instead of lingering until CloseLinger.
func TestClosingFlooderCut(t *testing.T) {
	var written atomic.Int64
	vm := startEcho(t, "127.0.0.2:0", patternSource(1<<40, &written))
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.PingInterval = 0
		c.CloseLinger = time.Minute
	})
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	waitUntil(t, 10*time.Second, "the VM parked", func() bool { return ts.met.backpressure.Get() > 0 })
	sessions, err := ts.Sessions(t.Context(), "", "")
	if err != nil || len(sessions) != 1 {
		t.Fatalf("sessions %v, %v", sessions, err)
	}
	if ok, err := ts.CloseSession(t.Context(), sessions[0].ID); !ok || err != nil {
		t.Fatalf("close session: %v %v", ok, err)
	}
	ping := wsframe.AppendMaskedFrame(nil, true, ws.OpPing, [4]byte{1, 2, 3, 4}, make([]byte, 125))
	burst := make([]byte, 0, 64<<10)
	for len(burst)+len(ping) <= cap(burst) {
		burst = append(burst, ping...)
	}
	var sent int64
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.conn.Write(burst)
		sent += int64(n)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			t.Logf("proxy stopped taking the flood after %v, %.1f MiB sent: %v", time.Since(start).Round(time.Millisecond), float64(sent)/(1<<20), err)
			return
		}
	}
	t.Fatalf("the proxy still took the flood %v after the session ended (%.1f MiB), CloseLinger is %v",
		time.Since(start).Round(time.Millisecond), float64(sent)/(1<<20), ts.cfg.CloseLinger)
}
