package routing

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server (Debian package redis-server) on a
// free 127.0.0.1 port with its own directory, stopped at cleanup.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts redis-server, or skips when it is missing (and CI is
// not set: under CI=true a missing binary fails the test).
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not installed (Debian package redis-server; make e2e-deps installs it)")
		}
		t.Skip("SKIPPING: redis-server not installed; apt-get install redis-server to run the Redis source tests")
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	s.start(args...)
	t.Cleanup(s.stop)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }
func (s *redisServer) url() string  { return "redis://" + s.addr() + "/0" }

func (s *redisServer) start(args ...string) {
	s.t.Helper()
	all := append([]string{"--port", fmt.Sprint(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"}, args...)
	s.cmd = exec.Command(s.bin, all...)
	var out syncBuffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("redis-server output:\n%s", out.String())
		}
	})
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.ping() == nil {
			return
		}
		if time.Now().After(deadline) {
			s.stop()
			s.t.Fatal("redis-server did not answer PING within 10s")
		}
		select {
		case <-s.done:
			s.t.Fatal("redis-server exited at start")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping speaks RESP by hand so the check does not depend on the code under test.
func (s *redisServer) ping() error {
	c, err := net.DialTimeout("tcp", s.addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q: %v", line, err)
	}
	return nil
}

func (s *redisServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Error("redis-server did not exit after kill")
	}
	s.cmd = nil
}

// client is a plain go-redis client for the test's own writes.
func (s *redisServer) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

func newRedis(t testing.TB, cfg RedisConfig) *RedisSource {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := NewRedisSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedisLookup(t *testing.T) {
	srv := startRedis(t)
	c := srv.client()
	ctx := context.Background()
	for k, v := range map[string]string{
		"vnc:plain": "10.0.0.1:5901",
		"vnc:ws":    `{"host": "10.0.0.2:5901"}`,
		"vnc:split": `{"host": "10.0.0.3", "port": 5902, "view_only": true, "vnc_password": "pw", "record": true, "tls": true}`,
		"vnc:bad":   `{"host": 1}`,
		"plain":     "10.0.0.9:5901", // outside the prefix
	} {
		if err := c.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.LPush(ctx, "vnc:list", "x").Err(); err != nil {
		t.Fatal(err)
	}
	src := newRedis(t, RedisConfig{URL: srv.url(), Prefix: "vnc:"})
	if err := src.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src.Where(), srv.addr()) || src.Name() != "redis" {
		t.Fatal(src.Where(), src.Name())
	}
	for tok, want := range map[string]Grant{
		"plain": {Target: "10.0.0.1:5901"},
		"ws":    {Target: "10.0.0.2:5901"},
		"split": {Target: "10.0.0.3:5902", ViewOnly: true, Password: "pw", Record: true, TLS: true},
	} {
		g, err := src.Lookup(ctx, tok)
		if err != nil || g != want {
			t.Errorf("%s = %+v %v, want %+v", tok, g, err, want)
		}
	}
	if _, err := src.Lookup(ctx, "missing"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("missing: %v", err)
	}
	if _, err := src.Lookup(ctx, "bad"); err == nil || errors.Is(err, ErrUnknownToken) || strings.Contains(err.Error(), "vnc:bad") {
		t.Errorf("bad value: %v", err)
	}
	// Through the router: a wrong-typed key is a 502, never a fall-through.
	r := newRouter(t, Config{Sources: []TokenSource{src}})
	_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "list"})
	wantError(t, err, http.StatusBadGateway, ErrLookup)
	tgt, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "split"})
	if err != nil || tgt.Source != "redis" || !tgt.ViewOnly || tgt.Password != "pw" {
		t.Fatalf("Resolve(split) = %+v %v", tgt, err)
	}
	// Another db is another key space.
	other := newRedis(t, RedisConfig{URL: "redis://" + srv.addr() + "/3", Prefix: "vnc:"})
	if _, err := other.Lookup(ctx, "plain"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("db 3 sees db 0's keys: %v", err)
	}
}

