package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// The restart that keeps sessions (issue 16 section 2), with two real vncedge processes: a second
// instance without --takeover is refused; with it, it starts beside the old one, the old one is
// stopped while clients open sessions back to back, and every one of those sessions opens and
// echoes; the old one's sessions relay through its drain and then get 1001, and it exits 0.
// Then SIGHUP reloads of the allow-list, the origins and a limit, and a bad config file that
// changes nothing.

// takeoverRig is the processes and addresses of one takeover test.
type takeoverRig struct {
	bin, dir string
	listen   string
	admin    string
	conf     string
	common   []string
	http     *http.Client
}

func newTakeoverRig(t *testing.T) *takeoverRig {
	t.Helper()
	require(t)
	dir := t.TempDir()
	r := &takeoverRig{bin: os.Getenv("VNCEDGE_BIN"), dir: dir,
		listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		conf: filepath.Join(dir, "vncedge.yaml"),
		http: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if r.bin == "" {
		r.bin = buildVncedge(t, dir)
	}
	r.writeConf(t, "allow: [\"127.0.0.0/8:1024-65535\"]\n")
	r.common = []string{"--config", r.conf, "--listen", r.listen, "--admin", r.admin, "--loops", "2",
		"--max-sessions-per-ip", "0", "--max-upgrades-per-ip", "0", "--max-handshakes-per-ip", "0",
		"--max-sessions-per-upstream", "0", "--token-watch", "0"}
	return r
}

func (r *takeoverRig) writeConf(t *testing.T, s string) {
	t.Helper()
	// Written aside and renamed, as the docs tell operators to.
	tmp := r.conf + ".new"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.conf); err != nil {
		t.Fatal(err)
	}
}

func (r *takeoverRig) start(t *testing.T, name string, extra ...string) *proc {
	t.Helper()
	p := startProc(t, r.dir, name, append(append([]string{r.bin}, r.common...), extra...)...)
	waitLogLine(t, p, "vncedge listening", 15*time.Second)
	return p
}

// waitLogLine waits until the process's log has s.
func waitLogLine(t *testing.T, p *proc, s string, within time.Duration) {
	t.Helper()
	if !eventually(within, func() bool { return strings.Contains(p.tail(1<<20), s) || p.exited() }) ||
		!strings.Contains(p.tail(1<<20), s) {
		t.Fatalf("%s: no %q in the log within %v (exited %v):\n%s", p.name, s, within, p.exited(), p.tail(4000))
	}
}

func waitExit(t *testing.T, p *proc, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v:\n%s", p.name, within, p.tail(4000))
		return -1
	}
}

// metric reads one series from an admin listener.
func (r *takeoverRig) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := r.http.Get("http://" + r.admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// churn opens sessions back to back, each checked with an echo, and counts them.
type churn struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
}

func (c *churn) run(e *faultEdge, path string, stop <-chan struct{}) {
	msg := []byte("takeover")
	for {
		select {
		case <-stop:
			return
		default:
		}
		w, status, err := e.tryUpgrade(path, dialOpts{}, 5*time.Second)
		if err == nil && w == nil {
			err = fmt.Errorf("status %d", status)
		}
		if err == nil {
			err = w.echo(msg, 5*time.Second)
			w.close()
		}
		if err != nil {
			c.failed.Add(1)
			c.mu.Lock()
			if len(c.errs) < 8 {
				c.errs = append(c.errs, err.Error())
			}
			c.mu.Unlock()
			continue
		}
		c.ok.Add(1)
	}
}

func TestTakeover(t *testing.T) {
	r := newTakeoverRig(t)
	vm := startVM(t, vmEcho)
	edge := &faultEdge{t: t, addr: r.listen, admin: r.admin}
	old := r.start(t, "vncedge-old", "--drain-timeout", "6s")

	// A second instance without --takeover: refused at start, status 2, the clear error.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	out, err := exec.CommandContext(ctx, r.bin, r.common...).CombinedOutput()
	cancel()
	if code := exitStatus(err); code != 2 {
		t.Fatalf("second instance without --takeover: exit %d (%v), want 2:\n%s", code, err, out)
	}
	want := "another vncedge listens on " + r.listen + "; start with --takeover to take over its listener"
	if !strings.Contains(string(out), want) {
		t.Fatalf("second instance: output lacks %q:\n%s", want, out)
	}
	t.Logf("second instance without --takeover: exit 2, %q", strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]))

	// Sessions on the old instance that must live through the handover.
	var held []*wsPeer
	for i := range 3 {
		w := edge.open(t, vm.path(), dialOpts{})
		if err := w.echo([]byte(fmt.Sprintf("old-%d", i)), 5*time.Second); err != nil {
			t.Fatalf("old session %d: %v", i, err)
		}
		held = append(held, w)
	}

	succ := r.start(t, "vncedge-new", "--takeover", "--drain-timeout", "2s")
	waitLogLine(t, succ, "takeover: listening beside the running instance", 10*time.Second)

	var c churn
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { c.run(edge, vm.path(), stop) })
	}
	time.Sleep(500 * time.Millisecond)
	before := c.ok.Load() + c.failed.Load()
	t0 := time.Now()
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLogLine(t, old, "listeners handed over to the successor", 10*time.Second)
	handover := time.Since(t0)
	waitLogLine(t, succ, "takeover complete", 10*time.Second)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	total := c.ok.Load() + c.failed.Load()
	t.Logf("handover: SIGTERM to \"listeners handed over\" in %v; new upgrades: %d before the SIGTERM, %d in all, "+
		"%d succeeded, %d failed %v (net.ipv4.tcp_migrate_req=%s)", handover.Round(time.Millisecond), before, total,
		c.ok.Load(), c.failed.Load(), c.errs, strings.TrimSpace(readFile("/proc/sys/net/ipv4/tcp_migrate_req")))
	if c.failed.Load() != 0 || c.ok.Load() < 50 {
		t.Errorf("%d of %d new upgrades failed during the handover (want all of at least 50 to succeed): %v",
			c.failed.Load(), total, c.errs)
	}
	if old.exited() {
		t.Fatalf("the old instance exited before its drain ended:\n%s", old.tail(3000))
	}

	// The old sessions still relay during the drain; every new one reaches the successor.
	for i, w := range held {
		if err := w.echo([]byte(fmt.Sprintf("draining-%d", i)), 5*time.Second); err != nil {
			t.Errorf("old session %d during the drain: %v", i, err)
		}
	}
	w := edge.open(t, vm.path(), dialOpts{})
	if err := w.echo([]byte("new"), 5*time.Second); err != nil {
		t.Errorf("a session after the handover: %v", err)
	}
	if got := r.metric(t, "vncedge_draining"); got != "0" {
		t.Errorf("the admin port answers with vncedge_draining %q, want the successor's 0", got)
	}
	for i, w := range held {
		if res := w.waitClose(15 * time.Second); res.code != ws.StatusGoingAway {
			t.Errorf("old session %d: %v, want 1001 at the end of the drain", i, res)
		}
	}
	if code := waitExit(t, old, 20*time.Second); code != 0 {
		t.Errorf("the old instance exited %d, want 0:\n%s", code, old.tail(3000))
	}
	t.Logf("old instance: 3 sessions relayed through the drain, closed 1001 after --drain-timeout 6s, exit 0")
}

