package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestResolveGrantPolicy(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	src := &mapSource{name: "m", g: map[string]Grant{
		"pol":     {Target: "10.0.0.5:5901", Password: "pw", ViewOnly: true, Record: true, TLS: true, Expires: exp},
		"sock":    {Target: "unix:/run/vnc/vm1.sock"},
		"outside": {Target: "unix:/var/run/docker.sock"},
		"bad":     {Target: "unix:relative"},
		"old":     {Target: "10.0.0.5:5901", Expires: time.Now().Add(-time.Second)},
	}}
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{src}, UnixDirs: []string{"/run/vnc/"}})
	ctx := context.Background()
	tgt, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "pol"})
	if err != nil {
		t.Fatal(err)
	}
	want := Target{Addr: netip.MustParseAddrPort("10.0.0.5:5901"), Name: "10.0.0.5:5901", Kind: KindToken,
		TokenHash: TokenHash("pol"), Source: "m", Grant: src.g["pol"]}
	if tgt != want {
		t.Fatalf("Resolve = %+v\nwant %+v", tgt, want)
	}
	if tgt.Key() != "10.0.0.5:5901" || tgt.Network() != "tcp" || tgt.DialAddr() != "10.0.0.5:5901" ||
		!tgt.ViewOnly || tgt.Password != "pw" || !tgt.Expires.Equal(exp) {
		t.Fatalf("Target accessors: %q %q %q", tgt.Key(), tgt.Network(), tgt.DialAddr())
	}

	tgt, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "sock"})
	if err != nil || tgt.Unix != "/run/vnc/vm1.sock" || tgt.Addr.IsValid() || tgt.Key() != "unix:/run/vnc/vm1.sock" ||
		tgt.Network() != "unix" || tgt.DialAddr() != "/run/vnc/vm1.sock" {
		t.Fatalf("unix target: %+v %v", tgt, err)
	}
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "outside"})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "bad"})
	wantError(t, err, http.StatusBadGateway, ErrLookup)
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "old"})
	wantError(t, err, http.StatusForbidden, ErrExpired)

	// Without --allow-unix, only the token file may name sockets.
	r = newRouter(t, Config{Sources: []TokenSource{src}})
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "sock"})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	tf, _ := tempTokenFile(t, "s: unix:/var/run/anything.sock view-only\n")
	r = newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf}})
	tgt, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "s"})
	if err != nil || tgt.Unix != "/var/run/anything.sock" || !tgt.ViewOnly || tgt.Source != "file" {
		t.Fatalf("token file unix target: %+v %v", tgt, err)
	}
	if _, err := New(Config{UnixDirs: []string{"relative"}}); err == nil {
		t.Error("relative --allow-unix accepted")
	}
}

// TestKeyMatchesNameAndAddress is issue 10 item 12: a VM reached by name and
// by address is one VM for the per-VM limit.
func TestKeyMatchesNameAndAddress(t *testing.T) {
	src := &mapSource{name: "m", m: map[string]string{"byname": "localhost:5901", "byaddr": "127.0.0.1:5901"}}
	r := newRouter(t, Config{Allow: []string{"127.0.0.1/32"}, Sources: []TokenSource{src},
		Resolver: offlineResolver(func(context.Context) error { return nil })})
	a, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: "byname"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: "byaddr"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Resolve(context.Background(), Route{Kind: KindPath, Addr: netip.MustParseAddrPort("127.0.0.1:5901")})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name == b.Name || a.Key() != b.Key() || b.Key() != p.Key() || a.Key() != "127.0.0.1:5901" {
		t.Fatalf("keys: %q %q %q (names %q %q)", a.Key(), b.Key(), p.Key(), a.Name, b.Name)
	}
}

type obsRecorder struct {
	mu  sync.Mutex
	got []string
}

func (o *obsRecorder) observe(source string, res LookupResult, _ time.Duration) {
	o.mu.Lock()
	o.got = append(o.got, source+"="+res.String())
	o.mu.Unlock()
}

func (o *obsRecorder) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.got
	o.got = nil
	return g
}