func TestRedisURLs(t *testing.T) {
	for _, u := range []string{
		"redis://127.0.0.1:6379/0", "rediss://user:pw@127.0.0.1:6380/2", "redis://127.0.0.1:6379?dial_timeout=3s",
		"redis://:pw@127.0.0.1:26379?master_name=mymaster", "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002",
	} {
		s, err := NewRedisSource(RedisConfig{URL: u})
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		if strings.Contains(s.Where(), "pw@") {
			t.Errorf("Where() shows the password: %s", s.Where())
		}
		s.Close()
	}
	for _, u := range []string{"http://127.0.0.1:6379", "redis://127.0.0.1:6379/x", "redis://127.0.0.1:6379?bogus=1", "redis://u:secret@[::1"} {
		_, err := NewRedisSource(RedisConfig{URL: u})
		if err == nil {
			t.Errorf("%s accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// TestRedisDown: a store that is down fails within the lookup timeout with
// a 503 the engine can map.
func TestRedisDown(t *testing.T) {
	port := freePort(t) // nothing listens there
	src := newRedis(t, RedisConfig{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)})
	r := newRouter(t, Config{Sources: []TokenSource{src}, LookupTimeout: time.Second})
	start := time.Now()
	_, err := r.Resolve(context.Background(), Route{Kind: KindToken, Token: "a"})
	wantError(t, err, http.StatusServiceUnavailable, ErrUnavailable)
	if !errors.Is(err, ErrLookup) || time.Since(start) > 5*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	if err := src.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping: %v", err)
	}

	// A server that accepts and never answers: 504 within the timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	mute := newRedis(t, RedisConfig{URL: "redis://" + ln.Addr().String() + "/0"})
	r = newRouter(t, Config{Sources: []TokenSource{mute}, LookupTimeout: 300 * time.Millisecond})
	start = time.Now()
	_, err = r.Resolve(context.Background(), Route{Kind: KindToken, Token: "a"})
	wantError(t, err, http.StatusGatewayTimeout, ErrLookup)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("mute server held the lookup %v", d)
	}
}

func TestRedisSingleUse(t *testing.T) {
	srv := startRedis(t)
	c := srv.client()
	ctx := context.Background()
	if err := c.Set(ctx, "once", "10.0.0.1:5901", 0).Err(); err != nil {
		t.Fatal(err)
	}
	src := newRedis(t, RedisConfig{URL: srv.url(), SingleUse: true})
	r := newRouter(t, Config{Sources: []TokenSource{src}, SingleUse: true, CacheTTL: time.Minute})
	// Concurrent uses: exactly one opens (GETDEL is atomic, and no answer is
	// shared or cached).
	var wg sync.WaitGroup
	results := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "once"})
			results <- err
		})
	}
	wg.Wait()
	close(results)
	wins := 0
	for err := range results {
		if err == nil {
			wins++
		} else if !errors.Is(err, ErrUnknownToken) {
			t.Errorf("loser: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d uses of a single-use token", wins)
	}
	if n, _ := c.Exists(ctx, "once").Result(); n != 0 {
		t.Fatal("GETDEL left the key")
	}
	// The Redis claim store: SET NX with the expiry, shared by instances.
	claims := src.Claims()
	until := time.Now().Add(2 * time.Second)
	if ok, err := claims.Claim(ctx, "jti:x", until); !ok || err != nil {
		t.Fatal(ok, err)
	}
	other := newRedis(t, RedisConfig{URL: srv.url()})
	if ok, err := other.Claims().Claim(ctx, "jti:x", until); ok || err != nil {
		t.Fatalf("second instance claimed it too: %v %v", ok, err)
	}
	ttl, err := c.PTTL(ctx, DefaultClaimPrefix+"jti:x").Result()
	if err != nil || ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("claim TTL %v %v", ttl, err)
	}
}

