package engine

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/netip"

	"github.com/gobwas/ws"

	"vncedge/routing"
)

// upgradeInfo collects what gobwas/ws's hooks see during one upgrade.
type upgradeInfo struct {
	route     routing.Route
	host      string
	origin    string
	xff       string     // X-Forwarded-For, all lines joined
	xffDone   bool       // xff was applied to client
	client    string     // the client's address as logged (after a trusted X-Forwarded-For)
	clientKey netip.Addr // the address per-client limits count against; invalid when none
	reject    rejectReason
	detail    string // why, for the log only
	counted   bool   // a global session slot and one of the client's were taken
}

// checkUpgrade validates one complete request head as a WebSocket upgrade
// with gobwas/ws and writes the response it calls for to resp: the 101 on
// success (which the caller holds back), else the error status. On success
// a global session slot and one of the client's are held (info.counted).
// remote and key are the connection's client address so far (a PROXY
// header may have named it); a trusted X-Forwarded-For can refine both.
// It touches no socket, so the fuzz target drives it directly.
func (srv *Server) checkUpgrade(head []byte, resp io.Writer, remote string, key netip.Addr) (upgradeInfo, ws.Handshake, error) {
	info := upgradeInfo{reject: rejectBadRequest, client: remote, clientKey: key}
	// One snapshot of the live settings for the whole request: a reload in
	// the middle must not check its origin against one list and its
	// X-Forwarded-For against another.
	live := srv.current()
	trusted := len(live.proxies) > 0
	cookieRouting := srv.router.TokenCookie() != ""
	var uriCopy, cookies []byte // with cookie routing, the route waits for the headers
	u := ws.Upgrader{
		ProtocolCustom: selectProtocol,
		OnRequest: func(uri []byte) error {
			if cookieRouting {
				uriCopy = append(uriCopy[:0], uri...)
				return nil
			}
			return info.classify(srv.router.Classify(uri))
		},
		OnHost: func(h []byte) error {
			info.host = string(h)
			return nil
		},
		OnHeader: func(k, v []byte) error {
			switch {
			case bytes.EqualFold(k, []byte("Origin")):
				info.origin = string(v)
			case trusted && bytes.EqualFold(k, []byte("X-Forwarded-For")):
				if info.xff != "" {
					info.xff += ","
				}
				info.xff += string(v)
			case cookieRouting && bytes.EqualFold(k, []byte("Cookie")):
				if len(cookies) > 0 {
					cookies = append(cookies, "; "...)
				}
				cookies = append(cookies, v...)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			info.resolveClient(live.proxies)
			if cookieRouting {
				if err := info.classify(srv.router.ClassifyCookie(uriCopy, cookies)); err != nil {
					return nil, err
				}
			}
			switch {
			case !live.origins.allow(info.origin, info.host):
				info.reject = rejectOrigin
			case srv.refusing.Load():
				info.reject = rejectDraining
			default:
				ok, why := srv.clients.admitUpgrade(info.clientKey)
				if !ok {
					info.reject = why
					break
				}
				if !srv.limits.acquireSession() {
					srv.clients.releaseSession(info.clientKey)
					info.reject = rejectCapacity
					break
				}
				info.counted = true
				return nil, nil
			}
			return nil, ws.RejectConnectionError(ws.RejectionStatus(info.reject.status()),
				ws.RejectionReason(info.reject.public()))
		},
	}
	hs, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), resp})
	info.resolveClient(live.proxies) // a rejected request is logged with its real client too
	if err != nil {
		if info.counted { // a write error after the capacity check
			info.counted = false
			srv.limits.releaseSession()
			srv.clients.releaseSession(info.clientKey)
		}
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) && info.reject == rejectBadRequest {
			info.reject = reasonForStatus(rej.StatusCode())
		}
	}
	return info, hs, err
}

// classify takes Classify's answer: the route, or the rejection gobwas/ws
// writes. The body says only what the browser may know; the reason (it can
// quote the allow-list) goes to the log.
func (info *upgradeInfo) classify(rt routing.Route, err error) error {
	if err != nil {
		var status int
		info.reject, status = routeReject(err)
		_, info.detail = routeStatus(err)
		return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(info.reject.public()))
	}
	info.route = rt
	return nil
}

// resolveClient applies a trusted X-Forwarded-For, once.
func (info *upgradeInfo) resolveClient(proxies trustedProxies) {
	if info.xff == "" || info.xffDone {
		return
	}
	info.xffDone = true
	if c := proxies.clientAddr(info.client, info.xff); c != info.client {
		info.client = c
		if a, err := netip.ParseAddr(c); err == nil {
			info.clientKey = a
		}
	}
}

// routeStatus is the status and log detail of a routing error.
func routeStatus(err error) (int, string) {
	var re *routing.Error
	if errors.As(err, &re) {
		return re.Status, re.Reason
	}
	return http.StatusBadGateway, err.Error()
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