func TestResolveFast(t *testing.T) {
	tf, _ := tempTokenFile(t, "ip: 10.0.0.1:5901\nname: vm1.lan:5901\nsock: unix:/run/a.sock\nno: 192.168.0.1:5901\n")
	slow := &mapSource{name: "slow", m: map[string]string{"remote": "10.0.0.9:5901"}}
	var obs obsRecorder
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf, slow},
		CacheTTL: time.Minute, Observe: obs.observe,
		Resolver: offlineResolver(func(context.Context) error { return nil })})
	tok := func(s string) Route { return Route{Kind: KindToken, Token: s} }

	tgt, err := r.ResolveFast(tok("ip"))
	if err != nil || tgt.Addr.String() != "10.0.0.1:5901" || tgt.Source != "file" {
		t.Fatalf("file hit: %+v %v", tgt, err)
	}
	if got := obs.take(); !slices.Equal(got, []string{"file=hit"}) {
		t.Errorf("observed %v", got)
	}
	if tgt, err := r.ResolveFast(tok("sock")); err != nil || tgt.Unix != "/run/a.sock" {
		t.Fatalf("file unix hit: %+v %v", tgt, err)
	}
	obs.take()
	// A refusal is an answer too.
	_, err = r.ResolveFast(tok("no"))
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	obs.take()

	// Needs DNS, or a blocking source: ErrWouldBlock, and nothing counted.
	for _, s := range []string{"name", "remote", "unknown-anywhere"} {
		if _, err := r.ResolveFast(tok(s)); err != ErrWouldBlock {
			t.Errorf("ResolveFast(%s) = %v, want ErrWouldBlock", s, err)
		}
	}
	if got := obs.take(); len(got) != 0 || slow.lookups.Load() != 0 {
		t.Errorf("a ResolveFast that gave up counted %v, asked the slow source %d times", got, slow.lookups.Load())
	}
	// Resolve answers; then the cache lets ResolveFast answer too.
	if tgt, err := r.Resolve(context.Background(), tok("remote")); err != nil || tgt.Source != "slow" {
		t.Fatalf("Resolve(remote) = %+v %v", tgt, err)
	}
	if got := obs.take(); !slices.Equal(got, []string{"file=unknown", "slow=hit"}) {
		t.Errorf("observed %v", got)
	}
	if tgt, err := r.ResolveFast(tok("remote")); err != nil || tgt.Addr.String() != "10.0.0.9:5901" {
		t.Fatalf("cached ResolveFast = %+v %v", tgt, err)
	}
	if got := obs.take(); !slices.Equal(got, []string{"file=unknown", "slow=cached"}) {
		t.Errorf("observed %v", got)
	}
	_, err = r.Resolve(context.Background(), tok("unknown-anywhere"))
	wantError(t, err, http.StatusNotFound, ErrUnknownToken)
	_, err = r.ResolveFast(tok("unknown-anywhere"))
	wantError(t, err, http.StatusNotFound, ErrUnknownToken)
	if slow.lookups.Load() != 2 {
		t.Errorf("slow source asked %d times, want 2 (hit and miss, then the cache)", slow.lookups.Load())
	}

	// Only NonBlocking sources: a miss is a final answer on the loop.
	r = newRouter(t, Config{Sources: []TokenSource{tf}})
	_, err = r.ResolveFast(tok("nope"))
	wantError(t, err, http.StatusNotFound, ErrUnknownToken)
	// Path routes always answer.
	r = newRouter(t, Config{Allow: []string{"10.0.0.0/8"}})
	if _, err := r.ResolveFast(Route{Kind: KindPath, Addr: netip.MustParseAddrPort("10.1.1.1:5901")}); err != nil {
		t.Fatal(err)
	}
}

// TestSingleflight: N concurrent lookups of one token reach the source once.
func TestSingleflight(t *testing.T) {
	gate := make(chan struct{})
	src := &mapSource{name: "m", m: map[string]string{"a": "10.0.0.1:5901"}, gate: gate}
	r := newRouter(t, Config{Sources: []TokenSource{src}, LookupTimeout: 10 * time.Second})
	const n = 50
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tgt, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "a"}); err == nil && tgt.Addr.String() == "10.0.0.1:5901" {
				ok.Add(1)
			}
		})
	}
	waitFor(t, "the first lookup to reach the source", func() bool { return src.lookups.Load() >= 1 })
	time.Sleep(50 * time.Millisecond) // let the others join the flight
	close(gate)
	wg.Wait()
	if ok.Load() != n || src.lookups.Load() != 1 {
		t.Fatalf("%d of %d resolved, source asked %d times (want once)", ok.Load(), n, src.lookups.Load())
	}
}

