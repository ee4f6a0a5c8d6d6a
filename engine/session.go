package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/engine/tlsio"
	"vncedge/routing"
	"vncedge/wsframe"
)

// A session is one WebSocket from a browser relayed to one VM. It begins
// when an httpConn (httpconn.go) has read a valid upgrade request and ends
// when the browser socket is gone. Its whole life:
//
//	upgrade accepted (an httpConn hands over the browser socket)
//	      │
//	      ▼
//	┌───────────┐ refused before the 101 (a limit, --rfb-errors=false):
//	│ resolving │─ HTTP error; the socket goes back to an httpConn ────┐
//	└─────┬─────┘                                                      │
//	      │ target allowed              a failure noVNC should explain │
//	      ▼                             (unknown link, VM unreachable, │
//	┌───────────┐                        VM refused the credentials):  │
//	│  dialing  │────────────────────┐   101, then an RFB refusal      │
//	└─────┬─────┘                    ▼   with a reason                 │
//	      │ VM socket on the    ┌───────────┐                          │
//	      │ loop; the 101 sent  │ refusing  │──────────┐               │
//	      │                     └───────────┘          │               │
//	      ├── the grant asks for RFB (a password,      │               │
//	      │   view-only, recording) ──┐                │               │
//	      │                      ┌───────────┐         │               │
//	      │                      │    rfb    │── VM ───┘               │
//	      │                      └─────┬─────┘  handshake failed       │
//	      ▼                            │ both handshakes done          │
//	┌───────────┐◄─────────────────────┘        ┌───────────┐          │
//	│ relaying  │─ close frame, error, timeout, ►│  closing  │          │
//	└───────────┘  either side ends, shutdown    └─────┬─────┘          │
//	      │ browser socket gone                        │ browser        │
//	      ▼                                            ▼ socket gone    ▼
//	┌──────────────────────────────────────────────────────────────────────┐
//	│ closed: slots, buffers and parked descriptors released              │
//	└──────────────────────────────────────────────────────────────────────┘
//
// A failed dial without --rfb-errors goes from dialing to closing (the
// 101, then close 1011). Relaying has a sub-state per socket, the park
// (park.go): a socket whose peer is behind is taken off the loop and
// enrolled again later.
//
// Every state has a deadline (deadline below), swept once per tick; the
// session's state changes only through to, which checks the transitions
// table: no other file assigns it.
type state uint8

const (
	stResolving state = iota // upgrade valid; route lookup running
	stDialing                // target allowed; VM connect running
	stRFB                    // 101 sent; the proxy's RFB handshakes with the VM, then the browser (rfb.go)
	stRefusing               // 101 sent; an RFB refusal tells noVNC why the session cannot be (rfb.go)
	stRelaying               // bytes flow both ways
	stClosing                // close frame queued; the browser socket drains
	stClosed                 // everything released
	numStates
)

var stateNames = [numStates]string{"resolving", "dialing", "rfb", "refusing", "relaying", "closing", "closed"}

func (st state) String() string {
	if st < numStates {
		return stateNames[st]
	}
	return fmt.Sprintf("state(%d)", uint8(st))
}

// transitions lists, for each state, the states it may move to. Closed is
// reachable from everywhere (the browser may vanish at any time); closing
// from every state that has sent, or can send, the 101.
var transitions = [numStates]stateSet{
	stResolving: setOf(stDialing, stRefusing, stClosed),
	stDialing:   setOf(stRFB, stRelaying, stRefusing, stClosing, stClosed),
	stRFB:       setOf(stRelaying, stRefusing, stClosing, stClosed),
	stRefusing:  setOf(stClosing, stClosed),
	stRelaying:  setOf(stClosing, stClosed),
	stClosing:   setOf(stClosed),
	stClosed:    0,
}

type stateSet uint8

func setOf(sts ...state) stateSet {
	var s stateSet
	for _, st := range sts {
		s |= 1 << st
	}
	return s
}

