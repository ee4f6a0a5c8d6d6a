package engine

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"vncedge/routing"
)

func proxyV2(t testing.TB, src string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2,
		&net.TCPAddr{IP: net.ParseIP(src), Port: 5555},
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 6080})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseProxyHeader(t *testing.T) {
	v1 := []byte("PROXY TCP4 198.51.100.7 127.0.0.1 5555 6080\r\n")
	v2 := proxyV2(t, "2001:db8::7")
	req := []byte("GET / HTTP/1.1\r\n\r\n")
	for _, tc := range []struct {
		name   string
		in     []byte
		client string
		n      int
		err    error // nil, errProxyIncomplete, or any other (non-nil sentinel errBad)
	}{
		{"v1 then request", append(append([]byte(nil), v1...), req...), "198.51.100.7:5555", len(v1), nil},
		{"v1 alone", v1, "198.51.100.7:5555", len(v1), nil},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), "", 15, nil},
		{"v2 then request", append(append([]byte(nil), v2...), req...), "[2001:db8::7]:5555", len(v2), nil},
		{"v1 partial", v1[:20], "", 0, errProxyIncomplete},
		{"signature prefix", []byte("PRO"), "", 0, errProxyIncomplete},
		{"v2 partial fixed part", v2[:13], "", 0, errProxyIncomplete},
		{"v2 partial addresses", v2[:len(v2)-3], "", 0, errProxyIncomplete},
		{"no header", req, "", 0, errBad},
		{"v1 without CRLF", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 200)...), "", 0, errBad},
		{"v1 garbage", []byte("PROXY TCP4 nonsense\r\n"), "", 0, errBad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, n, err := parseProxyHeader(tc.in)
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("error %v", err)
			case tc.err == errProxyIncomplete && !errors.Is(err, errProxyIncomplete):
				t.Fatalf("error %v, want incomplete", err)
			case tc.err == errBad && (err == nil || errors.Is(err, errProxyIncomplete)):
				t.Fatalf("error %v, want a refusal", err)
			}
			if client != tc.client || n != tc.n {
				t.Fatalf("got %q, %d; want %q, %d", client, n, tc.client, tc.n)
			}
		})
	}
}

var errBad = errors.New("any refusal")

func FuzzParseProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 198.51.100.7 127.0.0.1 5555 6080\r\nGET /"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(proxyV2(f, "198.51.100.7"))
	f.Add(proxyV2(f, "2001:db8::1"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		client, n, err := parseProxyHeader(b)
		if err != nil {
			if n != 0 || client != "" {
				t.Fatalf("error %v with n=%d client=%q", err, n, client)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		if client != "" {
			if _, err := net.ResolveTCPAddr("tcp", client); err != nil {
				t.Fatalf("client %q: %v", client, err)
			}
		}
	})
}

// syncBuffer is a log sink tests can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProxyProtocol(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	var logs syncBuffer
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.ProxyProtocol = true
		c.TrustedProxies = []string{"127.0.0.1/32"}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	req := upgradeRequest("/vnc/" + echo.addr())
	for _, tc := range []struct {
		name, header, client string
	}{
		{"v1", "PROXY TCP4 198.51.100.7 127.0.0.1 5555 6080\r\n", "client=198.51.100.7:5555"},
		{"v2", string(proxyV2(t, "2001:db8::7")), "client=[2001:db8::7]:5555"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _ := rawRequest(t, ts.Addr(), tc.header+req)
			if status != 101 {
				t.Fatalf("status %d, want 101", status)
			}
			defer func() {
				if t.Failed() {
					t.Log(logs.String())
				}
			}()
			waitUntil(t, 5*time.Second, "log line naming the client", func() bool {
				return strings.Contains(logs.String(), "session open") && strings.Contains(logs.String(), tc.client)
			})
		})
	}
	// Without the header the connection is closed, unanswered.
	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, req)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(conn); err != nil || len(b) != 0 {
		t.Fatalf("request without PROXY header got %q, %v; want a silent close", b, err)
	}
}

func TestProxyProtocolNeedsTrustedProxies(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Router, _ = routing.New(routing.Config{})
	cfg.ProxyProtocol = true
	if err := cfg.Validate(); err == nil {
		t.Fatal("--proxy-protocol without --trusted-proxy accepted")
	}
}