// TestLookupTimeout: a store that never answers fails its lookups within the
// lookup timeout (504), a caller that gives up early does not fail the
// others, and a lookup of another token is not held up.
func TestLookupTimeout(t *testing.T) {
	stuck := &mapSource{name: "stuck", gate: make(chan struct{})}
	t.Cleanup(func() { close(stuck.gate) })
	var obs obsRecorder
	r := newRouter(t, Config{Sources: []TokenSource{stuck}, LookupTimeout: 200 * time.Millisecond, Observe: obs.observe})
	start := time.Now()
	_, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: "a"})
	wantError(t, err, http.StatusGatewayTimeout, ErrLookup)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	if got := obs.take(); !slices.Equal(got, []string{"stuck=timeout"}) {
		t.Errorf("observed %v", got)
	}
	// A caller with a shorter deadline gets its own 504 without cancelling the flight.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "b"})
	wantError(t, err, http.StatusGatewayTimeout, ErrLookup)

	// One slow token does not hold up another token's lookup.
	slowFirst := &mapSource{name: "m", m: map[string]string{"fast": "10.0.0.1:5901"}}
	blocker := &blockOne{mapSource: slowFirst, block: "slow", gate: make(chan struct{})}
	t.Cleanup(func() { close(blocker.gate) })
	r = newRouter(t, Config{Sources: []TokenSource{blocker}, LookupTimeout: 10 * time.Second})
	go func() { _, _ = r.Resolve(context.Background(), Route{Kind: KindToken, Token: "slow"}) }()
	waitFor(t, "the slow lookup to start", func() bool { return blocker.started.Load() })
	done := make(chan error, 1)
	go func() {
		_, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: "fast"})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stuck lookup of one token held up another token")
	}
}

// blockOne blocks lookups of one token until gate closes.
type blockOne struct {
	*mapSource
	block   string
	gate    chan struct{}
	started atomic.Bool
}

func (b *blockOne) Lookup(ctx context.Context, token string) (Grant, error) {
	if token == b.block {
		b.started.Store(true)
		select {
		case <-b.gate:
		case <-ctx.Done():
			return Grant{}, ctx.Err()
		}
	}
	return b.mapSource.Lookup(ctx, token)
}

func TestLookupCache(t *testing.T) {
	src := &mapSource{name: "m", g: map[string]Grant{
		"a":    {Target: "10.0.0.1:5901"},
		"soon": {Target: "10.0.0.2:5901", Expires: time.Now().Add(150 * time.Millisecond)},
	}}
	r := newRouter(t, Config{Sources: []TokenSource{src}, CacheTTL: 300 * time.Millisecond, CacheSize: 3})
	ctx := context.Background()
	resolve := func(tok string) error {
		_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: tok})
		return err
	}
	for range 3 {
		if err := resolve("a"); err != nil {
			t.Fatal(err)
		}
		_ = resolve("missing")
	}
	if n := src.lookups.Load(); n != 2 {
		t.Fatalf("%d source lookups for two tokens asked three times, want 2", n)
	}
	// Errors are not cached.
	src.err = errors.New("store down")
	if err := resolve("other"); err == nil {
		t.Fatal("no error")
	}
	src.err = nil
	if err := resolve("other"); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("error was cached: %v", err)
	}
	// A hit is not kept past its grant's expiry, and then it is refused.
	if err := resolve("soon"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	before := src.lookups.Load()
	if err := resolve("soon"); !errors.Is(err, ErrExpired) || src.lookups.Load() != before+1 {
		t.Fatalf("expired grant: %v (lookups %d -> %d)", err, before, src.lookups.Load())
	}
	// Bounded.
	for i := range 20 {
		_ = resolve(fmt.Sprint("fill", i))
	}
	if n := r.cache.len(); n > 3 {
		t.Fatalf("cache holds %d entries, bound 3", n)
	}
	// After the TTL the source is asked again.
	time.Sleep(350 * time.Millisecond)
	before = src.lookups.Load()
	_ = resolve("a")
	if src.lookups.Load() != before+1 {
		t.Fatal("cache entry outlived its TTL")
	}
}