func (s stateSet) has(st state) bool { return s&(1<<st) != 0 }

// to moves the session to next, or refuses a step the table does not allow:
// under `go test` that is a panic, so a wrong step fails loudly in review;
// in production the session is closed with 1011 and the step logged, since
// one confused session must not take the proxy down.
func (s *session) to(next state) bool {
	if transitions[s.state].has(next) {
		s.state = next
		s.entered = s.srv.now()
		return true
	}
	err := fmt.Sprintf("illegal session transition %v -> %v", s.state, next)
	if s.srv.strict {
		panic(err)
	}
	s.srv.met.panics.Inc()
	s.srv.log.Error(err, "session", s.id, "client", s.remote)
	if s.browser.c != nil {
		_ = s.browser.c.Close() // asynchronous: OnClose finishes the session
	} else {
		s.finish()
	}
	return false
}

// deadline returns when the session's current state times out (coarse
// clock; 0 means never) and what then happens. Relaying has no single
// deadline: its idle, ping and park checks live in checkRelaying.
func (s *session) deadline() (at int64, expire func()) {
	cfg := &s.srv.cfg
	switch s.state {
	case stResolving:
		// The lookup has its own timeout (ResolveTimeout); this backstop
		// ends a setup whose worker answer never came back.
		return s.entered + int64(cfg.ResolveTimeout+setupSlack), func() {
			s.failSetup(rejectLookup, "route lookup did not answer in time")
		}
	case stDialing:
		// The dial has ConnectTimeout; gnet's enroll of the dialled socket
		// reports back through a channel a worker reads: if neither ever
		// answers, the setup ends here instead of holding its slots.
		return s.entered + int64(cfg.ConnectTimeout+setupSlack), func() {
			s.onDialFailed(errSetupTimeout)
		}
	case stRFB, stRefusing:
		// The RFB handshakes are part of the browser's handshake: the
		// same timeout, and a client that never sends its RFB version is
		// a slowloris like any other.
		return s.entered + int64(cfg.HandshakeTimeout), func() {
			s.closeWith(ws.StatusPolicyViolation, reasonHandshakeTimeout, "RFB handshake timeout")
		}
	case stClosing:
		return s.browser.closeBy, func() {
			if s.browser.c != nil {
				_ = s.browser.c.Close()
			} else {
				s.finish() // a parked browser socket never came back, or the VM never drained
			}
		}
	}
	return 0, nil
}

// setupSlack is how much longer than its own timeout a worker step may take
// to report back before the sweep gives up on it.
const setupSlack = 2 * time.Second

// checkDeadlines runs from the loop's sweep.
func (s *session) checkDeadlines(now int64) {
	if s.state == stRelaying {
		s.flushCounters()
		s.checkRelaying(now)
		return
	}
	if at, expire := s.deadline(); at > 0 && now > at {
		expire()
	}
}

// wireMode is the negotiated payload encoding towards the browser.
type wireMode uint8

const (
	modeBinary wireMode = iota // binary frames ("binary" or no subprotocol)
	modeBase64                 // text frames of base64 (websockify's legacy "base64")
)

func (m wireMode) String() string {
	if m == modeBase64 {
		return "base64"
	}
	return "binary"
}

