package routing

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ClaimStore records single-use tokens as used (--token-single-use).
type ClaimStore interface {
	// Claim marks key used until the given time and reports whether it was
	// unused before. It must be atomic: of two concurrent claims of one key,
	// one wins.
	Claim(ctx context.Context, key string, until time.Time) (bool, error)
}

// errClaimsFull fails a claim rather than forget a used token.
var errClaimsFull = unavailable(errors.New("single-use memory is full; raise the limit or give tokens an expiry"))

// memoryClaims is a ClaimStore in this process's memory, bounded: expired
// claims are swept when it fills, and when it is still full a new claim
// fails (503) instead of evicting a live one, which would let that token in
// again.
type memoryClaims struct {
	max int

	mu sync.Mutex
	m  map[string]time.Time
}

func newMemoryClaims(max int) *memoryClaims {
	return &memoryClaims{max: max, m: make(map[string]time.Time)}
}

// Claim implements ClaimStore.
func (c *memoryClaims) Claim(_ context.Context, key string, until time.Time) (bool, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.m[key]; ok && now.Before(t) {
		return false, nil
	}
	if len(c.m) >= c.max {
		for k, t := range c.m {
			if !now.Before(t) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			return false, errClaimsFull
		}
	}
	c.m[key] = until
	return true, nil
}

// release forgets a claim: a token removed from the token file and added
// again is a new grant.
func (c *memoryClaims) release(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
