package routing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Resolve completes a Route into an allowed Target: token lookup through the
// sources in order (a source error ends the lookup rather than falling
// through to a later source, which might map the token elsewhere), DNS for
// host names, the allow-list on the final address, the grant's expiry, and
// with single use the claim. Path routes are checked again (a Route is a
// plain value). It may block: call it off the event loop, with a deadline.
// Errors are *Error values: 400, 403, 404, 502, 503 (a store is down), or
// 504 (a deadline hit).
func (r *Router) Resolve(ctx context.Context, rt Route) (Target, error) {
	switch rt.Kind {
	case KindPath:
		return r.resolvePath(rt)
	case KindToken:
		return r.resolveToken(ctx, rt.Token, false)
	}
	return Target{}, newError(http.StatusNotFound, ErrNoRoute, "route of unknown kind")
}

// ResolveFast is Resolve for the event loop: it answers when no step needs
// I/O or heavy work (path routes; tokens of NonBlocking sources such as the
// token file, or in the cache, whose target is an IP literal or a unix:
// socket) and returns ErrWouldBlock otherwise, having changed nothing and
// counted nothing: then call Resolve off the loop. It saves the worker hop
// that issue 14 measured as setup cost.
func (r *Router) ResolveFast(rt Route) (Target, error) {
	switch rt.Kind {
	case KindPath:
		return r.resolvePath(rt)
	case KindToken:
		return r.resolveToken(context.Background(), rt.Token, true)
	}
	return Target{}, newError(http.StatusNotFound, ErrNoRoute, "route of unknown kind")
}

