package engine

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// capacity enforces --max-sessions and --max-sessions-per-upstream. It is
// touched once when a session is set up and once when it ends, never per
// message, so a mutex around the per-VM map costs nothing that matters.
// The two maxima change on reload (setMax): a lowered one refuses new
// sessions until use falls below it and ends none.
type capacity struct {
	maxTotal atomic.Int64
	maxPer   atomic.Int64
	total    atomic.Int64

	mu  sync.Mutex
	per map[string]int
}

func newCapacity(maxTotal, maxPer int) *capacity {
	c := &capacity{per: make(map[string]int)}
	c.setMax(maxTotal, maxPer)
	return c
}

// setMax sets both maxima (0: no limit).
func (c *capacity) setMax(maxTotal, maxPer int) {
	c.maxTotal.Store(int64(maxTotal))
	c.maxPer.Store(int64(maxPer))
}

// acquireSession takes a global slot; false means the box is full.
func (c *capacity) acquireSession() bool {
	n := c.total.Add(1)
	if m := c.maxTotal.Load(); m > 0 && n > m {
		c.total.Add(-1)
		return false
	}
	return true
}

func (c *capacity) releaseSession() { c.total.Add(-1) }

func (c *capacity) sessions() int64 { return c.total.Load() }

// acquireVM takes a slot for one VM; false means that VM already
// has its maximum number of viewers.
func (c *capacity) acquireVM(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.per[key]
	if m := c.maxPer.Load(); m > 0 && int64(n) >= m {
		return false
	}
	c.per[key] = n + 1
	return true
}

func (c *capacity) releaseVM(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.per[key]; n > 1 {
		c.per[key] = n - 1
	} else {
		delete(c.per, key)
	}
}

func (c *capacity) vms() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.per)
}

// slots is what a connection holds of the limits, taken as it passes them
// and released once, by releaseSlots, whichever way it ends. The parts
// bound to the socket (descriptors, the handshake) move from httpConn to
// session and back with it (moveConnSlots).
type slots struct {
	fds       int64      // descriptors counted in the budget
	handshake bool       // one of the handshake slots, overall and of hsClient's
	hsClient  netip.Addr // the address the handshake counts against; invalid when none
	session   bool       // a global session slot (and one vncedge_sessions_active)
	client    netip.Addr // the address the session counts against; invalid when none
	vm        string     // the per-VM key holding a slot; "" when none
}

// moveConnSlots hands the socket-bound slots from one holder to another.
func moveConnSlots(to, from *slots) {
	to.fds, to.handshake, to.hsClient = from.fds, from.handshake, from.hsClient
	from.fds, from.handshake, from.hsClient = 0, false, netip.Addr{}
}

// endHandshake releases the handshake slot: the connection is a relaying
// session now, or was answered.
func (srv *Server) endHandshake(sl *slots) {
	if sl.handshake {
		sl.handshake = false
		srv.releaseHandshake()
		srv.clients.releaseHandshake(sl.hsClient)
		sl.hsClient = netip.Addr{}
	}
}

// releaseSlots gives back everything sl holds and clears it, so a second
// call is a no-op.
func (srv *Server) releaseSlots(sl *slots) {
	srv.endHandshake(sl)
	if sl.fds > 0 {
		srv.fds.give(sl.fds)
		sl.fds = 0
	}
	if sl.vm != "" {
		srv.limits.releaseVM(sl.vm)
		sl.vm = ""
	}
	if sl.session {
		sl.session = false
		srv.limits.releaseSession()
		srv.met.sessionsActive.Dec()
		srv.clients.releaseSession(sl.client)
		sl.client = netip.Addr{}
	}
}

// fdBudget keeps the process's descriptors below RLIMIT_NOFILE by design:
// every socket the engine opens is counted before it is opened, and what
// would not fit is refused (a new connection closed at once, a dial
// answered with 503) instead of reaching EMFILE somewhere we cannot handle
// it. The reserve is room for what is not counted: the admin listener and
// its clients, log and token files, token-store connections, gnet's pollers.
type fdBudget struct {
	limit int64 // descriptors the engine may use for browser and VM sockets
	// spare is how far the copies gnet makes while enrolling a socket
	// may go past limit, into the reserve: each lasts one enroll, so
	// a handful in flight at once is all they ever need.
	spare int64
	used  atomic.Int64
}

// newFDBudget derives the budget from RLIMIT_NOFILE (Go raises the soft
// limit to the hard one at start-up).
func newFDBudget(reserve int) fdBudget {
	limit, res := descriptorBudget(reserve)
	return fdBudget{limit: limit, spare: min(max(res/4, 1), transientSpare)}
}

// defaultMaxHandshakes lets a quarter of the descriptor budget wait in
// handshakes, so a flood of idle connections cannot take every descriptor
// from the sessions.
func defaultMaxHandshakes() int {
	limit, _ := descriptorBudget(0)
	return int(max(limit/4, 1))
}

// transientSpare caps fdBudget.spare: the enroll workers and the dials
// in flight are a few dozen at most.
const transientSpare = 64

// descriptorBudget is how many descriptors browser and VM sockets may use,
// and the reserve left beside them: the soft RLIMIT_NOFILE less reserve
// (0: 1/128 of it, at least 128).
func descriptorBudget(reserve int) (limit, res int64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1 << 20, 128
	}
	n := int64(rl.Cur)
	if reserve <= 0 {
		reserve = int(max(128, n/128))
	}
	res = min(int64(reserve), n)
	return n - res, res
}