// session is one browser WebSocket and, once routed, its VM connection.
// Every field is owned by the session's event loop.
type session struct {
	ls      *loopState
	srv     *Server
	id      string
	entered int64 // when state was entered (coarse clock)
	tracking

	browser             browserConn                // browser socket; its conn is nil once closed or while parked
	vm                  gnet.Conn                  // VM socket; nil before enroll, while parked, after close
	vmTLS               *tlsio.Conn                // its TLS layer, for grants with the tls option (vmtls.go)
	pendingVMTLS        atomic.Pointer[tlsio.Conn] // handed over by the dial goroutine
	browserRef, vmRef   connRef
	browserPark, vmPark park

	remote  string
	started int64 // UnixNano

	// What only the setup needs (the route, the grant, the held 101):
	// dropped when relaying starts, so an idle session does not carry it.
	setup *sessionSetup

	tokenHash  string // of the route's token, for logs, the admin API and revocation; "" for path routes
	targetName string // the target as requested or configured, for logs and the admin API
	expiresAt  int64  // --token-expiry-closes: the grant's expiry (coarse clock); 0 when none
	slots      slots

	in inbound

	// The RFB layer (rfb.go): nil for a session that relays bytes it does
	// not look at, which is most of them.
	hs  *rfbHandshake // while the proxy's RFB handshakes run
	rfb *rfbSession   // while relaying with RFB awareness (view-only)

	lastActive int64 // last RFB payload either way (control frames do not count)
	lastPong   int64 // last pong, or when relaying began
	pingSent   int64 // when an unanswered ping went out; 0 when none

	toVM, toBrowser           int64 // bytes relayed, payload only
	flushedVM, flushedBrowser int64 // part of the above already added to metrics

	heldSince int64 // when inputHeld was set
	// Closing: browser bytes read and thrown away since the browser last
	// took some of what is queued for it (CloseDiscardMax), how much was
	// queued then, and when (server clock).
	discarded, closeQueued int32
	closeProgress          int64

	// The VM ended while the browser socket was parked: what it sent last
	// and how it ended wait for the browser socket to come back.
	vmEnd     *vmEnding
	vmDrainBy int64 // closing: the VM socket takes its last bytes until then; 0 when not draining

	reason string

	// The small fields together, so they share their words.
	state     state
	mode      wireMode
	routeKind routing.Kind
	why       closeReason
	code      ws.StatusCode
	inputHeld bool // browser input left unread because the VM is not reading
	// setupRefused: the route lookup failed and the refusal went out in
	// RFB (rejectInRFB); it was counted as an upgrade failure, so its end
	// is not counted again as a session's.
	setupRefused bool
}

// newSession takes over the browser socket of h, whose request head was a
// valid upgrade (info), and starts resolving its route.
func newSession(h *httpConn, info upgradeInfo, mode wireMode, resp *bytebufferpool.ByteBuffer) {
	ls, srv := h.ls, h.srv
	now := srv.now()
	s := &session{
		ls: ls, srv: srv, id: srv.nextSessionID(), state: stResolving, entered: now,
		browser: h.browser, remote: h.remote, started: h.started,
		lastActive: now, tracking: tracking{slot: -1},
		setup: &sessionSetup{upgradeResp: resp, route: info.route}, mode: mode, routeKind: info.route.Kind,
		browserPark: park{fd: -1}, vmPark: park{fd: -1},
	}
	moveConnSlots(&s.slots, &h.slots)
	s.slots.session, s.slots.client = true, info.clientKey
	if info.route.Kind == routing.KindToken {
		s.tokenHash = routing.TokenHash(info.route.Token)
	}
	s.browserRef = connRef{s: s}
	s.vmRef = connRef{s: s, vm: true}
	s.browser.c.SetContext(&s.browserRef)
	ls.sessions.add(s)
	srv.met.sessionsActive.Inc()
	srv.startResolve(s)
}

