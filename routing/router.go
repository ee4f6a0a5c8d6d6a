// Package routing maps a WebSocket upgrade request to the VNC server it may
// reach, and to what the session may do there: path routes checked against
// an allow-list, token routes from token sources (a token file, Redis, signed
// tokens, an HTTP lookup service) that answer with a Grant.
//
// The engine calls Classify (or ClassifyCookie) on its event loop (cheap, no
// I/O), then ResolveFast there too; only when that answers ErrWouldBlock
// does it call Resolve on a worker goroutine (which may block on DNS or a
// remote source).
package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
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

// Route is what Classify learned from the request. It holds no reference
// into the request buffer, which the engine reuses.
type Route struct {
	Kind  Kind
	Addr  netip.AddrPort // KindPath: the target, unmapped, default port filled in
	Token string         // KindToken: the token (never log it; see TokenHash)
}

// Target is a resolved, allowed upstream and the policy of the grant that
// led to it. The engine reads policy only from here.
type Target struct {
	// Addr is the TCP address to dial (IP, unmapped); invalid for Unix targets.
	Addr netip.AddrPort
	// Unix is the socket path of a "unix:" target, "" for TCP.
	Unix string
	// Name is the target as requested or configured ("vm1.lan:5901",
	// "unix:/run/vm1.sock", "10.0.0.5:5901"), for logs.
	Name string
	Kind Kind
	// TokenHash is TokenHash of the token (KindToken), for logs, the admin
	// API and revocation.
	TokenHash string
	// Source is the Name of the token source that answered ("file",
	// "redis", "jwt", "http"); "" for path routes.
	Source string
	// Grant is the grant as the source gave it (Grant.Target is the
	// unresolved target, as in Name). Path routes have a zero Grant: no
	// password, no view-only, no recording, no expiry.
	Grant
}

// Key identifies the VM for per-VM limits and draining: the resolved
// address ("10.0.0.5:5901", "[fd00::1]:5901") or "unix:/path", so one VM
// reached by name and by address counts once.
func (t Target) Key() string {
	if t.Unix != "" {
		return unixPrefix + t.Unix
	}
	return t.Addr.String()
}

// Network is "tcp" or "unix", for net.Dialer.
func (t Target) Network() string {
	if t.Unix != "" {
		return "unix"
	}
	return "tcp"
}

// DialAddr is the address to hand net.Dialer with Network.
func (t Target) DialAddr() string {
	if t.Unix != "" {
		return t.Unix
	}
	return t.Addr.String()
}

// TokenSource is where token routes come from. Lookup may block (unless the
// source is NonBlocking; the Router bounds each call with its lookup
// timeout) and must honour ctx. It returns ErrUnknownToken (wrapped or not)
// when the token is not its own, an *Error with a 403 sentinel for a token
// it knows and refuses, or another error when it cannot answer (wrap
// ErrUnavailable when the store cannot be reached). Its errors must never
// contain the token or a password: they reach the log.
type TokenSource interface {
	Lookup(ctx context.Context, token string) (Grant, error)
	// Name is short and stable ("file", "redis", "jwt", "http"): it labels
	// metrics and log lines.
	Name() string
}

// NonBlocking is implemented by sources whose Lookup never blocks (an
// in-memory table, a signature check), so ResolveFast may call them on an
// event loop.
type NonBlocking interface {
	NonBlocking()
}

// operatorOwned is implemented by sources that are the operator's own files
// on this host; their unix: targets are not limited by Config.UnixDirs.
type operatorOwned interface{ operatorOwned() }

// consumer is implemented by sources that use a token up by looking it up
// (Redis GETDEL under --token-single-use): their answers are never shared
// between lookups nor cached.
type consumer interface{ consumes() bool }

