package routing

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestResolvePath(t *testing.T) {
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/8:5901,5902"}})
	rt, err := r.Classify([]byte("/vnc/10.1.2.3:5902"))
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := r.Resolve(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	want := Target{Addr: netip.MustParseAddrPort("10.1.2.3:5902"), Name: "10.1.2.3:5902", Kind: KindPath}
	if tgt != want {
		t.Fatalf("Resolve = %+v, want %+v", tgt, want)
	}
	// A hand-made Route is checked again.
	_, err = r.Resolve(context.Background(), Route{Kind: KindPath, Addr: netip.MustParseAddrPort("127.0.0.1:5901")})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	_, err = r.Resolve(context.Background(), Route{Kind: KindPath, Addr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:5901")})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	_, err = r.Resolve(context.Background(), Route{Kind: KindPath})
	wantError(t, err, http.StatusBadRequest, ErrBadTarget)
	// ResolveFast answers path routes the same way, on the loop.
	fast, err := r.ResolveFast(rt)
	if err != nil || fast != want {
		t.Fatalf("ResolveFast = %+v %v, want %+v", fast, err, want)
	}
	_, err = r.Resolve(context.Background(), Route{})
	wantError(t, err, http.StatusNotFound, ErrNoRoute)
}

// offlineResolver answers from /etc/hosts only; anything else fails without
// touching the network (tests stay on loopback).
func offlineResolver(dial func(ctx context.Context) error) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if err := dial(ctx); err != nil {
				return nil, err
			}
			return nil, errors.New("no DNS in tests")
		},
	}
}

func TestResolveToken(t *testing.T) {
	src := &mapSource{name: "map", m: map[string]string{
		"ip":        "10.0.0.1:5901",
		"ip2":       "10.0.0.1:5999",
		"v6":        "[fd00::1]:5901",
		"mapped":    "[::ffff:10.0.0.2]:5901",
		"loop":      "127.0.0.1:5901",
		"mappedlo":  "[::ffff:127.0.0.1]:5901",
		"meta":      "169.254.169.254:80",
		"host":      "localhost:5901",
		"nohost":    "vm-does-not-exist.example:5901",
		"badtarget": "10.0.0.1",
		"badport":   "10.0.0.1:0",
		"badname":   "bad name:5901",
	}}
	res := offlineResolver(func(context.Context) error { return nil })

	type want struct {
		addr   string
		status int
		err    error
	}
	ok := func(addr string) want { return want{addr: addr} }
	fail := func(status int, err error) want { return want{status: status, err: err} }
	cases := []struct {
		allow []string
		token string
		want  want
	}{
		// no --allow: any network and port, special ranges still closed
		{nil, "ip", ok("10.0.0.1:5901")},
		{nil, "ip2", ok("10.0.0.1:5999")},
		{nil, "v6", ok("[fd00::1]:5901")},
		{nil, "mapped", ok("10.0.0.2:5901")},
		{nil, "loop", fail(403, ErrForbidden)},
		{nil, "mappedlo", fail(403, ErrForbidden)},
		{nil, "meta", fail(403, ErrForbidden)},
		{nil, "host", fail(403, ErrForbidden)},
		// once any --allow is given, token targets must lie inside it
		{[]string{"10.0.0.0/8"}, "ip", ok("10.0.0.1:5901")},
		{[]string{"10.0.0.0/8"}, "ip2", fail(403, ErrForbidden)},
		{[]string{"10.0.0.0/8"}, "v6", fail(403, ErrForbidden)},
		{[]string{"192.168.0.0/16"}, "ip", fail(403, ErrForbidden)},
		{[]string{"0.0.0.0/0"}, "loop", fail(403, ErrForbidden)},
		{[]string{"0.0.0.0/0:80"}, "meta", fail(403, ErrForbidden)},
		{[]string{"10.0.0.0/8"}, "host", fail(403, ErrForbidden)},
		// localhost resolves to 127.0.0.1: allowed only with --allow inside loopback
		{[]string{"127.0.0.0/8"}, "host", ok("127.0.0.1:5901")},
		{[]string{"127.0.0.1/32:5901"}, "host", ok("127.0.0.1:5901")},
		{[]string{"127.0.0.0/8"}, "mappedlo", ok("127.0.0.1:5901")},
		// lookups that fail
		{nil, "no-such-tok", fail(404, ErrUnknownToken)},
		{nil, "nohost", fail(502, ErrLookup)},
		{nil, "badtarget", fail(502, ErrLookup)},
		{nil, "badport", fail(502, ErrLookup)},
		{nil, "badname", fail(502, ErrLookup)},
	}
	for _, c := range cases {
		r := newRouter(t, Config{Allow: c.allow, Sources: []TokenSource{src}, Resolver: res})
		tgt, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: c.token})
		if c.want.err != nil {
			if err == nil {
				t.Errorf("allow %q token %q: Resolve = %+v, want %d", c.allow, c.token, tgt, c.want.status)
				continue
			}
			wantError(t, err, c.want.status, c.want.err)
			if strings.Contains(err.Error(), c.token) && len(c.token) > 4 {
				t.Errorf("error text holds the token: %v", err)
			}
			if !strings.Contains(err.Error(), TokenHash(c.token)) {
				t.Errorf("error text lacks the token hash: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("allow %q token %q: %v", c.allow, c.token, err)
			continue
		}
		if tgt.Addr.String() != c.want.addr || tgt.Kind != KindToken ||
			tgt.Name != src.m[c.token] || tgt.TokenHash != TokenHash(c.token) {
			t.Errorf("allow %q token %q: Resolve = %+v, want addr %s", c.allow, c.token, tgt, c.want.addr)
		}
	}
}