func TestReloadLiveSettings(t *testing.T) {
	r := newTakeoverRig(t)
	vm1, vm2 := startVM(t, vmEcho), startVM(t, vmEcho)
	allowOnly := func(vm *fakeVM) string { return fmt.Sprintf("127.0.0.1/32:%d", vm.port) }
	r.writeConf(t, fmt.Sprintf("allow: [%q]\nmax-sessions: 100\n", allowOnly(vm1)))
	p := r.start(t, "vncedge-reload")
	edge := &faultEdge{t: t, addr: r.listen, admin: r.admin}
	hup := func(wantLog string) {
		t.Helper()
		n := strings.Count(p.tail(1<<20), wantLog)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !eventually(10*time.Second, func() bool { return strings.Count(p.tail(1<<20), wantLog) > n }) {
			t.Fatalf("no new %q after SIGHUP:\n%s", wantLog, p.tail(3000))
		}
	}

	running := edge.open(t, vm1.path(), dialOpts{})
	if err := running.echo([]byte("vm1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, status, _ := edge.tryUpgrade(vm2.path(), dialOpts{}, 5*time.Second); status != http.StatusForbidden {
		t.Fatalf("vm2 before the reload: %d, want 403", status)
	}

	r.writeConf(t, fmt.Sprintf("allow: [%q]\nmax-sessions: 100\norigin: [\"https://console.example.com\"]\n", allowOnly(vm2)))
	hup("msg=reloaded trigger=SIGHUP")
	w := edge.open(t, vm2.path(), dialOpts{})
	if err := w.echo([]byte("vm2"), 5*time.Second); err != nil {
		t.Errorf("vm2, newly allowed: %v", err)
	}
	if _, status, _ := edge.tryUpgrade(vm1.path(), dialOpts{}, 5*time.Second); status != http.StatusForbidden {
		t.Errorf("vm1, removed from the allow-list: %d, want 403", status)
	}
	if err := running.echo([]byte("still"), 5*time.Second); err != nil {
		t.Errorf("the session open on vm1 must go on: %v", err)
	}

	r.writeConf(t, fmt.Sprintf("allow: [%q]\nmax-sessions: 2\n", allowOnly(vm2)))
	hup("msg=reloaded trigger=SIGHUP")
	if _, status, _ := edge.tryUpgrade(vm2.path(), dialOpts{}, 5*time.Second); status != http.StatusServiceUnavailable {
		t.Errorf("over the reloaded max-sessions 2: %d, want 503", status)
	}

	errs := r.metric(t, "vncedge_reload_errors_total")
	r.writeConf(t, fmt.Sprintf("allow: [%q, \"10.0.0.1/8\"]\nmax-sessions: 50\n", allowOnly(vm1)))
	hup("reload incomplete")
	if _, status, _ := edge.tryUpgrade(vm1.path(), dialOpts{}, 5*time.Second); status != http.StatusForbidden {
		t.Errorf("a bad config file must change nothing: vm1 answers %d, want 403", status)
	}
	if got := r.metric(t, "vncedge_limit_max_sessions"); got != "2" {
		t.Errorf("max sessions after the bad file: %q, want 2 kept", got)
	}
	if got := r.metric(t, "vncedge_reload_errors_total"); got == errs {
		t.Errorf("vncedge_reload_errors_total stayed %s after a bad file", got)
	}
	if err := running.echo([]byte("end"), 5*time.Second); err != nil {
		t.Errorf("the vm1 session after the reloads: %v", err)
	}
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "absent"
	}
	return string(b)
}
