package engine

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
	"vncedge/wsframe"
)

// Regression tests for issue 10, section 1. They use only what the engine
// had before the fixes, so each can be run against that code too: every
// one failed there.

// answerPings reads frames from c until it fails, answering pings, and
// reports the close frame it saw (code, reason) on the returned channel.
func answerPings(c *wsClient) <-chan string {
	done := make(chan string, 1)
	go func() {
		for {
			_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			h, err := ws.ReadHeader(c.br)
			if err != nil {
				done <- "read: " + err.Error()
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(c.br, p); err != nil {
				done <- "read: " + err.Error()
				return
			}
			switch h.OpCode {
			case ws.OpPing:
				_, _ = c.conn.Write(wsframe.AppendMaskedFrame(nil, true, ws.OpPong, [4]byte{5, 6, 7, 8}, p))
			case ws.OpClose:
				code, reason, _ := wsframe.ParseClose(p)
				done <- closeText(code, string(reason))
				return
			}
		}
	}()
	return done
}

func closeText(code ws.StatusCode, reason string) string {
	return strings.TrimSpace(strings.Join([]string{itoa(int(code)), reason}, " "))
}

func itoa(n int) string {
	var b [12]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Defect 6: the browser's pong to our own ping counted as activity, so with
// pings on, --idle-timeout never fired.
func TestRegressIdleTimeoutWithPings(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.IdleTimeout, c.PingInterval, c.PongTimeout = time.Second, 200*time.Millisecond, 5*time.Second
	})
	c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	select {
	case got := <-answerPings(c):
		if got != "1001 idle timeout" {
			t.Fatalf("session ended with %q, want 1001 idle timeout", got)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("idle timeout of 1s never fired while the browser answered pings")
	}
}

// Defect 2: pongs bypassed --max-buffered: a client that pings and never
// reads grew the proxy's memory without bound.
func TestRegressPingFloodBounded(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.MaxBuffered = 1 << 20; c.PingInterval = 0 })
	c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ping := wsframe.AppendMaskedFrame(nil, true, ws.OpPing, [4]byte{1, 2, 3, 4}, bytes.Repeat([]byte("p"), 125))
	burst := bytes.Repeat(ping, 512)
	closed := false
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.conn.Write(burst); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue // the proxy stopped reading us: fine too
			}
			closed = true
			break
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("ping flood: connection closed by the proxy: %v; heap grew %.1f MiB", closed, float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Errorf("heap grew %d MiB under a ping flood with --max-buffered 1M", growth>>20)
	}
	if !closed {
		t.Error("the proxy kept reading pings from a client that never reads its pongs")
	}
}

// Defect 9: a 403 body quoted the allow-list.
func TestRegressForbiddenBodyIsGeneric(t *testing.T) {
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Allow = []string{"10.20.0.0/16:5900-5910"} })
	status, resp := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/10.20.1.1:22"))
	if status != 403 {
		t.Fatalf("status %d, want 403", status)
	}
	_, body, _ := strings.Cut(resp, "\n\n")
	if strings.Contains(body, "10.20") || strings.Contains(body, "--allow") || strings.Contains(body, "5900") {
		t.Errorf("403 body reveals the allow-list: %q", body)
	}
}

// Defect 11: the browser's last bytes to the VM were lost when the VM
// socket was closed at once on the browser's close frame.
func TestRegressLastBytesReachVM(t *testing.T) {
	const total = 8 << 20
	var got atomic.Int64
	eof := make(chan struct{})
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) {
		defer close(eof)
		// A VM that reads slowly through a small socket buffer: the upload
		// queues in the proxy, and is still queued when the close comes.
		_ = c.(*net.TCPConn).SetReadBuffer(32 << 10)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.PingInterval = 0 })
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr())
	go func() { _, _ = io.Copy(io.Discard, c.br) }()
	chunk := make([]byte, 64<<10)
	var wire []byte
	for sent := 0; sent < total; sent += len(chunk) {
		wire = wsframe.AppendMaskedFrame(wire[:0], true, ws.OpBinary, [4]byte{1, 2, 3, 4}, chunk)
		if _, err := c.conn.Write(wire); err != nil {
			t.Fatalf("upload after %d bytes: %v", sent, err)
		}
	}
	c.writeFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
	select {
	case <-eof:
	case <-time.After(20 * time.Second):
		t.Fatal("the VM never saw the end of the stream")
	}
	if n := got.Load(); n != total {
		t.Fatalf("the VM received %d of %d bytes the browser sent before closing", n, total)
	}
}

// Defect 14: a browser that closed while its upload was backpressured kept
// its session (and descriptors) until the VM ended, forever with the
// default --idle-timeout 0.
func TestRegressParkedBrowserThatLeavesIsReaped(t *testing.T) {
	stop := make(chan struct{})
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) { <-stop }) // accepts, never reads
	defer close(stop)
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.PingInterval = 0; c.IdleTimeout = 0 })
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr())
	chunk := wsframe.AppendMaskedFrame(nil, true, ws.OpBinary, [4]byte{1, 2, 3, 4}, make([]byte, 64<<10))
	paused := func() bool { return !strings.Contains(ts.metricsText(), "vncedge_backpressure_pauses_total 0") }
	for deadline := time.Now().Add(20 * time.Second); !paused(); {
		if time.Now().After(deadline) {
			t.Fatal("the browser socket was never parked")
		}
		_ = c.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.conn.Write(chunk)
	}
	_ = c.conn.Close()
	waitUntil(t, 5*time.Second, "the session of a browser that left while parked to end", func() bool {
		return strings.Contains(ts.metricsText(), "\nvncedge_sessions_active 0\n")
	})
}

// Defect 15: a second Host (the last won), a NUL byte, or LF-only line ends
// got through, or waited for the handshake timeout.
func TestRegressHeaderSmuggling(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, nil)
	base := "GET /vnc/" + echo.addr() + " HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for name, req := range map[string]string{
		"two Host":   base + "Host: 127.0.0.1\r\nHost: evil.example\r\nOrigin: http://evil.example\r\n\r\n",
		"two Origin": base + "Host: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n",
		"NUL":        base + "Host: 127.0.0.1\r\nX-A: a\x00b\r\n\r\n",
		"LF only":    strings.ReplaceAll(base+"Host: 127.0.0.1\r\n\r\n", "\r\n", "\n"),
	} {
		t0 := time.Now()
		status, _ := rawRequest(t, ts.Addr(), req)
		if status != 400 {
			t.Errorf("%s: status %d, want 400", name, status)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("%s: answered after %v, want at once", name, d)
		}
	}
}

// Defect 16: 408, 431 and the header-scan 400s left no log line.
func TestRegressRejectionsLogged(t *testing.T) {
	var logs syncBuffer
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.HandshakeTimeout = 500 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	rawRequest(t, ts.Addr(), "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
	rawRequest(t, ts.Addr(), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 9<<10)+"\r\n\r\n")
	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(conn) // the 408, then EOF
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, status := range []string{"status=400", "status=431", "status=408"} {
		for !strings.Contains(logs.String(), status) {
			select {
			case <-ctx.Done():
				t.Fatalf("no log line with %s; log:\n%s", status, logs.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}
