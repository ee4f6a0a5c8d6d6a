package engine

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"vncedge/routing"
)

func fuzzServer(t testing.TB) *Server {
	r, err := routing.New(routing.Config{Allow: []string{"127.0.0.0/8:1-65535", "10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Router = r
	cfg.Logger = discardLogger()
	cfg.Origins = []string{"https://*.example.com"}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.logq.close)
	return srv
}

// FuzzUpgrade feeds arbitrary request heads through the same path a real
// connection takes (headEnd, scanHead, checkUpgrade): it must never panic,
// must always answer with a well-formed HTTP response, must answer 101 only
// when it accepts, and must never leak a session slot.
func FuzzUpgrade(f *testing.F) {
	for _, seed := range []string{
		upgradeRequest("/vnc/127.0.0.2:5901"),
		upgradeRequest("/vnc/10.1.2.3", "Sec-WebSocket-Protocol: binary, base64\r\n"),
		upgradeRequest("/websockify?token=vm1", "Origin: https://a.example.com\r\n"),
		upgradeRequest("/vnc/127.0.0.2", "Origin: null\r\n"),
		strings.Replace(upgradeRequest("/vnc/127.0.0.2"), "13", "8", 1),
		strings.Replace(upgradeRequest("/x"), "GET", "POST", 1),
		"GET / HTTP/1.0\r\n\r\n",
		"GET /vnc/%31%32%37.0.0.1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
		"\r\n\r\n",
		"GET  HTTP/1.1\r\nHost:\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		end := headEnd(data)
		if end < 0 {
			return // the engine would wait for more bytes (or answer 431)
		}
		head := data[:end]
		_, _ = scanHead(head)
		var resp bytes.Buffer
		info, _, err := srv.checkUpgrade(head, &resp, "127.0.0.1:1", netip.MustParseAddr("127.0.0.1"))
		if info.counted {
			srv.limits.releaseSession()
		}
		if srv.limits.sessions() != 0 {
			t.Fatalf("session slot leaked: %d", srv.limits.sessions())
		}
		if resp.Len() == 0 {
			if err == nil {
				t.Fatal("accepted without a response")
			}
			return // the request line could not be read: the engine closes
		}
		r, perr := http.ReadResponse(bufio.NewReader(&resp), nil)
		if perr != nil {
			t.Fatalf("malformed response %q: %v", resp.String(), perr)
		}
		if (r.StatusCode == http.StatusSwitchingProtocols) != (err == nil) {
			t.Fatalf("status %d with error %v", r.StatusCode, err)
		}
	})
}

// FuzzScanHead: the static/upgrade split never panics and agrees with
// itself on the request line.
func FuzzScanHead(f *testing.F) {
	f.Add([]byte("GET /vnc.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"abc\"\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"))
	f.Add([]byte("HEAD / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := scanHead(data)
		if !ok {
			return
		}
		if len(h.method) == 0 || len(h.target) == 0 || !bytes.HasPrefix(h.proto, []byte("HTTP/")) {
			t.Fatalf("accepted a bad request line: %q", data)
		}
	})
}
