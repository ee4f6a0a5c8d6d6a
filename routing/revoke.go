package routing

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// revokePublisher is a source that tells every instance about a revocation
// (Redis: PUBLISH on the revoke channel).
type revokePublisher interface {
	publishRevoke(ctx context.Context, token string) error
}

// backgroundRunner is a source with background work (Redis: the revocation
// subscriptions), run by Router.Run.
type backgroundRunner interface {
	run(ctx context.Context, ev storeEvents)
}

// storeEvents is how a source's background work reports revocations.
type storeEvents interface {
	// revokedByMessage: a revocation message names token (it stays refused).
	revokedByMessage(token string)
	// deletedFromStore: the store no longer holds token (deleted, expired);
	// its live sessions end, and setting it again grants it again.
	deletedFromStore(token string)
	// setInStore: the store (re)wrote token; a cached "unknown" for it
	// must not delay the new grant.
	setInStore(token string)
}

// OnRevoke registers fn to be called with the TokenHash of every revoked
// token: Revoke, a message on the Redis revoke channel, a Redis key deleted
// or expired (with keyspace notifications on), a token gone from the token
// file on reload. The engine ends the token's live sessions. fn may be
// called from any goroutine, more than once for one revocation (a revoke
// published to Redis comes back on the channel), and for tokens with no
// session; it must not block.
func (r *Router) OnRevoke(fn func(tokenHash string)) {
	r.revokeMu.Lock()
	defer r.revokeMu.Unlock()
	var next []func(string)
	if cur := r.onRevoke.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, fn)
	r.onRevoke.Store(&next)
}

func (r *Router) notifyRevoked(hash string) {
	fns := r.onRevoke.Load()
	if fns == nil {
		return
	}
	for _, fn := range *fns {
		func() {
			// A panicking callback must not kill the Redis subscription
			// that called it, nor a reload.
			defer func() {
				if p := recover(); p != nil {
					r.log.Error("revocation callback panicked", "token", hash, "panic", p)
				}
			}()
			fn(hash)
		}()
	}
}

// Revoke revokes token: it is refused from now on (for Config.RevokeTTL),
// its cached answer is dropped, and the OnRevoke callbacks run. With a Redis
// source, the token is also published on the revoke channel so every
// instance revokes it; the error reports a failed publish (the local
// revocation has happened anyway).
func (r *Router) Revoke(ctx context.Context, token string) error {
	token = strings.TrimRight(token, "\r\n")
	if token == "" {
		return errors.New("routing: revoke: empty token")
	}
	r.revokeLocal(token)
	if r.publisher != nil {
		if err := r.publisher.publishRevoke(ctx, token); err != nil {
			return lookupError("revoke token "+TokenHash(token)+": publish", err)
		}
	}
	return nil
}

func (r *Router) revokeLocal(token string) {
	hash := TokenHash(token)
	r.revoked.add(hash)
	if r.cache != nil {
		r.cache.delete(token)
	}
	r.log.LogAttrs(context.Background(), slog.LevelInfo, "token revoked", slog.String("token", hash))
	r.notifyRevoked(hash)
}

func (r *Router) revokedByMessage(token string) {
	if token = strings.TrimRight(token, "\r\n"); token != "" {
		r.revokeLocal(token)
	}
}

func (r *Router) deletedFromStore(token string) {
	if r.cache != nil {
		r.cache.delete(token)
	}
	hash := TokenHash(token)
	r.log.LogAttrs(context.Background(), slog.LevelInfo, "token removed from its store", slog.String("token", hash))
	r.notifyRevoked(hash)
}

func (r *Router) setInStore(token string) {
	if r.cache != nil {
		r.cache.delete(token)
	}
}

// Run does the sources' background work (Redis: the revoke channel and
// keyspace notifications, reconnecting with backoff) until ctx ends. Start
// it once, in its own goroutine, after registering OnRevoke callbacks.
func (r *Router) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range r.runners {
		wg.Go(func() { b.run(ctx, r) })
	}
	wg.Wait()
}

// revokedSet remembers revoked token hashes for a while, bounded: when full,
// expired entries go first, then the oldest.
type revokedSet struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]time.Time // hash -> until
}

func newRevokedSet(ttl time.Duration, max int) *revokedSet {
	return &revokedSet{ttl: ttl, max: max, m: make(map[string]time.Time)}
}

func (s *revokedSet) add(hash string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[hash]; !ok && len(s.m) >= s.max {
		oldest, oldestAt := "", time.Time{}
		for k, t := range s.m {
			if !now.Before(t) {
				delete(s.m, k)
				continue
			}
			if oldest == "" || t.Before(oldestAt) {
				oldest, oldestAt = k, t
			}
		}
		if len(s.m) >= s.max {
			delete(s.m, oldest)
		}
	}
	s.m[hash] = now.Add(s.ttl)
}

func (s *revokedSet) has(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[hash]
	if ok && !time.Now().Before(t) {
		delete(s.m, hash)
		return false
	}
	return ok
}
