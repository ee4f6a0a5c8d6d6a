package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"vncedge/engine/tlsio"
	"vncedge/routing"
)

// Config is everything the engine needs to run. cmd/vncedge fills it from
// flags and the config file; tests fill it directly. The zero value of a
// duration or limit turns that timeout or limit off (CONTRACT.md), so use
// DefaultConfig as the starting point. The tuning fields at the end have no
// flags: they are the engine's internal trade-offs, exposed so that a test or
// a benchmark can move them and so that each is written down once.
type Config struct {
	// Listen is the TCP address for WebSocket upgrades and static files
	// in plain HTTP (ws://); empty turns it off (TLSListen must be set then).
	Listen string
	// TLSListen is the TCP address for the same over TLS (https://,
	// wss://), terminated on the event loops (engine/tlsio); empty turns
	// it off. TLS holds its certificates and settings.
	TLSListen string
	TLS       tlsio.Config
	// Admin is the plain net/http address for /metrics, /healthz, /readyz
	// (and /debug/pprof when Pprof is set). Empty disables the admin listener.
	Admin string
	// Loops is the number of gnet event loops; 0 means one per CPU.
	Loops int
	// Takeover lets the listeners bind beside those of a running vncedge
	// on the same addresses (--takeover; both have SO_REUSEPORT), for a
	// restart that keeps sessions: once this one listens, the old one is
	// stopped and hands its listeners over (takeover.go). Without it an
	// address someone holds is refused at start.
	Takeover bool

	// Router maps requests to VM targets. Required.
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
	ConnectTimeout   time.Duration // VM dial
	IdleTimeout      time.Duration // no bytes either way
	PingInterval     time.Duration // server pings
	PongTimeout      time.Duration // no pong after a ping: peer is dead
	DrainTimeout     time.Duration // on shutdown: wait this long, then close with 1001

	MaxSessions      int   // concurrent sessions overall (503 above)
	MaxSessionsPerVM int   // concurrent sessions per VM (503 above)
	MaxFrame         int64 // largest browser frame payload (1009 above)
	MaxBuffered      int   // bytes queued per session per direction before it counts as a slow consumer

	// Per-client limits, keyed by the real client address (after the PROXY
	// protocol or a trusted X-Forwarded-For); 0 turns each off.
	MaxSessionsPerIP   int     // concurrent sessions from one address (429 above)
	MaxHandshakesPerIP int     // connections from one address not yet relaying (refused at accept above)
	UpgradeRate        float64 // upgrades per second from one address, a token bucket (429 when empty)
	UpgradeBurst       int     // that bucket's size
	// MaxHandshakes bounds connections not yet relaying (HTTP requests,
	// static files, upgrades being set up) overall; past it new connections
	// are refused at accept. DefaultConfig makes it a quarter of the
	// descriptor budget: handshakes are short, and the rest stays for
	// sessions, which need two descriptors each.
	MaxHandshakes int
	// MemoryBudget bounds the bytes queued in all sessions' and connections'
	// buffers together (what slow or stalled peers make the proxy hold), so
	// that sessions x MaxBuffered can never take the box down: over it, the
	// biggest queues are shed first (1008). DefaultConfig makes it a
	// quarter of the memory this process may use (its cgroup limit, else
	// the machine's).
	MemoryBudget int64
	// MaxStaticQueued bounds the bytes of static-file responses that are
	// waiting for slow readers, in all; past it static requests get 503.
	// Each connection has at most one response waiting (pipelined requests
	// wait for it), so one slow client holds at most one file.
	MaxStaticQueued int
	// FDReserve is how many of RLIMIT_NOFILE's descriptors stay out of the
	// budget for browser and VM sockets and recordings: room for what is not
	// counted one by one (the listeners, gnet's pollers, at most
	// MaxAdminConns admin clients, token files, token-store connections).
	// 0 means 1/128 of the limit, at least 128: 9,920 sessions under a limit
	// of 20,000 (5% had stopped them at 9,500).
	FDReserve int
	// MaxAdminConns bounds the admin listener's open connections (further
	// clients wait in its accept queue), so that scrapers or a flood on the
	// admin port cannot spend the descriptor reserve.
	MaxAdminConns int

	// TokenExpiryCloses ends a session when its grant's expiry passes
	// (--token-expiry-closes), with 1008 "access expired"; without it an
	// expiry only refuses new sessions.
	TokenExpiryCloses bool

	// RFBErrors explains the failures a user with a valid link can meet
	// (an unknown or expired link, a token store down, an unreachable VM,
	// a VM that refuses the proxy) inside RFB after the 101, where noVNC
	// shows the reason, instead of with an HTTP status it cannot show.
	RFBErrors bool
	// VNCPasswordFile holds the VNC password of every VM (one fleet, one
	// password); a grant's own password wins. With a password the proxy
	// answers the VM's challenge itself and offers the browser None.
	VNCPasswordFile string
	// VMVeNCrypt has the proxy prefer VeNCrypt's X509 sub-types (X509Vnc
	// with a password, X509None) when it runs the RFB handshake with a VM
	// (credentials, view-only or recording): the rest of the handshake and
	// the session then run inside TLS, the VM's certificate verified like
	// a tls target's (TLS.UpstreamCA or the system roots, the target's
	// host as the name). VMs that do not offer VeNCrypt are handled as
	// without it. Off by default: TigerVNC offers VeNCrypt with an
	// anonymous or self-signed TLS that most fleets never gave a CA.
	VMVeNCrypt bool

	// ViewOnly makes every session view-only: the proxy drops the
	// browser's keyboard, pointer, clipboard and resize messages.
	ViewOnly bool
	// RecordAll records every session into RecordDir (--record DIR);
	// without it only sessions whose grant says record are recorded there.
	RecordAll bool
	// RecordDir is where recordings go (FBS 001.000, engine/recorder).
	RecordDir string
	// RecordInput also records the browser's key and pointer events, as
	// JSON lines beside each recording (--record-input).
	RecordInput bool
	// RecordRequired ends a session that should be recorded but cannot
	// be (no RecordDir, a full or failing disk) instead of letting it go
	// on unrecorded (--record-required).
	RecordRequired bool
	// RecordQueueBytes bounds what one recording may have waiting for the
	// disk; past it the recording is cut (0: engine/recorder's default).
	RecordQueueBytes int

	// AdminTokenFile holds the bearer token every admin request but
	// /healthz and /readyz must carry (--admin-token-file); re-read on
	// Reload. Required as soon as the admin listener is not on loopback.
	AdminTokenFile string

	// Pprof exposes net/http/pprof on the admin listener.
	Pprof bool
	// Build names the binary in vncedge_build_info.
	Build Build
	// Logger receives one line per session open and close; nil means slog.Default().
	Logger *slog.Logger

	// ReadBufferCap is the size of each event loop's read buffer, shared by
	// all its sockets: larger means fewer syscalls and frames on bulk
	// transfers at no per-session cost, but 1 MiB tripled RSS under eight
	// bulk downloads for +20% throughput (BENCHMARKS.md), hence 256 KiB.
	ReadBufferCap int
	// ChunkSize bounds how much buffered browser input is handled as one
	// piece. Input held back by backpressure sits in gnet's ring buffer, and
	// peeking across its wrap point copies it into one slice: in chunks,
	// that copy stays small however much input was held.
	ChunkSize int
	// HighWater and LowWater are the backpressure marks: with more than
	// HighWater bytes queued towards one side, the other side stops being
	// read until the queue is below LowWater. Zero derives them from
	// MaxBuffered (see newTuning).
	HighWater, LowWater int
	// ParkTimeout bounds how long one side of a session may stop taking the
	// other's bytes (its socket parked, or its input held): past it, the
	// session ends as a slow consumer, since the stuck side would
	// otherwise hold the session and its descriptors forever.
	ParkTimeout time.Duration
	// MaxHeaderBytes bounds an HTTP request head; beyond it the client gets 431.
	MaxHeaderBytes int
	// CloseLinger bounds how long a closing connection waits for its queued
	// bytes (close frame, HTTP error) to reach the browser.
	CloseLinger time.Duration
	// CloseDiscardMax bounds the bytes a closing session reads and throws
	// away from its browser while its close frame waits to get out: a
	// browser that keeps sending (a ping flood) but does not read is
	// closed at once past it, while one that merely stopped reading for a
	// while still gets the data queued for it, then the close frame. The
	// count starts again whenever the browser takes some of that data.
	CloseDiscardMax int
	// CloseGrace bounds how long a socket whose sending side was shut down
	// waits for the browser to close its side, so no reset eats our last bytes.
	CloseGrace time.Duration
	// TickInterval is the resolution of every deadline: the coarse clock
	// and the per-loop sweep both advance on it.
	TickInterval time.Duration
	// PollInterval paces the checks of parked and closing connections:
	// gnet has no "socket drained" callback, so those are polled while any exist.
	PollInterval time.Duration
	// ResolveTimeout bounds one route lookup (token sources, DNS) and is
	// the deadline of the resolving state.
	ResolveTimeout time.Duration
	// MaxPendingSetups bounds the route lookups and dials running at once
	// on worker goroutines; past it new upgrades get 503.
	MaxPendingSetups int
}