// revocations collects OnRevoke callbacks.
type revocations struct {
	mu  sync.Mutex
	got []string
}

func (v *revocations) add(h string) { v.mu.Lock(); v.got = append(v.got, h); v.mu.Unlock() }
func (v *revocations) has(h string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Contains(v.got, h)
}
func (v *revocations) count(h string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, g := range v.got {
		if g == h {
			n++
		}
	}
	return n
}

func runRouter(t *testing.T, r *Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Router.Run did not return after its context ended")
		}
	})
}

// waitSubscribed waits until the server counts our subscriptions (the
// revoke channel and the keyspace pattern).
func waitSubscribed(t *testing.T, c *redis.Client, channel string) {
	t.Helper()
	waitFor(t, "the revocation subscription", func() bool {
		n, err := c.PubSubNumSub(context.Background(), channel).Result()
		p, err2 := c.PubSubNumPat(context.Background()).Result()
		return err == nil && err2 == nil && n[channel] > 0 && p > 0
	})
}

func TestRedisRevocation(t *testing.T) {
	srv := startRedis(t, "--notify-keyspace-events", "Kgx")
	c := srv.client()
	ctx := context.Background()
	src := newRedis(t, RedisConfig{URL: srv.url(), Prefix: "p*:"}) // a glob character in the prefix
	r := newRouter(t, Config{Sources: []TokenSource{src}, CacheTTL: time.Minute})
	var rv revocations
	r.OnRevoke(rv.add)
	runRouter(t, r)
	waitSubscribed(t, c, DefaultRevokeChannel)

	// The revoke channel: the message is the token.
	if err := c.Set(ctx, "p*:t1", "10.0.0.1:5901", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "t1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, DefaultRevokeChannel, "t1").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revoke message", func() bool { return rv.has(TokenHash("t1")) })
	_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "t1"})
	wantError(t, err, http.StatusForbidden, ErrRevoked)

	// Keyspace notifications: DEL and expiry of prefixed keys.
	if err := c.Set(ctx, "p*:t2", "10.0.0.2:5901", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "t2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, "p*:t2").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the del notification", func() bool { return rv.has(TokenHash("t2")) })
	// The cached answer went with it.
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: "t2"})
	wantError(t, err, http.StatusNotFound, ErrUnknownToken)
	if err := c.Set(ctx, "p*:t3", "10.0.0.3:5901", 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expired notification", func() bool { return rv.has(TokenHash("t3")) })
	// Keys outside the prefix are not ours.
	if err := c.Set(ctx, "px:t4", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, "px:t4").Err(); err != nil {
		t.Fatal(err)
	}

	// Router.Revoke publishes, so every instance revokes.
	other := newRedis(t, RedisConfig{URL: srv.url(), Prefix: "p*:"})
	r2 := newRouter(t, Config{Sources: []TokenSource{other}})
	var rv2 revocations
	r2.OnRevoke(rv2.add)
	runRouter(t, r2)
	waitFor(t, "the second subscription", func() bool {
		n, err := c.PubSubNumSub(ctx, DefaultRevokeChannel).Result()
		return err == nil && n[DefaultRevokeChannel] >= 2
	})
	if err := r.Revoke(ctx, "t5"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other instance to revoke", func() bool { return rv2.has(TokenHash("t5")) })
	if rv2.has(TokenHash("t4")) || rv.has(TokenHash("t4")) {
		t.Error("a key outside the prefix revoked a token")
	}
}

// TestRedisSingleUseDelNotification: our own GETDEL must not revoke the
// session it just opened, while an operator's DEL still does.
func TestRedisSingleUseDelNotification(t *testing.T) {
	srv := startRedis(t, "--notify-keyspace-events", "KA")
	c := srv.client()
	ctx := context.Background()
	src := newRedis(t, RedisConfig{URL: srv.url(), SingleUse: true})
	r := newRouter(t, Config{Sources: []TokenSource{src}, SingleUse: true})
	var rv revocations
	r.OnRevoke(rv.add)
	runRouter(t, r)
	waitSubscribed(t, c, DefaultRevokeChannel)
	for _, k := range []string{"used", "deleted"} {
		if err := c.Set(ctx, k, "10.0.0.1:5901", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "used"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, "deleted").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the operator's del", func() bool { return rv.has(TokenHash("deleted")) })
	if rv.has(TokenHash("used")) {
		t.Fatal("our own GETDEL revoked the session it opened")
	}
}

// TestRedisReconnect: the subscription survives a restart of Redis.
func TestRedisReconnect(t *testing.T) {
	srv := startRedis(t)
	var logBuf syncBuffer
	src := newRedis(t, RedisConfig{URL: srv.url(), Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	r := newRouter(t, Config{Sources: []TokenSource{src}})
	var rv revocations
	r.OnRevoke(rv.add)
	runRouter(t, r)
	c := srv.client()
	waitSubscribed(t, c, DefaultRevokeChannel)

	srv.stop()
	waitFor(t, "the subscription to notice", func() bool { return strings.Contains(logBuf.String(), "subscription down") })
	srv.start()
	c2 := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer c2.Close()
	waitSubscribed(t, c2, DefaultRevokeChannel)
	if err := c2.Publish(context.Background(), DefaultRevokeChannel, "after-restart").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a revocation after the restart", func() bool { return rv.has(TokenHash("after-restart")) })
	if !strings.Contains(logBuf.String(), "subscription restored") {
		t.Errorf("log:\n%s", logBuf.String())
	}
	if n := strings.Count(logBuf.String(), "subscription down"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logBuf.String())
	}
	// The lookups work again too.
	if err := c2.Set(context.Background(), "back", "10.0.0.1:5901", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lookups after the restart", func() bool {
		_, err := src.Lookup(context.Background(), "back")
		return err == nil
	})
}

func TestRedisKeyspaceCheck(t *testing.T) {
	srv := startRedis(t) // notify-keyspace-events off
	var logBuf syncBuffer
	src := newRedis(t, RedisConfig{URL: srv.url(), Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	r := newRouter(t, Config{Sources: []TokenSource{src}})
	runRouter(t, r)
	waitFor(t, "the keyspace check", func() bool { return strings.Contains(logBuf.String(), "keyspace notifications are off") })
	for flags, on := range map[string]bool{"": false, "Kgx": true, "KA": true, "AK": true, "Eg": false, "Kg": false, "KEA": true} {
		if keyspaceEventsOn(flags) != on {
			t.Errorf("keyspaceEventsOn(%q) = %v", flags, !on)
		}
	}
	if got := globEscape(`a*b?c[d]e\f`); got != `a\*b\?c\[d\]e\\f` {
		t.Errorf("globEscape = %q", got)
	}
}

// TestRedisSetClearsNegativeCache: with "set" notifications on, a token
// written after a miss is found at once, not after the cache TTL.
func TestRedisSetClearsNegativeCache(t *testing.T) {
	srv := startRedis(t, "--notify-keyspace-events", "KA")
	c := srv.client()
	ctx := context.Background()
	src := newRedis(t, RedisConfig{URL: srv.url()})
	r := newRouter(t, Config{Sources: []TokenSource{src}, CacheTTL: time.Hour})
	runRouter(t, r)
	waitSubscribed(t, c, DefaultRevokeChannel)
	_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "late"})
	wantError(t, err, http.StatusNotFound, ErrUnknownToken)
	if err := c.Set(ctx, "late", "10.0.0.1:5901", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new token despite a cached miss", func() bool {
		_, err := r.Resolve(ctx, Route{Kind: KindToken, Token: "late"})
		return err == nil
	})
}
