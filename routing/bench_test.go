package routing

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func BenchmarkClassify(b *testing.B) {
	r := newRouter(b, Config{
		Allow:   []string{"192.168.0.0/16:5901,5902", "[fd00::/8]:5901"},
		Sources: []TokenSource{&mapSource{name: "m"}},
	})
	for _, uri := range []string{
		"/vnc/192.168.100.3:5901",
		"/vnc/%5Bfd00::1%5D:5901",
		"/websockify?token=0123456789abcdef0123456789abcdef",
		"/websockify?autoconnect=1&path=x&token=0123456789abcdef0123456789abcdef&resize=scale",
		"/vnc/10.0.0.1:5901",
	} {
		name := strings.NewReplacer("/", "_", "?", "_").Replace(uri)
		b.Run(name[:min(len(name), 40)], func(b *testing.B) {
			buf := []byte(uri)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = r.Classify(buf)
			}
		})
	}
}

func benchTokenFile(b *testing.B) *TokenFile {
	var sb strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&sb, "tok%06d: 10.%d.%d.%d:5901\n", i, i>>16&255, i>>8&255, i&255)
	}
	tf, _ := tempTokenFile(b, sb.String())
	return tf
}

// BenchmarkResolve measures Resolve (and ResolveFast where it answers) per
// source kind. The in-memory token file must allocate no more than before
// grants (3 allocations per Resolve then): now one, the token hash.
func BenchmarkResolve(b *testing.B) {
	ctx := context.Background()
	tf := benchTokenFile(b)
	fileRouter := newRouter(b, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf}})
	fileRoute := Route{Kind: KindToken, Token: "tok004242"}
	b.Run("file", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fileRouter.Resolve(ctx, fileRoute); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("file-fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fileRouter.ResolveFast(fileRoute); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("file-fast-observed", func(b *testing.B) {
		r := newRouter(b, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf},
			Observe: func(string, LookupResult, time.Duration) {}})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.ResolveFast(fileRoute); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("path", func(b *testing.B) {
		rt, _ := fileRouter.Classify([]byte("/vnc/10.1.2.3:5901"))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fileRouter.ResolveFast(rt); err != nil {
				b.Fatal(err)
			}
		}
	})
	k := newTestKeys(b)
	for _, c := range []struct {
		name   string
		key    []byte
		method jwt.SigningMethod
		sign   any
	}{
		{"jwt-hs256", k.hmac, jwt.SigningMethodHS256, k.hmac},
		{"jwt-eddsa", k.pemOf(k.ed.Public()), jwt.SigningMethodEdDSA, k.ed},
		{"jwt-rs256", k.pemOf(&k.rsa.PublicKey), jwt.SigningMethodRS256, k.rsa},
	} {
		src := newJWT(b, c.key, "")
		r := newRouter(b, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf, src}})
		rt := Route{Kind: KindToken, Token: sign(b, c.method, c.sign, jwt.MapClaims{"host": "10.0.0.1", "port": 5901, "exp": time.Now().Add(time.Hour).Unix()})}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Resolve(ctx, rt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	remote := &mapSource{name: "remote", m: map[string]string{"r": "10.0.0.1:5901"}}
	b.Run("cache-hit", func(b *testing.B) {
		r := newRouter(b, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf, remote}, CacheTTL: time.Hour})
		rt := Route{Kind: KindToken, Token: "r"}
		if _, err := r.Resolve(ctx, rt); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.ResolveFast(rt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("remote-uncached", func(b *testing.B) {
		r := newRouter(b, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf, remote}})
		rt := Route{Kind: KindToken, Token: "r"}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Resolve(ctx, rt); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestResolveFileAllocs holds the in-memory token file path to its budget:
// one allocation (the token hash) per resolve, none for path routes.
func TestResolveFileAllocs(t *testing.T) {
	tf, _ := tempTokenFile(t, "vm1: 10.0.0.1:5901 view-only\n")
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf}})
	rt := Route{Kind: KindToken, Token: "vm1"}
	for name, fn := range map[string]func(){
		"Resolve":     func() { _, _ = r.Resolve(context.Background(), rt) },
		"ResolveFast": func() { _, _ = r.ResolveFast(rt) },
	} {
		if n := testing.AllocsPerRun(500, fn); n > 1 {
			t.Errorf("%s of a token file token: %v allocations, want at most 1", name, n)
		}
	}
	pr := Route{Kind: KindPath, Addr: netip.MustParseAddrPort("10.1.2.3:5901")}
	if n := testing.AllocsPerRun(500, func() { _, _ = r.ResolveFast(pr) }); n > 1 {
		t.Errorf("ResolveFast of a path route: %v allocations, want at most 1 (the name)", n)
	}
}

// BenchmarkResolveStores measures lookups through real stores on loopback:
// a redis-server the benchmark starts, and an HTTP lookup service; with the
// cache off (every resolve asks the store) and on.
func BenchmarkResolveStores(b *testing.B) {
	ctx := context.Background()
	tf := benchTokenFile(b)
	run := func(b *testing.B, src TokenSource, token string, cacheTTL time.Duration) {
		r := newRouter(b, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf, src}, CacheTTL: cacheTTL})
		rt := Route{Kind: KindToken, Token: token}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Resolve(ctx, rt); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("redis", func(b *testing.B) {
		srv := startRedis(b)
		if err := srv.client().Set(ctx, "vm1", `{"host": "10.0.0.1", "port": 5901}`, 0).Err(); err != nil {
			b.Fatal(err)
		}
		src := newRedis(b, RedisConfig{URL: srv.url()})
		b.Run("uncached", func(b *testing.B) { run(b, src, "vm1", 0) })
		b.Run("cached", func(b *testing.B) { run(b, src, "vm1", time.Hour) })
	})
	b.Run("http", func(b *testing.B) {
		ls := newLookupService(b)
		src := newHTTP(b, HTTPConfig{URL: ls.srv.URL})
		b.Run("uncached", func(b *testing.B) { run(b, src, "plain", 0) })
		b.Run("cached", func(b *testing.B) { run(b, src, "plain", time.Hour) })
	})
}
