package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requirements checks tools and files before a test starts anything. Outside CI a missing one
// skips the test with a message that names it; with CI=true it fails, because CI installs them.
type requirements struct {
	t       *testing.T
	missing []string
}

func require(t *testing.T) *requirements {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("E2E SKIPPED: -short")
	}
	return &requirements{t: t}
}

// bin returns the path of a program, or "" and notes it as missing.
func (r *requirements) bin(name string, candidates ...string) string {
	for _, c := range append(candidates, name) {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	r.missing = append(r.missing, "program "+name)
	return ""
}

func (r *requirements) file(path, why string) string {
	if _, err := os.Stat(path); err != nil {
		r.missing = append(r.missing, fmt.Sprintf("%s (%s)", path, why))
	}
	return path
}

// check skips or fails when anything was missing.
func (r *requirements) check() {
	r.t.Helper()
	if len(r.missing) == 0 {
		return
	}
	msg := "E2E SKIPPED: missing " + strings.Join(r.missing, ", ") +
		"; install them with `make e2e-deps` (Debian packages chromium tigervnc-standalone-server " +
		"tigervnc-tools x11-xserver-utils websockify novnc openssl nodejs npm; npm ci in web/ and e2e/)"
	if os.Getenv("CI") == "true" {
		r.t.Fatal(strings.Replace(msg, "E2E SKIPPED", "E2E FAILED (CI=true, the tools must be there)", 1))
	}
	r.t.Skip(msg)
}

// repoRoot is the module root: go test runs in the package directory, e2e/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "artifacts", "e2e")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildVncedge compiles the proxy as users run it.
func buildVncedge(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "vncedge")
	cmd := exec.Command(goTool(), "build", "-o", out, "./cmd/vncedge")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vncedge: %v\n%s", err, b)
	}
	return out
}

// freePort asks the kernel for a free loopback port. Another process may take it before we
// bind it; the servers started on it then fail loudly rather than flake silently.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a child process in its own process group, logged to a file, stopped at cleanup.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(t *testing.T, logDir, name string, argv ...string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s log (%s):\n%s", name, logPath, p.tail(4000))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL if it has not gone after 5 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitTCP waits until addr accepts connections, failing early if the process died.
func waitTCP(t *testing.T, p *proc, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.tail(4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after %v: %v", p.name, addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// edge is one running vncedge.
type edge struct {
	base  string // http://127.0.0.1:PORT
	port  int
	admin string
	p     *proc
}

// startEdge runs vncedge with the public flags the issue names, and extra flags after them.
func startEdge(t *testing.T, bin, logDir, name, web, tokenFile string, allowPorts []int, extra ...string) *edge {
	t.Helper()
	ports := make([]string, len(allowPorts))
	for i, p := range allowPorts {
		ports[i] = strconv.Itoa(p)
	}
	port, admin := freePort(t), freePort(t)
	e := &edge{port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port), admin: fmt.Sprintf("127.0.0.1:%d", admin)}
	argv := []string{bin,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--admin", e.admin,
		"--allow", "127.0.0.0/8:" + strings.Join(ports, ","),
		"--token-file", tokenFile,
		// Every client here is 127.0.0.1 and some tests open dozens of
		// sessions a second; the per-address limits have their own tests.
		"--max-upgrades-per-ip", "0",
	}
	if web != "" {
		argv = append(argv, "--web", web)
	}
	argv = append(argv, extra...)
	e.p = startProc(t, logDir, name, argv...)
	waitTCP(t, e.p, fmt.Sprintf("127.0.0.1:%d", port), 15*time.Second)
	waitReady(t, e)
	return e
}

func waitReady(t *testing.T, e *edge) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://" + e.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if e.p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s not ready (err %v): %s", e.p.name, err, e.p.tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runNode runs a node script with a deadline and returns its stdout.
func runNode(t *testing.T, node, dir string, within time.Duration, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group (node and the Chromium it started) on timeout.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("node %v did not finish within %v (a hang)\nstdout:\n%s\nstderr:\n%s", args, within, out, stderr.String())
		}
		t.Fatalf("node %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, stderr.String())
	}
	return out
}
