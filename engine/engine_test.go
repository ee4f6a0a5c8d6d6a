package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
)

func TestPathRouteEchoBinary(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, nil)
	for _, protos := range [][]string{{"binary"}, nil, {"x-unknown", "binary"}, {"x-unknown"}} {
		t.Run(fmt.Sprint(protos), func(t *testing.T) {
			c := mustDialWS(t, ts.url+"/vnc/"+echo.addr(), protos...)
			if want := map[bool]string{true: "binary", false: ""}[len(protos) > 0 && protos[len(protos)-1] == "binary"]; c.hs.Protocol != want {
				t.Fatalf("protocol = %q, want %q", c.hs.Protocol, want)
			}
			for _, n := range []int{1, 125, 126, 4000, 65535, 65536, 300000} {
				msg := make([]byte, n)
				_, _ = rand.Read(msg)
				c.writeFrame(true, ws.OpBinary, msg)
				got := c.readData(n, 10*time.Second)
				if !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes differs", n)
				}
			}
		})
	}
}

func TestBase64Subprotocol(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, nil)
	c := mustDialWS(t, ts.url+"/vnc/"+echo.addr(), "base64")
	if c.hs.Protocol != "base64" {
		t.Fatalf("protocol = %q, want base64", c.hs.Protocol)
	}
	msg := make([]byte, 10000)
	_, _ = rand.Read(msg)
	enc := []byte(base64.StdEncoding.EncodeToString(msg))
	// Split one message over three fragments at awkward places.
	c.writeFrame(false, ws.OpText, enc[:7])
	c.writeFrame(false, ws.OpContinuation, enc[7:5001])
	c.writeFrame(true, ws.OpContinuation, enc[5001:])
	var got []byte
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(msg) {
		h, p, err := c.readFrame(time.Until(deadline))
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if h.OpCode != ws.OpText {
			t.Fatalf("opcode %v, want text", h.OpCode)
		}
		dec, err := base64.StdEncoding.DecodeString(string(p))
		if err != nil {
			t.Fatalf("proxy sent invalid base64: %v", err)
		}
		got = append(got, dec...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("base64 round trip differs")
	}
	c.writeFrame(true, ws.OpText, []byte("!!!!"))
	if code, _ := c.expectClose(5 * time.Second); code != ws.StatusInvalidFramePayloadData {
		t.Fatalf("bad base64: close %d, want 1007", code)
	}
}

