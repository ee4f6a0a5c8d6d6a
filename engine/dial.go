package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/routing"
)

// The setup states, resolving and dialing. The steps that may block run on
// worker goroutines, bounded by Server.setups, and hand their result back
// to the session's loop with Execute. Each answer re-checks the state on
// the loop: the browser may have left meanwhile, or the deadline passed.

// errSetupTimeout ends a dial whose worker never reported back.
var errSetupTimeout = errors.New("connect did not complete in time")

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
		s.failSetup(rejectCapacity, "too many sessions being set up (MaxPendingSetups)")
		return
	}
	rt := s.route
	el := s.ls.el
	go func() {
		defer srv.releaseSetup()
		ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.ResolveTimeout)
		tgt, err := srv.router.Resolve(ctx, rt)
		cancel()
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			s.onResolved(tgt, err)
			return nil
		}))
	}()
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
		why, status := routeReject(err)
		_, detail := routeStatus(err)
		if errors.Is(err, context.DeadlineExceeded) {
			detail = "route lookup timed out: " + detail
		}
		s.failSetupStatus(why, status, detail)
		return
	}
	s.target = tgt
	if !s.srv.limits.acquireVM(tgt.Name) {
		s.failSetup(rejectVMCap, rejectVMCap.public())
		return
	}
	s.slots.vm = tgt.Name
	if s.to(stDialing) {
		s.srv.startDial(s)
	}
}

// failSetup answers an upgrade that passed validation but cannot proceed
// with an HTTP error: the 101 was never sent, so the browser sees a
// status. The session ends here; its socket goes back to HTTP for the
// answer. The browser gets only the table's public text; detail (which may
// name internal addresses or files from the operator's token sources) goes
// to the log.
func (s *session) failSetup(why rejectReason, detail string) {
	s.failSetupStatus(why, why.status(), detail)
}

func (s *session) failSetupStatus(why rejectReason, status int, detail string) {
	srv := s.srv
	srv.met.upgradesFailed[why].Inc()
	srv.log.LogAttrs(context.Background(), slog.LevelWarn, "upgrade rejected",
		slog.String("client", s.remote), slog.String("route", s.route.Kind.String()),
		slog.String("token", routing.TokenHash(s.route.Token)), slog.Int("status", status),
		slog.String("reason", why.String()), slog.String("detail", detail))
	s.to(stClosed)
	s.release()
	if s.browser.c == nil {
		srv.met.connectionsOpen.Dec()
		return
	}
	s.ls.adoptHTTP(s).respondError(status, why.public())
}

// startDial connects to the VM off the loop, with the connect timeout, then
// enrolls the socket on the session's own loop (DESIGN.md: never gnet's
// Register, which dials without a timeout).
func (srv *Server) startDial(s *session) {
	if !srv.acquireSetup() {
		s.failSetup(rejectCapacity, "too many sessions being set up (MaxPendingSetups)")
		return
	}
	addr := s.target.Addr.String()
	el := s.ls.el
	ref := &s.vmRef
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

// onDialFailed ends a session whose VM could not be reached: the upgrade
// completes and closes at once with 1011 and the reason, so noVNC shows
// "VNC server unreachable: connection refused" instead of a bare failed
// handshake (CONTRACT.md: unreachable VM -> 1011).
func (s *session) onDialFailed(err error) {
	if s.state != stDialing {
		return
	}
	s.srv.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream dial failed",
		slog.String("session", s.id), slog.String("target", s.target.Name),
		slog.String("upstream", s.target.Addr.String()), slog.String("error", err.Error()))
	s.closeWith(ws.StatusInternalServerError, reasonDialFailed, "VNC server unreachable: "+errText(err))
}