// Config configures a Router. Zero values take the documented defaults.
type Config struct {
	Allow       []string      // --allow specs, see ParseAllowList
	PathPrefix  string        // default "/vnc/"; must start and end with '/'
	TokenPath   string        // default "/websockify" (--token-path)
	TokenParam  string        // default "token"
	TokenCookie string        // --token-cookie: cookie that carries the token when the query has none; "" off
	DefaultPort uint16        // port for path routes naming none; default DefaultPort (5901)
	Resolver    *net.Resolver // nil: net.DefaultResolver (for host-name targets)

	// Sources are consulted in order; the first hit wins, and an error in
	// one ends the lookup (a later source might map the token elsewhere).
	// cmd/vncedge's order: token file, signed tokens, Redis, HTTP lookup:
	// cheapest first. The token file never blocks, so ResolveFast answers
	// its tokens on the event loop; signed tokens need no I/O and tell a
	// token that is not theirs at a glance, so they go before the stores.
	// The cache stands in front of the first source that is not
	// NonBlocking.
	Sources []TokenSource
	// UnixDirs limits the unix: targets of sources other than the token
	// file (Redis, signed tokens, HTTP lookup) to sockets inside these
	// directories (--allow-unix). With none, only the token file may name
	// unix: targets: --allow does not apply to sockets, and a written Redis
	// key or a leaked signing key must not reach every socket on the host.
	UnixDirs []string

	// LookupTimeout bounds each call of a blocking source (--token-timeout).
	// Default 2s; negative: no bound but the caller's context.
	LookupTimeout time.Duration
	// CacheTTL keeps answers of blocking sources, hits and unknowns, for
	// this long (--token-cache-ttl); 0 turns the cache off. A hit is never
	// kept past its grant's expiry, and errors are never kept.
	CacheTTL time.Duration
	// CacheSize bounds the cache's entries; default 10000.
	CacheSize int

	// SingleUse makes every token open one session (--token-single-use):
	// Redis values are taken with GETDEL (RedisConfig.SingleUse), tokens of
	// other sources are claimed once their target is allowed: signed tokens
	// by jti (else by token) in Claims until their exp, token file tokens in
	// memory until they leave the file.
	SingleUse bool
	// Claims is where single-use claims of signed and HTTP-lookup tokens
	// live; nil: in this process's memory. RedisSource.Claims shares them
	// between instances.
	Claims ClaimStore
	// ClaimTTL is how long a single-use token without an expiry stays
	// claimed (token-file tokens: until they leave the file); default 24h.
	ClaimTTL time.Duration
	// MemoryClaims bounds the in-memory single-use claims; default 100000.
	// When full, new claims fail (503) rather than forget a used token.
	MemoryClaims int

	// RevokeTTL is how long a revoked token is refused (Revoke, the Redis
	// revoke channel); default 24h. RevokeSize bounds the set; default
	// 100000, oldest forgotten first.
	RevokeTTL  time.Duration
	RevokeSize int

	// Logger gets reload reports and revocation subscription events; nil:
	// slog.Default().
	Logger *slog.Logger
	// Observe, when set, is called once for every source consulted by a
	// lookup that reached an answer, with its result and duration; when
	// the cache answers, once with LookupCached for each source it stood in
	// for (up to the one that granted the token, or all of them for an
	// unknown). Lookups shared by concurrent callers count once. It may be
	// called from any goroutine, including an event loop: keep it to
	// counter updates. SetObserver replaces it.
	Observe func(source string, result LookupResult, d time.Duration)
}

// LookupResult is what one source said in one lookup, for metrics.
type LookupResult uint8

const (
	LookupHit     LookupResult = iota // the source granted the token
	LookupUnknown                     // not the source's token
	LookupRefused                     // the source's token, refused (bad signature, expired, forbidden claim)
	LookupError                       // the source could not answer
	LookupTimeout                     // the source did not answer within the lookup timeout
	LookupCached                      // the cache answered in the source's stead
	numLookupResults
)

var lookupResultNames = [numLookupResults]string{"hit", "unknown", "refused", "error", "timeout", "cached"}

func (r LookupResult) String() string {
	if r < numLookupResults {
		return lookupResultNames[r]
	}
	return fmt.Sprintf("LookupResult(%d)", uint8(r))
}

// Router resolves requests. Its configuration is immutable after New but
// for the allow-list, which SetAllow swaps whole (SIGHUP); it is safe for
// concurrent use.
type Router struct {
	// allow is swapped whole, never edited: a lookup loads it once and sees
	// one list from start to end, and the event loops read it without a lock.
	allow       atomic.Pointer[AllowList]
	pathPrefix  string
	tokenPath   string
	tokenParam  string
	tokenCookie string
	defaultPort uint16
	sources     []TokenSource
	firstSlow   int // index of the first blocking source; len(sources) if none
	slowShared  bool
	unixDirs    []string
	resolver    *net.Resolver
	log         *slog.Logger

	lookupTimeout time.Duration
	cache         *lookupCache
	flight        singleflight.Group

	singleUse  bool
	claimTTL   time.Duration
	fileClaims *memoryClaims
	claims     ClaimStore
	claimsFast bool // claims answers without I/O

	revoked   *revokedSet
	onRevoke  atomic.Pointer[[]func(string)]
	revokeMu  sync.Mutex // serialises OnRevoke's copy-on-write
	observe   atomic.Pointer[func(string, LookupResult, time.Duration)]
	publisher revokePublisher
	runners   []backgroundRunner
}

// maxTokenLen bounds tokens handed to sources (Redis keys, HTTP paths); a
// signed JWT fits with room to spare.
const maxTokenLen = 4096

const (
	defaultLookupTimeout = 2 * time.Second
	defaultCacheSize     = 10000
	defaultClaimTTL      = 24 * time.Hour
	defaultMemoryClaims  = 100000
	defaultRevokeTTL     = 24 * time.Hour
	defaultRevokeSize    = 100000
)