// DefaultConfig returns the documented defaults (see `vncedge --help`).
func DefaultConfig() Config {
	return Config{
		Listen:             "0.0.0.0:6080",
		TLS:                tlsio.DefaultConfig(),
		Admin:              "127.0.0.1:6089",
		HandshakeTimeout:   10 * time.Second,
		ConnectTimeout:     5 * time.Second,
		IdleTimeout:        0,
		PingInterval:       30 * time.Second,
		PongTimeout:        60 * time.Second,
		DrainTimeout:       30 * time.Second,
		MaxSessions:        100000,
		MaxSessionsPerVM:   64,
		MaxFrame:           16 << 20,
		MaxBuffered:        32 << 20,
		MaxSessionsPerIP:   32,
		MaxHandshakesPerIP: 64,
		UpgradeRate:        5,
		UpgradeBurst:       20,
		MaxStaticQueued:    64 << 20,
		MaxAdminConns:      64,
		MaxHandshakes:      defaultMaxHandshakes(),
		MemoryBudget:       defaultMemoryBudget(),
		RFBErrors:          true,

		ReadBufferCap:    256 << 10,
		ChunkSize:        256 << 10,
		MaxHeaderBytes:   8 << 10,
		ParkTimeout:      60 * time.Second,
		CloseLinger:      5 * time.Second,
		CloseDiscardMax:  1 << 20,
		CloseGrace:       2 * time.Second,
		TickInterval:     250 * time.Millisecond,
		PollInterval:     2 * time.Millisecond,
		ResolveTimeout:   5 * time.Second,
		MaxPendingSetups: 4096,
	}
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" && c.TLSListen == "" {
		errs = append(errs, errors.New("no listen address: set listen, tls-listen or both"))
	}
	if c.TLSListen != "" {
		if len(c.TLS.Certs) == 0 {
			errs = append(errs, errors.New("tls-listen needs a certificate: --tls-cert FILE --tls-key FILE"))
		} else if err := c.TLS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
		}
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
	if c.MaxSessions < 0 || c.MaxSessionsPerVM < 0 || c.MaxFrame < 0 || c.MaxBuffered < 0 ||
		c.MaxSessionsPerIP < 0 || c.MaxHandshakesPerIP < 0 || c.UpgradeRate < 0 || c.UpgradeBurst < 0 ||
		c.MaxHandshakes < 0 || c.FDReserve < 0 || c.MaxAdminConns < 0 || c.MemoryBudget < 0 || c.MaxStaticQueued < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	for name, n := range map[string]int{
		"ReadBufferCap": c.ReadBufferCap, "ChunkSize": c.ChunkSize,
		"MaxHeaderBytes": c.MaxHeaderBytes, "MaxPendingSetups": c.MaxPendingSetups,
		"CloseDiscardMax": c.CloseDiscardMax,
	} {
		if n <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive (start from DefaultConfig)", name))
		}
	}
	for name, d := range map[string]time.Duration{
		"CloseLinger": c.CloseLinger, "CloseGrace": c.CloseGrace, "TickInterval": c.TickInterval,
		"PollInterval": c.PollInterval, "ResolveTimeout": c.ResolveTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive (start from DefaultConfig)", name))
		}
	}
	if c.CloseDiscardMax > math.MaxInt32/2 {
		errs = append(errs, fmt.Errorf("CloseDiscardMax %d is over %d (1 GiB)", c.CloseDiscardMax, math.MaxInt32/2))
	}
	if c.RecordAll && c.RecordDir == "" {
		errs = append(errs, errors.New("record: no directory"))
	}
	if c.HighWater < 0 || c.LowWater < 0 || (c.HighWater > 0 && c.LowWater >= c.HighWater) {
		errs = append(errs, errors.New("backpressure marks: want 0 <= LowWater < HighWater (or both 0 to derive them)"))
	}
	return errors.Join(errs...)
}

// tuning holds the values derived from Config, computed once in New.
type tuning struct {
	highWater, lowWater int
}

// newTuning derives what Config leaves open. The backpressure marks default
// to 4 MiB and 512 KiB, measured to keep a bulk download at full speed, but
// stay under MaxBuffered (at half and an eighth of it) so that parking, not
// the hard cap that ends the session, is what a slow reader meets first.
func newTuning(c *Config) tuning {
	t := tuning{highWater: c.HighWater, lowWater: c.LowWater}
	if t.highWater == 0 {
		t.highWater, t.lowWater = 4<<20, 512<<10
		if m := c.MaxBuffered; m > 0 && m/2 < t.highWater {
			t.highWater, t.lowWater = m/2, m/8
		}
	}
	return t
}
