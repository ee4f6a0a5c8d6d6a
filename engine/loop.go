package engine

import (
	"context"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// loopState is what one event loop owns: its sessions, for the deadline
// sweep, and the sessions waiting on a socket to drain (parked for
// backpressure or closing), for the poller. Only the loop goroutine touches
// the slices; pending is read by the poller goroutine to decide whether to
// schedule a poll.
type loopState struct {
	srv      *Server
	el       gnet.EventLoop
	sessions []*session
	waiting  []*session
	pending  atomic.Int32 // len(waiting), readable off the loop

	sweepRunnable gnet.Runnable
	pollRunnable  gnet.Runnable
}

func newLoopState(s *Server, el gnet.EventLoop) *loopState {
	ls := &loopState{srv: s, el: el}
	ls.sweepRunnable = gnet.RunnableFunc(ls.sweep)
	ls.pollRunnable = gnet.RunnableFunc(ls.poll)
	return ls
}

func (ls *loopState) add(s *session) {
	s.slot = len(ls.sessions)
	ls.sessions = append(ls.sessions, s)
}

func (ls *loopState) remove(s *session) {
	i := s.slot
	if i < 0 || i >= len(ls.sessions) || ls.sessions[i] != s {
		return
	}
	last := len(ls.sessions) - 1
	ls.sessions[i] = ls.sessions[last]
	ls.sessions[i].slot = i
	ls.sessions[last] = nil
	ls.sessions = ls.sessions[:last]
	s.slot = -1
	if cap(ls.sessions) > 1024 && len(ls.sessions) < cap(ls.sessions)/4 {
		ls.sessions = append([]*session(nil), ls.sessions...)
	}
}

// wait puts s on the poll list until its waiting condition clears.
func (ls *loopState) wait(s *session) {
	if s.waiting {
		return
	}
	s.waiting = true
	ls.waiting = append(ls.waiting, s)
	if ls.pending.Add(1) == 1 {
		ls.srv.wakePoller()
	}
}

// poll re-checks every waiting session; those done waiting leave the list.
func (ls *loopState) poll(context.Context) error {
	kept := ls.waiting[:0]
	for _, s := range ls.waiting {
		if s.pollWaiting() {
			kept = append(kept, s)
		} else {
			s.waiting = false
		}
	}
	clear(ls.waiting[len(kept):])
	ls.waiting = kept
	ls.pending.Store(int32(len(kept)))
	return nil
}

// sweep enforces deadlines and flushes byte counters; it runs every tick.
func (ls *loopState) sweep(context.Context) error {
	now := ls.srv.now()
	// Iterate by index from the end: a check may close a session, and a
	// closed session is swap-removed, which only moves already-visited ones.
	for i := len(ls.sessions) - 1; i >= 0; i-- {
		if i < len(ls.sessions) {
			ls.sessions[i].checkDeadlines(now)
		}
	}
	return nil
}

// closeAll ends every session on this loop with 1001 (drain timeout
// expired) and drops connections still in their handshake.
func (ls *loopState) closeAll(context.Context) error {
	for i := len(ls.sessions) - 1; i >= 0; i-- {
		if i >= len(ls.sessions) {
			continue
		}
		s := ls.sessions[i]
		switch s.state {
		case stRelaying:
			s.closeWith(ws.StatusGoingAway, reasonShutdown, "server shutting down")
		case stHandshake, stResolving, stDialing:
			if s.client != nil {
				_ = s.client.Close()
			}
		}
	}
	return nil
}