func TestRevoke(t *testing.T) {
	tf, p := tempTokenFile(t, "f1: 10.0.0.1:5901\nf2: 10.0.0.2:5901\n")
	remote := &mapSource{name: "m", m: map[string]string{"r1": "10.0.0.3:5901"}}
	var logBuf syncBuffer
	r := newRouter(t, Config{Sources: []TokenSource{tf, remote}, CacheTTL: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	var mu sync.Mutex
	var got []string
	r.OnRevoke(func(h string) { mu.Lock(); got = append(got, h); mu.Unlock() })
	r.OnRevoke(func(string) { panic("a broken callback") })
	revoked := func() []string { mu.Lock(); defer mu.Unlock(); g := slices.Clone(got); got = nil; return g }
	ctx := context.Background()

	if _, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "r1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke(ctx, "r1\n"); err != nil {
		t.Fatal(err)
	}
	if g := revoked(); !slices.Equal(g, []string{TokenHash("r1")}) {
		t.Fatalf("callbacks got %v", g)
	}
	_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "r1"})
	wantError(t, err, http.StatusForbidden, ErrRevoked)
	_, err = r.ResolveFast(Route{Kind: KindToken, Token: "r1"})
	wantError(t, err, http.StatusForbidden, ErrRevoked)
	if err := r.Revoke(ctx, ""); err == nil {
		t.Error("empty token revoked")
	}
	if !strings.Contains(logBuf.String(), "panicked") || strings.Contains(logBuf.String(), "r1 ") {
		t.Errorf("log:\n%s", logBuf.String())
	}

	// A token gone from the token file on reload is revoked; it works again
	// if it comes back (a new grant), unlike one revoked by message.
	writeFile(t, p, "f1: 10.0.0.1:5901\n")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if g := revoked(); !slices.Equal(g, []string{TokenHash("f2")}) {
		t.Fatalf("reload revoked %v", g)
	}
	// The store deleting a token ends its sessions but does not bar it.
	r.deletedFromStore("r2")
	r.revokedByMessage("r3\r\n")
	if g := revoked(); !slices.Equal(g, []string{TokenHash("r2"), TokenHash("r3")}) {
		t.Fatalf("store events revoked %v", g)
	}
	if r.revoked.has(TokenHash("r2")) || !r.revoked.has(TokenHash("r3")) {
		t.Error("deleted-from-store must not bar the token; a revoke message must")
	}
}

func TestRevokedSetBounded(t *testing.T) {
	s := newRevokedSet(50*time.Millisecond, 3)
	for i := range 5 {
		s.add(fmt.Sprint(i))
	}
	if len(s.m) != 3 || s.has("0") || !s.has("4") {
		t.Fatalf("set %v", s.m)
	}
	time.Sleep(60 * time.Millisecond)
	if s.has("4") {
		t.Fatal("revocation outlived its TTL")
	}
}

func TestSingleUse(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokens")
	writeFile(t, p, "f: 10.0.0.1:5901\nbad: 192.168.0.1:5901\n")
	tf, err := NewTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	remote := &mapSource{name: "m", g: map[string]Grant{
		"r":   {Target: "10.0.0.2:5901"},
		"j1":  {Target: "10.0.0.3:5901", ID: "same-jti"},
		"j2":  {Target: "10.0.0.3:5901", ID: "same-jti"},
		"exp": {Target: "10.0.0.4:5901", Expires: time.Now().Add(time.Hour)},
	}}
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf, remote}, SingleUse: true, CacheTTL: time.Minute})
	ctx := context.Background()
	once := func(tok string) {
		t.Helper()
		if _, err := r.Resolve(ctx, Route{Kind: KindToken, Token: tok}); err != nil {
			t.Fatalf("first use of %s: %v", tok, err)
		}
		_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: tok})
		wantError(t, err, http.StatusForbidden, ErrTokenUsed)
	}
	once("f")
	once("r")
	once("exp")
	// Tokens with one jti are one token.
	once("j1")
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "j2"})
	wantError(t, err, http.StatusForbidden, ErrTokenUsed)
	// A refused target does not use the token up.
	for range 2 {
		_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "bad"})
		wantError(t, err, http.StatusForbidden, ErrForbidden)
	}
	// Concurrent first uses: one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	tf2, _ := tempTokenFile(t, "c: 10.0.0.9:5901\n")
	r2 := newRouter(t, Config{Sources: []TokenSource{tf2}, SingleUse: true})
	for range 20 {
		wg.Go(func() {
			if _, err := r2.ResolveFast(Route{Kind: KindToken, Token: "c"}); err == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent first uses won", wins.Load())
	}
	// A token removed from the file and added again is a new grant.
	writeFile(t, p, "other: 10.0.0.7:5901\n")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, "f: 10.0.0.1:5901\n")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	once("f")
}

