package routing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lookupService is a token lookup API on loopback for the HTTP source.
type lookupService struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths []string
	auth  []string
	conns atomic.Int32 // new TCP connections, to see keep-alive at work
	slow  chan struct{}
}

func newLookupService(t testing.TB) *lookupService {
	t.Helper()
	ls := &lookupService{slow: make(chan struct{})}
	ls.srv = httptest.NewUnstartedServer(http.HandlerFunc(ls.serve))
	ls.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			ls.conns.Add(1)
		}
	}
	ls.srv.Start()
	t.Cleanup(func() {
		close(ls.slow)
		ls.srv.Close()
	})
	return ls
}

func (ls *lookupService) serve(w http.ResponseWriter, r *http.Request) {
	ls.mu.Lock()
	ls.paths = append(ls.paths, r.URL.EscapedPath())
	ls.auth = append(ls.auth, r.Header.Get("Authorization"))
	ls.mu.Unlock()
	p := strings.TrimSuffix(r.URL.EscapedPath(), "/grant")
	tok, _ := url.PathUnescape(p[strings.LastIndexByte(p, '/')+1:])
	switch tok {
	case "plain":
		fmt.Fprint(w, "10.0.0.1:5901\n")
	case "json":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"host": "10.0.0.2", "port": 5902, "view_only": true, "vnc_password": "pw"}`)
	case "a/b c?":
		fmt.Fprint(w, `{"host": "10.0.0.3:5901"}`)
	case "err500":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "err401":
		http.Error(w, "who are you", http.StatusUnauthorized)
	case "redirect":
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	case "garbage":
		fmt.Fprint(w, "{not json")
	case "huge":
		fmt.Fprint(w, strings.Repeat("x", maxGrantValue+10))
	case "slow":
		select {
		case <-ls.slow:
		case <-r.Context().Done():
		}
	default:
		http.NotFound(w, r)
	}
}

func newHTTP(t testing.TB, cfg HTTPConfig) *HTTPSource {
	t.Helper()
	s, err := NewHTTPSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestHTTPSource(t *testing.T) {
	ls := newLookupService(t)
	hdr := filepath.Join(t.TempDir(), "headers")
	writeFile(t, hdr, "# the lookup API's credentials\nAuthorization: Bearer s3cret\n\nX-Extra: 1\n")
	src := newHTTP(t, HTTPConfig{URL: ls.srv.URL + "/api/tokens/", HeaderFile: hdr})
	ctx := context.Background()
	if g, err := src.Lookup(ctx, "plain"); err != nil || g.Target != "10.0.0.1:5901" {
		t.Fatalf("plain: %+v %v", g, err)
	}
	if g, err := src.Lookup(ctx, "json"); err != nil || g != (Grant{Target: "10.0.0.2:5902", ViewOnly: true, Password: "pw"}) {
		t.Fatalf("json: %+v %v", g, err)
	}
	// The token is path-escaped: one path segment whatever it holds.
	if g, err := src.Lookup(ctx, "a/b c?"); err != nil || g.Target != "10.0.0.3:5901" {
		t.Fatalf("escaped: %+v %v", g, err)
	}
	ls.mu.Lock()
	if ls.paths[2] != "/api/tokens/a%2Fb%20c%3F" || ls.auth[0] != "Bearer s3cret" {
		t.Errorf("paths %v auth %v", ls.paths, ls.auth)
	}
	ls.mu.Unlock()
	if _, err := src.Lookup(ctx, "nope"); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("404: %v", err)
	}

	r := newRouter(t, Config{Sources: []TokenSource{src}})
	for tok, want := range map[string]int{
		"err500": http.StatusServiceUnavailable, "err401": http.StatusBadGateway, "redirect": http.StatusBadGateway,
		"garbage": http.StatusBadGateway, "huge": http.StatusBadGateway, "nope": http.StatusNotFound,
	} {
		_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: tok})
		var e *Error
		if !errors.As(err, &e) || e.Status != want {
			t.Errorf("%s: %v, want %d", tok, err, want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(e.Reason, tok) && len(tok) > 4 {
			t.Errorf("%s: error leaks a secret or the token: %v", tok, err)
		}
	}

	// Keep-alive: many lookups, few connections.
	before := ls.conns.Load()
	for range 30 {
		if _, err := src.Lookup(ctx, "plain"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ls.conns.Load() - before; n > 1 {
		t.Errorf("30 sequential lookups opened %d connections", n)
	}

	// The header file is re-read on reload (a rotated bearer token).
	writeFile(t, hdr, "Authorization: Bearer rotated-value\n")
	if !src.Changed() {
		t.Fatal("header file change not seen")
	}
	if rep := src.Reload(); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	_, _ = src.Lookup(ctx, "plain")
	ls.mu.Lock()
	last := ls.auth[len(ls.auth)-1]
	ls.mu.Unlock()
	if last != "Bearer rotated-value" {
		t.Fatalf("after reload: %q", last)
	}
	writeFile(t, hdr, "not a header line\n")
	if rep := src.Reload(); rep.Err == nil || strings.Contains(rep.Err.Error(), "not a header") {
		t.Fatalf("bad header file: %v", rep.Err)
	}
}

// TestHTTPSourceSlow: a slow lookup service times out with 504 within the
// lookup timeout and does not hold up another token's lookup.
func TestHTTPSourceSlow(t *testing.T) {
	ls := newLookupService(t)
	src := newHTTP(t, HTTPConfig{URL: ls.srv.URL + "/{token}/grant"})
	r := newRouter(t, Config{Sources: []TokenSource{src}, LookupTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	slowDone := make(chan error, 1)
	go func() {
		_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "slow"})
		slowDone <- err
	}()
	waitFor(t, "the slow request", func() bool {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		return len(ls.paths) > 0
	})
	start := time.Now()
	if _, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "plain"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("a lookup waited %v behind a slow one", d)
	}
	select {
	case err := <-slowDone:
		wantError(t, err, http.StatusGatewayTimeout, ErrLookup)
	case <-time.After(10 * time.Second):
		t.Fatal("the slow lookup was not bounded by the lookup timeout")
	}
	ls.mu.Lock()
	if ls.paths[0] != "/slow/grant" {
		t.Errorf("{token} placement: %v", ls.paths)
	}
	ls.mu.Unlock()
}

func TestHTTPSourceDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	src := newHTTP(t, HTTPConfig{URL: "http://" + addr + "/t"})
	r := newRouter(t, Config{Sources: []TokenSource{src}})
	_, err = r.Resolve(context.Background(), Route{Kind: KindToken, Token: "secret-token"})
	wantError(t, err, http.StatusServiceUnavailable, ErrUnavailable)
	if strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("error quotes the token: %v", err)
	}
}

func TestHTTPSourceConfig(t *testing.T) {
	for _, u := range []string{"ftp://h/x", "http:///x", "http://u:p@h/x", "http://h/x?a=1", "::"} {
		if _, err := NewHTTPSource(HTTPConfig{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	if _, err := NewHTTPSource(HTTPConfig{URL: "http://h/x?a={token}"}); err != nil {
		t.Error(err)
	}
	if _, err := NewHTTPSource(HTTPConfig{URL: "http://h/x", HeaderFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("missing header file accepted")
	}
}

func TestParseHeaderFile(t *testing.T) {
	h, err := ParseHeaderFile([]byte("Authorization: Bearer a:b\r\nx-api-key:k\n# c\n\n"))
	if err != nil || h.Get("Authorization") != "Bearer a:b" || h.Get("X-Api-Key") != "k" {
		t.Fatalf("%v %v", h, err)
	}
	for _, bad := range []string{"no colon", ": v", "Bad Name: v", "Host: x", "A: b\x00c", "Content-Length: 1"} {
		if _, err := ParseHeaderFile([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "b\x00c") {
			t.Errorf("error quotes the value: %v", err)
		}
	}
}
