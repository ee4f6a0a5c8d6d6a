package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/routing"
	"vncedge/wsframe"
)

// state is where a session is in its one-way life.
type state uint8

const (
	stHandshake state = iota // reading the HTTP request head (also serves static files)
	stResolving              // upgrade accepted; route lookup on a worker
	stDialing                // target known and allowed; connect on a worker
	stRelaying               // 101 sent, bytes flow both ways
	stClosing                // close frame queued; waiting for the browser socket to drain
	stClosed
)

var stateNames = [...]string{"handshake", "resolving", "dialing", "relaying", "closing", "closed"}

func (st state) String() string { return stateNames[st] }

// wireMode is the negotiated payload encoding towards the browser.
type wireMode uint8

const (
	modeBinary wireMode = iota // binary frames ("binary" or no subprotocol)
	modeBase64                 // text frames of base64 (websockify's legacy "base64")
)

// inbound is the browser->VM frame parser's state between reads: a data
// frame's payload is forwarded as it arrives, so a frame can span reads.
type inbound struct {
	remaining int64   // payload bytes of the current data frame not yet seen
	mask      [4]byte // its masking key
	maskOff   int     // position in the mask cycle of the next payload byte
	fin       bool    // the current frame ends its message
	inMessage bool    // a fragmented message is in progress
	b64       wsframe.Base64Decoder
}

// session is one browser connection and, once routed, its VM connection.
// Every field is owned by the session's event loop.
type session struct {
	ls    *loopState
	srv   *Server
	id    string
	state state
	slot  int // index in ls.sessions

	client           gnet.Conn // browser socket; nil once closed
	upstream         gnet.Conn // VM socket; nil before enroll, while parked, after close
	clientRef, upRef connRef

	remote    string
	proxyDone bool // the PROXY protocol header was read (--proxy-protocol)
	started   time.Time
	deadline  int64 // handshake or closing deadline (coarse clock)

	// Upgrade results, held until the VM answers.
	upgradeResp *bytebufferpool.ByteBuffer
	mode        wireMode
	route       routing.Route
	target      routing.Target
	counted     bool // holds a global session slot
	upstreamKey string

	in  inbound
	hdr [wsframe.MaxHeaderSize]byte
	iov [2][]byte

	lastRecv   int64 // last byte from the browser
	lastActive int64 // last byte either way
	pingSent   int64 // when an unanswered ping went out; 0 when none

	toUpstream, toClient int64 // bytes relayed, payload only
	flushedUp, flushedDn int64 // part of the above already added to metrics

	upPark     parkState // the VM socket, parked while the browser is behind
	clientPark parkState // the browser socket, parked while the VM is behind
	inputHeld  bool      // browser input left unread because the VM is not reading
	waiting    bool      // on the loop's poll list

	// The VM ended while the browser socket was parked: what it sent last
	// and how it ended wait for the browser socket to come back.
	upEnded   bool
	upEndErr  error
	upPending *bytebufferpool.ByteBuffer

	code   ws.StatusCode
	why    closeReason
	reason string
}

func newSession(ls *loopState, c gnet.Conn) *session {
	srv := ls.srv
	now := srv.now()
	s := &session{
		ls: ls, srv: srv, client: c, started: time.Now(),
		lastRecv: now, lastActive: now, slot: -1,
		upPark: parkState{fd: -1}, clientPark: parkState{fd: -1},
	}
	s.clientRef = connRef{s: s}
	s.upRef = connRef{s: s, upstream: true}
	if a := c.RemoteAddr(); a != nil {
		s.remote = a.String()
	}
	if d := srv.cfg.HandshakeTimeout; d > 0 {
		s.deadline = now + int64(d)
	}
	c.SetContext(&s.clientRef)
	ls.add(s)
	srv.met.connectionsOpen.Inc()
	return s
}

// onClientTraffic handles bytes from the browser.
func (s *session) onClientTraffic(c gnet.Conn) gnet.Action {
	if c != s.client {
		return gnet.Close // a stale socket; should not happen
	}
	now := s.srv.now()
	s.lastRecv, s.pingSent = now, 0
	switch s.state {
	case stHandshake:
		return s.readRequest(c)
	case stRelaying:
		s.lastActive = now
		return s.relayFromClient(c)
	case stResolving, stDialing:
		return s.holdInput(c)
	default:
		// Closing: the browser may still send its close echo; discard it.
		_, _ = c.Discard(-1)
		return gnet.None
	}
}

