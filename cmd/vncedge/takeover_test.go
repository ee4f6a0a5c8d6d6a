package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"vncedge/engine"
)

// running is one run() in this process, for the tests that need the real
// engine behind the flags.
type running struct {
	t       *testing.T
	signals chan os.Signal
	code    chan int
	stderr  *syncBuffer
}

func startRun(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{t: t, signals: make(chan os.Signal, 4), code: make(chan int, 1), stderr: &syncBuffer{}}
	var stdout syncBuffer
	go func() { r.code <- run(args, &stdout, r.stderr, r.signals) }()
	t.Cleanup(func() {
		select {
		case <-r.code:
		default:
			r.signals <- syscall.SIGTERM
			select {
			case <-r.code:
			case <-time.After(hangGuard):
				t.Errorf("run did not stop at cleanup; stderr:\n%s", r.stderr.String())
			}
		}
	})
	return r
}

// waitLog waits for s in the log, failing if run exits first.
func (r *running) waitLog(s string) {
	r.t.Helper()
	waitFor(r.t, "log line "+s, func() bool {
		select {
		case c := <-r.code:
			r.code <- c
			r.t.Fatalf("run exited with %d before logging %q:\n%s", c, s, r.stderr.String())
		default:
		}
		return strings.Contains(r.stderr.String(), s)
	})
}

func (r *running) exit() int {
	r.t.Helper()
	select {
	case c := <-r.code:
		r.code <- c
		return c
	case <-time.After(hangGuard):
		r.t.Fatalf("run did not exit; stderr:\n%s", r.stderr.String())
		return -1
	}
}

// A second vncedge on a running one's address exits 2 with the clear error;
// with --takeover it starts beside it.
func TestRunSecondInstanceExits2(t *testing.T) {
	addr := freeAddr(t)
	first := startRun(t, "--listen", addr, "--admin", "", "--loops", "1")
	first.waitLog("vncedge listening")

	second := startRun(t, "--listen", addr, "--admin", "", "--loops", "1")
	if c := second.exit(); c != exitUsage {
		t.Errorf("second instance: exit %d, want 2; stderr:\n%s", c, second.stderr.String())
	}
	want := "another vncedge listens on " + addr + "; start with --takeover to take over its listener"
	if !strings.Contains(second.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, second.stderr.String())
	}

	third := startRun(t, "--listen", addr, "--admin", "", "--loops", "1", "--takeover")
	third.waitLog("takeover: listening beside the running instance")
	first.signals <- syscall.SIGTERM
	if c := first.exit(); c != exitOK {
		t.Errorf("the old instance: exit %d, want 0; stderr:\n%s", c, first.stderr.String())
	}
	if !strings.Contains(first.stderr.String(), "listeners handed over to the successor") {
		t.Errorf("the old instance did not hand over:\n%s", first.stderr.String())
	}
	third.waitLog("takeover complete")
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("the successor does not take connections: %v", err)
	}
	c.Close()
}

// SIGHUP re-reads the config file: its live settings apply, flags on the
// command line keep their values, a setting that needs a restart is named
// and left alone, and a bad file keeps everything as it runs.
func TestRunSIGHUPReloadsConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "vncedge.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	admin := freeAddr(t)
	write("max-sessions: 10\nmax-sessions-per-ip: 3\nallow: [10.0.0.0/8]\n")
	r := startRun(t, "--config", conf, "--listen", freeAddr(t), "--admin", admin, "--loops", "1",
		"--max-sessions-per-ip", "4")
	r.waitLog("vncedge listening")
	metric := func(name string) string {
		t.Helper()
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				return v
			}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return ""
	}
	if got := metric("vncedge_limit_max_sessions"); got != "10" {
		t.Fatalf("max sessions at start: %q", got)
	}

	write("max-sessions: 7\nmax-sessions-per-ip: 9\nallow: [10.0.0.0/8, 192.168.0.0/16]\nping-interval: 5s\n")
	r.signals <- syscall.SIGHUP
	r.waitLog("msg=reloaded trigger=SIGHUP")
	if got := metric("vncedge_limit_max_sessions"); got != "7" {
		t.Errorf("max sessions after the reload: %q, want 7", got)
	}
	if got := metric("vncedge_limit_max_sessions_per_ip"); got != "4" {
		t.Errorf("max sessions per ip: %q, want the command line's 4", got)
	}
	for _, want := range []string{"changed=allow,max-sessions", "config changes that need a restart were not applied",
		"flags=ping-interval"} {
		if !strings.Contains(r.stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.stderr.String())
		}
	}

	errsBefore := metric("vncedge_reload_errors_total")
	write("max-sessions: 3\norigin: [console.example.com]\n") // an origin without a scheme
	r.signals <- syscall.SIGHUP
	r.waitLog("settings not applied")
	write("max-sessions: [1, 2]\n") // not even a flag value
	r.signals <- syscall.SIGHUP
	r.waitLog("config not re-read")
	if got := metric("vncedge_limit_max_sessions"); got != "7" {
		t.Errorf("max sessions after bad files: %q, want 7 kept", got)
	}
	if got := metric("vncedge_reload_errors_total"); got == errsBefore {
		t.Errorf("vncedge_reload_errors_total stayed %s", got)
	}
}