func TestResolveLocalhostSystemResolver(t *testing.T) {
	src := &mapSource{name: "map", m: map[string]string{"vm": "localhost:5901"}}
	r := newRouter(t, Config{Allow: []string{"127.0.0.0/8"}, Sources: []TokenSource{src}})
	tgt, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	if !tgt.Addr.Addr().IsLoopback() || tgt.Addr.Port() != 5901 || tgt.Name != "localhost:5901" {
		t.Fatalf("Resolve(localhost) = %+v", tgt)
	}
	r = newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{src}})
	_, err = r.Resolve(context.Background(), Route{Kind: KindToken, Token: "vm"})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
}

func TestResolveSourceOrderAndFailures(t *testing.T) {
	first := &mapSource{name: "first", m: map[string]string{"a": "10.0.0.1:5901"}}
	second := &mapSource{name: "second", m: map[string]string{"a": "10.0.0.2:5901", "b": "10.0.0.3:5901"}}
	r := newRouter(t, Config{Sources: []TokenSource{first, second}})
	ctx := context.Background()
	if tgt, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "a"}); err != nil || tgt.Addr.String() != "10.0.0.1:5901" {
		t.Fatalf("first hit should win: %+v %v", tgt, err)
	}
	if tgt, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "b"}); err != nil || tgt.Addr.String() != "10.0.0.3:5901" {
		t.Fatalf("unknown in first falls through: %+v %v", tgt, err)
	}
	// A wrapped ErrUnknownToken also falls through.
	first.err = errors.Join(errors.New("redis says nil"), ErrUnknownToken)
	if tgt, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "a"}); err != nil || tgt.Addr.String() != "10.0.0.2:5901" {
		t.Fatalf("wrapped unknown should fall through: %+v %v", tgt, err)
	}
	// A failing source ends the lookup: the next one might map the token elsewhere.
	first.err = errors.New("connection refused")
	before := second.lookups.Load()
	_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "a"})
	wantError(t, err, http.StatusBadGateway, ErrLookup)
	if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "first") {
		t.Errorf("error should name the source and cause: %v", err)
	}
	if second.lookups.Load() != before {
		t.Error("lookup went on after a source failed")
	}
	// Deadlines give 504.
	first.err = context.DeadlineExceeded
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "a"})
	wantError(t, err, http.StatusGatewayTimeout, ErrLookup)
	// Empty tokens never reach a source.
	first.err = nil
	_, err = r.Resolve(ctx, Route{Kind: KindToken})
	wantError(t, err, http.StatusBadRequest, ErrMissingToken)
}

func TestResolveContext(t *testing.T) {
	src := &mapSource{name: "map", m: map[string]string{"a": "10.0.0.1:5901", "slow": "slow.example:5901"}}
	// The resolver blocks until the context ends, like a DNS server that never answers.
	res := offlineResolver(func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return errors.New("test resolver not cancelled")
		}
	})
	r := newRouter(t, Config{Sources: []TokenSource{src}, Resolver: res})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "a"})
	wantError(t, err, http.StatusBadGateway, ErrLookup)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled lookup should wrap context.Canceled: %v", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "slow"})
	wantError(t, err, http.StatusGatewayTimeout, ErrLookup)
}

type reloadSource struct {
	mapSource
	reloads int
	err     error
	closed  bool
}

func (s *reloadSource) Reload() SourceReload {
	s.reloads++
	return SourceReload{Source: s.name, Tokens: -1, Err: s.err}
}
func (s *reloadSource) Close() error { s.closed = true; return s.err }

func TestRouterReloadClose(t *testing.T) {
	tf, p := tempTokenFile(t, "vm1: 10.0.0.1:5901\n")
	good := &reloadSource{mapSource: mapSource{name: "good"}}
	bad := &reloadSource{mapSource: mapSource{name: "bad"}, err: errors.New("boom")}
	plain := &mapSource{name: "plain"}
	r := newRouter(t, Config{Sources: []TokenSource{tf, good, bad, plain}})

	writeFile(t, p, "vm2: 10.0.0.2:5901\n")
	err := r.Reload()
	if err == nil || !strings.Contains(err.Error(), "bad: kept all its previous tokens: boom") || strings.Contains(err.Error(), "good") {
		t.Fatalf("Reload = %v", err)
	}
	if good.reloads != 1 || bad.reloads != 1 {
		t.Fatalf("reloads: good %d bad %d", good.reloads, bad.reloads)
	}
	if tgt, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: "vm2"}); err != nil || tgt.Name != "10.0.0.2:5901" {
		t.Fatalf("token file not reloaded: %+v %v", tgt, err)
	}
	err = r.Close()
	if err == nil || !good.closed || !bad.closed || !strings.Contains(err.Error(), "close bad") {
		t.Fatalf("Close = %v, closed good %v bad %v", err, good.closed, bad.closed)
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Status: 403, Reason: "10.0.0.1:5901 is not in the allow-list", Err: ErrForbidden}
	if e.Error() != "10.0.0.1:5901 is not in the allow-list: forbidden" || !errors.Is(e, ErrForbidden) {
		t.Fatalf("Error() = %q", e.Error())
	}
	if (&Error{Err: ErrNoRoute}).Error() != "no route" || (&Error{Reason: "x"}).Error() != "x" {
		t.Fatal("Error() with a missing part")
	}
	if h := TokenHash("vm1"); len(h) != 16 || h != TokenHash("vm1") || h == TokenHash("vm2") {
		t.Fatalf("TokenHash = %q", h)
	}
}
