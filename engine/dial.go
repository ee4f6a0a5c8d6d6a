package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/routing"
)

// The steps of a session's setup that may block run on worker goroutines,
// bounded by Server.setups, and hand their result back to the session's
// loop with Execute. Each step re-checks the state on the loop: the browser
// may have left meanwhile.

// startResolve looks the route up: a path route on the loop itself (it is
// an IP literal checked against the allow-list, no I/O), anything else on a
// worker, since token sources and DNS may block.
func (srv *Server) startResolve(s *session) {
	if s.route.Kind == routing.KindPath {
		tgt, err := srv.router.Resolve(context.Background(), s.route)
		s.onResolved(tgt, err)
		return
	}
	if !srv.acquireSetup() {
		s.failBusy()
		return
	}
	rt := s.route
	el := s.ls.el
	go func() {
		defer srv.releaseSetup()
		ctx, cancel := context.WithTimeout(context.Background(), srv.lookupTimeout())
		tgt, err := srv.router.Resolve(ctx, rt)
		cancel()
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			s.onResolved(tgt, err)
			return nil
		}))
	}()
}

func (srv *Server) lookupTimeout() time.Duration {
	if d := srv.cfg.ConnectTimeout; d > 0 {
		return d
	}
	return 30 * time.Second
}

func (srv *Server) acquireSetup() bool {
	select {
	case srv.setups <- struct{}{}:
		srv.met.pendingSetups.Inc()
		return true
	default:
		return false
	}
}

func (srv *Server) releaseSetup() {
	<-srv.setups
	srv.met.pendingSetups.Dec()
}

// onResolved runs on the loop with the route lookup's answer.
func (s *session) onResolved(tgt routing.Target, err error) {
	if s.state != stResolving {
		return
	}
	if err != nil {
		status, detail := routeStatus(err)
		if errors.Is(err, context.DeadlineExceeded) {
			status, detail = http.StatusGatewayTimeout, "route lookup timed out: "+detail
		}
		why := routeRejectReason(err)
		s.failSetup(status, why, publicReason(why, status), detail)
		return
	}
	s.target = tgt
	if !s.srv.cap.acquireUpstream(tgt.Name) {
		const msg = "too many sessions for this VM"
		s.failSetup(http.StatusServiceUnavailable, rejectUpstreamCap, msg, msg)
		return
	}
	s.upstreamKey = tgt.Name
	s.state = stDialing
	s.srv.startDial(s)
}

// failSetup answers an upgrade that passed validation but cannot proceed
// with an HTTP error: the 101 was never sent, so the browser sees a status.
// The browser gets only a generic reason; detail (which may name internal
// addresses or files from the operator's token sources) goes to the log.
func (s *session) failSetup(status int, why rejectReason, reason, detail string) {
	srv := s.srv
	srv.met.upgradesFailed[why].Inc()
	srv.log.LogAttrs(context.Background(), slog.LevelWarn, "upgrade rejected",
		slog.String("client", s.remote), slog.String("route", s.route.Kind.String()),
		slog.String("token", routing.TokenHash(s.route.Token)), slog.Int("status", status),
		slog.String("reason", why.String()), slog.String("detail", detail))
	if s.counted {
		s.counted = false
		srv.cap.releaseSession()
		srv.met.sessionsActive.Dec()
	}
	s.rejectHTTP(status, reason)
}

// failBusy rejects a setup because maxPendingSetups lookups and dials are
// already running.
func (s *session) failBusy() {
	const msg = "too many sessions being set up"
	s.failSetup(http.StatusServiceUnavailable, rejectCapacity, msg, msg)
}

// publicReason is what a browser may learn about a failed token route.
func publicReason(why rejectReason, status int) string {
	switch why {
	case rejectUnknownToken:
		return "unknown token"
	case rejectForbidden:
		return "target not allowed"
	case rejectLookup:
		return "token lookup failed"
	}
	return http.StatusText(status)
}

// startDial connects to the VM off the loop, with the connect timeout, then
// enrolls the socket on the session's own loop (DESIGN.md: never gnet's
// Register, which dials without a timeout).
func (srv *Server) startDial(s *session) {
	if !srv.acquireSetup() {
		s.failBusy() // finish releases the upstream slot with the socket
		return
	}
	addr := s.target.Addr.String()
	el := s.ls.el
	ref := &s.upRef
	go func() {
		defer srv.releaseSetup()
		d := net.Dialer{Timeout: srv.cfg.ConnectTimeout}
		t0 := time.Now()
		nc, err := d.Dial("tcp", addr)
		srv.met.dialSeconds.UpdateDuration(t0)
		if err == nil {
			if _, err = el.Enroll(gnet.NewContext(context.Background(), ref), nc); err != nil {
				_ = nc.Close()
			}
			// On success onEnrolled runs on the loop; nothing to wait for here.
		}
		if err != nil {
			_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				s.onDialFailed(err)
				return nil
			}))
		}
	}()
}

// onDialFailed completes the upgrade and closes at once with 1011 and the
// reason, so noVNC shows "VNC server unreachable: connection refused"
// instead of a bare failed handshake (CONTRACT.md: unreachable VM -> 1011).
func (s *session) onDialFailed(err error) {
	if s.state != stDialing {
		return
	}
	s.state = stRelaying
	s.sendUpgradeResponse()
	reason := "VNC server unreachable: " + errText(err)
	s.srv.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream dial failed",
		slog.String("session", s.id), slog.String("target", s.target.Name),
		slog.String("upstream", s.target.Addr.String()), slog.String("error", err.Error()))
	s.closeWith(ws.StatusInternalServerError, reasonDialFailed, reason)
}
