package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"vncedge/engine/recorder"
	"vncedge/engine/tlsio"
	"vncedge/engine/webroot"
	"vncedge/routing"
)

// Server is one vncedge proxy: a gnet engine for browsers and VMs plus an
// admin HTTP listener. Create it with New, run it with Serve, stop it with
// Shutdown.
type Server struct {
	cfg     Config
	log     *slog.Logger
	logq    *asyncHandler
	router  *routing.Router
	live    atomic.Pointer[liveState] // the settings a reload changes (live.go)
	proxies proxySet                  // the trusted proxies of live
	site    atomic.Pointer[webroot.Site]
	met     *serverMetrics
	limits  *capacity
	addr    atomic.Pointer[string] // the bound listen address, once Serve has bound it
	tlsAddr atomic.Pointer[string] // the bound TLS listen address

	// Listening (listen.go, takeover.go): bound once, by Listen.
	listenOnce sync.Once
	listenErr  error
	lns        []*listener   // the WebSocket ports
	adminSock  *listenSocket // nil without an admin listener
	ready      chan struct{} // closed once Serve accepts connections
	handedOver atomic.Bool   // the listeners went to a successor
	diagWarned atomic.Bool   // the socket table could not be read, and the log said so

	// TLS on the edge (engine/tlsio): certificates, handshake workers.
	tlsStore      *tlsio.Store
	tlsPool       *tlsio.Pool
	listenersDone sync.WaitGroup // the acceptors; the enroll workers end after them

	// Admission (limits.go, listen.go): descriptors, connections still in
	// their handshake (overall, and per client in clients), per-client
	// sessions and upgrade rate.
	fds           fdBudget
	handshakes    atomic.Int64
	maxHandshakes atomic.Int64
	clients       *clientLimits
	staticQueued  atomic.Int64 // static response bytes gnet holds for slow readers

	drainedVMs  sync.Map               // VM key -> struct{}: refused until undrained
	adminToken  atomic.Pointer[string] // --admin-token-file's bearer token; nil when off
	vncPassword atomic.Pointer[[]byte] // --vnc-password-file; nil when off. Never logged.
	recorder    *recorder.Recorder     // nil without a record directory
	enrolls     chan pendingEnroll
	acceptLog   sampledLog // accept and enroll failures
	shedLog     sampledLog // connections refused at accept
	rejectLog   sampledLog // requests refused before an upgrade

	tune tuning // values derived from cfg, once
	// strict makes an illegal session transition panic: set under go test,
	// where a wrong step must fail loudly, never in production.
	strict bool

	epoch time.Time
	clock atomic.Int64 // nanoseconds since epoch, advanced by the ticker

	// peakSessions and trimming drive trimMemory (ticker goroutine only,
	// plus the trim goroutine clearing trimming).
	peakSessions int64
	settleLast   int64 // sessions at the last tick
	settleTicks  int   // ticks they have stayed at settleLast
	settleBase   int64 // sessions at the last trim
	trimming     atomic.Bool
	memSamples   [2]metrics.Sample // heapHeld's, reused so the tick allocates nothing
	trimHeap     atomic.Uint64     // heapHeld after the last trim (or at start)

	nextID   atomic.Uint64
	setups   chan struct{} // semaphore for worker goroutines
	loops    sync.Map      // gnet.EventLoop -> *loopState
	pollWake chan struct{}

	booted   atomic.Bool
	draining atomic.Bool // stopping: /readyz fails
	refusing atomic.Bool // stopping with no successor: new upgrades get 503
	engMu    sync.Mutex
	eng      gnet.Engine
	client   *gnet.Client
	admin    *http.Server

	stop         chan struct{}
	stopOnce     sync.Once
	shutdownOnce sync.Once
	shutdownErr  error
	served       chan struct{}
}

