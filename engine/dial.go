package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/engine/tlsio"
	"vncedge/routing"
)

// The setup states, resolving and dialing. The steps that may block run on
// worker goroutines, bounded by Server.setups, and hand their result back
// to the session's loop with Execute. Each answer re-checks the state on
// the loop: the browser may have left meanwhile, or the deadline passed.

// errSetupTimeout ends a dial whose worker never reported back.
var errSetupTimeout = errors.New("connect did not complete in time")

// startResolve looks the route up on the loop itself when that needs no
// I/O (path routes: IP literals checked against the allow-list; tokens of
// the in-memory token file, or in the cache), else on a worker, since
// token stores and DNS may block: a goroutine hop per setup is what the
// fast path saves.
func (srv *Server) startResolve(s *session) {
	tgt, err := srv.router.ResolveFast(s.setup.route)
	if !errors.Is(err, routing.ErrWouldBlock) {
		s.onResolved(tgt, err)
		return
	}
	if !srv.acquireSetup() {
		s.failSetup(rejectCapacity, "too many sessions being set up (MaxPendingSetups)")
		return
	}
	rt := s.setup.route
	el := s.ls.el
	go func() {
		defer srv.releaseSetup()
		ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.ResolveTimeout)
		tgt, err := srv.router.Resolve(ctx, rt)
		cancel()
		_ = el.Execute(context.Background(), srv.guarded(func() { s.onResolved(tgt, err) }))
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
		if s.srv.refusesInRFB(why) {
			s.rejectInRFB(why, status, detail)
			return
		}
		s.failSetupStatus(why, status, detail)
		return
	}
	s.setup.target, s.targetName = tgt, tgt.Name
	if s.srv.cfg.TokenExpiryCloses && !tgt.Expires.IsZero() {
		s.expiresAt = max(int64(tgt.Expires.Sub(s.srv.epoch)), 1)
	}
	// The per-VM limit counts by the address dialled, so that a VM
	// reached by name and by address is one VM.
	key := tgt.Key()
	if s.srv.vmDrained(key) {
		s.failSetup(rejectVMDrained, "VM "+key+" is drained")
		return
	}
	if !s.srv.limits.acquireVM(key) {
		s.failSetup(rejectVMCap, "per-VM limit reached for "+key)
		return
	}
	s.slots.vm = key
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

// rejectInRFB is failSetup for the failures noVNC should explain: counted
// and logged the same, but answered with the 101 and an RFB refusal.
func (s *session) rejectInRFB(why rejectReason, status int, detail string) {
	srv := s.srv
	srv.met.upgradesFailed[why].Inc()
	srv.log.LogAttrs(context.Background(), slog.LevelWarn, "upgrade rejected",
		slog.String("client", s.remote), slog.String("route", s.routeKind.String()),
		slog.String("token", s.tokenHash), slog.Int("status", status), slog.String("answer", "rfb"),
		slog.String("reason", why.String()), slog.String("detail", detail))
	s.setupRefused = true
	s.refuse(reasonBrowserClosed, rfbReason(why))
}

