package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
	"vncedge/wsframe"
)

// testServer runs a Server on a free loopback port for one test.
type testServer struct {
	*Server
	t   *testing.T
	url string // ws://addr
}

func startServer(t *testing.T, tweak func(*Config, *routing.Config)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.Loops = 2
	// Tests open many sessions from one address at once: the per-client
	// limits are off unless a test turns them on.
	cfg.MaxSessionsPerIP, cfg.MaxHandshakesPerIP, cfg.UpgradeRate = 0, 0, 0
	cfg.Logger = discardLogger()
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	rc := routing.Config{Allow: []string{"127.0.0.0/8:1-65535"}}
	if tweak != nil {
		tweak(&cfg, &rc)
	}
	r, err := routing.New(rc)
	if err != nil {
		t.Fatalf("routing: %v", err)
	}
	cfg.Router = r
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	deadline := time.Now().Add(5 * time.Second)
	for !srv.booted.Load() {
		if time.Now().After(deadline) {
			t.Fatal("server did not boot")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.cfg.DrainTimeout = 0
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 2)
			t.Errorf("Serve did not return; goroutines:\n%s", dump.String())
		}
	})
	return &testServer{Server: srv, t: t, url: "ws://" + srv.Addr()}
}

// echoServer is a TCP server on a loopback address that echoes every byte,
// or does what handle says with each connection.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startEcho(t *testing.T, addr string, handle func(net.Conn)) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	if handle == nil {
		handle = func(c net.Conn) { _, _ = io.Copy(c, c) }
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) close() {
	_ = e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// wsClient is a minimal RFC 6455 client for tests: it writes masked frames
// and reads raw frames, so tests see exactly what the proxy sends.
type wsClient struct {
	t      *testing.T
	conn   net.Conn
	br     *bufio.Reader
	hs     ws.Handshake
	rfbBuf []byte // RFB bytes read but not yet taken (rfb_test.go)
}

func dialWS(t *testing.T, url string, protocols ...string) (*wsClient, error) {
	t.Helper()
	d := ws.Dialer{Protocols: protocols, Timeout: 5 * time.Second}
	conn, br, hs, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &wsClient{t: t, conn: conn, br: br, hs: hs}
	t.Cleanup(func() { _ = conn.Close() })
	return c, nil
}

func mustDialWS(t *testing.T, url string, protocols ...string) *wsClient {
	t.Helper()
	c, err := dialWS(t, url, protocols...)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

func (c *wsClient) writeFrame(fin bool, op ws.OpCode, payload []byte) {
	c.t.Helper()
	frame := wsframe.AppendMaskedFrame(nil, fin, op, [4]byte{1, 2, 3, 4}, payload)
	if _, err := c.conn.Write(frame); err != nil {
		c.t.Fatalf("write frame: %v", err)
	}
}

// readFrame reads one frame with a deadline.
func (c *wsClient) readFrame(timeout time.Duration) (ws.Header, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.conn.SetReadDeadline(time.Time{})
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return h, nil, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return h, p, nil
}

// readData reads data frames until n payload bytes arrived, answering
// nothing; control frames other than ping fail the test.
func (c *wsClient) readData(n int, timeout time.Duration) []byte {
	c.t.Helper()
	var out []byte
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		h, p, err := c.readFrame(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("read data after %d of %d bytes: %v", len(out), n, err)
		}
		switch h.OpCode {
		case ws.OpBinary, ws.OpText, ws.OpContinuation:
			out = append(out, p...)
		case ws.OpPing:
		default:
			code, reason, _ := wsframe.ParseClose(p)
			c.t.Fatalf("unexpected %v frame (code %d %q) after %d of %d bytes", h.OpCode, code, reason, len(out), n)
		}
	}
	return out
}

// expectClose reads until a close frame and returns its code and reason.
func (c *wsClient) expectClose(timeout time.Duration) (ws.StatusCode, string) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h, p, err := c.readFrame(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("waiting for close frame: %v", err)
		}
		if h.OpCode == ws.OpClose {
			code, reason, err := wsframe.ParseClose(p)
			if err != nil {
				c.t.Fatalf("bad close payload %q: %v", p, err)
			}
			return code, string(reason)
		}
	}
}

// expectEOF waits for the proxy to close the TCP connection.
func (c *wsClient) expectEOF(timeout time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		_, err := c.br.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		c.t.Fatalf("waiting for EOF: %v", err)
	}
}

// rawRequest sends raw bytes and returns the status code and whole response.
func rawRequest(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", firstLine(req), err)
	}
	body, _ := io.ReadAll(resp.Body)
	var b bytes.Buffer
	_ = resp.Header.Write(&b)
	return resp.StatusCode, b.String() + "\n" + string(body)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

func upgradeRequest(path string, extra ...string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
		path, strings.Join(extra, ""))
}

// waitUntil polls cond for up to timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricsText fetches /metrics from the admin listener.
func (ts *testServer) metricsText() string {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.AdminAddr() + "/metrics")
	if err != nil {
		ts.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func wsframeMasked(p []byte) []byte {
	return wsframe.AppendMaskedFrame(nil, true, ws.OpBinary, [4]byte{9, 8, 7, 6}, p)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
