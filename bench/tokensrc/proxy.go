package tokensrc

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"vncedge/bench/child"
)

// Proxy is a vncedge that bench started itself, on free loopback ports.
type Proxy struct {
	Listen, Admin string // host:port each
	proc          *child.Process
}

// ProxyFlags are what every bench-started vncedge gets: loopback listeners, the loopback
// VMs on vmPort allowed, quiet logs, and the per-address limits lifted (every bench client
// comes from a few 127.x addresses, opening hundreds of sessions a second from each).
func ProxyFlags(listen, admin string, vmPort int) []string {
	return []string{
		"--listen", listen, "--admin", admin, "--allow", "127.0.0.0/8:" + strconv.Itoa(vmPort), "--log-level", "warn",
		"--max-sessions-per-ip", "0", "--max-upgrades-per-ip", "0", "--max-handshakes-per-ip", "0",
		// bench closes its sessions before stopping a proxy: a long drain would only stall.
		"--drain-timeout", "2s",
	}
}

// StartProxy runs the vncedge binary with ProxyFlags, then extra (a source's flags and the
// caller's own), logging to dir/vncedge-NAME.log, and waits for both listeners.
func StartProxy(bin, name, dir string, vmPort int, extra []string) (*Proxy, error) {
	var ports [2]int
	for i := range ports {
		p, err := child.FreePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	if ports[0] == ports[1] {
		return nil, fmt.Errorf("tokensrc: the kernel gave one free port twice")
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	args := append(ProxyFlags(listen, admin, vmPort), extra...)
	p, err := child.Start("vncedge ("+name+")", bin, args, filepath.Join(dir, "vncedge-"+name+".log"))
	if err != nil {
		return nil, err
	}
	if err := p.WaitTCP(15*time.Second, listen, admin); err != nil {
		_ = p.Stop(2 * time.Second)
		return nil, err
	}
	return &Proxy{Listen: listen, Admin: admin, proc: p}, nil
}

// Pid is the proxy's process id.
func (p *Proxy) Pid() int { return p.proc.Pid() }

// AdminURL is its admin listener's base URL.
func (p *Proxy) AdminURL() string { return "http://" + p.Admin }

// URL is the clients' template for token routing.
func (p *Proxy) URL() string { return "ws://" + p.Listen + "/websockify?token={token}" }

// Stop drains nothing (bench closed its sessions) and ends the proxy; an error means it
// had died during the run.
func (p *Proxy) Stop() error { return p.proc.Stop(5 * time.Second) }
