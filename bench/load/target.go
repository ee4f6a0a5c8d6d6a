// Package load is vncedge's load generator: it starts fleets of simulated VMs on loopback,
// drives noVNC-like WebSocket clients at them through a proxy (or directly, as the
// baseline), and measures throughput, round-trip latency, session setup and memory.
package load

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Target is what the clients connect to.
type Target struct {
	Name string `json:"name"`
	// URL is a template: {ip}, {port} and {token} are filled per session, e.g.
	// ws://127.0.0.1:6080/vnc/{ip} or ws://127.0.0.1:6080/websockify?token={token}.
	URL string `json:"url,omitempty"`
	// Direct connects to the VMs themselves, which then speak WebSocket: no proxy.
	Direct bool `json:"direct,omitempty"`
	// Pid is the proxy process whose memory and descriptors are sampled (0: none).
	Pid int `json:"pid,omitempty"`
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

// URLFor is the WebSocket URL a client of vm uses on t.
func (t Target) URLFor(vm VMAddr) string {
	if t.Direct {
		return "ws://" + net.JoinHostPort(vm.IP, strconv.Itoa(vm.Port)) + "/"
	}
	return Expand(t.URL, vm)
}

// Expand fills {ip}, {port} and {token} in tmpl.
func Expand(tmpl string, vm VMAddr) string {
	return strings.NewReplacer("{ip}", vm.IP, "{port}", strconv.Itoa(vm.Port), "{token}", vm.Token).Replace(tmpl)
}

// CheckTemplate rejects a URL template that cannot reach a fleet of VMs.
func CheckTemplate(tmpl string) error {
	if !strings.HasPrefix(tmpl, "ws://") {
		return fmt.Errorf("url template %q: want ws:// (put TLS in front for wss)", tmpl)
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
// workers 0..workers-1, vms each, on port (0: VMPort). It replaces the file atomically, so a proxy watching it
// never reads half of it.
func WriteTokenFile(path string, workers, vms, port int) error {
	var b strings.Builder
	b.WriteString("# written by vncedge bench: one line per simulated VM\n")
	for w := 0; w < workers; w++ {
		for i := 0; i < vms; i++ {
			vm := VMFor(w, i)
			if port != 0 {
				vm.Port = port
			}
			fmt.Fprintf(&b, "%s: %s:%d\n", vm.Token, vm.IP, vm.Port)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokens-*")
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("token file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("token file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("token file: %w", err)
	}
	return nil
}
