// Package load is vncedge's load generator: it starts fleets of simulated VMs on loopback,
// drives noVNC-like WebSocket clients at them through a proxy (or directly, as the
// baseline), and measures throughput, round-trip latency, session setup and memory.
package load

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Target is what the clients connect to.
type Target struct {
	Name string `json:"name"`
	// URL is a template: {ip}, {port} and {token} are filled per session, e.g.
	// ws://127.0.0.1:6080/vnc/{ip} or wss://proxy.example:443/websockify?token={token}.
	URL string `json:"url,omitempty"`
	// Direct connects to the VMs themselves, which then speak WebSocket: no proxy.
	Direct bool `json:"direct,omitempty"`
	// Relay means URL reaches the VMs' own WebSocket through a byte relay (the C-relay
	// baseline, HAProxy in TCP mode): the VMs speak WebSocket as for Direct, and the
	// relay does no framing work.
	Relay bool `json:"relay,omitempty"`
	// Token is how {token} is filled: "" names the VM (vm-W-I, one token per VM, as in
	// the websockify token file), TokenSession gives every session its own (s-W-J) and
	// TokenJWT signs a per-session HS256 token naming the VM (the secret is in the Job).
	Token string `json:"token,omitempty"`
	// Pid is the proxy process whose memory, descriptors and CPU are sampled (0: none).
	Pid int `json:"pid,omitempty"`
	// AdminURL is the proxy's admin listener (http://host:port): its /metrics gives the
	// token lookup histogram, and, when Pid is 0 (a proxy on another host), its
	// process_cpu_seconds_total, resident memory and descriptors.
	AdminURL string `json:"admin_url,omitempty"`
	// RatioTo names the targets this one's figures are divided by in tables ("vncedge"
	// over "direct", "haproxy" and "websockify"); nil in results of older runs.
	RatioTo []string `json:"ratio_to,omitempty"`
}

// Token schemes of Target.Token.
const (
	TokenSession = "session"
	TokenJWT     = "jwt"
)

// SessionToken is the per-session token of session j of worker w (TokenSession).
func SessionToken(w, j int) string { return fmt.Sprintf("s-%d-%d", w, j) }

// Layout places a run's simulated VMs. The zero value is the loopback layout: VM i of
// worker w on its own alias 127.(16+w).(i/250).(1+i%250), all on one port.
type Layout struct {
	// Port is every VM's port in the loopback layout (0: VMPort).
	Port int `json:"port,omitempty"`
	// IP, when set, puts every VM on this one address instead, VM i of worker w on port
	// FirstPort + w*Stride + i, at most LastPort: a fleet that a proxy on another host can
	// reach (--vm-listen).
	IP        string `json:"ip,omitempty"`
	FirstPort int    `json:"first_port,omitempty"`
	LastPort  int    `json:"last_port,omitempty"`
	Stride    int    `json:"stride,omitempty"`
}

// ParseVMListen reads --vm-listen: IP:FIRST-LAST (or IP:PORT for one port). stride is how
// many VM ports each worker gets (its most VMs), so a token file written for one session
// count still names the same VMs in a run with another.
func ParseVMListen(s string, stride int) (Layout, error) {
	host, ports, err := net.SplitHostPort(s)
	if err != nil {
		return Layout{}, fmt.Errorf("--vm-listen %q: want IP:FIRST-LAST: %w", s, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return Layout{}, fmt.Errorf("--vm-listen %q: %q is not one IP address (a proxy must reach the VMs on it)", s, host)
	}
	first, last, ok := strings.Cut(ports, "-")
	if !ok {
		last = first
	}
	a, err1 := strconv.Atoi(first)
	b, err2 := strconv.Atoi(last)
	if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return Layout{}, fmt.Errorf("--vm-listen %q: bad port range %q", s, ports)
	}
	if stride < 1 {
		return Layout{}, fmt.Errorf("--vm-listen: stride %d", stride)
	}
	return Layout{IP: ip.String(), FirstPort: a, LastPort: b, Stride: stride}, nil
}

// VM is the address of VM i of worker w.
func (l Layout) VM(w, i int) VMAddr {
	if l.IP == "" {
		vm := VMFor(w, i)
		if l.Port != 0 {
			vm.Port = l.Port
		}
		return vm
	}
	return VMAddr{IP: l.IP, Port: l.FirstPort + w*l.Stride + i, Token: fmt.Sprintf("vm-%d-%d", w, i)}
}

// Check says whether workers x vms VMs fit the layout.
func (l Layout) Check(workers, vms int) error {
	if l.IP == "" {
		if vms > maxVMsPerWorker {
			return fmt.Errorf("%d VMs per worker, over %d", vms, maxVMsPerWorker)
		}
		return nil
	}
	if vms > l.Stride {
		return fmt.Errorf("--vm-listen: %d VMs per worker, over the %d ports each worker has (raise --per-vm or lower --per-worker)", vms, l.Stride)
	}
	if last := l.FirstPort + (workers-1)*l.Stride + vms - 1; last > l.LastPort {
		return fmt.Errorf("--vm-listen: %d workers x %d ports need ports %d-%d, past %d", workers, l.Stride, l.FirstPort, last, l.LastPort)
	}
	return nil
}

