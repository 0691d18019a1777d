package auth

import (
	"sync"
	"time"
)

// tokenCache remembers verified JWTs by their text, so that a repeated
// token costs a map lookup. It holds at most max entries; when full, an
// arbitrary one makes room (Go's map iteration starts at random).
type tokenCache struct {
	mu  sync.RWMutex
	m   map[string]cacheEntry
	max int
}

// cacheEntry is a verified token: good until until (its expiry plus the
// leeway), and only while the snapshot it was resolved against and the
// keys that verified it are still in force.
type cacheEntry struct {
	p       *Principal
	until   time.Time
	snap    *compiled
	keysGen uint64
}

func newTokenCache(max int) *tokenCache {
	if max <= 0 {
		return nil
	}
	return &tokenCache{m: make(map[string]cacheEntry), max: max}
}

// cacheGet looks tok up without allocating.
func cacheGet[T ~string | ~[]byte](c *tokenCache, tok T) (cacheEntry, bool) {
	c.mu.RLock()
	e, ok := c.m[string(tok)]
	c.mu.RUnlock()
	return e, ok
}

func (c *tokenCache) put(tok string, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[tok]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[tok] = e
}

func (c *tokenCache) drop(tok string) {
	c.mu.Lock()
	delete(c.m, tok)
	c.mu.Unlock()
}

func (c *tokenCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
