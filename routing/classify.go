package routing

import (
	"bytes"
	"errors"
	"net/http"
	"net/netip"
	"strings"
)

// Classify parses the request target (the raw request URI, possibly
// percent-encoded, origin-form or absolute-form) into a Route. It never
// blocks and does no I/O, so it may run on the event loop.
//
// Path routes (/vnc/{ip}, /vnc/{ip}:{port}, /vnc/[{ipv6}]:{port}, an optional
// trailing slash, any query ignored) take IP literals only: the target comes
// from the client, and a host name would let any client make us resolve
// names of its choosing. They are checked against the allow-list here, so a
// refusal costs no worker time. Token routes (/websockify?token=T, other
// query parameters ignored, first non-empty token wins as in websockify) are
// completed by ResolveFast or Resolve.
//
// Paths are matched after percent-decoding and are never cleaned: "/x/../vnc/"
// is no route, and a target with '/' or ".." in it is a bad target.
// Errors are *Error values.
func (r *Router) Classify(uri []byte) (Route, error) {
	return r.ClassifyCookie(uri, nil)
}

// ClassifyCookie is Classify for a request that carried a Cookie header
// (its value, or several joined with "; "): on the token path, when the
// query has no token, the token comes from the --token-cookie cookie. noVNC
// cannot send headers, but the console page that embeds it can set a
// cookie (OpenStack's console proxy reads its "token" cookie the same
// way). The first non-empty cookie of that name wins; a quoted value is
// unquoted; the value is not percent-decoded (browsers send it as set).
// With no cookie name configured the header is ignored.
func (r *Router) ClassifyCookie(uri, cookieHeader []byte) (Route, error) {
	uri = stripAuthority(uri)
	path, query := uri, []byte(nil)
	if i := bytes.IndexAny(uri, "?#"); i >= 0 {
		path = uri[:i]
		if uri[i] == '?' {
			query = uri[i+1:]
			if j := bytes.IndexByte(query, '#'); j >= 0 {
				query = query[:j]
			}
		}
	}
	var stack [128]byte
	p, ok := appendUnescape(stack[:0], path, false)
	if !ok {
		return Route{}, badTarget("malformed percent-encoding in path")
	}

	if n := len(r.tokenPath); len(p) >= n && string(p[:n]) == r.tokenPath &&
		(len(p) == n || (len(p) == n+1 && p[n] == '/')) {
		rt, err := r.classifyToken(query)
		if errors.Is(err, errNoQueryToken) && r.tokenCookie != "" {
			if v := CookieValue(cookieHeader, r.tokenCookie); len(v) > 0 {
				return r.tokenRoute(v, "cookie")
			}
		}
		if errors.Is(err, errNoQueryToken) {
			return Route{}, newError(http.StatusBadRequest, ErrMissingToken, "missing token")
		}
		return rt, err
	}
	if n := len(r.pathPrefix); len(p) >= n && string(p[:n]) == r.pathPrefix {
		return r.classifyPath(p[n:])
	}
	return Route{}, newError(http.StatusNotFound, ErrNoRoute, "no route for this path")
}

func (r *Router) classifyPath(target []byte) (Route, error) {
	allow := r.AllowList()
	if allow.Empty() {
		return Route{}, errNoAllow()
	}
	if n := len(target); n > 0 && target[n-1] == '/' {
		target = target[:n-1]
	}
	ap, err := parsePathTarget(target, r.defaultPort)
	if err != nil {
		return Route{}, err
	}
	if err := allow.Check(ap); err != nil {
		return Route{}, err
	}
	return Route{Kind: KindPath, Addr: ap}, nil
}