func TestMemoryClaimsBounded(t *testing.T) {
	c := newMemoryClaims(2)
	ctx := context.Background()
	soon := time.Now().Add(30 * time.Millisecond)
	later := time.Now().Add(time.Hour)
	for _, k := range []string{"a", "b"} {
		if ok, err := c.Claim(ctx, k, soon); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if ok, err := c.Claim(ctx, "c", later); ok || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("full store: %v %v (want a 503 error, never forgetting a live claim)", ok, err)
	}
	time.Sleep(40 * time.Millisecond)
	if ok, err := c.Claim(ctx, "c", later); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
	if ok, _ := c.Claim(ctx, "c", later); ok {
		t.Fatal("claimed twice")
	}
}

func TestPublicReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{unknownToken("h"), "unknown or expired link"},
		{refused(ErrExpired, "x"), "unknown or expired link"},
		{refused(ErrInvalidToken, "bad signature"), "unknown or expired link"},
		{refused(ErrRevoked, "x"), "unknown or expired link"},
		{refused(ErrTokenUsed, "x"), "unknown or expired link"},
		{forbidden("10.0.0.1:22: port 22 not allowed by --allow 10.0.0.0/8:5901"), "target not allowed"},
		{lookupError("token x: source redis", unavailable(errors.New("dial tcp 10.9.9.9:6379: refused"))), "token lookup failed"},
		{newError(400, ErrMissingToken, "missing token"), "missing token"},
		{badTarget("malformed"), "bad target"},
		{newError(404, ErrNoRoute, "x"), "not found"},
		{&Error{Status: 503, Reason: "x"}, "Service Unavailable"},
		{errors.New("other"), "request refused"},
		{nil, ""},
	} {
		got := PublicReason(c.err)
		if got != c.want {
			t.Errorf("PublicReason(%v) = %q, want %q", c.err, got, c.want)
		}
		if c.err != nil && (strings.Contains(got, "10.") || strings.Contains(got, "--allow")) {
			t.Errorf("public reason leaks detail: %q", got)
		}
	}
	// Store down is 503, and still an ErrLookup for the engine's mapping.
	e := lookupError("x", unavailable(errors.New("refused")))
	if e.Status != http.StatusServiceUnavailable || !errors.Is(e, ErrLookup) || !errors.Is(e, ErrUnavailable) {
		t.Fatalf("store down: %d %v", e.Status, e)
	}
}

