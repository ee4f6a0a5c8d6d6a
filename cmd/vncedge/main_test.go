package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"vncedge/engine"
)

// hangGuard bounds every wait in these tests; reaching it means a hang, not
// a slow machine.
const hangGuard = 20 * time.Second

// syncBuffer is a bytes.Buffer that the server's goroutines may write to
// while the test reads it.
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

// waitFor polls cond until it holds or hangGuard passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunHelpVersionAndUsageErrors(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		stdout   string
		stderr   string
		noStdout bool
	}{
		{args: []string{"--help"}, code: 0, stdout: "--max-sessions-per-upstream"},
		{args: []string{"-h"}, code: 0, stdout: "Examples:"},
		{args: []string{"--version"}, code: 0, stdout: "vncedge "},
		{args: []string{"--check", "--listen", "127.0.0.1:1", "--allow", "127.0.0.0/8"}, code: 0, stdout: "configuration OK"},
		{args: []string{"--check", "--allow", "127.0.0.0/8:x"}, code: 2, stderr: "127.0.0.0/8:x", noStdout: true},
		{args: []string{"--bogus"}, code: 2, stderr: "unknown flag --bogus", noStdout: true},
		{args: []string{"--max-frame", "lots"}, code: 2, stderr: "--max-frame", noStdout: true},
		{args: []string{"--config", "/nonexistent/vncedge.yaml"}, code: 2, stderr: "/nonexistent/vncedge.yaml", noStdout: true},
		// parses, but engine.Config.Validate refuses it
		{args: []string{"--listen", "", "--admin", ""}, code: 2, stderr: "listen", noStdout: true},
		// engine.New refuses it before anything listens
		{args: []string{"--listen", "127.0.0.1:0", "--admin", "", "--web", "/nonexistent/novnc"}, code: 2, stderr: "/nonexistent/novnc", noStdout: true},
		{args: []string{"--listen", "127.0.0.1:0", "--admin", "", "--origin", "https://*"}, code: 2, stderr: "origin", noStdout: true},
		// routing.New refuses the allow-list
		{args: []string{"--listen", "127.0.0.1:0", "--admin", "", "--allow", "10.0.0.0/33"}, code: 2, stderr: "10.0.0.0/33", noStdout: true},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr syncBuffer
			code := run(tc.args, &stdout, &stderr, make(chan os.Signal))
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			if tc.stdout != "" && !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q: %s", tc.stdout, stdout.String())
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr lacks %q: %s", tc.stderr, stderr.String())
			}
			if tc.code == 2 && !strings.Contains(stderr.String(), "vncedge --help") {
				t.Errorf("usage error without a hint to --help: %s", stderr.String())
			}
			if tc.noStdout && stdout.String() != "" {
				t.Errorf("stdout not empty on error: %s", stdout.String())
			}
		})
	}
}

func TestRunTokenFileErrors(t *testing.T) {
	var stdout, stderr syncBuffer
	missing := filepath.Join(t.TempDir(), "tokens")
	code := run([]string{"--listen", "127.0.0.1:0", "--admin", "", "--token-file", missing},
		&stdout, &stderr, make(chan os.Signal))
	if code != exitUsage || !strings.Contains(stderr.String(), "--token-file") {
		t.Errorf("missing token file: exit %d, stderr %s", code, stderr.String())
	}
}

// fakeServer stands in for *engine.Server in the supervisor's tests.
type fakeServer struct {
	serveDone chan error
	// reloadErrs[i] is what the i-th Reload returns (nil past its end).
	reloadErrs  []error
	reloads     atomic.Int32
	rereads     atomic.Int32 // reloads that read the config again
	shutdowns   atomic.Int32
	shutdownErr error
	// release, when set, makes Shutdown wait for it (a long drain).
	release chan struct{}
	// stopServe makes Shutdown end Serve, as the real server does.
	stopServe bool
}

func (f *fakeServer) ReloadWith(read func() (engine.Live, error)) error {
	if read != nil {
		f.rereads.Add(1)
		if _, err := read(); err != nil {
			return err
		}
	}
	i := int(f.reloads.Add(1)) - 1
	if i < len(f.reloadErrs) {
		return f.reloadErrs[i]
	}
	return nil
}

