// Package child runs the real servers a benchmark compares or depends on (HAProxy,
// redis-server, vncedge itself) as child processes: started with a log file, waited for
// on their loopback ports within a bound, stopped with SIGTERM then SIGKILL, and killed by
// the kernel if bench dies first, so no run leaves a server behind.
package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is one running child.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // after done
}

// Start runs path with args, stdout and stderr appended to logPath.
func Start(name, path string, args []string, logPath string) (*Process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// The kernel ends the child if bench dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, path, err)
	}
	p := &Process{Name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited says whether the child has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// WaitTCP waits until every addr accepts a connection, at most d; it fails at once when
// the child exits meanwhile, with the tail of its log.
func (p *Process) WaitTCP(d time.Duration, addrs ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for _, a := range addrs {
		for {
			if done, err := p.Exited(); done {
				return fmt.Errorf("%s exited (%v) before listening on %s: %s", p.Name, err, a, p.Tail(2048))
			}
			var dl net.Dialer
			c, err := dl.DialContext(ctx, "tcp", a)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: nothing listens on %s after %v: %s", p.Name, a, d, p.Tail(2048))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// Tail is the end of the child's log, for error messages.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty log " + p.log.Name() + ")"
	}
	return "log " + p.log.Name() + ":\n" + s
}

// Stop sends SIGTERM, waits up to grace, then kills. It returns an error when the child
// had already died on its own (it failed during the run) and nil after a clean stop.
func (p *Process) Stop(grace time.Duration) error {
	defer p.log.Close()
	if done, err := p.Exited(); done {
		return fmt.Errorf("%s had exited during the run (%v): %s", p.Name, err, p.Tail(2048))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// FreePort is a TCP port nothing listens on at host now (the kernel's pick; the caller
// binds it soon after, so a race with another program is unlikely but possible, and a
// child that then fails to bind says so).
func FreePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PortFreeOn says whether port can be bound on every host.
func PortFreeOn(port int, hosts []string) error {
	for _, h := range hosts {
		ln, err := net.Listen("tcp", net.JoinHostPort(h, fmt.Sprint(port)))
		if err != nil {
			return err
		}
		ln.Close()
	}
	return nil
}

// ErrMissing marks a program that is not installed.
var ErrMissing = errors.New("not installed")

// Look finds a program on PATH (and in /usr/sbin, where Debian puts haproxy).
func Look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrMissing)
}