// onBrowserTraffic handles bytes from the browser.
func (s *session) onBrowserTraffic(c gnet.Conn) gnet.Action {
	if c != s.browser.c {
		return gnet.Close // a stale socket; should not happen
	}
	if s.browser.tls != nil {
		if s.browser.tlsIn() != tlsReady {
			return gnet.Close // established before the upgrade: only a failure gets here
		}
		defer func() {
			if s.browser.tlsEnded() && s.browser.c == c {
				_ = c.Close() // the browser's close_notify, or a bad record: it is gone
			}
		}()
	}
	switch s.state {
	case stRelaying:
		return s.relayFromBrowser(c)
	case stRFB:
		if s.hs == nil || !s.hs.browserUp {
			return s.holdInput(c) // the VM handshake first: our turn comes after it
		}
		return s.readHandshakeFrames(c)
	case stRefusing:
		return s.readHandshakeFrames(c)
	case stResolving, stDialing:
		return s.holdInput(c)
	default:
		// Closing: the browser may still send (its close echo, an upload
		// in flight); discard it, up to a bound: past it the browser sends
		// without reading (a ping flood behind a full queue) and the linger
		// would read and discard at full speed until its deadline. A
		// browser that still takes what is queued for it (the VM's last
		// bytes, the close frame) starts the count again, and is cut only
		// once it has also stopped taking them for a tick: a fast uploader
		// resumed from a park brings megabytes of upload before the first
		// flush, and would otherwise lose the end of the VM's stream.
		n, _ := c.Discard(-1)
		now := s.srv.now()
		queued := int32(min(c.OutboundBuffered(), math.MaxInt32))
		if queued < s.closeQueued || s.closeProgress == 0 {
			s.discarded, s.closeProgress = 0, now
		}
		s.closeQueued = queued
		s.discarded = int32(min(int64(s.discarded)+int64(n), math.MaxInt32))
		if int(s.discarded) > s.srv.cfg.CloseDiscardMax && now-s.closeProgress > int64(s.srv.cfg.TickInterval) {
			_ = c.Close()
		}
		return gnet.None
	}
}

// holdInput leaves browser bytes in gnet's inbound buffer until the VM can
// take them, but caps them: gnet keeps reading a socket whatever we do.
func (s *session) holdInput(c gnet.Conn) gnet.Action {
	if max := s.srv.cfg.MaxBuffered; max > 0 && s.browser.held() > max {
		if s.state == stRelaying {
			s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "VNC server is not reading")
			return gnet.None
		}
		return gnet.Close
	}
	return gnet.None
}

// vencryptStarting reports whether the VM socket's TLS is VeNCrypt's and
// still in its handshake.
func (s *session) vencryptStarting() bool {
	return s.state == stRFB && s.hs != nil && s.hs.vm.NeedTLS()
}

// onVMTraffic handles bytes from the VM.
func (s *session) onVMTraffic(c gnet.Conn) gnet.Action {
	if c == s.vm && s.vmDrainBy > 0 {
		_, _ = c.Discard(-1) // closing: the VM's last words have nowhere to go
		return gnet.None
	}
	// During VeNCrypt's TLS handshake its failure is the RFB layer's to
	// report (rfbFromVM), with a reason noVNC shows.
	if c == s.vm && s.vmTLS != nil && !s.vencryptStarting() && !s.vmIn(c) && s.vmTLS.Buffered() == 0 {
		return gnet.Close // the VM's TLS ended: its close_notify, or a bad record
	}
	if c == s.vm && s.state == stRFB {
		return s.rfbFromVM(c)
	}
	if c != s.vm || s.state != stRelaying {
		_, _ = c.Discard(-1)
		return gnet.Close
	}
	if s.browser.c == nil {
		// The browser socket is parked: keep the VM's bytes in gnet's
		// buffer and bring the browser back now, not at the low-water mark.
		if max := s.srv.cfg.MaxBuffered; max > 0 && c.InboundBuffered() > max {
			s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "browser is not reading")
			return gnet.None
		}
		s.resume(&s.browserPark, &s.browserRef)
		return gnet.None
	}
	return s.relayFromVM(c)
}

// onEnrolled runs when a socket joins the loop with this session's
// context: the VM socket after the dial, or either socket coming back from
// a park.
func (s *session) onEnrolled(c gnet.Conn, vm bool) gnet.Action {
	if vm && s.vmPark.state != parkResuming {
		if s.state != stDialing {
			return gnet.Close // the browser left while we dialled
		}
		s.vm = c
		s.vmOpened(c)
		if s.wantsRFB() {
			s.startRFB()
		} else {
			s.startRelay()
		}
		return gnet.None
	}
	if vm {
		return s.vmResumed(c)
	}
	return s.browserResumed(c)
}

