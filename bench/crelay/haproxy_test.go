package crelay

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"vncedge/bench/child"
	"vncedge/bench/load"
)

func TestRender(t *testing.T) {
	cfg, err := Render(Config{
		Routes:  []Route{{"127.16.0.1:16090", "127.16.0.1:5901"}, {"127.16.0.2:16090", "127.16.0.2:5901"}},
		MaxConn: 2100, Splice: SpliceAuto, Threads: 2, Backlog: 4096,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"global\n    maxconn 2100\n    nbthread 2\n",
		"defaults\n    mode tcp\n    maxconn 2100\n    backlog 4096\n    option splice-auto\n",
		"timeout connect 5s",
		"listen vm0\n    bind 127.16.0.1:16090\n    server vm 127.16.0.1:5901\n",
		"listen vm1\n    bind 127.16.0.2:16090\n    server vm 127.16.0.2:5901\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "\n    log ") || strings.Contains(cfg, "mode http") {
		t.Errorf("config logs or parses HTTP:\n%s", cfg)
	}
	on, err := Render(Config{Routes: []Route{{"127.0.0.1:1", "127.0.0.1:2"}}, MaxConn: 10, Splice: SpliceOn})
	if err != nil || !strings.Contains(on, "option splice-request\n    option splice-response\n") || strings.Contains(on, "nbthread") {
		t.Fatalf("splice on: %v\n%s", err, on)
	}
	off, _ := Render(Config{Routes: []Route{{"127.0.0.1:1", "127.0.0.1:2"}}, MaxConn: 10})
	if strings.Contains(off, "splice") {
		t.Fatalf("splice off still splices:\n%s", off)
	}
	for _, bad := range []Config{
		{MaxConn: 10},
		{Routes: []Route{{"127.0.0.1:1", "127.0.0.1:2"}}},
		{Routes: []Route{{"localhost:1", "127.0.0.1:2"}}, MaxConn: 1},
		{Routes: []Route{{"127.0.0.1:1", "127.0.0.1:0"}}, MaxConn: 1},
		{Routes: []Route{{"127.0.0.1:1", "127.0.0.1:2\n    bind 0.0.0.0:80"}}, MaxConn: 1},
		{Routes: []Route{{"127.0.0.1:1", "127.0.0.1:2"}}, MaxConn: 1, Splice: "maybe"},
	} {
		if _, err := Render(bad); err == nil {
			t.Errorf("Render(%+v) accepted", bad)
		}
	}
}

func TestMaxConnFor(t *testing.T) {
	if got := MaxConnFor(100, 2); got != 164 {
		t.Fatalf("MaxConnFor(100, 2) = %d", got)
	}
	// Far beyond any descriptor limit: capped so HAProxy starts at all.
	if got := MaxConnFor(1<<28, 10); got >= 1<<28 || got < 1 {
		t.Fatalf("MaxConnFor(huge) = %d", got)
	}
}

// haproxyOrSkip finds haproxy; without it the test skips loudly, except under CI=true.
func haproxyOrSkip(t *testing.T) string {
	t.Helper()
	p, err := child.Look("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("haproxy is missing under CI=true (Debian package haproxy): %v", err)
		}
		t.Skip("SKIPPED: haproxy is not installed (apt-get install haproxy): the C-relay baseline is untested here")
	}
	return p
}

// The baseline end to end: HAProxy started from a generated config in front of two VMs,
// bytes streamed through it both ways and echoed, checked byte for byte, then stopped.
func TestRelayEndToEnd(t *testing.T) {
	bin := haproxyOrSkip(t)
	ln, err := net.Listen("tcp", load.VMFor(0, 0).IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	vmPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	layout := load.Layout{Port: vmPort}
	opts := load.Options{Kind: load.KindDown, Sessions: 4, PerVM: 2, Bytes: 2 << 20, Layout: layout, Timeout: 10 * time.Second}
	addrs := opts.VMAddrs()
	if len(addrs) != 2 {
		t.Fatalf("want 2 VMs, have %v", addrs)
	}
	r, err := Start(addrs, Options{Binary: bin, MaxSessions: 16, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	t.Logf("%s, splice %s, relay port %d", r.Version, r.Splice, r.Port)
	target := load.Target{Name: "haproxy", URL: r.URL(), Relay: true, Pid: r.Pid()}
	for _, o := range []load.Options{
		opts,
		{Kind: load.KindUp, Sessions: 4, PerVM: 2, Bytes: 2 << 20},
		{Kind: load.KindEcho, Sessions: 4, PerVM: 2, Rate: 50, Duration: 300 * time.Millisecond},
	} {
		o.Target, o.Layout, o.Timeout, o.Scenario = target, layout, 10*time.Second, "crelay"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := load.Run(ctx, o)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		res.Print(&out)
		t.Log(out.String())
		if f := res.Failures(); len(f) > 0 {
			t.Fatalf("failures through HAProxy: %v", f)
		}
		if res.Proxy == nil || res.Proxy.Before.RSSKiB == 0 {
			t.Fatalf("HAProxy (pid %d) not sampled", r.Pid())
		}
		if o.Kind != load.KindEcho && res.TotalBytes != 4*(2<<20) {
			t.Fatalf("%s: %d bytes through HAProxy, want %d", o.Kind, res.TotalBytes, 4*(2<<20))
		}
	}
	if err := r.Alive(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Alive(); err == nil {
		t.Fatal("HAProxy still running after Stop")
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	bin := haproxyOrSkip(t)
	if _, err := Start([]string{"192.0.2.1:5901"}, Options{Binary: bin, MaxSessions: 1, Dir: t.TempDir()}); err == nil {
		t.Fatal("HAProxy started in front of a non-loopback VM")
	}
}