// New validates cfg and prepares a Server; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	live, err := compileLive(cfg.Live(cfg.Router.AllowList().Specs()), cfg.ProxyProtocol)
	if err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		router:    cfg.Router,
		met:       newServerMetrics(),
		limits:    newCapacity(cfg.MaxSessions, cfg.MaxSessionsPerVM),
		fds:       newFDBudget(cfg.FDReserve),
		clients:   newClientLimits(&cfg),
		enrolls:   make(chan pendingEnroll, 4096),
		acceptLog: newSampledLog(),
		shedLog:   newSampledLog(),
		rejectLog: newSampledLog(),
		epoch:     time.Now(),
		tune:      newTuning(&cfg),
		strict:    testing.Testing(),
		setups:    make(chan struct{}, cfg.MaxPendingSetups),
		pollWake:  make(chan struct{}, 1),
		stop:      make(chan struct{}),
		served:    make(chan struct{}),
		ready:     make(chan struct{}),
	}
	s.live.Store(live)
	s.proxies = proxySet{s}
	s.maxHandshakes.Store(int64(cfg.MaxHandshakes))
	base := cfg.Logger
	if base == nil {
		base = slog.Default()
	}
	s.logq = newAsyncHandler(base.Handler(), 2048, s.met.logLinesDropped.Inc)
	s.log = slog.New(s.logq)
	if cfg.WebDir != "" {
		site, err := webroot.Load(cfg.WebDir)
		if err != nil {
			return nil, fmt.Errorf("engine config: web root: %w", err)
		}
		s.site.Store(site)
	}
	var m [2]metrics.Sample
	s.trimHeap.Store(s.heapHeld(m[:]))
	s.met.registerServer(s)
	s.met.set.NewGauge("vncedge_queued_bytes", func() float64 { return float64(s.queuedTotal()) })
	// The TLS store and pool serve both the TLS listener and TLS to VMs
	// (grants with the tls option), so they exist without --tls-listen too.
	tcfg := tlsDefaults(cfg.TLS)
	if tcfg.HandshakeTimeout == 0 {
		tcfg.HandshakeTimeout = cfg.HandshakeTimeout
	}
	if err := tcfg.Validate(); err != nil {
		return nil, fmt.Errorf("engine config: tls: %w", err)
	}
	store, err := tlsio.NewStore(tcfg)
	if err != nil {
		return nil, fmt.Errorf("engine config: tls: %w", err)
	}
	s.tlsStore, s.tlsPool = store, tlsio.NewPool(tcfg)
	s.registerTLSMetrics()
	recStats := recorder.NewStats(s.met.set) // the series exist without recording too
	if cfg.RecordDir != "" {
		rec, err := recorder.New(recorder.Config{Dir: cfg.RecordDir, QueueBytes: cfg.RecordQueueBytes,
			Logger: s.log, Stats: recStats})
		if err != nil {
			return nil, fmt.Errorf("engine config: record: %w", err)
		}
		s.recorder = rec
	}
	if cfg.VNCPasswordFile != "" {
		pw, err := loadVNCPassword(cfg.VNCPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("engine config: vnc password file: %w", err)
		}
		s.vncPassword.Store(&pw)
	}
	if cfg.AdminTokenFile != "" {
		tok, err := loadAdminToken(cfg.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("engine config: %w", err)
		}
		s.adminToken.Store(&tok)
	}
	s.router.SetObserver(s.observeLookup)
	s.router.OnRevoke(s.revoked)
	s.met.set.NewGauge("vncedge_handshakes_active", func() float64 { return float64(s.handshakes.Load()) })
	s.met.set.NewGauge("vncedge_descriptors_used", func() float64 { return float64(s.fds.used.Load()) })
	s.met.set.NewGauge("vncedge_descriptors_limit", func() float64 { return float64(s.fds.limit) })
	s.met.set.NewGauge("vncedge_upstreams_active", func() float64 { return float64(s.limits.vms()) })
	s.met.set.NewGauge("vncedge_draining", func() float64 {
		if s.draining.Load() {
			return 1
		}
		return 0
	})
	return s, nil
}

// Addr is the address WebSocket clients connect to: the bound one once
// Serve is running (a port 0 is then a real port), else the configured one.
func (s *Server) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return s.cfg.Listen
}

// TLSAddr is Addr for the TLS listener ("" when it is off).
func (s *Server) TLSAddr() string {
	if a := s.tlsAddr.Load(); a != nil {
		return *a
	}
	return s.cfg.TLSListen
}

// AdminAddr is the admin listener's address, or "" when it is off.
func (s *Server) AdminAddr() string {
	if s.adminSock == nil {
		return ""
	}
	return s.adminSock.Addr().String()
}

// Ready is closed once Serve accepts connections on every listener.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// now is the coarse clock: nanoseconds since the server started.
func (s *Server) now() int64 { return s.clock.Load() }

// Listen binds every listener (Listen, TLSListen, Admin), each with
// SO_REUSEPORT. Without Config.Takeover an address another process holds
// is refused with an *AddrInUseError; with it, the listeners join a
// running vncedge's (takeover.go). Serve calls it when the caller has not;
// calling it first lets a program tell a listen error from a later one.
func (s *Server) Listen() error {
	s.listenOnce.Do(func() { s.listenErr = s.bindAll() })
	return s.listenErr
}