func TestRestartOnlyChanges(t *testing.T) {
	a, err := parseConfig([]string{"--listen", "127.0.0.1:6080", "--allow", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseConfig([]string{"--listen", "127.0.0.1:6180", "--allow", "10.1.0.0/16", "--max-sessions", "5",
		"--idle-timeout", "1h"})
	if err != nil {
		t.Fatal(err)
	}
	got := restartOnlyChanges(a, b)
	if want := []string{"idle-timeout", "listen"}; !slices.Equal(got, want) {
		t.Errorf("restartOnlyChanges = %v, want %v (allow and max-sessions reload)", got, want)
	}
	if got := restartOnlyChanges(a, a); len(got) != 0 {
		t.Errorf("no change reported %v", got)
	}
}

func TestTakeoverRefusedInConfigFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "vncedge.yaml")
	if err := os.WriteFile(conf, []byte("takeover: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseConfig([]string{"--config", conf}); err == nil || !strings.Contains(err.Error(), "command line") {
		t.Errorf("takeover in a config file: %v, want refused", err)
	}
}

// SIGHUP reads the config again; a --token-watch change reloads files only.
func TestSuperviseRereadsOnSIGHUPOnly(t *testing.T) {
	var log syncBuffer
	srv := &fakeServer{serveDone: make(chan error, 1), stopServe: true}
	signals := make(chan os.Signal)
	reloads := make(chan struct{}, 1)
	code := make(chan int, 1)
	var states []string
	sv := supervisor{srv: srv, drain: time.Second, logger: slog.New(slog.NewTextHandler(&log, nil)), reloads: reloads,
		reread: func() (engine.Live, error) { return engine.Live{}, nil }, notify: func(s string) { states = append(states, s) }}
	go func() { code <- sv.run(srv.serveDone, signals) }()
	send(t, signals, syscall.SIGHUP)
	reloads <- struct{}{}
	waitFor(t, "two reloads", func() bool { return srv.reloads.Load() == 2 })
	send(t, signals, syscall.SIGTERM)
	if c := exitCode(t, code); c != exitOK {
		t.Fatalf("exit %d; log:\n%s", c, log.String())
	}
	if n := srv.rereads.Load(); n != 1 {
		t.Errorf("%d reloads read the config, want 1 (the SIGHUP)", n)
	}
	if len(states) != 1 || !strings.HasPrefix(states[0], "STOPPING=1\n") {
		t.Errorf("service manager told %q, want STOPPING=1 at the drain", states)
	}
}

func TestSdNotify(t *testing.T) {
	if err := sdNotify("", "READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@vncedge-test-notify-" + t.Name()} {
		pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		if err := sdNotify(name, "READY=1\nSTATUS=serving"); err != nil {
			t.Fatalf("sdNotify(%s): %v", name, err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 256)
		n, err := pc.Read(b)
		pc.Close()
		if err != nil || string(b[:n]) != "READY=1\nSTATUS=serving" {
			t.Errorf("%s got %q, %v", name, b[:n], err)
		}
	}
}