func TestTokenRoute(t *testing.T) {
	echo := startEcho(t, "127.0.0.3:0", nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("# test\nvm1: "+echo.addr()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := routing.NewTokenFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// --rfb-errors=false: refusals are HTTP statuses (rfb_test.go has the RFB ones).
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.RFBErrors = false
		rc.Sources = []routing.TokenSource{tf}
	})
	c := mustDialWS(t, ts.url+"/websockify?token=vm1", "binary")
	c.writeFrame(true, ws.OpBinary, []byte("hello"))
	if got := c.readData(5, 5*time.Second); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	status, body := rawRequest(t, ts.Addr(), upgradeRequest("/websockify?token=nope"))
	if status != http.StatusNotFound && status != http.StatusForbidden {
		t.Fatalf("unknown token: status %d, want 403 or 404\n%s", status, body)
	}
	if strings.Contains(body, "nope") {
		t.Fatalf("response echoes the token: %s", body)
	}
	// Reload picks up a new token.
	if err := os.WriteFile(file, []byte("vm2: "+echo.addr()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	mustDialWS(t, ts.url+"/websockify?token=vm2")
	if _, err := dialWS(t, ts.url+"/websockify?token=vm1"); err == nil {
		t.Fatal("vm1 still routes after reload removed it")
	}
}

func TestUpgradeErrors(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		rc.Allow = []string{"127.0.0.2/32:1-65535"}
	})
	good := "/vnc/" + echo.addr()
	big := strings.Repeat("X-Filler: "+strings.Repeat("a", 100)+"\r\n", 90)
	cases := []struct {
		name   string
		req    string
		status int
		header string
	}{
		{"malformed request line", "NONSENSE\r\n\r\n", 400, ""},
		{"not GET", strings.Replace(upgradeRequest(good), "GET", "POST", 1), 405, ""},
		{"old version", strings.Replace(upgradeRequest(good), "Version: 13", "Version: 8", 1), 426, "Sec-Websocket-Version: 13"},
		{"missing key", strings.Replace(upgradeRequest(good), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), 400, ""},
		{"headers too large", upgradeRequest(good, big), 431, ""},
		{"unknown route", upgradeRequest("/nowhere"), 404, ""},
		{"not allowed", upgradeRequest("/vnc/127.0.0.9:5901"), 403, ""},
		{"metadata address", upgradeRequest("/vnc/169.254.169.254:80"), 403, ""},
		{"bad target", upgradeRequest("/vnc/not-an-ip"), 400, ""},
		{"foreign origin", upgradeRequest(good, "Origin: https://evil.example\r\n"), 403, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := rawRequest(t, ts.Addr(), tc.req)
			if status != tc.status {
				t.Fatalf("status %d, want %d\n%s", status, tc.status, resp)
			}
			if tc.header != "" && !strings.Contains(resp, tc.header) {
				t.Fatalf("response lacks %q:\n%s", tc.header, resp)
			}
		})
	}
	// Same-host origin passes.
	status, _ := rawRequest(t, ts.Addr(), upgradeRequest(good, "Origin: http://127.0.0.1:8080\r\n"))
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("same-host origin: status %d, want 101", status)
	}
	m := ts.metricsText()
	for _, want := range []string{`vncedge_upgrades_failed_total{reason="not_found"} 1`, `vncedge_upgrades_failed_total{reason="origin"} 1`,
		`vncedge_upgrades_failed_total{reason="header_too_large"} 1`, `vncedge_upgrades_failed_total{reason="unsupported_version"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestOriginPatterns(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.Origins = []string{"https://*.example.com", "http://console.test:8080"}
	})
	good := "/vnc/" + echo.addr()
	for origin, want := range map[string]int{
		"https://a.example.com":    101,
		"https://example.com":      403,
		"http://a.example.com":     403,
		"http://console.test:8080": 101,
		"http://console.test":      403,
		"null":                     403,
	} {
		status, _ := rawRequest(t, ts.Addr(), upgradeRequest(good, "Origin: "+origin+"\r\n"))
		if status != want {
			t.Errorf("origin %s: status %d, want %d", origin, status, want)
		}
	}
}

func TestCapacity(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	other := startEcho(t, "127.0.0.4:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.MaxSessions = 3
		c.MaxSessionsPerVM = 2
	})
	mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+echo.addr())); status != 503 {
		t.Fatalf("third session to one VM: status %d, want 503", status)
	}
	c3 := mustDialWS(t, ts.url+"/vnc/"+other.addr())
	if status, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+other.addr())); status != 503 {
		t.Fatalf("fourth session: status %d, want 503", status)
	}
	// A slot frees when a session ends.
	c3.writeFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	c3.expectClose(5 * time.Second)
	waitUntil(t, 5*time.Second, "slot release", func() bool { return ts.limits.sessions() == 2 })
	mustDialWS(t, ts.url+"/vnc/"+other.addr())
}

func TestControlFramesAndCloseCodes(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.MaxFrame = 1 << 20 })
	url := ts.url + "/vnc/" + echo.addr()

	t.Run("ping pong", func(t *testing.T) {
		c := mustDialWS(t, url, "binary")
		c.writeFrame(true, ws.OpPing, []byte("hi"))
		h, p, err := c.readFrame(5 * time.Second)
		if err != nil || h.OpCode != ws.OpPong || string(p) != "hi" || h.Masked {
			t.Fatalf("got %v %q %v, want unmasked pong \"hi\"", h.OpCode, p, err)
		}
	})
	t.Run("ping inside fragmented message", func(t *testing.T) {
		c := mustDialWS(t, url, "binary")
		c.writeFrame(false, ws.OpBinary, []byte("abc"))
		c.writeFrame(true, ws.OpPing, []byte("x"))
		c.writeFrame(true, ws.OpContinuation, []byte("def"))
		var data []byte
		pong := false
		for len(data) < 6 || !pong {
			h, p, err := c.readFrame(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if h.OpCode == ws.OpPong {
				pong = true
			} else {
				data = append(data, p...)
			}
		}
		if string(data) != "abcdef" {
			t.Fatalf("data %q", data)
		}
	})
	t.Run("close echoed", func(t *testing.T) {
		c := mustDialWS(t, url, "binary")
		c.writeFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))
		if code, _ := c.expectClose(5 * time.Second); code != ws.StatusGoingAway {
			t.Fatalf("close code %d, want 1001", code)
		}
		c.expectEOF(5 * time.Second)
	})
	for _, tc := range []struct {
		name  string
		frame []byte
		code  ws.StatusCode
	}{
		{"unmasked frame", ws.MustCompileFrame(ws.NewBinaryFrame([]byte("x"))), ws.StatusProtocolError},
		{"reserved bits", func() []byte {
			f := ws.NewBinaryFrame([]byte("x"))
			f.Header.Rsv = ws.Rsv(true, false, false)
			return ws.MustCompileFrame(ws.MaskFrameInPlace(f))
		}(), ws.StatusProtocolError},
		{"text on binary session", ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame([]byte("x")))), ws.StatusUnsupportedData},
		{"continuation without start", ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewFrame(ws.OpContinuation, true, []byte("x")))), ws.StatusProtocolError},
		{"frame too large", ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewBinaryFrame(make([]byte, 2<<20)))), ws.StatusMessageTooBig},
		{"bad close code", ws.MustCompileFrame(ws.MaskFrameInPlace(ws.NewCloseFrame([]byte{0x03, 0xED}))), ws.StatusProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDialWS(t, url, "binary")
			if _, err := c.conn.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			if code, reason := c.expectClose(5 * time.Second); code != tc.code {
				t.Fatalf("close %d %q, want %d", code, reason, tc.code)
			}
			c.expectEOF(5 * time.Second)
		})
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	// A port nobody listens on: take a free one and close it.
	ln, _ := net.Listen("tcp", "127.0.0.2:0")
	addr := ln.Addr().String()
	ln.Close()
	// --rfb-errors=false: a failed dial is 101 then 1011 (rfb_test.go has
	// the RFB refusal).
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.RFBErrors = false })
	c := mustDialWS(t, ts.url+"/vnc/"+addr, "binary")
	code, reason := c.expectClose(10 * time.Second)
	if code != ws.StatusInternalServerError || !strings.Contains(reason, "refused") {
		t.Fatalf("close %d %q, want 1011 with 'connection refused'", code, reason)
	}
	c.expectEOF(5 * time.Second)
	c.conn.Close() // as a browser does after the close handshake
	waitUntil(t, 5*time.Second, "dial failure counted", func() bool {
		return strings.Contains(ts.metricsText(), `vncedge_sessions_closed_total{reason="dial_failed"} 1`)
	})
}

func TestUpstreamDiesMidSession(t *testing.T) {
	tail := bytes.Repeat([]byte("tail"), 1<<18) // 1 MiB, then the VM closes
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) {
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_, _ = c.Write(tail)
	})
	ts := startServer(t, nil)
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	c.writeFrame(true, ws.OpBinary, []byte("go"))
	if got := c.readData(len(tail), 10*time.Second); !bytes.Equal(got, tail) {
		t.Fatal("tail before close differs")
	}
	if code, _ := c.expectClose(5 * time.Second); code != ws.StatusNormalClosure {
		t.Fatalf("close %d, want 1000", code)
	}
}

func TestBrowserVanishes(t *testing.T) {
	gone := make(chan struct{})
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c)
		close(gone)
	})
	ts := startServer(t, nil)
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	c.writeFrame(true, ws.OpBinary, []byte("x"))
	waitUntil(t, 5*time.Second, "session", func() bool { return ts.limits.sessions() == 1 })
	c.conn.Close() // no close frame
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("VM connection not closed after the browser vanished")
	}
	waitUntil(t, 5*time.Second, "session release", func() bool { return ts.limits.sessions() == 0 })
	if m := ts.metricsText(); !strings.Contains(m, `vncedge_sessions_closed_total{reason="client_gone"} 1`) {
		t.Error("client_gone not counted")
	}
}

func TestHandshakeTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.HandshakeTimeout = 500 * time.Millisecond })
	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /vnc/127.0.0.2 HTTP/1.1\r\nHost: x\r\n") // never finished
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("slowloris connection not closed: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 408")) {
		t.Fatalf("got %q, want 408", b)
	}
}

func TestIdleAndPongTimeouts(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	t.Run("idle", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *routing.Config) { c.IdleTimeout = 500 * time.Millisecond; c.PingInterval = 0 })
		c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
		if code, reason := c.expectClose(5 * time.Second); code != ws.StatusGoingAway || !strings.Contains(reason, "idle") {
			t.Fatalf("close %d %q, want 1001 idle timeout", code, reason)
		}
	})
	t.Run("pong", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *routing.Config) {
			c.PingInterval = 300 * time.Millisecond
			c.PongTimeout = 600 * time.Millisecond
		})
		c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
		h, _, err := c.readFrame(5 * time.Second)
		if err != nil || h.OpCode != ws.OpPing {
			t.Fatalf("got %v %v, want ping", h.OpCode, err)
		}
		// Do not answer: the proxy must give up on us.
		if code, reason := c.expectClose(5 * time.Second); !strings.Contains(reason, "pong") {
			t.Fatalf("close %d %q, want pong timeout", code, reason)
		}
	})
	t.Run("pong keeps alive", func(t *testing.T) {
		ts := startServer(t, func(c *Config, _ *routing.Config) {
			c.PingInterval = 300 * time.Millisecond
			c.PongTimeout = 600 * time.Millisecond
		})
		c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
		for range 4 {
			h, p, err := c.readFrame(5 * time.Second)
			if err != nil || h.OpCode != ws.OpPing {
				t.Fatalf("got %v %v, want ping", h.OpCode, err)
			}
			c.writeFrame(true, ws.OpPong, p)
		}
	})
}

func TestShutdownDrains(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, nil)
	c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	ts.cfg.DrainTimeout = 300 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(t.Context()) }()
	waitUntil(t, 5*time.Second, "draining", ts.draining.Load)
	resp, err := http.Get("http://" + ts.AdminAddr() + "/readyz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("readyz while draining: %d", resp.StatusCode)
		}
	}
	if code, _ := c.expectClose(10 * time.Second); code != ws.StatusGoingAway {
		t.Fatalf("close %d, want 1001", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestConcurrentSessions(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.MaxSessionsPerVM = 0 })
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 100)
	clients := make([]*wsClient, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := dialWS(t, ts.url+"/vnc/"+echo.addr(), "binary")
			if err != nil {
				errs <- err
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dial: %v", err)
	}
	waitUntil(t, 10*time.Second, "all sessions", func() bool { return ts.limits.sessions() == int64(n) })
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte(fmt.Sprintf("session %d", i))
			c.writeFrame(true, ws.OpBinary, msg)
			got := c.readData(len(msg), 20*time.Second)
			if !bytes.Equal(got, msg) {
				t.Errorf("session %d got %q", i, got)
			}
			c.conn.Close()
		}()
	}
	wg.Wait()
	waitUntil(t, 10*time.Second, "all sessions closed", func() bool { return ts.limits.sessions() == 0 })
}

func TestStaticFilesAndKeepAlive(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vnc.html"), []byte("<html>viewer</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte("export const x = 1;"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.WebDir = dir })
	resp, err := http.Get("http://" + ts.Addr() + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "export const x = 1;" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET app.js: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// Two requests pipelined on one connection both get answers.
	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET /vnc.html HTTP/1.1\r\nHost: x\r\n\r\nGET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	_, _ = io.WriteString(conn, req)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, _ := io.ReadAll(conn)
	if bytes.Count(all, []byte("HTTP/1.1 200")) != 2 {
		t.Fatalf("pipelined responses: %q", all)
	}
	if status, _ := rawRequest(t, ts.Addr(), "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"); status == 200 {
		t.Fatal("traversal served a file")
	}
}

// TestFramesByteByByte sends frames one byte per write, so headers and
// payloads arrive split at every offset: nothing may be lost or misparsed.
func TestFramesByteByByte(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, nil)
	c := mustDialWS(t, ts.url+"/vnc/"+echo.addr(), "binary")
	msg := bytes.Repeat([]byte("0123456789"), 30) // 300 bytes: a 16-bit length header
	var stream []byte
	stream = append(stream, wsframeMasked(msg)...)
	stream = append(stream, wsframeMasked([]byte("x"))...)
	for i := range stream {
		if _, err := c.conn.Write(stream[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let reads end mid-frame
		}
	}
	want := append(append([]byte(nil), msg...), 'x')
	if got := c.readData(len(want), 10*time.Second); !bytes.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
	c.writeFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	if code, _ := c.expectClose(5 * time.Second); code != ws.StatusNormalClosure {
		t.Fatalf("close %d", code)
	}
}
