package child

import (
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartWaitStop(t *testing.T) {
	dir := t.TempDir()
	sh, err := Look("sh")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start("sleeper", sh, []string{"-c", "echo started; exec sleep 30"}, filepath.Join(dir, "s.log"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := p.WaitTCP(5*time.Second, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if done, _ := p.Exited(); done {
		t.Fatal("sleeper exited early")
	}
	// The listener is the test's own: wait until the child has said it started.
	for end := time.Now().Add(5 * time.Second); !strings.Contains(p.Tail(100), "started") && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if done, _ := p.Exited(); !done {
		t.Fatal("still running after Stop")
	}
	if !strings.Contains(p.Tail(100), "started") {
		t.Fatalf("log tail %q", p.Tail(100))
	}
}

// A child that dies is reported at once, with its log, by WaitTCP and by Stop.
func TestChildThatDies(t *testing.T) {
	sh, _ := Look("sh")
	p, err := Start("crasher", sh, []string{"-c", "echo cannot bind >&2; exit 3"}, filepath.Join(t.TempDir(), "c.log"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.WaitTCP(10*time.Second, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err == nil || !strings.Contains(err.Error(), "cannot bind") || time.Since(start) > 5*time.Second {
		t.Fatalf("WaitTCP on a dead child: %v after %v", err, time.Since(start))
	}
	if err := p.Stop(time.Second); err == nil {
		t.Fatal("Stop of a child that died says nothing")
	}
}

func TestWaitTCPTimesOut(t *testing.T) {
	sh, _ := Look("sh")
	p, err := Start("idle", sh, []string{"-c", "exec sleep 30"}, filepath.Join(t.TempDir(), "i.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	port, _ := FreePort("127.0.0.1")
	if err := p.WaitTCP(200*time.Millisecond, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Fatalf("WaitTCP with no listener: %v", err)
	}
}

func TestLookAndPorts(t *testing.T) {
	if _, err := Look("no-such-program-vncedge"); !errors.Is(err, ErrMissing) {
		t.Fatalf("Look of a missing program: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := PortFreeOn(ln.Addr().(*net.TCPAddr).Port, []string{"127.0.0.1"}); err == nil {
		t.Fatal("a bound port is free")
	}
	if _, err := Start("x", "/no/such/binary", nil, filepath.Join(t.TempDir(), "x.log")); err == nil {
		t.Fatal("started a missing binary")
	}
}