func (r *Router) resolvePath(rt Route) (Target, error) {
	ap := rt.Addr
	if !ap.IsValid() {
		return Target{}, badTarget("malformed path target")
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if err := r.AllowList().Check(ap); err != nil {
		return Target{}, err
	}
	return Target{Addr: ap, Name: ap.String(), Kind: KindPath}, nil
}

// observation is one source's answer in one lookup, held until the lookup
// has an answer: a ResolveFast that gives up must not count, or the Resolve
// that follows would count the same sources again.
type observation struct {
	source string
	res    LookupResult
	d      time.Duration
}

type observations struct {
	fn *func(string, LookupResult, time.Duration)
	n  int
	a  [8]observation
}

func (o *observations) add(source string, res LookupResult, d time.Duration) {
	if o.fn != nil && o.n < len(o.a) {
		o.a[o.n] = observation{source, res, d}
		o.n++
	}
}

func (o *observations) flush() {
	if o.fn == nil {
		return
	}
	for i := range o.n {
		(*o.fn)(o.a[i].source, o.a[i].res, o.a[i].d)
	}
}

// clock returns the time only when someone measures durations.
func (o *observations) clock() time.Time {
	if o.fn == nil {
		return time.Time{}
	}
	return time.Now()
}

func (o *observations) since(t time.Time) time.Duration {
	if o.fn == nil {
		return 0
	}
	return time.Since(t)
}

func (r *Router) resolveToken(ctx context.Context, token string, fast bool) (Target, error) {
	if token == "" {
		return Target{}, newError(http.StatusBadRequest, ErrMissingToken, "missing token")
	}
	hash := TokenHash(token)
	if r.revoked.has(hash) {
		return Target{}, refused(ErrRevoked, "token "+hash+" was revoked")
	}
	obs := observations{fn: r.observe.Load()}
	g, si, err := r.lookup(ctx, token, hash, fast, &obs)
	if err == nil {
		var tgt Target
		tgt, err = r.complete(ctx, g, r.sources[si], hash, fast)
		if err == nil {
			err = r.claim(ctx, g, r.sources[si], hash, fast)
		}
		if err == nil {
			obs.flush()
			return tgt, nil
		}
	}
	if err != ErrWouldBlock {
		obs.flush()
	}
	return Target{}, err
}

// lookup finds the token's grant and the index of the source that gave it.
func (r *Router) lookup(ctx context.Context, token, hash string, fast bool, obs *observations) (Grant, int, error) {
	for i := 0; i < r.firstSlow; i++ {
		s := r.sources[i]
		t0 := obs.clock()
		g, err := s.Lookup(ctx, token)
		res := resultOf(err)
		obs.add(s.Name(), res, obs.since(t0))
		switch res {
		case LookupUnknown:
			continue
		case LookupHit:
			return g, i, nil
		}
		return Grant{}, 0, sourceError(hash, s, err, 0)
	}
	if r.firstSlow == len(r.sources) {
		return Grant{}, 0, unknownToken(hash)
	}
	if r.cache != nil {
		if e, ok := r.cache.get(token); ok {
			last := len(r.sources) - 1
			if !e.negative {
				last = e.src
			}
			for i := r.firstSlow; i <= last; i++ {
				obs.add(r.sources[i].Name(), LookupCached, 0)
			}
			if e.negative {
				return Grant{}, 0, unknownToken(hash)
			}
			return e.g, e.src, nil
		}
	}
	if fast {
		return Grant{}, 0, ErrWouldBlock
	}
	// Off the loop there is no giving up any more: report the fast
	// sources now, so the counts come in source order.
	obs.flush()
	obs.n = 0
	if !r.slowShared {
		res := r.slowChain(ctx, token, hash)
		return res.g, res.src, res.err
	}
	// One lookup per token in flight. It runs detached from this caller
	// (each source call is bounded by the lookup timeout), so a caller that
	// gives up does not fail the others waiting on it; with no lookup
	// timeout it runs on the first caller's context.
	base := ctx
	if r.lookupTimeout > 0 {
		base = context.WithoutCancel(ctx)
	}
	ch := r.flight.DoChan(token, func() (any, error) { return r.slowChain(base, token, hash), nil })
	select {
	case v := <-ch:
		res := v.Val.(chainResult)
		return res.g, res.src, res.err
	case <-ctx.Done():
		return Grant{}, 0, lookupError("token "+hash+": gave up waiting for the token lookup", ctx.Err())
	}
}

type chainResult struct {
	g   Grant
	src int
	err error
}

// slowChain asks the sources from the first blocking one on, each within
// the lookup timeout, and caches the answer. Its observations are reported
// here, once, however many callers share the answer.
func (r *Router) slowChain(ctx context.Context, token, hash string) chainResult {
	fn := r.observe.Load()
	for i := r.firstSlow; i < len(r.sources); i++ {
		s := r.sources[i]
		lctx, cancel := ctx, context.CancelFunc(func() {})
		if r.lookupTimeout > 0 {
			lctx, cancel = context.WithTimeout(ctx, r.lookupTimeout)
		}
		t0 := time.Now()
		g, err := s.Lookup(lctx, token)
		d := time.Since(t0)
		if err != nil && !errors.Is(err, ErrUnknownToken) && lctx.Err() != nil && ctx.Err() == nil {
			// The source's own deadline hit, whatever error it turned that into.
			err = fmt.Errorf("no answer within %v: %w", r.lookupTimeout, context.DeadlineExceeded)
		}
		cancel()
		res := resultOf(err)
		if fn != nil {
			(*fn)(s.Name(), res, d)
		}
		switch res {
		case LookupUnknown:
			continue
		case LookupHit:
			r.cacheHit(token, i, g)
			return chainResult{g: g, src: i}
		}
		return chainResult{err: sourceError(hash, s, err, d)}
	}
	if r.cache != nil {
		r.cache.put(token, cacheEntry{negative: true}, time.Time{})
	}
	return chainResult{err: unknownToken(hash)}
}

func (r *Router) cacheHit(token string, src int, g Grant) {
	if r.cache == nil {
		return
	}
	if c, ok := r.sources[src].(consumer); ok && c.consumes() {
		return
	}
	r.cache.put(token, cacheEntry{g: g, src: src}, g.Expires)
}

func resultOf(err error) LookupResult {
	if err == nil {
		return LookupHit
	}
	if errors.Is(err, ErrUnknownToken) {
		return LookupUnknown
	}
	var e *Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 {
		return LookupRefused
	}
	if isTimeout(err) {
		return LookupTimeout
	}
	return LookupError
}

func unknownToken(hash string) *Error {
	return newError(http.StatusNotFound, ErrUnknownToken, "unknown token "+hash)
}

// sourceError names the token (by hash) and the source in a source's error:
// a refusal keeps its 4xx status, anything else becomes 502/503/504.
func sourceError(hash string, s TokenSource, err error, d time.Duration) error {
	where := "token " + hash + ": source " + s.Name()
	var e *Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 {
		return withReasonPrefix(err, where)
	}
	if d > 0 {
		where += fmt.Sprintf(" (after %v)", d.Round(time.Millisecond))
	}
	return lookupError(where, err)
}

// complete turns a grant into a Target: expiry, the target's syntax, DNS,
// and the allow-list (or --allow-unix) on the final address.
func (r *Router) complete(ctx context.Context, g Grant, src TokenSource, hash string, fast bool) (Target, error) {
	where := func() string { return "token " + hash + " from " + src.Name() }
	if !g.Expires.IsZero() && !time.Now().Before(g.Expires) {
		return Target{}, refused(ErrExpired, where()+": grant expired at "+g.Expires.UTC().Format(time.RFC3339))
	}
	base := Target{Name: g.Target, Kind: KindToken, TokenHash: hash, Source: src.Name(), Grant: g}
	if path, ok := strings.CutPrefix(g.Target, unixPrefix); ok {
		if err := checkUnixPath(path); err != nil {
			return Target{}, lookupError(where()+": bad target", err)
		}
		if _, own := src.(operatorOwned); !own && !r.unixAllowed(path) {
			return Target{}, forbidden(where() + ": unix socket " + path + " is not inside an --allow-unix directory")
		}
		base.Unix = path
		return base, nil
	}
	host, portStr, err := net.SplitHostPort(g.Target)
	if err != nil {
		return Target{}, lookupError(where()+": bad target", err)
	}
	allow := r.AllowList()
	port, err := parsePort(portStr)
	if err != nil {
		return Target{}, lookupError(where()+": bad target", err)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		ap := netip.AddrPortFrom(addr.Unmap(), port)
		if err := allow.check(ap); err != nil {
			return Target{}, withReasonPrefix(err, where())
		}
		base.Addr = ap
		return base, nil
	}
	if !validHostName(host) {
		return Target{}, lookupError(where()+": bad target", fmt.Errorf("bad host name %q", host))
	}
	if fast {
		return Target{}, ErrWouldBlock
	}
	addrs, err := r.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return Target{}, lookupError(where()+": resolve "+host, err)
	}
	var first error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), port)
		err := allow.check(ap)
		if err == nil {
			base.Addr = ap
			return base, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return Target{}, lookupError(where()+": resolve "+host, errors.New("no addresses"))
	}
	return Target{}, withReasonPrefix(first, where()+": "+host)
}