// parsePathTarget accepts ip, ip:port, [ipv6] and [ipv6]:port. IPv6 needs
// brackets (fd00::1:5902 is ambiguous); zones are refused (they would let the
// client pick our interface). The result is unmapped.
func parsePathTarget(t []byte, defPort uint16) (netip.AddrPort, error) {
	if len(t) == 0 {
		return netip.AddrPort{}, badTarget("missing target after path prefix")
	}
	var host, port []byte
	hasPort := false
	if t[0] == '[' {
		end := bytes.IndexByte(t, ']')
		if end < 0 {
			return netip.AddrPort{}, badTarget("missing ']' in IPv6 target")
		}
		host, port = t[1:end], t[end+1:]
		if len(port) > 0 {
			if port[0] != ':' {
				return netip.AddrPort{}, badTarget("unexpected text after ']'")
			}
			port, hasPort = port[1:], true
		}
	} else {
		switch bytes.Count(t, []byte(":")) {
		case 0:
			host = t
		case 1:
			host, port, hasPort = bytes.Cut(t, []byte(":"))
		default:
			return netip.AddrPort{}, badTarget("IPv6 target needs brackets: /vnc/[addr]:port")
		}
	}
	// netip.ParseAddr(string(b)) does not allocate: the conversion does not escape.
	addr, err := netip.ParseAddr(string(host))
	if err != nil {
		if looksLikeHostName(string(host)) {
			return netip.AddrPort{}, badTarget("path routes take IP literals only, not host names")
		}
		return netip.AddrPort{}, badTarget("malformed IP address")
	}
	if addr.Zone() != "" {
		return netip.AddrPort{}, badTarget("IPv6 zones are not allowed in path routes")
	}
	if t[0] == '[' && !addr.Is6() {
		return netip.AddrPort{}, badTarget("brackets are for IPv6 addresses only")
	}
	p := defPort
	if hasPort {
		n, err := parsePort(string(port))
		if err != nil {
			return netip.AddrPort{}, badTarget(err.Error())
		}
		p = n
	}
	return netip.AddrPortFrom(addr.Unmap(), p), nil
}

// errNoQueryToken tells ClassifyCookie to try the cookie.
var errNoQueryToken = errors.New("no token in the query")

func (r *Router) classifyToken(query []byte) (Route, error) {
	if len(r.sources) == 0 {
		return Route{}, newError(http.StatusNotFound, ErrNoRoute, "token path, but no token source is configured")
	}
	var stack [128]byte
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		key, val := pair, []byte(nil)
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			key, val = pair[:i], pair[i+1:]
		}
		k, ok := appendUnescape(stack[:0], key, true)
		if !ok || string(k) != r.tokenParam {
			continue
		}
		v, ok := appendUnescape(stack[:0], val, true)
		if !ok {
			return Route{}, newError(http.StatusBadRequest, ErrMissingToken, "malformed percent-encoding in token")
		}
		// websockify strips trailing newlines and ignores blank values.
		for len(v) > 0 && v[len(v)-1] == '\n' {
			v = v[:len(v)-1]
		}
		if len(v) == 0 {
			continue
		}
		return r.tokenRoute(v, "token")
	}
	return Route{}, errNoQueryToken
}

// tokenRoute checks a token's bytes and copies them out of the request.
func (r *Router) tokenRoute(v []byte, what string) (Route, error) {
	if len(v) > maxTokenLen {
		return Route{}, newError(http.StatusBadRequest, ErrMissingToken, what+" too long")
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return Route{}, newError(http.StatusBadRequest, ErrMissingToken, "control character in "+what)
		}
	}
	return Route{Kind: KindToken, Token: string(v)}, nil
}

// CookieValue returns the value of the first cookie called name with a
// non-empty value in a Cookie header value ("a=1; token=xyz"), unquoted, or
// nil. It is lenient the way browsers' senders need (any white space around
// pairs, a missing space after ';') and allocates nothing: the result
// aliases header.
func CookieValue(header []byte, name string) []byte {
	for len(header) > 0 {
		var pair []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			pair, header = header[:i], header[i+1:]
		} else {
			pair, header = header, nil
		}
		pair = bytes.Trim(pair, " \t")
		k, v, ok := bytes.Cut(pair, []byte("="))
		if !ok || string(bytes.TrimRight(k, " \t")) != name {
			continue
		}
		v = bytes.TrimLeft(v, " \t")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if len(v) > 0 {
			return v
		}
	}
	return nil
}

// checkCookieName accepts an RFC 6265 cookie-name (an RFC 7230 token).
func checkCookieName(name string) error {
	if name == "" {
		return nil
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return errors.New("a cookie name is letters, digits and !#$%&'*+-.^_`|~ only")
		}
	}
	return nil
}
