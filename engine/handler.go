package engine

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// handler adapts gnet's callbacks to sessions. Browser and VM sockets share
// it: an accepted socket arrives with no context, an enrolled one carries
// the *connRef it was enrolled with.
type handler struct{ s *Server }

// connRef is a socket's context: which session it belongs to and which side.
type connRef struct {
	s        *session
	upstream bool
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.s.engMu.Lock()
	h.s.eng = eng
	h.s.engMu.Unlock()
	h.s.booted.Store(true)
	return gnet.None
}

func (h *handler) OnShutdown(gnet.Engine) {}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if ref, ok := c.Context().(*connRef); ok {
		return nil, ref.s.onEnrolled(c, ref.upstream)
	}
	ls := h.s.loopFor(c.EventLoop())
	newSession(ls, c)
	return nil, gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) (act gnet.Action) {
	ref, ok := c.Context().(*connRef)
	if !ok {
		return gnet.Close
	}
	// A bug met by one session's bytes must not take down the thousands
	// of others on this process: drop that connection, say so loudly.
	defer func() {
		if r := recover(); r != nil {
			h.s.met.panics.Inc()
			h.s.log.Error("panic in session, connection dropped", "session", ref.s.id,
				"client", ref.s.remote, "upstream_side", ref.upstream, "panic", fmt.Sprint(r),
				"stack", string(debug.Stack()))
			act = gnet.Close
		}
	}()
	if ref.upstream {
		return ref.s.onUpstreamTraffic(c)
	}
	return ref.s.onClientTraffic(c)
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	ref, ok := c.Context().(*connRef)
	if !ok {
		return gnet.None
	}
	if ref.upstream {
		ref.s.onUpstreamClose(c, err)
	} else {
		ref.s.onClientClose(c, err)
	}
	return gnet.None
}

// OnTick runs on its own goroutine: it advances the coarse clock and asks
// every loop to sweep its sessions' deadlines on the loop itself.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.s
	s.clock.Store(int64(time.Since(s.epoch)))
	s.trimMemory()
	s.forEachLoop(func(ls *loopState) {
		_ = ls.el.Execute(context.Background(), ls.sweepRunnable)
	})
	return tickInterval, gnet.None
}