func (r *Router) unixAllowed(path string) bool {
	for _, d := range r.unixDirs {
		if strings.HasPrefix(path, d+string(filepath.Separator)) || (d == "/" && path != "/") {
			return true
		}
	}
	return false
}

// claim uses a single-use token up, once its target is known to be good
// (a refused target must not burn the token).
func (r *Router) claim(ctx context.Context, g Grant, src TokenSource, hash string, fast bool) error {
	if !r.singleUse {
		return nil
	}
	if c, ok := src.(consumer); ok && c.consumes() {
		return nil // the lookup itself took it (GETDEL)
	}
	until := g.Expires
	var (
		ok  bool
		err error
	)
	if _, own := src.(operatorOwned); own {
		// Remembered until the token leaves the file (ReloadReport
		// releases it) or its grant expires: the file bounds how many.
		if until.IsZero() {
			until = time.Now().AddDate(100, 0, 0)
		}
		ok, err = r.fileClaims.Claim(ctx, hash, until)
	} else {
		if until.IsZero() {
			until = time.Now().Add(r.claimTTL)
		}
		if fast && !r.claimsFast {
			return ErrWouldBlock
		}
		key := "tok:" + hash
		if g.ID != "" {
			key = "jti:" + TokenHash(g.ID)
		}
		ok, err = r.claims.Claim(ctx, key, until)
	}
	if err != nil {
		return lookupError("token "+hash+": single-use claim", err)
	}
	if !ok {
		return refused(ErrTokenUsed, "token "+hash+" from "+src.Name()+" was already used (--token-single-use)")
	}
	return nil
}