func (s *session) failSetupStatus(why rejectReason, status int, detail string) {
	srv := s.srv
	srv.met.upgradesFailed[why].Inc()
	srv.log.LogAttrs(context.Background(), slog.LevelWarn, "upgrade rejected",
		slog.String("client", s.remote), slog.String("route", s.routeKind.String()),
		slog.String("token", s.tokenHash), slog.Int("status", status),
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
// Register, which dials without a timeout) and reads the enroll's result.
// The VM socket is counted first; the copy gnet makes of it while
// enrolling is counted around the enroll alone (takeTransient).
func (srv *Server) startDial(s *session) {
	if !srv.fds.take(1) {
		s.failSetup(rejectDescriptors, "descriptor budget spent: no room for the VM socket")
		return
	}
	s.slots.fds++
	if !srv.acquireSetup() {
		s.failSetup(rejectCapacity, "too many sessions being set up (MaxPendingSetups)")
		return
	}
	tgt := &s.setup.target
	network, addr := tgt.Network(), tgt.DialAddr()
	useTLS, tlsHost := tgt.TLS, vmServerName(*tgt)
	el := s.ls.el
	ref := &s.vmRef
	go func() {
		defer srv.releaseSetup()
		// No TCP keepalive (four setsockopt calls per dial): a VM that
		// vanishes is found by the relay (a write fails, the park check
		// sees the reset) or by the browser's ping timing out.
		d := net.Dialer{Timeout: srv.cfg.ConnectTimeout, KeepAlive: -1}
		t0 := time.Now()
		nc, err := d.Dial(network, addr)
		srv.met.dialSeconds.UpdateDuration(t0)
		if err == nil && useTLS {
			var t *tlsio.Conn
			if t, err = srv.vmHandshakeTLS(context.Background(), nc, tlsHost); err == nil {
				s.pendingVMTLS.Store(t) // vmOpened takes it on the loop
			}
		}
		if err == nil && !srv.fds.takeTransient() {
			err = errNoTransientFD
			_ = nc.Close()
		} else if err == nil {
			var ch <-chan gnet.RegisteredResult
			if ch, err = el.Enroll(gnet.NewContext(context.Background(), ref), nc); err != nil {
				_ = nc.Close()
			} else {
				err = waitEnroll(ch, srv.cfg.ConnectTimeout+setupSlack)
			}
			srv.fds.give(1)
		}
		if err != nil {
			_ = el.Execute(context.Background(), srv.guarded(func() { s.onDialFailed(err) }))
		}
	}()
}

// vmServerName is the name a TLS VM's certificate must carry: the host
// of the target as the grant named it (a DNS name or an IP literal).
func vmServerName(t routing.Target) string {
	if t.Unix != "" {
		return "localhost"
	}
	if host, _, err := net.SplitHostPort(t.Grant.Target); err == nil && host != "" {
		return host
	}
	return t.Addr.Addr().String()
}

// waitEnroll waits for an enroll's result; on success the socket's OnOpen
// has run on its loop.
func waitEnroll(ch <-chan gnet.RegisteredResult, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case res, ok := <-ch:
		if !ok {
			return errEnrollTimeout
		}
		return res.Err
	case <-t.C:
		return errEnrollTimeout
	}
}

// onDialFailed ends a session whose VM could not be reached: the upgrade
// completes and closes at once with 1011 and the reason, so noVNC shows
// "VNC server unreachable: connection refused" instead of a bare failed
// handshake (CONTRACT.md: unreachable VM -> 1011).
func (s *session) onDialFailed(err error) {
	if s.state != stDialing {
		return
	}
	if isResourceError(err) {
		// Out of descriptors or buffers here, not the VM's fault: a plain
		// 503, so the client retries, and the sessions already running go on.
		s.failSetup(rejectDescriptors, "dial: "+err.Error())
		return
	}
	s.srv.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream dial failed",
		slog.String("session", s.id), slog.String("target", s.targetName),
		slog.String("upstream", s.slots.vm), slog.String("error", err.Error()))
	if s.srv.cfg.RFBErrors {
		s.refuse(reasonDialFailed, "this VM is not reachable right now")
		return
	}
	s.closeWith(ws.StatusInternalServerError, reasonDialFailed, "VNC server unreachable: "+errText(err))
}

// awaitEnroll reads the result of an Enroll off the loop (DESIGN.md: every
// result is read) and reports a failure, or a result that never comes,
// back on the loop through fail. On success the socket's OnOpen has run.
func (srv *Server) awaitEnroll(ch <-chan gnet.RegisteredResult, el gnet.EventLoop, fail func(error)) {
	go func() {
		if err := waitEnroll(ch, resumeTimeout); err != nil {
			srv.met.enrollErrors.Inc()
			_ = el.Execute(context.Background(), srv.guarded(func() { fail(err) }))
		}
	}()
}
