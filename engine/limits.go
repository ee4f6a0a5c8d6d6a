package engine

import (
	"sync"
	"sync/atomic"
)

// capacity enforces --max-sessions and --max-sessions-per-upstream. It is
// touched once when a session is set up and once when it ends, never per
// message, so a mutex around the per-VM map costs nothing that matters.
type capacity struct {
	maxTotal int64
	maxPer   int
	total    atomic.Int64

	mu  sync.Mutex
	per map[string]int
}

func newCapacity(maxTotal, maxPer int) *capacity {
	return &capacity{maxTotal: int64(maxTotal), maxPer: maxPer, per: make(map[string]int)}
}

// acquireSession takes a global slot; false means the box is full.
func (c *capacity) acquireSession() bool {
	n := c.total.Add(1)
	if c.maxTotal > 0 && n > c.maxTotal {
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
	if c.maxPer > 0 && n >= c.maxPer {
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

// slots is what a session holds of the limits: taken in setup, released
// once, by releaseSlots, whichever way the session ends.
type slots struct {
	session bool   // a global session slot (and one vncedge_sessions_active)
	vm      string // the per-VM key holding a slot; "" when none
}

// releaseSlots gives back everything sl holds and clears it, so a second
// call is a no-op.
func (srv *Server) releaseSlots(sl *slots) {
	if sl.vm != "" {
		srv.limits.releaseVM(sl.vm)
		sl.vm = ""
	}
	if sl.session {
		sl.session = false
		srv.limits.releaseSession()
		srv.met.sessionsActive.Dec()
	}
}
