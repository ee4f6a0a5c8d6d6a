package engine

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// handler adapts gnet's callbacks to HTTP connections and sessions.
// Browser and VM sockets share it; a socket's context says what it is: an
// accepted socket starts with none (OnOpen gives it an *httpConn), a
// session's sockets carry the *connRef they were enrolled or handed over
// with.
type handler struct{ s *Server }

// connRef is a session socket's context: which session, and which side.
type connRef struct {
	s  *session
	vm bool
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.s.engMu.Lock()
	h.s.eng = eng
	h.s.engMu.Unlock()
	h.s.booted.Store(true)
	return gnet.None
}

func (h *handler) OnShutdown(gnet.Engine) {}

func (h *handler) OnOpen(c gnet.Conn) (out []byte, act gnet.Action) {
	defer func() {
		if r := recover(); r != nil {
			h.s.recovered(r, c)
			act = gnet.Close
		}
	}()
	switch x := c.Context().(type) {
	case *connRef:
		return nil, x.s.onEnrolled(c, x.vm)
	case *acceptMark:
		newHTTPConn(h.s.loopFor(c.EventLoop()), c, x)
		return nil, gnet.None
	}
	return nil, gnet.Close
}

func (h *handler) OnTraffic(c gnet.Conn) (act gnet.Action) {
	// A bug met by one connection's bytes must not take down the thousands
	// of others on this process: drop that connection, say so loudly.
	defer func() {
		if r := recover(); r != nil {
			h.s.recovered(r, c)
			act = gnet.Close
		}
	}()
	switch x := c.Context().(type) {
	case *httpConn:
		return x.onTraffic(c)
	case *connRef:
		if x.vm {
			return x.s.onVMTraffic(c)
		}
		return x.s.onBrowserTraffic(c)
	}
	return gnet.Close
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	defer func() {
		if r := recover(); r != nil {
			h.s.recovered(r, c)
		}
	}()
	switch x := c.Context().(type) {
	case *httpConn:
		x.onClose(c)
	case *connRef:
		if x.vm {
			x.s.onVMClose(c, err)
		} else {
			x.s.onBrowserClose(c)
		}
	}
	return gnet.None
}

// OnTick runs on its own goroutine: it advances the coarse clock and asks
// every loop to sweep its sessions' deadlines on the loop itself.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.s
	defer func() {
		if r := recover(); r != nil {
			s.recovered(r, nil)
		}
	}()
	s.clock.Store(int64(time.Since(s.epoch)))
	s.trimMemory()
	s.clients.sweep()
	s.copyTLSStats()
	s.forEachLoop(func(ls *loopState) {
		_ = ls.el.Execute(context.Background(), ls.sweepRunnable)
	})
	return s.cfg.TickInterval, gnet.None
}

// guarded wraps a runnable given to Execute so that a panic in it is
// recovered and counted like one in a callback: gnet runs it on the loop,
// and a panic there would end the process.
func (s *Server) guarded(f func()) gnet.Runnable {
	return gnet.RunnableFunc(func(context.Context) error {
		defer func() {
			if r := recover(); r != nil {
				s.recovered(r, nil)
			}
		}()
		f()
		return nil
	})
}

// recovered logs and counts a panic caught while handling connection c.
func (s *Server) recovered(r any, c gnet.Conn) {
	s.met.panics.Inc()
	attrs := []any{"panic", fmt.Sprint(r), "stack", string(debug.Stack())}
	var ctx any
	if c != nil {
		ctx = c.Context()
	}
	switch x := ctx.(type) {
	case *httpConn:
		attrs = append(attrs, "client", x.remote)
	case *connRef:
		if x.s != nil { // a handler of a panic must not panic itself
			attrs = append(attrs, "session", x.s.id, "client", x.s.remote, "vm_side", x.vm)
		}
	}
	s.log.Error("panic in connection handler, connection dropped", attrs...)
}
