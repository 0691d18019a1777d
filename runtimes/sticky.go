package runtimes

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strconv"

	"github.com/infergate/infergate/internal/keyhash"
)

// Sticky replica choice: consistent hashing with bounded loads (Mirrokni,
// Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2016;
// HAProxy's hash-balance-factor, Envoy's hash_balance_factor). DoKey sends
// the calls of one key (a session) to the same replica while the pool does
// not change, so that the replica's caches serve them, and a change of the
// pool moves only the keys it must: adding a replica to n takes about
// 1/(n+1) of the keys to it, removing one moves only that replica's keys.
//
// Each replica owns ringVnodes points on a ring of uint64, derived from its
// address alone (Addr), so that every gateway that sees the same addresses
// builds the same ring and sends a key to the same replica. A key goes to
// the replica owning the first point at or after the key's own, walking on
// past replicas that may not take the call (not ready, draining, ejected,
// breaker open, already tried by this call; in panic, see panic.go, only
// the first two and the last) or that are full. The ring is
// built with the replica set it indexes (NewPool, Add, Remove) and published with it
// in one atomic pointer, so a call reads both without a lock and never
// sees a ring that indexes another set.
//
// Full is the bounded load: with T calls in flight on the m replicas that
// may take calls, a replica is full when it has ceil(c*(T+1)/m) or more,
// c being PoolOptions.HashBalanceFactor. Since the average is below the
// bound, some replica always has room, and a hot key spills to the next
// replicas on the ring rather than piling onto one; a key's calls leave
// its replica only while that replica carries about c times the average.
// The bound holds exactly for calls chosen one at a time; calls chosen at
// the same moment may read the same counts and pass it together by a few.
// When every replica the walk may use is full (a retry that has tried the
// ones with room), the call goes to the first of them on the ring rather
// than fail.
//
// The choice allocates nothing, and in pools of up to 512 replicas it
// judges each replica at most once (larger pools' walks may look at one
// again, and go round the ring at most once). It reads the whole pool's
// counters only when the replica it judges is busy: an idle replica is
// always under the bound.

// ringVnodes is the number of points each replica owns on the ring. With
// 100, a replica's share of the keys is within about 10% of even (one
// standard deviation, 1/sqrt(100)): 0.76 to 1.36 of even over 32 replicas,
// which the bounded load keeps from turning into load.
const ringVnodes = 100

// replicaSet is the pool's replicas and the hash ring built over them,
// published together: the ring's owners are indices into rs.
type replicaSet struct {
	rs   []*Replica
	ring hashRing
}

// hashRing is the consistent-hashing ring over a replica set: points sorted
// ascending, and owner[k] the index of the replica that owns points[k].
type hashRing struct {
	points []uint64
	owner  []int32
}

// publish makes rs the pool's replica set, with a ring built for it. It is
// called under mu, or before the pool is shared.
func (p *Pool) publish(rs []*Replica) {
	p.set.Store(&replicaSet{rs: rs, ring: newHashRing(rs)})
}

// newHashRing builds the ring over rs. Replica i's points are the first
// ringVnodes outputs of splitmix64 seeded with the FNV-1a hash of its
// address; a replica whose address an earlier one in rs already has (or
// that has none) is told apart by its rank among them, "#1", "#2"...
func newHashRing(rs []*Replica) hashRing {
	type vnode struct {
		point uint64
		owner int32
	}
	vs := make([]vnode, 0, len(rs)*ringVnodes)
	seen := make(map[string]int, len(rs))
	for i, r := range rs {
		addr := addrOf(r.Client)
		h := keyhash.String(keyhash.Offset, addr)
		if k := seen[addr]; k > 0 {
			h = keyhash.String(h, "#"+strconv.Itoa(k))
		}
		seen[addr]++
		for v := range uint64(ringVnodes) {
			vs = append(vs, vnode{keyhash.Mix(h + (v+1)*0x9e3779b97f4a7c15), int32(i)})
		}
	}
	slices.SortFunc(vs, func(a, b vnode) int {
		return cmp.Or(cmp.Compare(a.point, b.point), cmp.Compare(a.owner, b.owner))
	})
	ring := hashRing{points: make([]uint64, len(vs)), owner: make([]int32, len(vs))}
	for k, v := range vs {
		ring.points[k], ring.owner[k] = v.point, v.owner
	}
	return ring
}

