package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/routing"
)

// readRequest accumulates the HTTP request head in gnet's inbound buffer and
// acts on it once complete: a static file, an error, or an upgrade whose 101
// is held back until the VM answers.
func (s *session) readRequest(c gnet.Conn) gnet.Action {
	if s.srv.cfg.ProxyProtocol && !s.proxyDone {
		if act, done := s.readProxyHeader(c); !done {
			return act
		}
	}
	for s.state == stHandshake {
		buf, _ := c.Peek(-1)
		end := headEnd(buf)
		if end < 0 || end > maxHeaderBytes+len(crlfcrlf) {
			if end > 0 || len(buf) > maxHeaderBytes {
				s.srv.met.upgradesFailed[rejectTooLarge].Inc()
				s.rejectHTTP(http.StatusRequestHeaderFieldsTooLarge, "request header fields too large")
			}
			return gnet.None
		}
		head, ok := scanHead(buf[:end])
		if !ok {
			_, _ = c.Discard(end)
			s.srv.met.upgradesFailed[rejectBadRequest].Inc()
			s.rejectHTTP(http.StatusBadRequest, "malformed request")
			return gnet.None
		}
		site := s.srv.site.Load()
		isGet := string(head.method) == http.MethodGet
		if !head.upgrade && site != nil && (isGet || string(head.method) == http.MethodHead) {
			hdr, body := site.Respond(string(head.method), string(head.target), string(head.ifNoneMatch), head.closeConn)
			s.srv.met.staticResponses.Inc()
			_, _ = c.Discard(end)
			if body != nil {
				s.iov[0], s.iov[1] = hdr, body
				_, _ = c.Writev(s.iov[:])
				s.iov[0], s.iov[1] = nil, nil
			} else {
				_, _ = c.Write(hdr)
			}
			if head.closeConn {
				s.closeAfterResponse()
				return gnet.None
			}
			// Keep-alive: the next request on this socket gets a fresh deadline.
			if d := s.srv.cfg.HandshakeTimeout; d > 0 {
				s.deadline = s.srv.now() + int64(d)
			}
			continue
		}
		s.upgrade(c, buf[:end])
		_, _ = c.Discard(end)
	}
	return gnet.None
}

// readProxyHeader consumes the PROXY protocol header that must open every
// connection under --proxy-protocol. done reports that the request may be
// read now; otherwise act is what to return to gnet (wait, or close).
func (s *session) readProxyHeader(c gnet.Conn) (act gnet.Action, done bool) {
	srv := s.srv
	if ap, err := netip.ParseAddrPort(s.remote); err != nil || !srv.proxies.contains(ap.Addr()) {
		srv.log.LogAttrs(context.Background(), slog.LevelWarn, "connection refused: not from a trusted proxy",
			slog.String("client", s.remote))
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
			slog.String("client", s.remote), slog.String("detail", err.Error()))
		return gnet.Close, false
	}
	_, _ = c.Discard(n)
	if client != "" {
		s.remote = client
	}
	s.proxyDone = true
	return gnet.None, true
}

// upgradeInfo collects what gobwas/ws's hooks see during one upgrade.
type upgradeInfo struct {
	route   routing.Route
	host    string
	origin  string
	xff     string // X-Forwarded-For, all lines joined
	reject  rejectReason
	counted bool // a global session slot was taken
}

// checkUpgrade validates one complete request head as a WebSocket upgrade
// with gobwas/ws and writes the response it calls for to resp: the 101 on
// success (which the caller holds back), else the error status. On success
// a global session slot is held (info.counted). It touches no socket, so
// the fuzz target drives it directly.
func (srv *Server) checkUpgrade(head []byte, resp io.Writer) (upgradeInfo, ws.Handshake, error) {
	info := upgradeInfo{reject: rejectBadRequest}
	u := ws.Upgrader{
		ProtocolCustom: selectProtocol,
		OnRequest: func(uri []byte) error {
			rt, err := srv.router.Classify(uri)
			if err != nil {
				info.reject = routeRejectReason(err)
				return routeRejection(err)
			}
			info.route = rt
			return nil
		},
		OnHost: func(h []byte) error {
			info.host = string(h)
			return nil
		},
		OnHeader: func(k, v []byte) error {
			switch {
			case bytes.EqualFold(k, []byte("Origin")):
				info.origin = string(v)
			case len(srv.proxies) > 0 && bytes.EqualFold(k, []byte("X-Forwarded-For")):
				if info.xff != "" {
					info.xff += ","
				}
				info.xff += string(v)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !srv.origins.allow(info.origin, info.host) {
				info.reject = rejectOrigin
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden),
					ws.RejectionReason("origin not allowed"))
			}
			if srv.draining.Load() {
				info.reject = rejectDraining
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable),
					ws.RejectionReason("server is draining"))
			}
			if !srv.cap.acquireSession() {
				info.reject = rejectCapacity
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable),
					ws.RejectionReason("server at capacity"))
			}
			info.counted = true
			return nil, nil
		},
	}
	hs, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), resp})
	if err != nil {
		if info.counted { // a write error after the capacity check
			info.counted = false
			srv.cap.releaseSession()
		}
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) && info.reject == rejectBadRequest {
			info.reject = statusRejectReason(rej.StatusCode())
		}
	}
	return info, hs, err
}