// New checks cfg and parses the allow-list.
func New(cfg Config) (*Router, error) {
	allow, err := ParseAllowList(cfg.Allow)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	r := &Router{
		pathPrefix:    cmpOr(cfg.PathPrefix, "/vnc/"),
		tokenPath:     cmpOr(cfg.TokenPath, "/websockify"),
		tokenParam:    cmpOr(cfg.TokenParam, "token"),
		tokenCookie:   cfg.TokenCookie,
		defaultPort:   cfg.DefaultPort,
		sources:       cfg.Sources,
		resolver:      cfg.Resolver,
		log:           cfg.Logger,
		lookupTimeout: cfg.LookupTimeout,
		singleUse:     cfg.SingleUse,
		claimTTL:      cfg.ClaimTTL,
		claims:        cfg.Claims,
	}
	r.allow.Store(&allow)
	if r.defaultPort == 0 {
		r.defaultPort = DefaultPort
	}
	if r.resolver == nil {
		r.resolver = net.DefaultResolver
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.lookupTimeout == 0 {
		r.lookupTimeout = defaultLookupTimeout
	}
	if r.claimTTL <= 0 {
		r.claimTTL = defaultClaimTTL
	}
	if err := r.checkPaths(cfg.TokenPath); err != nil {
		return nil, err
	}
	if err := checkCookieName(r.tokenCookie); err != nil {
		return nil, fmt.Errorf("routing: token cookie: %w", err)
	}
	for _, d := range cfg.UnixDirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("routing: unix socket directory %q must be absolute", d)
		}
		r.unixDirs = append(r.unixDirs, filepath.Clean(d))
	}
	r.firstSlow = len(r.sources)
	for i, s := range r.sources {
		if s == nil {
			return nil, fmt.Errorf("routing: token source %d is nil", i)
		}
		if _, fast := s.(NonBlocking); !fast && r.firstSlow == len(r.sources) {
			r.firstSlow = i
		}
		if p, ok := s.(revokePublisher); ok && r.publisher == nil {
			r.publisher = p
		}
		if b, ok := s.(backgroundRunner); ok {
			r.runners = append(r.runners, b)
		}
	}
	// A lookup that uses the token up must be each caller's own.
	r.slowShared = !r.anyConsumer()
	if cfg.CacheTTL > 0 {
		r.cache = newLookupCache(cfg.CacheTTL, cmpOrInt(cfg.CacheSize, defaultCacheSize))
	}
	memMax := cmpOrInt(cfg.MemoryClaims, defaultMemoryClaims)
	r.fileClaims = newMemoryClaims(memMax)
	if r.claims == nil {
		r.claims = newMemoryClaims(memMax)
	}
	_, r.claimsFast = r.claims.(*memoryClaims)
	r.revoked = newRevokedSet(cmpOrDur(cfg.RevokeTTL, defaultRevokeTTL), cmpOrInt(cfg.RevokeSize, defaultRevokeSize))
	if cfg.Observe != nil {
		r.SetObserver(cfg.Observe)
	}
	return r, nil
}

func (r *Router) anyConsumer() bool {
	for _, s := range r.sources {
		if c, ok := s.(consumer); ok && c.consumes() {
			return true
		}
	}
	return false
}

func (r *Router) checkPaths(tokenPathCfg string) error {
	if len(r.pathPrefix) < 2 || r.pathPrefix[0] != '/' || !strings.HasSuffix(r.pathPrefix, "/") {
		return fmt.Errorf("routing: path prefix %q must start and end with '/' and name a path", r.pathPrefix)
	}
	// A trailing slash on the token path is accepted in requests either way.
	if len(r.tokenPath) > 1 {
		r.tokenPath = strings.TrimRight(r.tokenPath, "/")
	}
	if r.tokenPath == "" || r.tokenPath[0] != '/' || r.tokenPath == "/" {
		return fmt.Errorf("routing: token path %q must start with '/' and name a path", tokenPathCfg)
	}
	if strings.HasPrefix(r.tokenPath+"/", r.pathPrefix) {
		return fmt.Errorf("routing: token path %q lies under path prefix %q", r.tokenPath, r.pathPrefix)
	}
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func cmpOrInt(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

func cmpOrDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// AllowList returns the --allow set in force.
func (r *Router) AllowList() AllowList { return *r.allow.Load() }

// SetAllow parses specs (as Config.Allow) and makes them the allow-list for
// every lookup that starts from now on; lookups under way finish with the
// list they started with, and sessions already open are not touched (the
// allow-list decides where a session may go, once, when it opens). On an
// error the list in force stays, whole.
func (r *Router) SetAllow(specs []string) error {
	a, err := ParseAllowList(specs)
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	r.allow.Store(&a)
	return nil
}

// TokenCookie is the cookie name ClassifyCookie reads ("" when off): the
// engine needs the Cookie header only when it is set.
func (r *Router) TokenCookie() string { return r.tokenCookie }

// SetObserver sets the lookup observer (see Config.Observe); nil removes it.
// Safe at any time.
func (r *Router) SetObserver(fn func(source string, result LookupResult, d time.Duration)) {
	if fn == nil {
		r.observe.Store(nil)
		return
	}
	r.observe.Store(&fn)
}

// Close closes every source that is an io.Closer.
func (r *Router) Close() error {
	var errs []error
	for _, s := range r.sources {
		if c, ok := s.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
