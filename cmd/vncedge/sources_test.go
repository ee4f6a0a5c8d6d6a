package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildConfigSources checks the documented order of the token sources
// and that each flag reaches its source.
func TestBuildConfigSources(t *testing.T) {
	tokens := writeTemp(t, "tokens", "vm1: 10.0.0.1:5901\n")
	key := writeTemp(t, "jwt.key", "0123456789abcdef0123456789abcdef\n")
	hdr := writeTemp(t, "headers", "Authorization: Bearer x\n")
	opts, err := parseConfig([]string{"--listen", "127.0.0.1:0", "--admin", "",
		"--token-http", "http://127.0.0.1:1/t", "--token-http-header-file", hdr,
		"--token-redis", "redis://127.0.0.1:1/0", "--token-redis-prefix", "vnc:",
		"--token-jwt-key", key, "--token-file", tokens, "--token-cookie", "token", "--token-single-use"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, built, err := buildConfig(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Router.Close()
	if got := strings.Join(built.names, ","); got != "file,jwt,redis,http" {
		t.Errorf("source order %s, want file,jwt,redis,http", got)
	}
	if built.redis == nil || cfg.Router.TokenCookie() != "token" {
		t.Errorf("redis %v cookie %q", built.redis, cfg.Router.TokenCookie())
	}
}

func TestBuildConfigSourceErrors(t *testing.T) {
	short := writeTemp(t, "short.key", "tiny\n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--token-redis-prefix", "p"}, "--token-redis-prefix needs --token-redis"},
		{[]string{"--token-redis-revoke-channel", "x"}, "--token-redis-revoke-channel needs --token-redis"},
		{[]string{"--token-http-header-file", "/x"}, "--token-http-header-file needs --token-http"},
		{[]string{"--token-jwt-key-format", "websockify"}, "--token-jwt-key-format needs --token-jwt-key"},
		{[]string{"--token-jwt-leeway", "1s"}, "--token-jwt-leeway needs --token-jwt-key"},
		{[]string{"--token-cache-size", "0"}, "--token-cache-size must be at least 1"},
		{[]string{"--token-jwt-key", short}, "--token-jwt-key: "},
		{[]string{"--token-jwt-key", "/nonexistent/key"}, "--token-jwt-key: "},
		{[]string{"--token-redis", "http://127.0.0.1:6379"}, "--token-redis: "},
		{[]string{"--token-redis", "redis://u:hunter2@127.0.0.1:6379/x"}, "--token-redis: "},
		{[]string{"--token-http", "ftp://x/"}, "--token-http: "},
		{[]string{"--token-http", "http://h/t", "--token-http-header-file", "/nonexistent/h"}, "--token-http: "},
		{[]string{"--token-cookie", "bad name"}, "cookie"},
		{[]string{"--allow-unix", "relative/dir"}, "must be absolute"},
	} {
		var stdout, stderr syncBuffer
		code := run(append([]string{"--check", "--listen", "127.0.0.1:0", "--admin", ""}, c.args...), &stdout, &stderr, make(chan os.Signal))
		if code != exitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q, want 2 with %q", c.args, code, stderr.String(), c.want)
		}
		if strings.Contains(stderr.String(), "hunter2") {
			t.Errorf("%q: the Redis password reached the error: %s", c.args, stderr.String())
		}
	}
}

// TestCheckRedisDown: --check warns about an unreachable Redis (it may come
// up later) and still says the configuration is OK.
func TestCheckRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stdout, stderr syncBuffer
	code := run([]string{"--check", "--listen", "127.0.0.1:0", "--admin", "", "--token-redis", "redis://" + addr + "/0"},
		&stdout, &stderr, make(chan os.Signal))
	if code != exitOK || !strings.Contains(stdout.String(), "configuration OK") ||
		!strings.Contains(stderr.String(), "not reachable now") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
}

// TestRunWatchReloadCounted: a token file broken on disk and seen by
// --token-watch (no SIGHUP) keeps its previous tokens, says so in the log,
// and counts in vncedge_reload_errors_total (issue 10 item 13).
func TestRunWatchReloadCounted(t *testing.T) {
	addr, admin := freeAddr(t), freeAddr(t)
	tokens := writeTemp(t, "tokens", "vm1: 127.0.0.1:5901\n")
	var stdout, stderr syncBuffer
	signals := make(chan os.Signal, 1)
	code := make(chan int, 1)
	args := []string{"--listen", addr, "--admin", admin, "--loops", "1", "--allow", "127.0.0.0/8",
		"--token-file", tokens, "--token-watch", "20ms", "--drain-timeout", "1s"}
	go func() { code <- run(args, &stdout, &stderr, signals) }()
	defer func() {
		signals <- syscall.SIGTERM
		select {
		case <-code:
		case <-time.After(hangGuard):
			t.Error("run did not stop")
		}
	}()
	metric := func(name string) int {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^` + name + ` (\d+)`).FindSubmatch(body)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	waitFor(t, "the admin listener", func() bool { return metric("vncedge_reload_errors_total") == 0 })

	if err := os.WriteFile(tokens, []byte("vm1: 127.0.0.1:5901\nthis line is broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch-triggered reload to be counted", func() bool { return metric("vncedge_reload_errors_total") == 1 })
	log := stderr.String()
	for _, want := range []string{"trigger=token-watch", "kept its previous 1 token (1 bad line)", "reload incomplete"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// Seen once: a file that stays broken is not reloaded again and again.
	time.Sleep(200 * time.Millisecond)
	if n := metric("vncedge_reload_errors_total"); n != 1 {
		t.Errorf("a file that stays broken was counted %d times", n)
	}
	if n := strings.Count(stderr.String(), "reload incomplete"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, stderr.String())
	}
	// Fixed: applied, not an error.
	if err := os.WriteFile(tokens, []byte("vm2: 127.0.0.1:5902\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed file to apply", func() bool { return strings.Contains(stderr.String(), "msg=reloaded trigger=token-watch") })
	if n := metric("vncedge_reload_errors_total"); n != 1 {
		t.Errorf("errors counter %d after a good reload", n)
	}
}
