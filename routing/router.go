// Package routing maps a WebSocket upgrade request to the VNC server it may
// reach: path routes checked against an allow-list, token routes from token
// sources.
//
// The engine calls Classify on its event loop (cheap, no I/O) and Resolve on a
// worker goroutine (may block on DNS or a remote token source).
package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

// Kind says where a route's target comes from.
type Kind uint8

const (
	// KindPath targets come from the client: /vnc/{ip}[:{port}].
	KindPath Kind = iota + 1
	// KindToken targets come from the operator's token sources.
	KindToken
)

func (k Kind) String() string {
	switch k {
	case KindPath:
		return "path"
	case KindToken:
		return "token"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Route is what Classify learned from the request line. It holds no
// reference into the request buffer, which the engine reuses.
type Route struct {
	Kind   Kind
	Target string // KindPath: "ip:port", normalised, default port filled in
	Token  string // KindToken: the token (never log it; see TokenHash)
}

// Target is a resolved, allowed upstream.
type Target struct {
	Addr      netip.AddrPort // what to dial
	Name      string         // as configured or requested, e.g. "vm1.lan:5901" (logs, per-upstream limit key)
	Kind      Kind
	TokenHash string // KindToken: TokenHash of the token, for logs
}

// TokenSource is where token routes come from. Lookup may block (it runs off
// the event loop) and must honour ctx. It returns ErrUnknownToken (wrapped or
// not) when the token is absent. Its errors must never contain the token:
// they reach the log.
type TokenSource interface {
	Lookup(ctx context.Context, token string) (hostport string, err error)
	Name() string
}

// Source is another name for TokenSource, which cmd/vncedge was written against.
type Source = TokenSource

// Reloader is implemented by sources that can re-read their data (SIGHUP).
type Reloader interface{ Reload() error }

// Config configures a Router. Zero values take the documented defaults.
type Config struct {
	Allow       []string      // --allow specs, see ParseAllowList
	PathPrefix  string        // default "/vnc/"; must start and end with '/'
	TokenPath   string        // default "/websockify" (--token-path)
	TokenParam  string        // default "token"
	DefaultPort uint16        // port for path routes naming none; default DefaultPort (5901)
	Sources     []TokenSource // consulted in order; first hit wins
	Resolver    *net.Resolver // nil: net.DefaultResolver (for host-name targets)
}

// Router resolves requests. It is immutable after New and safe for
// concurrent use; sources carry their own synchronisation.
type Router struct {
	allow       AllowList
	pathPrefix  string
	tokenPath   string
	tokenParam  string
	defaultPort uint16
	sources     []TokenSource
	resolver    *net.Resolver
}

// maxTokenLen bounds tokens handed to sources (Redis keys, HTTP paths); a
// signed JWT fits with room to spare.
const maxTokenLen = 4096

// New checks cfg and parses the allow-list.
func New(cfg Config) (*Router, error) {
	allow, err := ParseAllowList(cfg.Allow)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	r := &Router{
		allow:       allow,
		pathPrefix:  cmpOr(cfg.PathPrefix, "/vnc/"),
		tokenPath:   cmpOr(cfg.TokenPath, "/websockify"),
		tokenParam:  cmpOr(cfg.TokenParam, "token"),
		defaultPort: cfg.DefaultPort,
		sources:     cfg.Sources,
		resolver:    cfg.Resolver,
	}
	if r.defaultPort == 0 {
		r.defaultPort = DefaultPort
	}
	if r.resolver == nil {
		r.resolver = net.DefaultResolver
	}
	if len(r.pathPrefix) < 2 || r.pathPrefix[0] != '/' || !strings.HasSuffix(r.pathPrefix, "/") {
		return nil, fmt.Errorf("routing: path prefix %q must start and end with '/' and name a path", r.pathPrefix)
	}
	// A trailing slash on the token path is accepted in requests either way.
	if len(r.tokenPath) > 1 {
		r.tokenPath = strings.TrimRight(r.tokenPath, "/")
	}
	if r.tokenPath == "" || r.tokenPath[0] != '/' || r.tokenPath == "/" {
		return nil, fmt.Errorf("routing: token path %q must start with '/' and name a path", cfg.TokenPath)
	}
	if strings.HasPrefix(r.tokenPath+"/", r.pathPrefix) {
		return nil, fmt.Errorf("routing: token path %q lies under path prefix %q", r.tokenPath, r.pathPrefix)
	}
	for i, s := range r.sources {
		if s == nil {
			return nil, fmt.Errorf("routing: token source %d is nil", i)
		}
	}
	return r, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// AllowList returns the parsed --allow set.
func (r *Router) AllowList() AllowList { return r.allow }

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
// completed by Resolve.
//
// Paths are matched after percent-decoding and are never cleaned: "/x/../vnc/"
// is no route, and a target with '/' or ".." in it is a bad target.
// Errors are *Error values.
func (r *Router) Classify(uri []byte) (Route, error) {
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
		return r.classifyToken(query)
	}
	if n := len(r.pathPrefix); len(p) >= n && string(p[:n]) == r.pathPrefix {
		return r.classifyPath(p[n:])
	}
	return Route{}, newError(http.StatusNotFound, ErrNoRoute, "no route for this path")
}

func (r *Router) classifyPath(target []byte) (Route, error) {
	if r.allow.Empty() {
		return Route{}, errNoAllow()
	}
	if n := len(target); n > 0 && target[n-1] == '/' {
		target = target[:n-1]
	}
	// One copy out of the reused buffer; parsing slices it without copying.
	s := string(target)
	ap, err := parsePathTarget(s, r.defaultPort)
	if err != nil {
		return Route{}, err
	}
	if err := r.allow.Check(ap); err != nil {
		return Route{}, err
	}
	var out [64]byte
	if norm := ap.AppendTo(out[:0]); string(norm) != s {
		s = string(norm)
	}
	return Route{Kind: KindPath, Target: s}, nil
}

// parsePathTarget accepts ip, ip:port, [ipv6] and [ipv6]:port. IPv6 needs
// brackets (fd00::1:5902 is ambiguous); zones are refused (they would let the
// client pick our interface). The result is unmapped.
func parsePathTarget(t string, defPort uint16) (netip.AddrPort, error) {
	if t == "" {
		return netip.AddrPort{}, badTarget("missing target after path prefix")
	}
	var host, port string
	hasPort := false
	if t[0] == '[' {
		end := strings.IndexByte(t, ']')
		if end < 0 {
			return netip.AddrPort{}, badTarget("missing ']' in IPv6 target")
		}
		host, port = t[1:end], t[end+1:]
		if port != "" {
			if port[0] != ':' {
				return netip.AddrPort{}, badTarget("unexpected text after ']'")
			}
			port, hasPort = port[1:], true
		}
	} else {
		switch strings.Count(t, ":") {
		case 0:
			host = t
		case 1:
			host, port, hasPort = strings.Cut(t, ":")
		default:
			return netip.AddrPort{}, badTarget("IPv6 target needs brackets: /vnc/[addr]:port")
		}
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		if looksLikeHostName(host) {
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
		n, err := parsePort(port)
		if err != nil {
			return netip.AddrPort{}, badTarget(err.Error())
		}
		p = n
	}
	return netip.AddrPortFrom(addr.Unmap(), p), nil
}

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
		if len(v) > maxTokenLen {
			return Route{}, newError(http.StatusBadRequest, ErrMissingToken, "token too long")
		}
		for _, c := range v {
			if c < 0x20 || c == 0x7f {
				return Route{}, newError(http.StatusBadRequest, ErrMissingToken, "control character in token")
			}
		}
		return Route{Kind: KindToken, Token: string(v)}, nil
	}
	return Route{}, newError(http.StatusBadRequest, ErrMissingToken, "missing token")
}

// Resolve completes a Route into an allowed Target: token lookup through the
// sources in order (a source error ends the lookup rather than falling
// through to a later source, which might map the token elsewhere), DNS for
// host names, and the allow-list on the final address. Path routes are
// checked again (a Route is a plain value). Errors are *Error values: 400,
// 403, 404, 502, or 504 when ctx's deadline hit.
func (r *Router) Resolve(ctx context.Context, rt Route) (Target, error) {
	switch rt.Kind {
	case KindPath:
		ap, err := netip.ParseAddrPort(rt.Target)
		if err != nil {
			return Target{}, badTarget("malformed path target")
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if err := r.allow.Check(ap); err != nil {
			return Target{}, err
		}
		return Target{Addr: ap, Name: rt.Target, Kind: KindPath}, nil
	case KindToken:
		return r.resolveToken(ctx, rt.Token)
	}
	return Target{}, newError(http.StatusNotFound, ErrNoRoute, "route of unknown kind")
}

func (r *Router) resolveToken(ctx context.Context, token string) (Target, error) {
	if token == "" {
		return Target{}, newError(http.StatusBadRequest, ErrMissingToken, "missing token")
	}
	hash := TokenHash(token)
	var (
		hostport string
		src      TokenSource
	)
	for _, s := range r.sources {
		if err := ctx.Err(); err != nil {
			return Target{}, lookupError("token "+hash+": before source "+s.Name(), err)
		}
		hp, err := s.Lookup(ctx, token)
		if errors.Is(err, ErrUnknownToken) {
			continue
		}
		if err != nil {
			return Target{}, lookupError("token "+hash+": source "+s.Name(), err)
		}
		hostport, src = hp, s
		break
	}
	if src == nil {
		return Target{}, newError(http.StatusNotFound, ErrUnknownToken, "unknown token "+hash)
	}
	base := Target{Name: hostport, Kind: KindToken, TokenHash: hash}
	where := "token " + hash + " from " + src.Name()

	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return Target{}, lookupError(where+": bad target", err)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return Target{}, lookupError(where+": bad target", err)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		ap := netip.AddrPortFrom(addr.Unmap(), port)
		if err := r.allow.check(ap); err != nil {
			return Target{}, withReasonPrefix(err, where)
		}
		base.Addr = ap
		return base, nil
	}
	if !validHostName(host) {
		return Target{}, lookupError(where+": bad target", fmt.Errorf("bad host name %q", host))
	}
	addrs, err := r.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return Target{}, lookupError(where+": resolve "+host, err)
	}
	var first error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), port)
		err := r.allow.check(ap)
		if err == nil {
			base.Addr = ap
			return base, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return Target{}, lookupError(where+": resolve "+host, errors.New("no addresses"))
	}
	return Target{}, withReasonPrefix(first, where+": "+host)
}

// lookupError makes the 502/504 answer for a failed source or resolver.
func lookupError(reason string, err error) *Error {
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	return &Error{Status: status, Reason: reason, Err: fmt.Errorf("%w: %w", ErrLookup, err)}
}

func withReasonPrefix(err error, prefix string) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Status: e.Status, Reason: prefix + ": " + e.Reason, Err: e.Err}
	}
	return err
}

// Reload re-reads every source that supports it. A source that fails keeps
// its old snapshot; the errors are joined, each naming its source.
func (r *Router) Reload() error {
	var errs []error
	for _, s := range r.sources {
		if rl, ok := s.(Reloader); ok {
			if err := rl.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("reload %s: %w", s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close closes every source that is an io.Closer.
func (r *Router) Close() error {
	var errs []error
	for _, s := range r.sources {
		if c, ok := s.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