// holdInput leaves browser bytes in gnet's inbound buffer until the VM can
// take them, but caps them: gnet keeps reading a socket whatever we do.
func (s *session) holdInput(c gnet.Conn) gnet.Action {
	if max := s.srv.cfg.MaxBuffered; max > 0 && c.InboundBuffered() > max {
		if s.state == stRelaying {
			s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "VNC server is not reading")
			return gnet.None
		}
		return gnet.Close
	}
	return gnet.None
}

// onUpstreamTraffic handles bytes from the VM.
func (s *session) onUpstreamTraffic(c gnet.Conn) gnet.Action {
	if c != s.upstream || s.state != stRelaying {
		_, _ = c.Discard(-1)
		return gnet.Close
	}
	s.lastActive = s.srv.now()
	if s.client == nil {
		// The browser socket is parked: keep the VM's bytes in gnet's
		// buffer and bring the browser back now, not at the low-water mark.
		if max := s.srv.cfg.MaxBuffered; max > 0 && c.InboundBuffered() > max {
			s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "browser is not reading")
			return gnet.None
		}
		s.resume(&s.clientPark, &s.clientRef)
		return gnet.None
	}
	return s.relayFromUpstream(c)
}

// onEnrolled runs when a socket joins the loop: the VM socket after the
// dial, and either socket again after a backpressure park.
func (s *session) onEnrolled(c gnet.Conn, upstream bool) gnet.Action {
	if !upstream {
		if !s.clientPark.resuming {
			return gnet.Close
		}
		s.clientPark.resuming = false
		switch s.state {
		case stRelaying:
		case stClosing: // the session ended while the browser was parked
			s.client = c
			s.sendClose()
			return gnet.None
		default:
			return gnet.Close
		}
		s.client = c
		s.inputHeld = false
		s.lastRecv = s.srv.now()
		s.deliverUpstreamEnd()
		if s.state == stRelaying && s.upstream != nil && s.upstream.InboundBuffered() > 0 {
			_ = s.upstream.Wake(nil) // what the VM sent while the browser was parked
		}
		return gnet.None
	}
	if s.upPark.resuming {
		s.upPark.resuming = false
		if s.state != stRelaying {
			return gnet.Close
		}
		s.upstream = c
		if s.inputHeld && s.client != nil {
			_ = s.client.Wake(nil)
		}
		return gnet.None
	}
	if s.state != stDialing {
		return gnet.Close // the browser left while we dialled
	}
	s.upstream = c
	s.startRelay()
	return gnet.None
}

// startRelay sends the held 101 and opens the session for traffic.
func (s *session) startRelay() {
	s.state = stRelaying
	now := s.srv.now()
	s.lastActive, s.lastRecv = now, now
	s.sendUpgradeResponse()
	s.srv.met.sessionsOpened.Inc()
	s.srv.log.LogAttrs(context.Background(), slog.LevelInfo, "session open",
		slog.String("session", s.id), slog.String("client", s.remote),
		slog.String("route", s.route.Kind.String()), slog.String("target", s.target.Name),
		slog.String("upstream", s.target.Addr.String()), slog.String("token", s.target.TokenHash),
		slog.String("protocol", s.modeName()))
	if s.client != nil && s.client.InboundBuffered() > 0 {
		_ = s.client.Wake(nil) // frames that arrived with or right after the upgrade
	}
}

func (s *session) modeName() string {
	if s.mode == modeBase64 {
		return "base64"
	}
	return "binary"
}

// sendUpgradeResponse sends the 101 held since the upgrade was accepted.
func (s *session) sendUpgradeResponse() {
	_, _ = s.client.Write(s.upgradeResp.B)
	s.releaseUpgradeResp()
}

func (s *session) releaseUpgradeResp() {
	if s.upgradeResp != nil {
		bytebufferpool.Put(s.upgradeResp)
		s.upgradeResp = nil
	}
}

