package engine

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/engine/tlsio"
)

// httpConn is an accepted browser socket that is not (or no longer) a
// session: it reads HTTP request heads, serves static files (keep-alive),
// answers errors, and hands the socket to a new session when a request is
// a valid WebSocket upgrade. Its life is short and has two phases:
//
//	reading ── static file, keep-alive ──► reading (a fresh deadline)
//	   │ upgrade valid ──► session (session.go); a setup that fails comes back here
//	   └ error, Connection: close ──► closing (drain, SHUT_WR, grace) ──► gone
type httpConn struct {
	ls      *loopState
	srv     *Server
	browser browserConn
	tracking

	remote    string     // the client's address as logged
	clientKey netip.Addr // the address per-client limits count against; invalid when none is known
	slots     slots
	started   int64 // UnixNano
	proxyDone bool  // the PROXY protocol header was read (--proxy-protocol)
	closing   bool  // a last response is draining; nothing more is read
	deadline  int64 // reading: when the request head must be complete
	// A response not yet written holds back the next pipelined request
	// (waiting), and its bytes count in Server.staticQueued (queued).
	waiting  bool
	queued   int64
	progress int64 // waiting: when the response last moved
}

// newHTTPConn starts tracking a socket the loop just accepted; it holds
// the slots admission gave it (listen.go).
func newHTTPConn(ls *loopState, c gnet.Conn, mark *acceptMark) *httpConn {
	srv := ls.srv
	h := &httpConn{ls: ls, srv: srv, browser: browserConn{c: c}, started: time.Now().UnixNano(),
		tracking: tracking{slot: -1}, clientKey: mark.peer,
		slots: slots{fds: 1, handshake: true, hsClient: mark.peer}}
	if mark.tls {
		// The handshake runs on a worker once the ClientHello is complete;
		// it wakes this socket (OnTraffic) when it has news.
		h.browser.tls = tlsio.NewServer(srv.tlsPool, srv.tlsStore.ServerConfig(), c, func() { _ = c.Wake(nil) })
	}
	if a := c.RemoteAddr(); a != nil {
		h.remote = a.String()
	}
	h.armDeadline()
	c.SetContext(h)
	ls.conns.add(h)
	srv.met.connectionsOpen.Inc()
	return h
}

// adoptHTTP takes the browser socket back from a session whose setup failed
// before the 101, so that it can be answered with an HTTP error.
func (ls *loopState) adoptHTTP(s *session) *httpConn {
	h := &httpConn{ls: ls, srv: s.srv, browser: s.browser, remote: s.remote, started: s.started,
		proxyDone: true, tracking: tracking{slot: -1}}
	moveConnSlots(&h.slots, &s.slots)
	s.browser.c = nil
	h.browser.c.SetContext(h)
	ls.conns.add(h)
	return h
}

func (h *httpConn) armDeadline() {
	h.deadline = 0
	if d := h.srv.cfg.HandshakeTimeout; d > 0 {
		h.deadline = h.srv.now() + int64(d)
	}
}