func (f *fakeServer) Shutdown(ctx context.Context) error {
	f.shutdowns.Add(1)
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("shutdown without a deadline")
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.stopServe {
		f.serveDone <- nil
	}
	return f.shutdownErr
}

// startSupervise runs a supervisor on srv and returns the signal channel and
// a channel with its exit code.
func startSupervise(t *testing.T, srv *fakeServer, log *syncBuffer) (chan<- os.Signal, <-chan int) {
	t.Helper()
	signals := make(chan os.Signal) // unbuffered: a send returns once supervise took it
	code := make(chan int, 1)
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sv := supervisor{srv: srv, drain: time.Second, logger: logger}
	go func() { code <- sv.run(srv.serveDone, signals) }()
	return signals, code
}

func exitCode(t *testing.T, code <-chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(hangGuard):
		t.Fatal("the supervisor did not return")
		return -1
	}
}

func send(t *testing.T, signals chan<- os.Signal, sig os.Signal) {
	t.Helper()
	select {
	case signals <- sig:
	case <-time.After(hangGuard):
		t.Fatalf("the supervisor did not take %v", sig)
	}
}

func TestSuperviseReloadThenDrain(t *testing.T) {
	var log syncBuffer
	srv := &fakeServer{serveDone: make(chan error, 1), stopServe: true,
		reloadErrs: []error{nil, errors.New("token file: bad line 3")}}
	signals, code := startSupervise(t, srv, &log)

	send(t, signals, syscall.SIGHUP)
	send(t, signals, syscall.SIGHUP)
	send(t, signals, syscall.SIGUSR1) // ignored
	send(t, signals, syscall.SIGTERM)
	if c := exitCode(t, code); c != exitOK {
		t.Errorf("exit code %d, want 0; log:\n%s", c, log.String())
	}
	if n := srv.reloads.Load(); n != 2 {
		t.Errorf("%d reloads, want 2", n)
	}
	if n := srv.shutdowns.Load(); n != 1 {
		t.Errorf("%d shutdowns, want 1", n)
	}
	for _, want := range []string{"msg=reloaded trigger=SIGHUP", "reload incomplete", "bad line 3", "stop signal: draining", "signal=terminated", "msg=stopped"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestSuperviseInterrupt(t *testing.T) {
	var log syncBuffer
	srv := &fakeServer{serveDone: make(chan error, 1), stopServe: true}
	signals, code := startSupervise(t, srv, &log)
	send(t, signals, os.Interrupt)
	if c := exitCode(t, code); c != exitOK {
		t.Errorf("exit code %d, want 0; log:\n%s", c, log.String())
	}
}

func TestSuperviseSecondSignalForcesExit(t *testing.T) {
	var log syncBuffer
	srv := &fakeServer{serveDone: make(chan error, 1), release: make(chan struct{}), stopServe: true}
	defer close(srv.release)
	signals, code := startSupervise(t, srv, &log)

	send(t, signals, syscall.SIGTERM)
	send(t, signals, syscall.SIGHUP) // a drain can last hours: reloads go on
	send(t, signals, syscall.SIGINT)
	if c := exitCode(t, code); c != exitRuntime {
		t.Errorf("exit code %d, want 1; log:\n%s", c, log.String())
	}
	if n := srv.reloads.Load(); n != 1 {
		t.Errorf("reloaded %d times while draining, want 1", n)
	}
	for _, want := range []string{"msg=reloaded trigger=SIGHUP", "second signal"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestSuperviseDuplicateStopSignal(t *testing.T) {
	var log syncBuffer
	srv := &fakeServer{serveDone: make(chan error, 1), release: make(chan struct{}), stopServe: true}
	signals := make(chan os.Signal)
	code := make(chan int, 1)
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A window no test run can outlast: the second signal is a duplicate.
	sv := supervisor{srv: srv, drain: time.Second, dupWindow: time.Hour, logger: logger}
	go func() { code <- sv.run(srv.serveDone, signals) }()

	send(t, signals, syscall.SIGTERM)
	send(t, signals, syscall.SIGTERM)
	close(srv.release) // the drain ends by itself
	if c := exitCode(t, code); c != exitOK {
		t.Errorf("exit code %d, want 0 (the duplicate must not force an exit); log:\n%s", c, log.String())
	}
	if !strings.Contains(log.String(), "duplicate stop signal ignored") {
		t.Errorf("log lacks the duplicate:\n%s", log.String())
	}
}

func TestSuperviseFailures(t *testing.T) {
	t.Run("serve fails", func(t *testing.T) {
		var log syncBuffer
		srv := &fakeServer{serveDone: make(chan error, 1)}
		srv.serveDone <- errors.New("listen tcp 127.0.0.1:1: bind: permission denied")
		_, code := startSupervise(t, srv, &log)
		if c := exitCode(t, code); c != exitRuntime {
			t.Errorf("exit code %d, want 1", c)
		}
		if !strings.Contains(log.String(), "permission denied") {
			t.Errorf("log lacks the cause:\n%s", log.String())
		}
	})
	t.Run("serve returns unasked", func(t *testing.T) {
		var log syncBuffer
		srv := &fakeServer{serveDone: make(chan error, 1)}
		srv.serveDone <- nil
		_, code := startSupervise(t, srv, &log)
		if c := exitCode(t, code); c != exitRuntime {
			t.Errorf("exit code %d, want 1", c)
		}
	})
	t.Run("shutdown fails", func(t *testing.T) {
		var log syncBuffer
		srv := &fakeServer{serveDone: make(chan error, 1), stopServe: true, shutdownErr: errors.New("3 sessions left")}
		signals, code := startSupervise(t, srv, &log)
		send(t, signals, syscall.SIGTERM)
		if c := exitCode(t, code); c != exitRuntime {
			t.Errorf("exit code %d, want 1", c)
		}
		if !strings.Contains(log.String(), "3 sessions left") {
			t.Errorf("log lacks the cause:\n%s", log.String())
		}
	})
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestRunServeReloadStop drives the real binary's run with the real engine:
// it must listen, reload on SIGHUP and exit 0 on SIGTERM.
func TestRunServeReloadStop(t *testing.T) {
	addr := freeAddr(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("vm1: 127.0.0.1:5901\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	signals := make(chan os.Signal, 1)
	code := make(chan int, 1)
	args := []string{
		"--listen", addr, "--admin", "", "--loops", "1", "--allow", "127.0.0.0/8",
		"--token-file", tokens, "--token-watch", "50ms", "--drain-timeout", "1s",
	}
	go func() { code <- run(args, &stdout, &stderr, signals) }()

	waitFor(t, "the listener", func() bool {
		select {
		case c := <-code:
			t.Fatalf("run exited early with %d: %s", c, stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})

	signals <- syscall.SIGHUP
	waitFor(t, "the reload log line", func() bool {
		return strings.Contains(stderr.String(), "msg=reloaded") || strings.Contains(stderr.String(), "reload incomplete")
	})
	if strings.Contains(stderr.String(), "reload incomplete") {
		t.Errorf("reload failed:\n%s", stderr.String())
	}

	signals <- syscall.SIGTERM
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit code %d after SIGTERM, want 0; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(hangGuard):
		t.Fatalf("run did not stop after SIGTERM; stderr:\n%s", stderr.String())
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after run returned")
	}
}

// TestRunListenFails checks that a taken port is a runtime failure (1), not
// a usage error.
func TestRunListenFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	signals := make(chan os.Signal, 1)
	go func() {
		code <- run([]string{"--listen", ln.Addr().String(), "--admin", "", "--loops", "1"}, &stdout, &stderr, signals)
	}()
	select {
	case c := <-code:
		if c != exitRuntime {
			t.Errorf("exit code %d, want 1; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(hangGuard):
		signals <- syscall.SIGTERM
		t.Fatalf("run kept going on a taken port; stderr:\n%s", stderr.String())
	}
}