// start returns the index of the first point at or after point, wrapping
// past the last to 0.
func (g *hashRing) start(point uint64) int {
	k, _ := slices.BinarySearch(g.points, point)
	if k == len(g.points) {
		return 0
	}
	return k
}

// DoKey is Do with the replica chosen by key rather than by load: calls
// with the same key go to the same replica while the pool's replicas, their
// health and the load allow it. The first choice is the replica that
// consistent hashing of key gives, passed over while it may not take a
// call or is full by the bounded load (PoolOptions.HashBalanceFactor), for
// the next replica on the ring; retries go on along the ring, each replica
// at most once. Everything else is as Do: fn's contract, breakers,
// ejection, retry budget, readiness, calls in flight, and the errors.
//
// Any uint64 will do as key; DoKey mixes it, so small sequential IDs spread
// as well as hashes. keyhash.Bytes turns bytes into one. DoKey takes no lock and
// allocates nothing of its own.
func (p *Pool) DoKey(ctx context.Context, key uint64, fn func(Client) error) error {
	s := p.set.Load()
	return p.do(ctx, s.rs, ringWalk{ring: &s.ring, point: keyhash.Mix(key)}, fn)
}

// ringWalk is how take chooses: along ring from point, or by power of two
// choices when ring is nil.
type ringWalk struct {
	ring  *hashRing
	point uint64
}

// pickKey walks w's ring from its point and returns the index in rs of the
// first replica not in t that may take the call (in panic: that is usable)
// and is under the load bound, or failing that the first that may take
// it, or -1.
func (p *Pool) pickKey(rs []*Replica, w ringWalk, t *tried, panicking bool) int {
	g := w.ring
	n := len(g.points)
	if n == 0 {
		return -1
	}
	var (
		looked bitset // the replicas the walk has judged, and how many
		judged int
		all    = len(rs) // judged all: stop; past looked's cap, go round once
		full   = -1      // the first that may take the call but is full
		bound  = int64(-1)
	)
	if len(rs) > looked.cap() {
		all = math.MaxInt
	}
	for k, pos := 0, g.start(w.point); k < n && judged < all; k, pos = k+1, pos+1 {
		if pos == n {
			pos = 0
		}
		i := int(g.owner[pos])
		if looked.has(i) {
			continue
		}
		looked.add(i)
		judged++
		r := rs[i]
		if t.has(i) || !p.mayTake(r, panicking) {
			continue
		}
		l := r.inflight.Load()
		if l == 0 { // the bound is at least 1
			return i
		}
		if bound < 0 {
			bound = p.loadBound(rs, panicking)
		}
		if l < bound {
			return i
		}
		if full < 0 {
			full = i
		}
	}
	return full
}

// loadBound returns ceil(c*(T+1)/m), for T calls in flight on the m
// replicas of rs that may take calls (in panic: that are usable): the calls
// in flight a replica must be below to take a keyed call.
func (p *Pool) loadBound(rs []*Replica, panicking bool) int64 {
	var total, m int64
	for _, r := range rs {
		if p.mayTake(r, panicking) {
			total += r.inflight.Load()
			m++
		}
	}
	if m == 0 {
		return 0
	}
	b := math.Ceil(p.opts.HashBalanceFactor * float64(total+1) / float64(m))
	if b >= math.MaxInt64 { // HashBalanceFactor +Inf
		return math.MaxInt64
	}
	return int64(b)
}

// bitset is a set of replica indices below its cap, kept on the stack;
// indices past the cap are never in it.
type bitset [8]uint64

func (s *bitset) cap() int { return len(s) * 64 }

func (s *bitset) has(i int) bool {
	return i < s.cap() && s[i/64]&(1<<(i%64)) != 0
}

func (s *bitset) add(i int) {
	if i < s.cap() {
		s[i/64] |= 1 << (i % 64)
	}
}
