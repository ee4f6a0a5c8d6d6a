package engine

import (
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/wsframe"
)

// loopState is what one event loop owns: its sessions and HTTP
// connections, for the deadline sweep, and those waiting on a socket to
// drain (parked for backpressure, or closing), for the poller. Only the
// loop goroutine touches the lists; pending is read by the poller
// goroutine to decide whether to schedule a poll.
type loopState struct {
	srv      *Server
	el       gnet.EventLoop
	sessions roster[*session]
	conns    roster[*httpConn]
	waiting  []waiter
	pending  atomic.Int32 // len(waiting), readable off the loop
	queued   atomic.Int64 // bytes gnet held for this loop's sockets at the last sweep (budget.go)

	// Scratch for frame headers and vectored writes, shared by the loop's
	// sessions (one goroutine, used and cleared within one call).
	hdr [wsframe.MaxHeaderSize]byte
	iov [2][]byte

	sweepRunnable    gnet.Runnable
	pollRunnable     gnet.Runnable
	closeAllRunnable gnet.Runnable
}

func newLoopState(s *Server, el gnet.EventLoop) *loopState {
	ls := &loopState{srv: s, el: el}
	ls.sweepRunnable = s.guarded(ls.sweep)
	ls.pollRunnable = s.guarded(ls.poll)
	ls.closeAllRunnable = s.guarded(ls.closeAll)
	return ls
}

// tracking is a loop's bookkeeping inside each session and HTTP connection.
type tracking struct {
	slot    int  // index in its roster; -1 when in none
	waiting bool // on the loop's poll list
}

func (t *tracking) track() *tracking { return t }

// roster is a loop's list of sessions or connections, with O(1) removal.
type roster[T interface{ track() *tracking }] struct{ items []T }

func (r *roster[T]) add(x T) {
	x.track().slot = len(r.items)
	r.items = append(r.items, x)
}

func (r *roster[T]) remove(x T) {
	t := x.track()
	i := t.slot
	if i < 0 || i >= len(r.items) || r.items[i].track() != t {
		return
	}
	last := len(r.items) - 1
	r.items[i] = r.items[last]
	r.items[i].track().slot = i
	var zero T
	r.items[last] = zero
	r.items = r.items[:last]
	t.slot = -1
	// Give back the array of a roster that shrank a lot (after a burst).
	if cap(r.items) > 1024 && len(r.items) < cap(r.items)/4 {
		r.items = append([]T(nil), r.items...)
	}
}

// each calls f for every member, from the end: f may remove its member, and
// removal swaps in the last one, which was already visited.
func (r *roster[T]) each(f func(T)) {
	for i := len(r.items) - 1; i >= 0; i-- {
		if i < len(r.items) {
			f(r.items[i])
		}
	}
}

func (r *roster[T]) len() int { return len(r.items) }

// waiter is what the poll list holds: a session or an HTTP connection.
type waiter interface {
	track() *tracking
	pollWaiting() bool
	browserSocket() gnet.Conn
}

// wait puts w on the poll list until its waiting condition clears.
func (ls *loopState) wait(w waiter) {
	t := w.track()
	if t.waiting {
		return
	}
	t.waiting = true
	ls.waiting = append(ls.waiting, w)
	if ls.pending.Add(1) == 1 {
		ls.srv.wakePoller()
	}
}

// poll re-checks every waiting member; those done waiting leave the list.
func (ls *loopState) poll() {
	kept := ls.waiting[:0]
	for _, w := range ls.waiting {
		wait := false
		ls.protect(w, func() { wait = w.pollWaiting() })
		if wait {
			kept = append(kept, w)
		} else {
			w.track().waiting = false
		}
	}
	clear(ls.waiting[len(kept):])
	ls.waiting = kept
	ls.pending.Store(int32(len(kept)))
}

// sweep enforces deadlines and flushes byte counters; it runs every tick.
func (ls *loopState) sweep() {
	now := ls.srv.now()
	ls.conns.each(func(h *httpConn) { ls.protect(h, func() { h.checkDeadline(now) }) })
	ls.sessions.each(func(s *session) { ls.protect(s, func() { s.checkDeadlines(now) }) })
	ls.enforceBudget(ls.measureQueued())
}

// protect runs f, some work for one member, so that a panic in it drops
// that member's browser connection and lets the loop's other work go on.
func (ls *loopState) protect(w waiter, f func()) {
	defer func() {
		if r := recover(); r != nil {
			c := w.browserSocket()
			ls.srv.recovered(r, c)
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	f()
}

// closeAll ends every session on this loop with 1001 (drain timeout
// expired) and drops connections that are not relaying.
func (ls *loopState) closeAll() {
	ls.conns.each(func(h *httpConn) {
		if h.browser.c != nil && !h.closing { // those closing are on their way out
			_ = h.browser.c.Close()
		}
	})
	ls.sessions.each(func(s *session) {
		switch s.state {
		case stRelaying:
			s.closeWith(ws.StatusGoingAway, reasonShutdown, "server shutting down")
		case stResolving, stDialing, stRFB, stRefusing:
			if s.browser.c != nil {
				_ = s.browser.c.Close()
			}
		}
	})
}
