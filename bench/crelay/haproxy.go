// Package crelay runs the C-relay baseline: HAProxy in TCP mode relaying the simulated
// VMs' own WebSocket, one hop and no framing work, so vncedge's figures can be read against
// the best byte relay a user could put in its place.
//
// Plain TCP carries no name to route on (use-server by SNI needs TLS), so HAProxy gets one
// listener per VM: the VM at 127.16.0.1:5901 is reached through 127.16.0.1:PORT, on the
// VM's own loopback alias and one relay port for the whole fleet. A client's URL is then the
// template ws://{ip}:PORT/, which maps every VM through the relay whatever the fleet's
// size: a few VMs for the throughput runs, twenty for 1,000 latency sessions, two hundred
// for 9,900 idle ones.
package crelay

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vncedge/bench/child"
)

// Route is one HAProxy listener and the VM behind it.
type Route struct {
	Listen, Server string // host:port each
}

// Splice modes: whether HAProxy moves bytes with splice(2) between the sockets (no copy
// through user space), where the build has it.
const (
	SpliceAuto = "auto" // option splice-auto: HAProxy decides per buffer (its recommended form)
	SpliceOn   = "on"   // option splice-request and splice-response: always
	SpliceOff  = "off"
)

// Config is what the generated configuration needs.
type Config struct {
	Routes []Route
	// MaxConn bounds connections per listener and in all (each session is one client
	// and one server connection).
	MaxConn int
	// Splice is SpliceAuto, SpliceOn or SpliceOff; "" means off.
	Splice string
	// Threads is nbthread (0: HAProxy's default, one per CPU, like vncedge's loops).
	Threads int
	// StatsListen, when set, is a loopback host:port for HAProxy's own stats page.
	StatsListen string
	// Backlog is each listener's accept backlog (Somaxconn() for vncedge's).
	Backlog int
}

// Somaxconn is the kernel's cap on listen backlogs, what Go's net.Listen asks for.
func Somaxconn() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 4096
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 1 {
		return 4096
	}
	return n
}

// Render writes the HAProxy configuration for c. Everything it binds is what c names (the
// caller keeps it on loopback); timeouts are long enough for a held idle session and a
// 1 GiB stream, short enough that a dead run ends.
func Render(c Config) (string, error) {
	if len(c.Routes) == 0 {
		return "", fmt.Errorf("crelay: no routes")
	}
	if c.MaxConn < 1 {
		return "", fmt.Errorf("crelay: maxconn %d", c.MaxConn)
	}
	var b strings.Builder
	b.WriteString("# Written by vncedge bench: the C-relay baseline. HAProxy in TCP mode relays each\n")
	b.WriteString("# simulated VM's own WebSocket unchanged (one listener per VM: plain TCP has no name to route on).\n")
	b.WriteString("global\n")
	fmt.Fprintf(&b, "    maxconn %d\n", c.MaxConn)
	if c.Threads > 0 {
		fmt.Fprintf(&b, "    nbthread %d\n", c.Threads)
	}
	b.WriteString("    # no log: logging every connection would cost the baseline what vncedge does not pay\n")
	b.WriteString("defaults\n")
	b.WriteString("    mode tcp\n")
	fmt.Fprintf(&b, "    maxconn %d\n", c.MaxConn)
	// The listen backlog Go (and so vncedge) asks for: the kernel's somaxconn. HAProxy
	// would pass its maxconn, and a burst of setups past it waits out SYN retries.
	fmt.Fprintf(&b, "    backlog %d\n", max(c.Backlog, 128))
	switch c.Splice {
	case SpliceAuto:
		b.WriteString("    option splice-auto\n")
	case SpliceOn:
		b.WriteString("    option splice-request\n    option splice-response\n")
	case SpliceOff, "":
	default:
		return "", fmt.Errorf("crelay: splice %q: want auto, on or off", c.Splice)
	}
	b.WriteString("    timeout connect 5s\n")
	b.WriteString("    timeout client 10m\n")
	b.WriteString("    timeout server 10m\n")
	if c.StatsListen != "" {
		fmt.Fprintf(&b, "listen stats\n    mode http\n    bind %s\n    stats enable\n    stats uri /\n", c.StatsListen)
	}
	for i, r := range c.Routes {
		if err := checkAddr(r.Listen); err != nil {
			return "", err
		}
		if err := checkAddr(r.Server); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "listen vm%d\n    bind %s\n    server vm %s\n", i, r.Listen, r.Server)
	}
	return b.String(), nil
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("crelay: address %q: %w", a, err)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("crelay: address %q: want an IP address", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("crelay: address %q: bad port", a)
	}
	return nil
}

// HasSplice says whether the haproxy binary was built with Linux splice support.
func HasSplice(haproxy string) bool {
	out, err := exec.Command(haproxy, "-vv").CombinedOutput()
	return err == nil && strings.Contains(string(out), "+LINUX_SPLICE")
}