// Loopback says whether every VM is on a loopback address.
func (l Layout) Loopback() bool {
	if l.IP == "" {
		return true
	}
	ip := net.ParseIP(l.IP)
	return ip != nil && ip.IsLoopback()
}

// VMAddr is where one simulated VM listens and the token that names it.
type VMAddr struct {
	IP    string
	Port  int
	Token string
}

// VMPort is the port every simulated VM listens on: path routing's default (/vnc/{ip} means
// {ip}:5901), so one template works for vncedge and needs no port in the URL.
const VMPort = 5901

// MaxWorkers bounds worker processes; it keeps the address plan inside 127.0.0.0/8.
const MaxWorkers = 100

// maxVMsPerWorker keeps a worker's VM addresses inside its own /16.
const maxVMsPerWorker = 250 * 250

// VMFor is the address of VM i of worker w: 127.(16+w).(i/250).(1+i%250):5901. Many
// addresses, because one address pair has only ~28,000 ephemeral ports and because
// vncedge limits sessions per upstream.
func VMFor(w, i int) VMAddr {
	return VMAddr{
		IP:    fmt.Sprintf("127.%d.%d.%d", 16+w, i/250, 1+i%250),
		Port:  VMPort,
		Token: fmt.Sprintf("vm-%d-%d", w, i),
	}
}

// clientsPerAddr is how many client sockets share one source address.
const clientsPerAddr = 1000

// ClientAddr is the source address of client j of worker w: 127.(128+w).x.y, port chosen by
// the kernel, a new address every clientsPerAddr clients.
func ClientAddr(w, j int) *net.TCPAddr {
	k := j / clientsPerAddr % (250 * 250)
	return &net.TCPAddr{IP: net.IPv4(127, byte(128+w), byte(k/250), byte(1+k%250))}
}

// URLFor is the WebSocket URL a client of vm uses on t, with token standing for {token}
// ("" means the VM's own token).
func (t Target) URLFor(vm VMAddr, token string) string {
	if t.Direct {
		return "ws://" + net.JoinHostPort(vm.IP, strconv.Itoa(vm.Port)) + "/"
	}
	if token != "" {
		vm.Token = token
	}
	return Expand(t.URL, vm)
}

// VMWebSocket says whether the VMs of a run against t speak WebSocket themselves.
func (t Target) VMWebSocket() bool { return t.Direct || t.Relay }

// Expand fills {ip}, {port} and {token} in tmpl; the token is query-escaped (a signed
// token is base64url with dots, which passes unchanged).
func Expand(tmpl string, vm VMAddr) string {
	return strings.NewReplacer("{ip}", vm.IP, "{port}", strconv.Itoa(vm.Port), "{token}", url.QueryEscape(vm.Token)).Replace(tmpl)
}

// CheckTemplate rejects a URL template that cannot reach a fleet of VMs.
func CheckTemplate(tmpl string) error {
	if !strings.HasPrefix(tmpl, "ws://") && !strings.HasPrefix(tmpl, "wss://") {
		return fmt.Errorf("url template %q: want ws:// or wss://", tmpl)
	}
	if !strings.Contains(tmpl, "{ip}") && !strings.Contains(tmpl, "{token}") {
		return fmt.Errorf("url template %q names neither {ip} nor {token}: every session would reach the same VM", tmpl)
	}
	if strings.Count(tmpl, "{")-strings.Count(tmpl, "{ip}")-strings.Count(tmpl, "{port}")-strings.Count(tmpl, "{token}") != 0 {
		return fmt.Errorf("url template %q: only {ip}, {port} and {token} are known", tmpl)
	}
	return nil
}

// WriteTokenFile writes a websockify TokenFile ("token: host:port" lines) naming the VMs of
// workers 0..workers-1, vms each, placed by l. It replaces the file atomically, so a proxy
// watching it never reads half of it.
func WriteTokenFile(path string, workers, vms int, l Layout) error {
	var b strings.Builder
	b.WriteString("# written by vncedge bench: one line per simulated VM\n")
	for w := 0; w < workers; w++ {
		for i := 0; i < vms; i++ {
			vm := l.VM(w, i)
			fmt.Fprintf(&b, "%s: %s\n", vm.Token, net.JoinHostPort(vm.IP, strconv.Itoa(vm.Port)))
		}
	}
	return WriteFileAtomic(path, b.String())
}

// WriteFileAtomic replaces path with text through a temporary file and a rename.
func WriteFileAtomic(path, text string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bench-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
