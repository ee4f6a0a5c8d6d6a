package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"vncedge/routing"
)

// Config is everything the engine needs to run. cmd/vncedge fills it from
// flags and the config file; tests fill it directly. The zero value of a
// duration or limit turns that timeout or limit off (CONTRACT.md), so use
// DefaultConfig as the starting point.
type Config struct {
	// Listen is the TCP address for WebSocket upgrades and static files.
	Listen string
	// Admin is the plain net/http address for /metrics, /healthz, /readyz
	// (and /debug/pprof when Pprof is set). Empty disables the admin listener.
	Admin string
	// Loops is the number of gnet event loops; 0 means one per CPU.
	Loops int

	// Router maps requests to upstream targets. Required.
	Router *routing.Router
	// Origins lists allowed browser origins (exact or "https://*.example.com");
	// "*" disables the check; empty means Origin host must equal Host host.
	Origins []string
	// TrustedProxies lists the networks (CIDRs) of TLS terminators and load
	// balancers in front of vncedge; from them, X-Forwarded-For names the
	// real client in logs. From anywhere else the header is ignored.
	TrustedProxies []string
	// ProxyProtocol makes every connection start with a PROXY protocol (v1
	// or v2) header naming the client; it is accepted only from
	// TrustedProxies, and other connections are closed.
	ProxyProtocol bool
	// WebDir serves static files (the noVNC client) on the listen port; empty disables.
	WebDir string

	HandshakeTimeout time.Duration // whole HTTP upgrade (slowloris guard)
	ConnectTimeout   time.Duration // upstream dial
	IdleTimeout      time.Duration // no bytes either way
	PingInterval     time.Duration // server pings
	PongTimeout      time.Duration // no pong after a ping: peer is dead
	DrainTimeout     time.Duration // on shutdown: wait this long, then close with 1001

	MaxSessions            int   // concurrent sessions overall (503 above)
	MaxSessionsPerUpstream int   // concurrent sessions per upstream host:port (503 above)
	MaxFrame               int64 // largest client frame payload (1009 above)
	MaxBuffered            int   // bytes queued per session per direction before it counts as a slow consumer

	// Pprof exposes net/http/pprof on the admin listener.
	Pprof bool
	// Logger receives one line per session open and close; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the documented defaults (see `vncedge --help`).
func DefaultConfig() Config {
	return Config{
		Listen:                 "0.0.0.0:6080",
		Admin:                  "127.0.0.1:9090",
		HandshakeTimeout:       10 * time.Second,
		ConnectTimeout:         5 * time.Second,
		IdleTimeout:            0,
		PingInterval:           30 * time.Second,
		PongTimeout:            60 * time.Second,
		DrainTimeout:           30 * time.Second,
		MaxSessions:            100000,
		MaxSessionsPerUpstream: 64,
		MaxFrame:               16 << 20,
		MaxBuffered:            32 << 20,
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen address is empty"))
	}
	if c.Router == nil {
		errs = append(errs, errors.New("no router"))
	}
	for name, d := range map[string]time.Duration{
		"handshake-timeout": c.HandshakeTimeout, "connect-timeout": c.ConnectTimeout,
		"idle-timeout": c.IdleTimeout, "ping-interval": c.PingInterval,
		"pong-timeout": c.PongTimeout, "drain-timeout": c.DrainTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s is negative: %v", name, d))
		}
	}
	if c.ProxyProtocol && len(c.TrustedProxies) == 0 {
		errs = append(errs, errors.New("proxy-protocol needs trusted-proxy: a PROXY header from anyone would let clients forge their address"))
	}
	if c.MaxSessions < 0 || c.MaxSessionsPerUpstream < 0 || c.MaxFrame < 0 || c.MaxBuffered < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	return errors.Join(errs...)
}