// onUpstreamClose handles the VM socket going away: a park, or the end.
func (s *session) onUpstreamClose(c gnet.Conn, err error) {
	if c != s.upstream {
		return // stale (already replaced or the session is over)
	}
	s.upstream = nil
	if s.upPark.parking {
		s.upPark.parking = false
		return
	}
	if s.state != stRelaying {
		return
	}
	if s.client == nil {
		// The browser socket is parked. gnet is about to free what the VM
		// sent last, unread: keep it for the browser, and end after it.
		if buf, _ := c.Peek(-1); len(buf) > 0 {
			s.upPending = bytebufferpool.Get()
			s.upPending.B = append(s.upPending.B[:0], buf...)
		}
		s.upEnded, s.upEndErr = true, err
		s.resume(&s.clientPark, &s.clientRef)
		return
	}
	s.endForUpstream(err)
}

// deliverUpstreamEnd completes an upstream end that happened while the
// browser socket was parked, now that it is back.
func (s *session) deliverUpstreamEnd() {
	if !s.upEnded {
		return
	}
	if s.upPending != nil {
		s.writeToClient(s.upPending.B)
		bytebufferpool.Put(s.upPending)
		s.upPending = nil
	}
	if s.state == stRelaying {
		s.endForUpstream(s.upEndErr)
	}
}

// endForUpstream closes the session because the VM socket ended with err.
func (s *session) endForUpstream(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		s.closeWith(ws.StatusNormalClosure, reasonUpstreamClosed, "VNC server closed the connection")
		return
	}
	s.closeWith(ws.StatusInternalServerError, reasonUpstreamError, "VNC server connection failed: "+errText(err))
}

// onClientClose handles the browser socket going away, for whatever reason.
func (s *session) onClientClose(c gnet.Conn, err error) {
	if c != s.client {
		return
	}
	s.client = nil
	if s.clientPark.parking {
		s.clientPark.parking = false
		return
	}
	switch s.state {
	case stRelaying:
		s.why = reasonClientGone
	case stResolving, stDialing:
		s.why = reasonClientGone
		s.srv.met.upgradesFailed[rejectClientGone].Inc()
	}
	s.finish()
}

// closeWith starts the end of a relaying session: a close frame with code
// and reason goes to the browser after everything already queued for it;
// the VM socket closes now; the browser socket closes once drained.
func (s *session) closeWith(code ws.StatusCode, why closeReason, reason string) {
	if s.state >= stClosing {
		return
	}
	s.code, s.why, s.reason = code, why, reason
	s.state = stClosing
	s.closeUpstream()
	s.deadline = s.srv.now() + int64(closeLinger)
	if s.client == nil {
		// The browser socket is parked: bring it back to say goodbye
		// properly (closing the dup now, with upload bytes unread, would
		// reset the connection). onEnrolled sends the close frame.
		s.resume(&s.clientPark, &s.clientRef)
		if !s.clientPark.resuming {
			s.finish()
		}
		return
	}
	s.sendClose()
}

// sendClose writes the close frame and ends the browser socket gracefully.
func (s *session) sendClose() {
	buf := bytebufferpool.Get()
	buf.B = wsframe.AppendClose(buf.B[:0], s.code, s.reason)
	_, _ = s.client.Write(buf.B)
	bytebufferpool.Put(buf)
	if s.client == nil { // the write failed and gnet closed it under us
		return
	}
	s.closeClientWhenDrained()
}

// closeClientWhenDrained ends the browser socket gracefully: once gnet has
// written everything queued for it (gnet's own close drops what the socket
// refuses), it shuts down the sending side, so the browser reads our last
// bytes and then EOF, and keeps reading (and discarding) until the browser
// closes too or closeGrace passes. Closing at once with unread input would
// make the kernel send a reset, which can destroy the close frame or HTTP
// error in flight, and noVNC would show 1006 instead of our reason.
func (s *session) closeClientWhenDrained() {
	if s.client.OutboundBuffered() > 0 {
		s.ls.wait(s)
		return
	}
	if err := syscall.Shutdown(s.client.Fd(), syscall.SHUT_WR); err != nil {
		_ = s.client.Close()
		return
	}
	if grace := s.srv.now() + int64(closeGrace); grace < s.deadline {
		s.deadline = grace // the sweep closes it then, if the browser does not
	}
}

func (s *session) closeUpstream() {
	if s.upstream != nil {
		_ = s.upstream.Close()
		s.upstream = nil
	}
	s.upPark.drop()
}