// startRelay sends the held 101 and opens the session for traffic.
func (s *session) startRelay() {
	if !s.to(stRelaying) {
		return
	}
	s.srv.endHandshake(&s.slots)
	now := s.srv.now()
	s.lastActive, s.lastPong = now, now
	s.sendUpgradeResponse()
	s.setup = nil // the route and the grant are spent: policy lives in rfb from here
	s.srv.met.sessionsOpened.Inc()
	s.srv.log.LogAttrs(context.Background(), slog.LevelInfo, "session open",
		slog.String("session", s.id), slog.String("client", s.remote),
		slog.String("route", s.routeKind.String()), slog.String("target", s.targetName),
		slog.String("upstream", s.slots.vm), slog.String("token", s.tokenHash),
		slog.String("protocol", s.mode.String()), slog.Bool("rfb", s.rfb != nil || s.hs != nil),
		slog.Bool("view_only", s.rfb != nil && s.rfb.viewOnly), slog.Bool("vm_tls", s.vmTLS != nil), s.tlsAttr())
	if c := s.browser.c; c != nil && c.InboundBuffered() > 0 {
		_ = c.Wake(nil) // frames that arrived with or right after the upgrade
	}
}

// sendUpgradeResponse sends the 101 held since the upgrade was accepted.
func (s *session) sendUpgradeResponse() {
	if s.setup == nil || s.setup.upgradeResp == nil {
		return
	}
	s.browser.write(s.setup.upgradeResp.B)
	s.setup.release()
}

// sessionSetup is what a session holds only until it relays.
type sessionSetup struct {
	route       routing.Route
	target      routing.Target
	upgradeResp *bytebufferpool.ByteBuffer // the 101, held until the VM answers
}

func (st *sessionSetup) release() {
	if st.upgradeResp != nil {
		bytebufferpool.Put(st.upgradeResp)
		st.upgradeResp = nil
	}
}

// vmEnding is a VM end that waits for a parked browser socket.
type vmEnding struct {
	err     error
	pending *bytebufferpool.ByteBuffer // what the VM sent last, unread
}

// onBrowserClose handles the browser socket going away: a park, or the end.
func (s *session) onBrowserClose(c gnet.Conn) {
	if c != s.browser.c {
		return
	}
	s.browser.c = nil
	if s.browserPark.closed() {
		s.browser.parked()
		return
	}
	s.browser.release()
	if s.state < stClosing {
		s.why = reasonBrowserGone
		if s.state < stRelaying {
			s.srv.met.upgradesFailed[rejectBrowserGone].Inc()
		}
	}
	if s.state == stClosing && s.vmDrainBy > 0 {
		return // pollVMDrain finishes once the VM has its last bytes
	}
	s.finish()
}

// finish ends the session once its browser socket is gone (or given up
// on): everything is released, counted and logged, exactly once.
func (s *session) finish() {
	if s.state == stClosed {
		return
	}
	relayed := s.state >= stRelaying
	s.to(stClosed)
	s.release()
	srv := s.srv
	srv.met.connectionsOpen.Dec()
	s.flushCounters()
	if s.setupRefused {
		return
	}
	if !relayed && s.why == reasonBrowserClosed {
		s.why = reasonBrowserGone
	}
	srv.met.sessionsClosed[s.why].Inc()
	d := time.Duration(time.Now().UnixNano() - s.started)
	srv.met.sessionSeconds.Update(d.Seconds())
	code := int(s.code)
	if s.why == reasonBrowserGone {
		code = int(ws.StatusAbnormalClosure)
	}
	srv.log.LogAttrs(context.Background(), slog.LevelInfo, "session close",
		slog.String("session", s.id), slog.String("client", s.remote),
		slog.String("target", s.targetName), slog.String("reason", s.why.String()),
		slog.Int("code", code), slog.String("detail", s.reason),
		slog.Int64("bytes_to_vm", s.toVM), slog.Int64("bytes_to_browser", s.toBrowser),
		slog.Duration("duration", d))
}