func (s *Server) bindAll() error {
	for _, spec := range []struct {
		addr string
		tls  bool
		dst  *atomic.Pointer[string]
	}{{s.cfg.Listen, false, &s.addr}, {s.cfg.TLSListen, true, &s.tlsAddr}} {
		if spec.addr == "" {
			continue
		}
		sock, err := newListenSocket(spec.addr, s.cfg.Takeover)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen: %w", err)
		}
		a := sock.Addr().String()
		spec.dst.Store(&a)
		s.lns = append(s.lns, &listener{srv: s, sock: sock, tls: spec.tls})
	}
	if s.cfg.Admin != "" {
		sock, err := newListenSocket(s.cfg.Admin, s.cfg.Takeover)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("admin listener: %w", err)
		}
		s.adminSock = sock
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.lns {
		_ = l.sock.Close()
	}
	if s.adminSock != nil {
		_ = s.adminSock.Close()
	}
}

// Serve runs the proxy until Shutdown completes.
func (s *Server) Serve() error {
	defer close(s.served)
	fail := func(err error) error {
		s.closeListeners()
		s.stopOnce.Do(func() { close(s.stop) })
		return err
	}
	if err := s.Listen(); err != nil {
		s.stopOnce.Do(func() { close(s.stop) })
		return err
	}
	if s.adminSock != nil {
		s.startAdmin()
	}
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithTicker(true),
		// TCP_NODELAY is on already: Go sets it on every socket it accepts
		// or dials, and gnet's copy is the same socket.
		gnet.WithTCPNoDelay(gnet.TCPDelay),
		gnet.WithReadBufferCap(s.cfg.ReadBufferCap),
		gnet.WithLogger(gnetLogger{s.log}),
	}
	if s.cfg.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(s.cfg.Loops))
	}
	// gnet's client engine: event loops and nothing else. The listener is
	// ours (listen.go), so no accept error can stop the loops.
	cli, err := gnet.NewClient(&handler{s}, opts...)
	if err == nil {
		err = cli.Start()
	}
	if err != nil {
		return fail(fmt.Errorf("gnet: %w", err))
	}
	s.engMu.Lock()
	s.client = cli
	s.engMu.Unlock()
	go s.pollLoop()
	for range enrollWorkers {
		go s.enrollAccepted(cli)
	}
	s.listenersDone.Add(len(s.lns))
	for _, l := range s.lns {
		go l.run()
	}
	go func() { s.listenersDone.Wait(); close(s.enrolls) }()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if len(s.cfg.TLS.Certs) > 0 || s.cfg.TLS.UpstreamCA != "" {
		go s.tlsStore.Watch(watchCtx, s.log)
	}
	s.log.Info("vncedge listening", "listen", s.Addr(), "tls_listen", s.TLSAddr(), "admin", s.AdminAddr(),
		"descriptor_budget", s.fds.limit, "max_handshakes", s.maxHandshakes.Load(), "takeover", s.cfg.Takeover)
	if s.adminSock != nil && s.adminToken.Load() == nil && !isLoopback(s.adminSock.Addr()) {
		s.log.Warn("the admin listener is not on loopback and has no --admin-token-file: anyone who reaches it can list, end and revoke sessions",
			"admin", s.AdminAddr())
	}
	close(s.ready)
	if s.cfg.Takeover {
		go s.watchTakeover()
	}
	if s.fds.limit < 64 {
		s.log.Warn("descriptor budget is tiny: raise the open files limit (ulimit -n, LimitNOFILE=) or lower --fd-reserve",
			"descriptor_budget", s.fds.limit)
	}
	<-s.stop
	s.closeListeners()
	err = cli.Stop()
	if s.recorder != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.recorder.Shutdown(ctx) // finishes the files the sessions' ends left queued
		cancel()
	}
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.admin.Shutdown(ctx)
		cancel()
	}
	s.log.Info("vncedge stopped")
	s.logq.close()
	if err != nil {
		return fmt.Errorf("gnet: %w", err)
	}
	return nil
}

// Reload re-reads routing sources, the web root, the TLS certificates and
// the secret files (SIGHUP). A part that fails keeps serving what it had.
func (s *Server) Reload() error { return s.ReloadWith(nil) }

