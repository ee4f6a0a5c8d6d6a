package routing

import (
	"sync"
	"time"
)

// lookupCache keeps the answers of blocking sources for a short time, so a
// burst of connections with one token (a page reload, noVNC reconnecting)
// costs the store one lookup. It is bounded: when full, expired entries go
// first, then arbitrary ones (the cache is a few seconds deep; which entries
// go matters little, that memory stays bounded matters).
type lookupCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	g        Grant
	src      int // index of the source that answered
	negative bool
	until    time.Time
}

func newLookupCache(ttl time.Duration, max int) *lookupCache {
	return &lookupCache{ttl: ttl, max: max, m: make(map[string]cacheEntry)}
}

func (c *lookupCache) get(token string) (cacheEntry, bool) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[token]
	if !ok {
		return cacheEntry{}, false
	}
	if !now.Before(e.until) {
		delete(c.m, token)
		return cacheEntry{}, false
	}
	return e, true
}

// put stores e for the TTL, but never past expires (a grant's expiry).
func (c *lookupCache) put(token string, e cacheEntry, expires time.Time) {
	now := time.Now()
	e.until = now.Add(c.ttl)
	if !expires.IsZero() && expires.Before(e.until) {
		if !expires.After(now) {
			return
		}
		e.until = expires
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[token]; !ok && len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[token] = e
}

// evict makes room: expired entries, then up to a tenth of the rest.
func (c *lookupCache) evict(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.until) {
			delete(c.m, k)
		}
	}
	if len(c.m) < c.max {
		return
	}
	drop := c.max/10 + 1 // amortises the sweep over the next inserts
	for k := range c.m {
		if drop == 0 {
			break
		}
		delete(c.m, k)
		drop--
	}
}

func (c *lookupCache) delete(token string) {
	c.mu.Lock()
	delete(c.m, token)
	c.mu.Unlock()
}

func (c *lookupCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