// release frees what the session holds apart from its browser socket:
// the VM socket, parked descriptors, buffers, its place on the loop and
// its slots. It runs once, on the way to closed.
func (s *session) release() {
	s.endRecording()
	s.closeVM()
	s.browserPark.drop()
	if s.setup != nil {
		s.setup.release()
		s.setup = nil
	}
	if s.vmEnd != nil && s.vmEnd.pending != nil {
		bytebufferpool.Put(s.vmEnd.pending)
		s.vmEnd = nil
	}
	s.ls.sessions.remove(s)
	s.srv.releaseSlots(&s.slots)
}

// flushCounters adds the bytes relayed since the last flush to the global
// counters; per-message updates stay local to the session.
func (s *session) flushCounters() {
	if d := s.toVM - s.flushedVM; d > 0 {
		s.srv.met.bytesToVM.AddInt64(d)
		s.flushedVM = s.toVM
	}
	if d := s.toBrowser - s.flushedBrowser; d > 0 {
		s.srv.met.bytesToBrowser.AddInt64(d)
		s.flushedBrowser = s.toBrowser
	}
}

// pollWaiting re-checks a session on the poll list and reports whether it
// still has to wait.
func (s *session) pollWaiting() bool {
	switch s.state {
	case stClosing:
		now := s.srv.now()
		wait := s.pollVMDrain(now)
		if s.browser.c != nil && s.browser.pollClose(now, s.srv.cfg.CloseGrace) {
			wait = true
		}
		return wait
	case stRelaying:
		return s.pollBackpressure()
	}
	return false
}

// checkRelaying enforces a relaying session's timers: idle, and the ping
// that proves a quiet browser alive.
func (s *session) checkRelaying(now int64) {
	cfg := &s.srv.cfg
	if cfg.IdleTimeout > 0 && now-s.lastActive > int64(cfg.IdleTimeout) {
		s.closeWith(ws.StatusGoingAway, reasonIdleTimeout, "idle timeout")
		return
	}
	if s.expiresAt > 0 && now > s.expiresAt {
		s.closeWith(ws.StatusPolicyViolation, reasonExpired, "access expired")
		return
	}
	s.checkRecording()
	if s.state != stRelaying {
		return
	}
	s.checkParks(now)
	if s.state != stRelaying || cfg.PingInterval <= 0 || s.inputHeld || s.browser.c == nil {
		return // unread browser input would hide a pong: the park checks cover it
	}
	// A ping goes out every PingInterval after the last pong, however
	// busy the session: only a pong (not any byte) shows that the browser
	// reads, and a browser that sends but never reads must be reaped.
	if s.pingSent == 0 {
		if now-s.lastPong >= int64(cfg.PingInterval) {
			s.pingSent = now
			s.browser.write(pingFrame)
		}
	} else if cfg.PongTimeout > 0 && now-s.pingSent > int64(cfg.PongTimeout) {
		s.closeWith(ws.StatusGoingAway, reasonPongTimeout, "no pong from the browser")
	}
}

// pingFrame is an empty server ping; immutable, shared by all sessions.
var pingFrame = wsframe.AppendFrame(nil, true, ws.OpPing, nil)

func (s *session) browserSocket() gnet.Conn { return s.browser.c }

// tlsAttr describes the browser's TLS for the session open line: version,
// and the verified client certificate's subject (--tls-client-ca).
func (s *session) tlsAttr() slog.Attr {
	t := s.browser.tls
	if t == nil {
		return slog.Attr{}
	}
	cs := t.ConnectionState()
	attrs := []any{slog.String("version", tls.VersionName(cs.Version))}
	if subject := t.PeerSubject(); subject != "" {
		attrs = append(attrs, slog.String("client_subject", subject))
	}
	return slog.Group("tls", attrs...)
}