// take counts n more descriptors, or refuses when they would not fit.
func (b *fdBudget) take(n int64) bool { return b.takeWithin(n, b.limit) }

// takeWithin counts n more descriptors if the total stays within ceiling.
func (b *fdBudget) takeWithin(n, ceiling int64) bool {
	if b.used.Add(n) > ceiling {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *fdBudget) give(n int64) { b.used.Add(-n) }

// takeTransient counts the copy of a socket gnet makes while enrolling it,
// which lasts only the enroll and may use the spare: with that full too it
// waits a little for other enrolls to give theirs back before refusing.
// Off the loops only.
func (b *fdBudget) takeTransient() bool {
	for range transientTries {
		if b.takeWithin(1, b.limit+b.spare) {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// transientTries bounds takeTransient's wait (in milliseconds).
const transientTries = 50

// clientKey is what the per-address limits count a client under: its
// IPv4 address, or for IPv6 its /64. One subscriber, one host even, gets a
// whole /64 (RFC 6177 hands out /48s to /56s), so keyed per address an
// IPv6 client could open as many slots as it likes by changing its
// interface identifier.
func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// clientLimits are the per-address limits: sessions, connections still in
// their handshake, and the rate of upgrades, keyed by the real client
// address (after the PROXY protocol or a trusted X-Forwarded-For; an IPv6
// client by its /64, see clientKey). A
// connection from a trusted proxy that names no client is not limited per
// address: the proxy's own address would lump every user together.
type clientLimits struct {
	maxSessions   int
	maxHandshakes int
	rate          rate.Limit
	burst         int

	mu sync.Mutex
	m  map[netip.Addr]*clientEntry
}

type clientEntry struct {
	sessions, handshakes int
	upgrades             *rate.Limiter // nil when upgrades are not rate limited
}

func newClientLimits(cfg *Config) *clientLimits {
	return &clientLimits{maxSessions: cfg.MaxSessionsPerIP, maxHandshakes: cfg.MaxHandshakesPerIP,
		rate: rate.Limit(cfg.UpgradeRate), burst: cfg.UpgradeBurst, m: make(map[netip.Addr]*clientEntry)}
}

// setLimits changes the limits on reload. Counts in use stay: a lowered
// maximum refuses new sessions and handshakes until use falls below it.
// The upgrade buckets of addresses seen already take the new rate and
// size at once (a bucket keeps the tokens it has, up to the new size).
func (l *clientLimits) setLimits(maxSessions, maxHandshakes int, perSecond float64, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxSessions, l.maxHandshakes = maxSessions, maxHandshakes
	r := rate.Limit(perSecond)
	if r == l.rate && burst == l.burst {
		return
	}
	l.rate, l.burst = r, burst
	for _, e := range l.m {
		switch {
		case r <= 0:
			e.upgrades = nil
		case e.upgrades == nil:
			e.upgrades = rate.NewLimiter(r, max(burst, 1))
		default:
			e.upgrades.SetLimit(r)
			e.upgrades.SetBurst(max(burst, 1))
		}
	}
}

func (l *clientLimits) entry(a netip.Addr) *clientEntry {
	e := l.m[a]
	if e == nil {
		e = &clientEntry{}
		if l.rate > 0 {
			e.upgrades = rate.NewLimiter(l.rate, max(l.burst, 1))
		}
		l.m[a] = e
	}
	return e
}

// forget drops an entry nothing counts on any more; a limiter that is not
// full yet stays, so that closing every connection does not refill it.
func (l *clientLimits) forget(a netip.Addr, e *clientEntry) {
	if e.sessions == 0 && e.handshakes == 0 &&
		(e.upgrades == nil || e.upgrades.Tokens() >= float64(max(l.burst, 1))) {
		delete(l.m, a)
	}
}

// acquireHandshake counts a connection from a still in its handshake.
func (l *clientLimits) acquireHandshake(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	a = clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(a)
	if l.maxHandshakes > 0 && e.handshakes >= l.maxHandshakes {
		l.forget(a, e)
		return false
	}
	e.handshakes++
	return true
}

func (l *clientLimits) releaseHandshake(a netip.Addr) {
	if !a.IsValid() {
		return
	}
	a = clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[a]; e != nil {
		e.handshakes--
		l.forget(a, e)
	}
}

// admitUpgrade spends one upgrade from a's bucket and takes a session
// slot of a's; why says which limit refused it.
func (l *clientLimits) admitUpgrade(a netip.Addr) (ok bool, why rejectReason) {
	if !a.IsValid() {
		return true, 0
	}
	a = clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(a)
	switch {
	case e.upgrades != nil && !e.upgrades.Allow():
		l.forget(a, e)
		return false, rejectRateLimited
	case l.maxSessions > 0 && e.sessions >= l.maxSessions:
		l.forget(a, e)
		return false, rejectClientCap
	}
	e.sessions++
	return true, 0
}

func (l *clientLimits) releaseSession(a netip.Addr) {
	if !a.IsValid() {
		return
	}
	a = clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[a]; e != nil {
		e.sessions--
		l.forget(a, e)
	}
}

// sweep forgets idle entries whose buckets have refilled (ticker goroutine).
func (l *clientLimits) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, e := range l.m {
		l.forget(a, e)
	}
}

func (l *clientLimits) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
