package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// The rollout recipe (systemd/vncedge-rollout with systemd/vncedge@.service), run as an operator
// runs it, against real vncedge processes. systemd does not run on the development machine, so
// a stand-in for systemctl (this test binary, see fakeSystemctl) starts each unit's ExecStart as
// written in the unit file (binary and config paths moved here), waits for the READY=1 that
// Type=notify waits for, and stops with SIGTERM. Clients open sessions back to back all along.

// fakeSystemctlEnv names the stand-in's state directory; TestMain acts as systemctl when set.
const fakeSystemctlEnv = "VNCEDGE_FAKE_SYSTEMCTL_STATE"

// fakeSystemctl is the part of systemctl the rollout script uses: show -p ActiveState --value,
// start, stop [--no-block], enable/disable --quiet, kill -s SIGNAL. dir holds, per unit, the
// argv to start (UNIT.exec, one argument per line) and the state (UNIT.pid, UNIT.stopping,
// UNIT.log, UNIT.enabled).
func fakeSystemctl(dir string, args []string, stdout, stderr io.Writer) int {
	var verb, unit, signal string
	noBlock := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-p" || a == "-s":
			if a == "-s" && i+1 < len(args) {
				signal = args[i+1]
			}
			i++
		case a == "--value" || a == "--quiet":
		case a == "--no-block":
			noBlock = true
		case verb == "":
			verb = a
		default:
			unit = a
		}
	}
	path := func(ext string) string { return filepath.Join(dir, unit+ext) }
	pid := func() int {
		b, err := os.ReadFile(path(".pid"))
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if n == 0 || !alive(n) {
			return 0
		}
		return n
	}
	logf := func(format string, a ...any) {
		f, err := os.OpenFile(filepath.Join(dir, "systemctl.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintf(f, format+"\n", a...)
			f.Close()
		}
	}
	logf("systemctl %s", strings.Join(args, " "))
	switch verb {
	case "show":
		switch p := pid(); {
		case p == 0:
			fmt.Fprintln(stdout, "inactive")
		case fileExists(path(".stopping")):
			fmt.Fprintln(stdout, "deactivating")
		default:
			fmt.Fprintln(stdout, "active")
		}
	case "enable":
		_ = os.WriteFile(path(".enabled"), nil, 0o600)
	case "disable":
		_ = os.Remove(path(".enabled"))
	case "start":
		if pid() != 0 {
			return 0
		}
		return fakeStart(dir, unit, stderr)
	case "stop", "kill":
		p := pid()
		if p == 0 {
			return 0
		}
		sig := syscall.SIGTERM
		if verb == "kill" && signal == "SIGINT" {
			sig = syscall.SIGINT
		}
		_ = os.WriteFile(path(".stopping"), nil, 0o600)
		_ = syscall.Kill(p, sig)
		if verb == "stop" && !noBlock {
			for alive(p) {
				time.Sleep(20 * time.Millisecond)
			}
		}
	default:
		fmt.Fprintf(stderr, "fake systemctl: %q not implemented\n", verb)
		return 1
	}
	return 0
}