func TestClassifyCookie(t *testing.T) {
	r := newRouter(t, Config{Sources: []TokenSource{&mapSource{name: "m"}}, TokenCookie: "token"})
	if r.TokenCookie() != "token" {
		t.Fatal(r.TokenCookie())
	}
	cases := []struct {
		uri, cookie, token string
		status             int
	}{
		{"/websockify", "token=fromcookie", "fromcookie", 0},
		{"/websockify?token=fromquery", "token=fromcookie", "fromquery", 0},
		{"/websockify?token=", "token=fromcookie", "fromcookie", 0},
		{"/websockify", "a=1; token=\"quoted\"; b=2", "quoted", 0},
		{"/websockify", "a=1;token=nospace", "nospace", 0},
		{"/websockify", "token=; token=second", "second", 0},
		{"/websockify", "tokens=x; Token=y", "", 400},
		{"/websockify", "", "", 400},
		{"/websockify", "token=a%20b", "a%20b", 0}, // not percent-decoded
		{"/websockify", "token=" + strings.Repeat("x", maxTokenLen+1), "", 400},
		{"/websockify", "token=a\x01b", "", 400},
		{"/other", "token=x", "", 404},
	}
	for _, c := range cases {
		rt, err := r.ClassifyCookie([]byte(c.uri), []byte(c.cookie))
		if c.status != 0 {
			var e *Error
			if !errors.As(err, &e) || e.Status != c.status {
				t.Errorf("ClassifyCookie(%q, %q) = %+v %v, want %d", c.uri, c.cookie, rt, err, c.status)
			}
			continue
		}
		if err != nil || rt.Kind != KindToken || rt.Token != c.token {
			t.Errorf("ClassifyCookie(%q, %q) = %+v %v, want token %q", c.uri, c.cookie, rt, err, c.token)
		}
	}
	// Without --token-cookie the header is ignored.
	r = newRouter(t, Config{Sources: []TokenSource{&mapSource{name: "m"}}})
	_, err := r.ClassifyCookie([]byte("/websockify"), []byte("token=x"))
	wantError(t, err, http.StatusBadRequest, ErrMissingToken)
	for _, bad := range []string{"a b", "a;b", "a=b", "tök"} {
		if _, err := New(Config{TokenCookie: bad}); err == nil {
			t.Errorf("cookie name %q accepted", bad)
		}
	}
	if v := CookieValue([]byte(" a = 1 ;\ttoken = v "), "token"); string(v) != "v" {
		t.Errorf("CookieValue with spaces = %q", v)
	}
}

func TestClassifyCookieAllocs(t *testing.T) {
	r := newRouter(t, Config{Sources: []TokenSource{&mapSource{name: "m"}}, TokenCookie: "token"})
	uri := []byte("/websockify?autoconnect=1")
	cookie := []byte("session=abc; theme=dark; token=0123456789abcdef0123456789abcdef")
	n := testing.AllocsPerRun(200, func() {
		if _, err := r.ClassifyCookie(uri, cookie); err != nil {
			t.Fatal(err)
		}
	})
	if n > 1 {
		t.Fatalf("ClassifyCookie: %v allocations, want at most the token's copy", n)
	}
}

func TestRouterReloadLog(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), "a1: 10.0.0.1:5901\n")
	writeFile(t, filepath.Join(dir, "b"), "b1: 10.0.0.2:5901\n")
	tf, err := NewTokenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	r := newRouter(t, Config{Sources: []TokenSource{tf}, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if r.Changed() {
		t.Fatal("changed before any edit")
	}
	writeFile(t, filepath.Join(dir, "a"), "garbage\n")
	writeFile(t, filepath.Join(dir, "b"), "")
	if !r.Changed() {
		t.Fatal("edit not seen")
	}
	rep := r.ReloadReport()
	err = rep.Err()
	if err == nil || !strings.Contains(err.Error(), "a kept its previous 1 token (1 bad line)") {
		t.Fatalf("report error: %v", err)
	}
	log := logBuf.String()
	for _, want := range []string{"token source reloaded in part", "is empty: kept its previous 1 token", "level=WARN", "level=ERROR"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=INFO") && strings.Contains(line, `msg="token source reloaded"`) {
			t.Errorf("a failed reload logged as a plain success: %s", line)
		}
	}
	if lookup(t, tf, "a1") == "" || lookup(t, tf, "b1") == "" {
		t.Fatal("tokens lost")
	}
	if r.Changed() {
		t.Fatal("still changed after the reload")
	}
	// Nothing wrong: one info line with the counts.
	writeFile(t, filepath.Join(dir, "a"), "a1: 10.0.0.1:5901\na2: 10.0.0.3:5901\n")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logBuf.String(), "msg=\"token source reloaded\" source=file path="+dir+" tokens=3 added=1 removed=0") {
		t.Errorf("log:\n%s", logBuf.String())
	}
	_ = os.Remove(filepath.Join(dir, "a"))
}

func TestLookupResultString(t *testing.T) {
	for r, want := range map[LookupResult]string{LookupHit: "hit", LookupUnknown: "unknown", LookupRefused: "refused",
		LookupError: "error", LookupTimeout: "timeout", LookupCached: "cached", 99: "LookupResult(99)"} {
		if r.String() != want {
			t.Errorf("%d: %q", r, r.String())
		}
	}
}