// onTraffic accumulates the request head in gnet's inbound buffer and acts
// on it once complete: a static file, an error, or an upgrade whose 101 is
// held back until the VM answers.
func (h *httpConn) onTraffic(c gnet.Conn) gnet.Action {
	if c != h.browser.c {
		return gnet.Close
	}
	if h.closing {
		_, _ = c.Discard(-1) // the response is out; whatever follows is ignored
		return gnet.None
	}
	srv := h.srv
	if srv.cfg.ProxyProtocol && !h.proxyDone {
		// The PROXY header comes before TLS, in the clear.
		if act, done := h.readProxyHeader(c); !done {
			return act
		}
	}
	b := &h.browser
	if b.tls != nil {
		switch b.tlsIn() {
		case tlsWaiting:
			return gnet.None
		case tlsFailed:
			srv.met.tlsFailures.Inc()
			srv.logSampled(&srv.rejectLog, slog.LevelInfo, "TLS handshake failed",
				slog.String("client", h.remote), slog.String("error", b.tlsErr.Error()))
			return gnet.Close
		case tlsPlainHTTP:
			srv.met.upgradesFailed[rejectBadRequest].Inc()
			_, _ = c.Discard(-1)
			b.writeRaw(plainOnTLSPort)
			h.closeAfterResponse()
			return gnet.None
		}
	}
	defer func() {
		if b.tlsEnded() && b.c != nil && c.Context() == h {
			_ = b.c.Close()
		}
	}()
	maxHead := srv.cfg.MaxHeaderBytes
	for b.c != nil && !h.closing && c.Context() == h {
		if h.waiting {
			// Answer one request at a time: the next waits until the last
			// response is written, and what a client pipelines meanwhile
			// is capped (a client that sends and never reads must not
			// make us queue response after response).
			if b.held() > pipelineCap(maxHead) {
				return gnet.Close
			}
			return gnet.None
		}
		if b.inbound() == 0 {
			return gnet.None
		}
		buf := b.peek(-1)
		end := headEnd(buf)
		if end == -2 {
			b.discard(len(buf))
			h.reject(rejectBadRequest, "request line ends are not CRLF")
			return gnet.None
		}
		if end < 0 || end > maxHead+len(crlfcrlf) {
			if end > 0 || len(buf) > maxHead {
				h.reject(rejectTooLarge, "request head over "+strconv.Itoa(maxHead)+" bytes")
			}
			return gnet.None
		}
		head, ok := scanHead(buf[:end])
		if !ok {
			b.discard(end)
			h.reject(rejectBadRequest, "malformed request head (request line, a header, a second Host or Origin, or a NUL byte)")
			return gnet.None
		}
		site := srv.site.Load()
		isGet := string(head.method) == http.MethodGet
		if !head.upgrade && site != nil && (isGet || string(head.method) == http.MethodHead) {
			b.discard(end)
			if max := srv.cfg.MaxStaticQueued; max > 0 && srv.staticQueued.Load() > int64(max) {
				h.reject(rejectStaticBusy, "static responses not yet written exceed MaxStaticQueued")
				return gnet.None
			}
			hdr, body := site.Respond(string(head.method), string(head.target), string(head.ifNoneMatch), head.closeConn)
			srv.met.staticResponses.Inc()
			if body != nil {
				h.browser.writev(&h.ls.iov, hdr, body)
			} else {
				h.browser.write(hdr)
			}
			if h.browser.c == nil {
				return gnet.None // the write failed; gnet closed the socket
			}
			if head.closeConn {
				h.closeAfterResponse()
				return gnet.None
			}
			h.armDeadline() // keep-alive: the next request gets a fresh deadline
			if c.OutboundBuffered() > 0 {
				h.waiting, h.progress = true, srv.now()
				h.account()
				h.ls.wait(h)
			}
			continue
		}
		h.upgrade(c, buf[:end])
		b.discard(end)
	}
	return gnet.None
}

// plainOnTLSPort answers an HTTP request sent to the TLS listener.
var plainOnTLSPort = appendHTTPError(nil, http.StatusBadRequest, "this port speaks TLS: use https:// and wss://")

// readProxyHeader consumes the PROXY protocol header that must open every
// connection under --proxy-protocol. done reports that the request may be
// read now; otherwise act is what to return to gnet (wait, or close).
func (h *httpConn) readProxyHeader(c gnet.Conn) (act gnet.Action, done bool) {
	srv := h.srv
	if ap, err := netip.ParseAddrPort(h.remote); err != nil || !srv.proxies.contains(ap.Addr()) {
		srv.log.LogAttrs(context.Background(), slog.LevelWarn, "connection refused: not from a trusted proxy",
			slog.String("client", h.remote))
		return gnet.Close, false
	}
	buf, _ := c.Peek(-1)
	client, n, err := parseProxyHeader(buf)
	if errors.Is(err, errProxyIncomplete) {
		return gnet.None, false // the handshake deadline bounds the wait
	}
	if err != nil {
		srv.met.upgradesFailed[rejectBadRequest].Inc()
		srv.log.LogAttrs(context.Background(), slog.LevelWarn, "connection refused: bad PROXY header",
			slog.String("client", h.remote), slog.String("detail", err.Error()))
		return gnet.Close, false
	}
	_, _ = c.Discard(n)
	h.proxyDone = true
	if client == "" {
		return gnet.None, true
	}
	h.remote = client
	// The handshake now counts against the client the proxy named.
	if ap, err := netip.ParseAddrPort(client); err == nil {
		h.clientKey = ap.Addr().Unmap()
		if h.slots.handshake && !h.slots.hsClient.IsValid() {
			if !srv.clients.acquireHandshake(h.clientKey) {
				h.reject(rejectHandshakes, "too many connections in their handshake from this client")
				return gnet.None, false
			}
			h.slots.hsClient = h.clientKey
		}
	}
	return gnet.None, true
}