// ReloadWith is Reload that first applies the live settings read returns
// (cmd/vncedge reads the config file again): all of them, or none when
// read fails or any value is bad; the error then says why, and the
// settings in force stay. A nil read reloads the files only. Every failure
// counts in vncedge_reload_errors_total.
func (s *Server) ReloadWith(read func() (Live, error)) error {
	s.met.reloads.Inc()
	var errs []error
	if read != nil {
		if next, err := read(); err != nil {
			errs = append(errs, fmt.Errorf("config not re-read (the settings in force stay): %w", err))
		} else if err := s.applyLive(next); err != nil {
			errs = append(errs, fmt.Errorf("settings not applied (those in force stay): %w", err))
		}
	}
	if err := s.router.Reload(); err != nil {
		errs = append(errs, fmt.Errorf("routing: %w", err))
	}
	if s.cfg.WebDir != "" {
		site, err := webroot.Load(s.cfg.WebDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("web root: %w", err))
		} else {
			s.site.Store(site)
		}
	}
	if s.tlsStore != nil {
		if err := s.tlsStore.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("tls certificates (the previous ones stay): %w", err))
		}
	}
	if s.cfg.VNCPasswordFile != "" {
		if pw, err := loadVNCPassword(s.cfg.VNCPasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("vnc password file: %w", err)) // the previous one stays
		} else {
			s.vncPassword.Store(&pw)
		}
	}
	if s.cfg.AdminTokenFile != "" {
		if tok, err := loadAdminToken(s.cfg.AdminTokenFile); err != nil {
			errs = append(errs, err) // the previous token stays
		} else {
			s.adminToken.Store(&tok)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		s.met.reloadErrors.Inc()
	}
	return err
}

// Shutdown drains the proxy: /readyz fails at once, so load balancers move
// on; when a successor (started with Takeover) listens on the same
// addresses, the listeners go to it at once (takeover.go), else they stay
// and new upgrades get 503 until a successor appears. Sessions get up to
// DrainTimeout to end by themselves; the rest are closed with 1001, and
// the server stops. ctx bounds the whole operation.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.draining.Store(true)
	serving := s.booted.Load()
	if serving && s.hasSuccessor() {
		s.handOver()
	} else {
		s.refusing.Store(true)
	}
	s.log.Info("draining", "sessions", s.limits.sessions(), "drain_timeout", s.cfg.DrainTimeout.String(),
		"handed_over", s.handedOver.Load())
	if s.cfg.DrainTimeout > 0 {
		lastLook := time.Now()
		s.waitFor(ctx, s.cfg.DrainTimeout, func() bool {
			if serving && !s.handedOver.Load() && time.Since(lastLook) >= successorPoll {
				lastLook = time.Now()
				if s.hasSuccessor() {
					s.handOver()
				}
			}
			return s.limits.sessions() == 0
		})
	}
	s.forEachLoop(func(ls *loopState) { _ = ls.el.Execute(context.Background(), ls.closeAllRunnable) })
	s.waitFor(ctx, s.cfg.CloseLinger, func() bool { return s.met.connectionsOpen.Get() == 0 })

	s.stopOnce.Do(func() { close(s.stop) })
	if !s.booted.Load() {
		return nil
	}
	select {
	case <-s.served:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// waitFor polls cond until it holds, d passes, or ctx ends.
func (s *Server) waitFor(ctx context.Context, d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) forEachLoop(f func(*loopState)) {
	s.loops.Range(func(_, v any) bool {
		f(v.(*loopState))
		return true
	})
}

// loopFor returns the state of the event loop el, creating it on first use.
// Only the loop itself creates its entry, from OnOpen, so LoadOrStore never
// races with a second creator for the same loop.
func (s *Server) loopFor(el gnet.EventLoop) *loopState {
	if v, ok := s.loops.Load(el); ok {
		return v.(*loopState)
	}
	ls := newLoopState(s, el)
	v, _ := s.loops.LoadOrStore(el, ls)
	return v.(*loopState)
}

// pollLoop runs the parked/closing checks of every loop that has any, every
// PollInterval, and sleeps when no loop needs it.
func (s *Server) pollLoop() {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		busy := false
		s.forEachLoop(func(ls *loopState) {
			if ls.pending.Load() > 0 {
				busy = true
				_ = ls.el.Execute(context.Background(), ls.pollRunnable)
			}
		})
		if !busy {
			select {
			case <-s.pollWake:
			case <-s.stop:
				return
			}
			continue
		}
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
	}
}

func (s *Server) wakePoller() {
	select {
	case s.pollWake <- struct{}{}:
	default:
	}
}