// finish releases everything the session holds; it runs exactly once, when
// the browser socket is gone.
func (s *session) finish() {
	if s.state == stClosed {
		return
	}
	prev := s.state
	s.state = stClosed
	s.closeUpstream()
	s.clientPark.drop()
	s.releaseUpgradeResp()
	if s.upPending != nil {
		bytebufferpool.Put(s.upPending)
		s.upPending = nil
	}
	s.ls.remove(s)
	srv := s.srv
	srv.met.connectionsOpen.Dec()
	if s.upstreamKey != "" {
		srv.cap.releaseUpstream(s.upstreamKey)
		s.upstreamKey = ""
	}
	if !s.counted {
		return
	}
	s.counted = false
	srv.cap.releaseSession()
	srv.met.sessionsActive.Dec()
	s.flushCounters()
	if prev < stRelaying && s.why == reasonClientClosed {
		s.why = reasonClientGone
	}
	srv.met.sessionsClosed[s.why].Inc()
	d := time.Since(s.started)
	srv.met.sessionSeconds.Update(d.Seconds())
	code := int(s.code)
	if s.why == reasonClientGone {
		code = int(ws.StatusAbnormalClosure)
	}
	srv.log.LogAttrs(context.Background(), slog.LevelInfo, "session close",
		slog.String("session", s.id), slog.String("client", s.remote),
		slog.String("target", s.target.Name), slog.String("reason", s.why.String()),
		slog.Int("code", code), slog.String("detail", s.reason),
		slog.Int64("bytes_to_vm", s.toUpstream), slog.Int64("bytes_to_browser", s.toClient),
		slog.Duration("duration", d))
}

// flushCounters adds the bytes relayed since the last flush to the global
// counters; per-message updates stay local to the session.
func (s *session) flushCounters() {
	if d := s.toUpstream - s.flushedUp; d > 0 {
		s.srv.met.bytesToUpstream.AddInt64(d)
		s.flushedUp = s.toUpstream
	}
	if d := s.toClient - s.flushedDn; d > 0 {
		s.srv.met.bytesToClient.AddInt64(d)
		s.flushedDn = s.toClient
	}
}

// checkDeadlines runs from the loop's sweep.
func (s *session) checkDeadlines(now int64) {
	cfg := &s.srv.cfg
	switch s.state {
	case stHandshake:
		if s.deadline > 0 && now > s.deadline {
			s.srv.met.upgradesFailed[rejectTimeout].Inc()
			s.rejectHTTP(408, "handshake timeout")
		}
	case stRelaying:
		s.flushCounters()
		if cfg.IdleTimeout > 0 && now-s.lastActive > int64(cfg.IdleTimeout) {
			s.closeWith(ws.StatusGoingAway, reasonIdleTimeout, "idle timeout")
			return
		}
		if cfg.PingInterval <= 0 || s.inputHeld || s.client == nil {
			return // a parked browser is not read, so its pongs could not count
		}
		if s.pingSent == 0 {
			if now-s.lastRecv >= int64(cfg.PingInterval) {
				s.pingSent = now
				_, _ = s.client.Write(pingFrame)
			}
		} else if cfg.PongTimeout > 0 && now-s.pingSent > int64(cfg.PongTimeout) {
			s.closeWith(ws.StatusGoingAway, reasonPongTimeout, "no pong from the browser")
		}
	case stClosing:
		if now > s.deadline {
			if s.client != nil {
				_ = s.client.Close()
			} else {
				s.finish() // a parked browser socket never came back
			}
		}
	}
}

// pingFrame is an empty server ping; immutable, shared by all sessions.
var pingFrame = wsframe.AppendFrame(nil, true, ws.OpPing, nil)

// pollWaiting re-checks a session on the poll list and reports whether it
// still has to wait.
func (s *session) pollWaiting() bool {
	switch s.state {
	case stClosing:
		if s.client == nil {
			return false
		}
		if s.srv.now() > s.deadline {
			_ = s.client.Close()
			return false
		}
		if s.client.OutboundBuffered() > 0 {
			return true
		}
		s.closeClientWhenDrained()
		return false
	case stRelaying:
		return s.pollBackpressure()
	default:
		return false
	}
}

// errText is err's message without the "read: " decoration noise, for
// close reasons a person reads in noVNC.
func errText(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