// upgrade validates a WebSocket upgrade and, when it passes, starts the
// route lookup. The 101 response is kept, not sent: the browser hears
// "switching protocols" only once its VM is connected, and an unknown token
// can still get a plain HTTP 404.
func (s *session) upgrade(c gnet.Conn, head []byte) {
	srv := s.srv
	resp := bytebufferpool.Get()
	info, hs, err := srv.checkUpgrade(head, resp)
	s.remote = srv.proxies.clientAddr(s.remote, info.xff)
	if err != nil {
		srv.met.upgradesFailed[info.reject].Inc()
		srv.log.LogAttrs(context.Background(), slog.LevelInfo, "upgrade rejected",
			slog.String("client", s.remote), slog.String("reason", info.reject.String()),
			slog.String("detail", err.Error()))
		_, _ = c.Write(resp.B)
		bytebufferpool.Put(resp)
		s.closeAfterResponse()
		return
	}
	if hs.Protocol == "base64" {
		s.mode = modeBase64
	}
	s.counted = true
	s.upgradeResp = resp
	s.route = info.route
	s.id = srv.nextSessionID()
	s.state = stResolving
	srv.met.sessionsActive.Inc()
	srv.startResolve(s)
}

// selectProtocol picks the subprotocol: "binary" when offered, else the
// legacy "base64", else none (noVNC 1.2+ offers none). Unknown offers never
// fail the upgrade.
func selectProtocol(v []byte) (string, bool) {
	var hasBinary, hasBase64 bool
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		switch string(bytes.TrimSpace(t)) {
		case "binary":
			hasBinary = true
		case "base64":
			hasBase64 = true
		}
	}
	switch {
	case hasBinary:
		return "binary", true
	case hasBase64:
		return "base64", true
	}
	return "", true
}

// rejectHTTP answers a request that will not become a session with a short
// plain-text HTTP error and closes the socket once it is written.
func (s *session) rejectHTTP(status int, reason string) {
	if s.client == nil {
		return
	}
	bb := bytebufferpool.Get()
	bb.B = appendHTTPError(bb.B[:0], status, reason)
	_, _ = s.client.Write(bb.B)
	bytebufferpool.Put(bb)
	s.closeAfterResponse()
}

// closeAfterResponse ends a socket that got an HTTP response (and never
// became a relaying session) once the response is written.
func (s *session) closeAfterResponse() {
	if s.client == nil {
		return
	}
	s.state = stClosing
	s.deadline = s.srv.now() + int64(closeLinger)
	s.closeClientWhenDrained()
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

// routeRejection turns a routing error into the rejection gobwas/ws writes.
func routeRejection(err error) error {
	status, reason := routeStatus(err)
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

func routeStatus(err error) (int, string) {
	var re *routing.Error
	if errors.As(err, &re) {
		return re.Status, re.Reason
	}
	return http.StatusBadGateway, err.Error()
}

func routeRejectReason(err error) rejectReason {
	switch {
	case errors.Is(err, routing.ErrUnknownToken):
		return rejectUnknownToken
	case errors.Is(err, routing.ErrForbidden):
		return rejectForbidden
	case errors.Is(err, routing.ErrNoRoute):
		return rejectNotFound
	case errors.Is(err, routing.ErrLookup):
		return rejectLookup
	}
	status, _ := routeStatus(err)
	return statusRejectReason(status)
}

func statusRejectReason(status int) rejectReason {
	switch status {
	case http.StatusMethodNotAllowed:
		return rejectMethod
	case http.StatusUpgradeRequired:
		return rejectVersion
	case http.StatusNotFound:
		return rejectNotFound
	case http.StatusForbidden:
		return rejectForbidden
	case http.StatusServiceUnavailable:
		return rejectCapacity
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return rejectLookup
	}
	return rejectBadRequest
}