// fakeStart starts unit as systemd starts a Type=notify service: the process gets NOTIFY_SOCKET,
// and start returns once it says READY=1 (or fails when it exits first).
func fakeStart(dir, unit string, stderr io.Writer) int {
	b, err := os.ReadFile(filepath.Join(dir, unit+".exec"))
	if err != nil {
		fmt.Fprintf(stderr, "Unit %s not found.\n", unit)
		return 5
	}
	argv := strings.Split(strings.TrimSpace(string(b)), "\n")
	sock := filepath.Join(dir, unit+".notify")
	_ = os.Remove(sock)
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer pc.Close()
	logFile, err := os.OpenFile(filepath.Join(dir, unit+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer logFile.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Env = slicesDelete(cmd.Env, fakeSystemctlEnv)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	_ = os.Remove(filepath.Join(dir, unit+".stopping"))
	_ = os.WriteFile(filepath.Join(dir, unit+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	deadline := time.Now().Add(20 * time.Second)
	buf := make([]byte, 4096)
	for time.Now().Before(deadline) {
		_ = pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := pc.Read(buf)
		if err == nil && bytes.Contains(buf[:n], []byte("READY=1")) {
			_ = cmd.Process.Release() // it outlives this systemctl, as under systemd
			return 0
		}
		if !alive(cmd.Process.Pid) {
			fmt.Fprintf(stderr, "Job for %s failed because the control process exited with error code.\n", unit)
			return 1
		}
	}
	fmt.Fprintf(stderr, "Job for %s timed out.\n", unit)
	return 1
}

func slicesDelete(env []string, name string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie nobody reaped yet counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// execStart is a unit's ExecStart split into arguments, with the binary and config paths moved.
func execStart(t *testing.T, unitFile, bin, config string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^ExecStart=(.+)$`).FindStringSubmatch(read(t, unitFile))
	if m == nil {
		t.Fatalf("%s: no ExecStart", unitFile)
	}
	argv := strings.Fields(m[1])
	for i, a := range argv {
		switch a {
		case "/usr/local/bin/vncedge":
			argv[i] = bin
		case "/etc/vncedge/vncedge.yaml":
			argv[i] = config
		}
	}
	return argv
}

// echoVM is a VNC server stand-in that echoes.
func echoVM(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// session is one WebSocket session through the proxy.
type session struct{ c net.Conn }

func openSession(url string) (*session, error) {
	d := ws.Dialer{Timeout: 5 * time.Second}
	c, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	if br != nil && br.Buffered() > 0 {
		c.Close()
		return nil, fmt.Errorf("data before the first message")
	}
	return &session{c: c}, nil
}

func (s *session) echo(msg string) error {
	_ = s.c.SetDeadline(time.Now().Add(5 * time.Second))
	defer s.c.SetDeadline(time.Time{})
	if err := wsutil.WriteClientBinary(s.c, []byte(msg)); err != nil {
		return err
	}
	for {
		b, op, err := wsutil.ReadServerData(s.c)
		if err != nil {
			return err
		}
		if op == ws.OpBinary {
			if string(b) != msg {
				return fmt.Errorf("echo %q, want %q", b, msg)
			}
			return nil
		}
	}
}

func TestRolloutRecipe(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED: -short (the rollout runs real instances for several seconds)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildVncedge(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "systemd")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	vm := echoVM(t)
	listen, admin := freeLoopback(t), freeLoopback(t)
	config := filepath.Join(dir, "vncedge.yaml")
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("vm1: "+vm+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, vmPort, _ := net.SplitHostPort(vm)
	if err := os.WriteFile(config, []byte(fmt.Sprintf("listen: %s\nadmin: %s\nloops: 2\nallow: [\"127.0.0.1/32:%s\"]\n"+
		"token-file: %s\nmax-sessions-per-ip: 0\nmax-upgrades-per-ip: \"0\"\nmax-handshakes-per-ip: 0\n",
		listen, admin, vmPort, tokens)), 0o600); err != nil {
		t.Fatal(err)
	}
	units := map[string]string{"vncedge.service": "systemd/vncedge.service",
		"vncedge@a.service": "systemd/vncedge@.service", "vncedge@b.service": "systemd/vncedge@.service"}
	for unit, file := range units {
		argv := execStart(t, file, bin, config)
		if err := os.WriteFile(filepath.Join(state, unit+".exec"), []byte(strings.Join(argv, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	systemctl := filepath.Join(dir, "systemctl")
	if err := os.WriteFile(systemctl, []byte(fmt.Sprintf("#!/bin/sh\n%s=%s exec %s \"$@\"\n", fakeSystemctlEnv, state, self)), 0o755); err != nil {
		t.Fatal(err)
	}
	sctl := func(args ...string) string {
		out, _ := exec.Command(systemctl, args...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	active := func(unit string) string { return sctl("show", "-p", "ActiveState", "--value", unit) }
	t.Cleanup(func() {
		for unit := range units {
			if active(unit) != "inactive" {
				sctl("kill", "-s", "SIGINT", unit)
				sctl("kill", "-s", "SIGINT", unit)
			}
		}
		if t.Failed() {
			for unit := range units {
				b, _ := os.ReadFile(filepath.Join(state, unit+".log"))
				t.Logf("--- %s log:\n%s", unit, lastLines(string(b), 30))
			}
		}
	})
	rollout := func() (string, error) {
		cmd := exec.Command("sh", "systemd/vncedge-rollout")
		cmd.Env = append(os.Environ(), "SYSTEMCTL="+systemctl, "VNCEDGE="+bin, "CONFIG="+config)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	url := "ws://" + listen + "/vnc/" + vm

	// Today's install: the plain unit serves, and a user has a session on it.
	if out := sctl("start", "vncedge.service"); out != "" || active("vncedge.service") != "active" {
		t.Fatalf("start vncedge.service: %q, %s", out, active("vncedge.service"))
	}
	first, err := openSession(url)
	if err != nil {
		t.Fatal(err)
	}
	defer first.c.Close()
	if err := first.echo("plain"); err != nil {
		t.Fatal(err)
	}

	// Users keep opening sessions all through the rollouts.
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := openSession(url)
				if err == nil {
					err = s.echo("churn")
					s.c.Close()
				}
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					errs = append(errs, err.Error())
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}()

	// Rollout 1: from vncedge.service to the slots, no gap.
	out, err := rollout()
	t.Logf("$ vncedge-rollout\n%s", out)
	if err != nil {
		t.Fatalf("first rollout: %v", err)
	}
	if a, p := active("vncedge@a.service"), active("vncedge.service"); a != "active" || p != "deactivating" {
		t.Fatalf("after the first rollout: vncedge@a %s, vncedge.service %s; want active, deactivating", a, p)
	}
	if err := first.echo("still"); err != nil {
		t.Errorf("the session on vncedge.service during its drain: %v", err)
	}
	first.c.Close() // the user leaves: the old instance has nothing left to drain
	waitState(t, active, "vncedge.service", "inactive")

	// Rollout 2: a to b, with a user on a who stays.
	second, err := openSession(url)
	if err != nil {
		t.Fatal(err)
	}
	defer second.c.Close()
	if err := second.echo("on a"); err != nil {
		t.Fatal(err)
	}
	out, err = rollout()
	t.Logf("$ vncedge-rollout\n%s", out)
	if err != nil {
		t.Fatalf("second rollout: %v", err)
	}
	if a, b := active("vncedge@a.service"), active("vncedge@b.service"); a != "deactivating" || b != "active" {
		t.Fatalf("after the second rollout: a %s, b %s; want deactivating, active", a, b)
	}
	// Rollout 3 while a still drains: refused, nothing changes.
	out, err = rollout()
	t.Logf("$ vncedge-rollout\n%s", out)
	if err == nil || !strings.Contains(out, "still drains") {
		t.Errorf("a rollout onto a draining slot: %v, %q; want refused", err, out)
	}
	if err := second.echo("a drains"); err != nil {
		t.Errorf("the session on vncedge@a during its drain: %v", err)
	}
	second.c.Close()
	waitState(t, active, "vncedge@a.service", "inactive")
	out, err = rollout()
	t.Logf("$ vncedge-rollout\n%s", out)
	if err != nil || active("vncedge@a.service") != "active" {
		t.Fatalf("rollout back to a: %v, %s", err, active("vncedge@a.service"))
	}
	waitState(t, active, "vncedge@b.service", "inactive") // no sessions held: its drain ends at once
	close(stop)
	wg.Wait()

	t.Logf("sessions opened while rolling: %d succeeded, %d failed %v", ok.Load(), failed.Load(), errs)
	if failed.Load() != 0 || ok.Load() < 20 {
		t.Errorf("%d of %d sessions failed during the rollouts: %v", failed.Load(), ok.Load()+failed.Load(), errs)
	}
	for unit := range units {
		b, _ := os.ReadFile(filepath.Join(state, unit+".log"))
		if !strings.Contains(string(b), "msg=stopped") {
			t.Errorf("%s did not stop cleanly:\n%s", unit, lastLines(string(b), 20))
		}
		if strings.Contains(string(b), "level=ERROR") {
			t.Errorf("%s logged an error:\n%s", unit, lastLines(string(b), 20))
		}
	}
	if !fileExists(filepath.Join(state, "vncedge@a.service.enabled")) || fileExists(filepath.Join(state, "vncedge.service.enabled")) {
		t.Error("the serving slot must be the enabled one")
	}
	calls, _ := os.ReadFile(filepath.Join(state, "systemctl.log"))
	t.Logf("systemctl calls:\n%s", calls)
}

func waitState(t *testing.T, active func(string) string, unit, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for active(unit) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", unit, active(unit), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