// Version is haproxy's first version line ("HAProxy version 2.6.12-1+deb12u4 ...").
func Version(haproxy string) string {
	out, err := exec.Command(haproxy, "-v").CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// Relay is a running HAProxy.
type Relay struct {
	Port    int    // the relay port on every VM's alias
	Splice  string // the splice mode in force
	Version string
	Dir     string // config and log
	proc    *child.Process
	rmDir   bool
}

// Options choose how Start runs HAProxy.
type Options struct {
	// Binary is haproxy's path ("" finds it on PATH or in /usr/sbin).
	Binary string
	// Splice: SpliceAuto (the default when the build has splice), SpliceOn, SpliceOff.
	Splice string
	// Threads as in Config.
	Threads int
	// MaxConn as in Config (0: enough for MaxSessions).
	MaxSessions int
	// Dir holds the config and log (a temp dir when empty, removed by Stop).
	Dir string
}

// Start runs HAProxy in front of vms (the fleet's addresses: host:port, each on its own
// loopback alias), on one free relay port, checks the configuration with haproxy -c first
// and waits until every listener accepts. It fails loudly: a baseline that does not run is
// a failed run, not a missing column.
func Start(vms []string, o Options) (*Relay, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = child.Look("haproxy"); err != nil {
			return nil, err
		}
	}
	splice := o.Splice
	has := HasSplice(bin)
	switch {
	case splice == "" && has:
		splice = SpliceAuto
	case splice == "":
		splice = SpliceOff
	case splice != SpliceOff && !has:
		return nil, fmt.Errorf("crelay: --c-relay-splice %s, but this haproxy was built without LINUX_SPLICE", splice)
	}
	hosts := make([]string, len(vms))
	vmPorts := map[int]bool{}
	for i, a := range vms {
		h, ps, err := net.SplitHostPort(a)
		if n, err := strconv.Atoi(ps); err == nil {
			vmPorts[n] = true
		}
		if err != nil {
			return nil, fmt.Errorf("crelay: VM address %q: %w", a, err)
		}
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("crelay: VM %s is not on loopback: the C relay runs beside the VMs on this machine only", a)
		}
		hosts[i] = h
	}
	dir := o.Dir
	removeDir := false
	if dir == "" {
		d, err := os.MkdirTemp("", "bench-haproxy-")
		if err != nil {
			return nil, fmt.Errorf("crelay: %w", err)
		}
		dir, removeDir = d, true
	}
	maxConn := MaxConnFor(o.MaxSessions, len(vms))
	var lastErr error
	// A port free now may be taken before HAProxy binds it: a few tries, each one checked.
	for try := 0; try < 3; try++ {
		port, err := child.FreePort(hosts[0])
		if err != nil {
			return nil, fmt.Errorf("crelay: free port: %w", err)
		}
		if vmPorts[port] {
			// The VMs are not listening yet: their port is taken all the same.
			lastErr = fmt.Errorf("port %d is the VMs' own", port)
			continue
		}
		if err := child.PortFreeOn(port, hosts); err != nil {
			lastErr = err
			continue
		}
		routes := make([]Route, len(vms))
		for i, a := range vms {
			routes[i] = Route{Listen: net.JoinHostPort(hosts[i], strconv.Itoa(port)), Server: a}
		}
		cfg, err := Render(Config{Routes: routes, MaxConn: maxConn, Splice: splice, Threads: o.Threads, Backlog: Somaxconn()})
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, fmt.Errorf("crelay: %w", err)
		}
		if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("crelay: haproxy -c -f %s: %v: %s", path, err, strings.TrimSpace(string(out)))
		}
		// -db: stay in the foreground, one process (its threads are the workers), so the
		// pid bench samples is the whole relay.
		p, err := child.Start("haproxy", bin, []string{"-db", "-f", path}, filepath.Join(dir, "haproxy.log"))
		if err != nil {
			return nil, err
		}
		listen := make([]string, len(routes))
		for i, r := range routes {
			listen[i] = r.Listen
		}
		if err := p.WaitTCP(10*time.Second, listen...); err != nil {
			_ = p.Stop(2 * time.Second)
			lastErr = err
			continue
		}
		return &Relay{Port: port, Splice: splice, Version: Version(bin), Dir: dir, proc: p, rmDir: removeDir}, nil
	}
	if removeDir {
		os.RemoveAll(dir)
	}
	return nil, fmt.Errorf("crelay: HAProxy did not start: %w", lastErr)
}

// MaxConnFor is a maxconn for sessions proxied sessions across vms listeners that stays
// inside this process's descriptor limit (HAProxy needs two per session plus its
// listeners), so HAProxy does not refuse to start on a small box: beyond it, sessions fail
// as they would with any relay, and the run says so.
func MaxConnFor(sessions, vms int) int {
	want := max(sessions, 1) + 64
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Max > 0 && lim.Max < 1<<30 {
		fit := (int(lim.Max) - vms - 64) / 2
		if fit > 0 && want > fit {
			want = fit
		}
	}
	return want
}

// Pid is HAProxy's process id (its memory, descriptors and CPU are the baseline's).
func (r *Relay) Pid() int { return r.proc.Pid() }

// URL is the clients' template for reaching every VM through the relay.
func (r *Relay) URL() string { return fmt.Sprintf("ws://{ip}:%d/", r.Port) }

// Stop ends HAProxy; an error means it had died during the run.
func (r *Relay) Stop() error {
	err := r.proc.Stop(5 * time.Second)
	if r.rmDir {
		os.RemoveAll(r.Dir)
	}
	return err
}

// Alive says whether HAProxy is still running (a relay that died mid-run fails the run).
func (r *Relay) Alive() error {
	if done, err := r.proc.Exited(); done {
		return fmt.Errorf("haproxy exited during the run (%v): %s", err, r.proc.Tail(2048))
	}
	return nil
}