// nextSessionID returns a short, unique, log-friendly id.
func (s *Server) nextSessionID() string {
	return strconv.FormatUint(s.nextID.Add(1), 36)
}

// trimAfter is the drop in live sessions, from their recent peak, that
// makes the server hand freed memory back to the kernel.
const trimAfter = 256

// settleTicks is how long (in ticks, 2 s) the number of sessions must stay
// put after growing by trimAfter before the server trims once.
const settleTicks = 8

// trimSpare is how much more heap than after its last trim a quiet proxy
// may hold before it trims again: a few heavy sessions (fast transfers grow
// gnet's buffers to megabytes, kept in its pools after they end) leave that
// much behind without moving the session count by trimAfter.
const trimSpare = 8 << 20

// trimMemory returns freed heap to the kernel after many sessions ended,
// once after a burst of new sessions has settled, and when sessions ended
// and the proxy, quiet again, holds trimSpare more heap than after its last
// trim. Go does so by itself
// only after a GC cycle and the background scavenger, and an idle proxy
// allocates nothing that would trigger one, so without this a box that
// served a burst of sessions would keep their memory; and a burst of
// setups leaves garbage (the accepted sockets' Go side, HTTP state, upgrade
// buffers) that would stay resident for minutes above the sessions' own
// few hundred bytes each. Runs on the ticker goroutine.
func (s *Server) trimMemory() {
	// Connections still in their handshake count with the sessions: a
	// slowloris never becomes a session, yet its connections grow the heap
	// (about 20 MiB kept after one, when only sessions counted).
	n := s.limits.sessions() + s.handshakes.Load()
	if n == s.settleLast {
		s.settleTicks++
	} else {
		s.settleLast, s.settleTicks = n, 0
	}
	if n > s.peakSessions {
		s.peakSessions = n
	}
	dropped := s.peakSessions-n >= trimAfter && n <= s.peakSessions/2
	settled := s.settleTicks == settleTicks && n-s.settleBase >= trimAfter
	// Only once sessions ended: a heap grown under sessions that still run
	// holds their buffers, and trimming it would only make them fault pages
	// back in.
	var held uint64
	if s.settleTicks > 0 && s.settleTicks%settleTicks == 0 && n < s.peakSessions {
		held = s.heapHeld(s.memSamples[:])
	}
	spare := held > 0 && held >= s.trimHeap.Load()+trimSpare
	if !(dropped || settled || spare) || !s.trimming.CompareAndSwap(false, true) {
		return
	}
	s.peakSessions, s.settleBase = n, n
	go func() {
		defer s.trimming.Store(false)
		var m [2]metrics.Sample
		before := s.heapHeld(m[:])
		debug.FreeOSMemory()
		// sync.Pools (gnet's buffers among them) keep what they held for one
		// more cycle: a second collection frees that too.
		debug.FreeOSMemory()
		after := s.heapHeld(m[:])
		s.trimHeap.Store(after) // what is still held is in use: the next baseline
		s.log.Debug("memory returned to the kernel", "sessions", n, "heap_before", before, "heap_after", after,
			"after_drop", dropped, "after_burst", settled, "heap_grew", spare)
	}()
}

// heapHeld is the heap the process holds and has not returned: objects
// (live or not yet collected) and free pages not yet released. It reads
// runtime/metrics into m (two samples), which unlike ReadMemStats does not
// stop the world.
func (s *Server) heapHeld(m []metrics.Sample) uint64 {
	m[0].Name, m[1].Name = "/memory/classes/heap/objects:bytes", "/memory/classes/heap/free:bytes"
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 || m[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return m[0].Value.Uint64() + m[1].Value.Uint64()
}

// tlsDefaults fills the TLS settings a Config built by hand (not from
// DefaultConfig) left at zero.
func tlsDefaults(c tlsio.Config) tlsio.Config {
	d := tlsio.DefaultConfig()
	if c.MinVersion == 0 {
		c.MinVersion = d.MinVersion
	}
	if c.HandshakeWorkers == 0 {
		c.HandshakeWorkers = d.HandshakeWorkers
	}
	if c.HandshakeQueue == 0 {
		c.HandshakeQueue = d.HandshakeQueue
	}
	if c.MaxClientHello == 0 {
		c.MaxClientHello = d.MaxClientHello
	}
	if c.MaxHandshakeInput == 0 {
		c.MaxHandshakeInput = d.MaxHandshakeInput
	}
	if c.WatchInterval == 0 {
		c.WatchInterval = d.WatchInterval
	}
	return c
}

// isLoopback reports whether a listener's address is a loopback one.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
