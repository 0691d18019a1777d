package runtimes

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/infergate/infergate/internal/keyhash"
)

// Replica choice: power of two choices on outstanding requests, as
// Knative's activator does it (pkg/activator/net/lb_policy.go). Two
// replicas are drawn at random among those that may take a call, and the
// one with fewer calls in flight gets it; a tie goes to the one that has
// started fewer calls, then either way at random.
// It loads replicas nearly as evenly as least-outstanding over the whole
// pool, while reading only two replicas' counters, and it does not herd
// every caller onto the one replica that was idle a moment ago.
//
// A replica may take a call when it is ready, not draining, not ejected,
// and its breaker could let the call through; in panic (see panic.go),
// when it is ready and not draining. The choice first draws two
// distinct replicas of the whole pool; when both may take the call, that is
// the pair. Otherwise it walks the pool once and draws the pair uniformly
// among those that may (reservoir sampling), so that a pool with sick
// replicas still gets an even choice among the healthy ones. The choice
// allocates nothing.

// rng is the pool's source of random numbers. Unseeded, it is the
// runtime's per-thread generator (math/rand/v2), which takes no lock and
// shares no cache line between cores. Seeded (PoolOptions.Seed), it is a
// splitmix64 sequence on one atomic word: deterministic for a sequential
// caller, as tests want.
type rng struct {
	seeded bool
	state  atomic.Uint64
}

func (g *rng) uint64() uint64 {
	if !g.seeded {
		return rand.Uint64()
	}
	return g.splitmix()
}

func (g *rng) splitmix() uint64 {
	return keyhash.Mix(g.state.Add(0x9e3779b97f4a7c15))
}

// below maps 32 random bits onto [0, n) (Lemire's multiply-shift; the bias
// is below n/2^32).
func below(x uint32, n int) int {
	return int((uint64(x) * uint64(n)) >> 32)
}

// tried is the set of replicas (by index in the pool's snapshot) that a
// call has already tried or that refused it, so that a retry goes to
// another one. The first eight live on the stack; a call that goes past
// them (a pool whose replicas are nearly all down) spills to the heap.
type tried struct {
	n     int
	small [8]int32
	more  []int
}

func (t *tried) has(i int) bool {
	for _, x := range t.small[:min(t.n, len(t.small))] {
		if int(x) == i {
			return true
		}
	}
	for _, x := range t.more {
		if x == i {
			return true
		}
	}
	return false
}

func (t *tried) add(i int) {
	if t.n < len(t.small) {
		t.small[t.n] = int32(i)
	} else {
		t.more = append(t.more, i)
	}
	t.n++
}

func (t *tried) count() int { return t.n }

// truncate forgets the replicas added after the first n.
func (t *tried) truncate(n int) {
	if n >= t.n {
		return
	}
	t.n = n
	if n <= len(t.small) {
		t.more = t.more[:0]
	} else {
		t.more = t.more[:n-len(t.small)]
	}
}

// eligible reports whether r may take a call now.
func (p *Pool) eligible(r *Replica) bool {
	return r.ready.Load() && !r.draining.Load() &&
		(r.ejectedUntil.Load() == 0 || !p.ejectedNow(r)) &&
		(r.brk == nil || r.brk.mayAllow())
}

// usable reports whether r may take a call in panic: it is ready and not
// draining, whatever its breaker and ejection say.
func usable(r *Replica) bool { return r.ready.Load() && !r.draining.Load() }

// mayTake reports whether r may take a call now: eligible, or in panic
// usable.
func (p *Pool) mayTake(r *Replica, panicking bool) bool {
	if panicking {
		return usable(r)
	}
	return p.eligible(r)
}

// pick chooses a replica of rs for a call, skipping those in t, and returns
// its index, or -1 when none may take the call (in panic: none is usable).
func (p *Pool) pick(rs []*Replica, t *tried, panicking bool) int {
	n := len(rs)
	switch {
	case n == 0:
		return -1
	case n == 1:
		if !t.has(0) && p.mayTake(rs[0], panicking) {
			return 0
		}
		return -1
	}
	x := p.rng.uint64()
	i := below(uint32(x), n)
	j := below(uint32(x>>32), n-1)
	if j >= i {
		j++
	}
	if !t.has(i) && !t.has(j) && p.mayTake(rs[i], panicking) && p.mayTake(rs[j], panicking) {
		// Bit 0 barely moves i, whose value rests on the top bits.
		return lessLoaded(rs, i, j, x&1 == 0)
	}
	// Reservoir-sample two of the replicas that may take the call.
	a, b, seen := -1, -1, 0
	for k, r := range rs {
		if t.has(k) || !p.mayTake(r, panicking) {
			continue
		}
		seen++
		switch {
		case seen == 1:
			a = k
		case seen == 2:
			b = k
		default:
			// Keep k with probability 2/seen, in place of either.
			if s := below(uint32(p.rng.uint64()), seen); s < 2 {
				if s == 0 {
					a = k
				} else {
					b = k
				}
			}
		}
	}
	if b < 0 {
		return a
	}
	return lessLoaded(rs, a, b, p.rng.uint64()&1 == 0)
}

// lessLoaded returns whichever of i and j has fewer calls in flight. On a
// tie it returns the one that has started fewer calls, so that a quiet
// pool's calls go round its replicas rather than by coin toss, and on a
// tie of both i when first says so.
func lessLoaded(rs []*Replica, i, j int, first bool) int {
	li, lj := rs[i].inflight.Load(), rs[j].inflight.Load()
	switch {
	case li < lj:
		return i
	case lj < li:
		return j
	}
	ci, cj := rs[i].calls.Load(), rs[j].calls.Load()
	switch {
	case ci < cj:
		return i
	case cj < ci:
		return j
	case first:
		return i
	}
	return j
}