// upgrade validates a WebSocket upgrade and, when it passes, hands the
// socket to a new session that starts resolving its route. The 101 is
// kept, not sent: the browser hears "switching protocols" only once its VM
// is connected, and an unknown token can still get a plain HTTP 404.
func (h *httpConn) upgrade(c gnet.Conn, head []byte) {
	srv := h.srv
	resp := bytebufferpool.Get()
	info, hs, err := srv.checkUpgrade(head, resp, h.remote, h.clientKey)
	h.remote, h.clientKey = info.client, info.clientKey
	if err != nil {
		detail := info.detail
		if detail == "" {
			detail = err.Error()
		}
		srv.met.upgradesFailed[info.reject].Inc()
		srv.logSampled(&srv.rejectLog, slog.LevelInfo, "upgrade rejected",
			slog.String("client", h.remote), slog.String("reason", info.reject.String()),
			slog.String("detail", detail))
		h.browser.write(resp.B)
		bytebufferpool.Put(resp)
		h.closeAfterResponse()
		return
	}
	mode := modeBinary
	if hs.Protocol == "base64" {
		mode = modeBase64
	}
	h.ls.conns.remove(h)
	newSession(h, info, mode, resp)
}

// reject answers a request that will not become a session with a short
// plain-text HTTP error, counted and logged (sampled: a client can send
// these as fast as it likes), and closes the socket once it is written.
func (h *httpConn) reject(why rejectReason, detail string) {
	h.srv.met.upgradesFailed[why].Inc()
	h.srv.logSampled(&h.srv.rejectLog, slog.LevelInfo, "request rejected", slog.String("client", h.remote),
		slog.Int("status", why.status()), slog.String("reason", why.String()), slog.String("detail", detail))
	h.respondError(why.status(), why.public())
}

// respondError writes a plain-text HTTP error and closes after it.
func (h *httpConn) respondError(status int, text string) {
	if h.browser.c == nil {
		return
	}
	bb := bytebufferpool.Get()
	bb.B = appendHTTPError(bb.B[:0], status, text)
	h.browser.write(bb.B)
	bytebufferpool.Put(bb)
	h.closeAfterResponse()
}

// closeAfterResponse ends a socket that got its last HTTP response, once
// the response is written.
func (h *httpConn) closeAfterResponse() {
	if h.browser.c == nil || h.closing {
		return
	}
	h.closing = true
	h.waiting = false
	h.account()
	now := h.srv.now()
	if h.browser.startClose(now, now+int64(h.srv.cfg.CloseLinger), h.srv.cfg.CloseGrace) {
		h.ls.wait(h)
	}
}

// checkDeadline runs from the loop's sweep. A response being written has
// no overall deadline (a big file to a slow link takes what it takes), but
// it must keep moving: no progress for HandshakeTimeout ends it.
func (h *httpConn) checkDeadline(now int64) {
	stall := int64(h.srv.cfg.HandshakeTimeout)
	switch {
	case h.closing:
		h.browser.expireClose(now)
	case h.waiting:
		if stall > 0 && now-h.progress > stall && h.browser.c != nil {
			h.srv.logSampled(&h.srv.rejectLog, slog.LevelInfo, "static response stalled", slog.String("client", h.remote))
			_ = h.browser.c.Close()
		}
	case h.deadline > 0 && now > h.deadline:
		h.reject(rejectTimeout, "request head not complete within the handshake timeout")
	}
}

func (h *httpConn) pollWaiting() bool {
	c := h.browser.c
	if c == nil {
		return false
	}
	if h.waiting {
		before := h.queued
		h.account()
		if h.queued < before {
			h.progress = h.srv.now()
		}
		if c.OutboundBuffered() > 0 {
			return true
		}
		h.waiting = false
		h.armDeadline() // the next request's time starts when this response is out
		if c.InboundBuffered() > 0 {
			_ = c.Wake(nil) // the requests that were pipelined meanwhile
		}
	}
	if h.closing {
		h.account()
		return h.browser.pollClose(h.srv.now(), h.srv.cfg.CloseGrace)
	}
	return false
}

// account keeps Server.staticQueued up to date with what gnet still holds
// for this socket.
func (h *httpConn) account() {
	n := int64(0)
	if h.browser.c != nil {
		n = int64(h.browser.c.OutboundBuffered())
	}
	if d := n - h.queued; d != 0 {
		h.srv.staticQueued.Add(d)
		h.queued = n
	}
}

// pipelineCap is how many bytes of pipelined requests a connection may send
// while its previous response is being written.
func pipelineCap(maxHead int) int { return 4 * maxHead }

// onClose forgets a socket that is gone.
func (h *httpConn) onClose(c gnet.Conn) {
	if c != h.browser.c {
		return
	}
	h.browser.c = nil
	h.browser.release()
	h.account()
	h.ls.conns.remove(h)
	h.srv.releaseSlots(&h.slots)
	h.srv.met.connectionsOpen.Dec()
}

func appendHTTPError(dst []byte, status int, reason string) []byte {
	body := reason + "\n"
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...)
}

func (h *httpConn) browserSocket() gnet.Conn { return h.browser.c }
