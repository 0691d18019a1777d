package runtimes

import (
	"cmp"
	"slices"
	"strconv"
)

// The consistent-hashing ring for sticky replica choice. Each replica owns
// ringVnodes points on a ring of uint64, derived from its address alone
// (Addr), so that every gateway that sees the same addresses builds the
// same ring. The ring is built with the replica set it indexes (NewPool,
// Add, Remove) and published with it in one atomic pointer, so a reader
// gets both without a lock and never a ring that indexes another set.

// ringVnodes is the number of points each replica owns on the ring. With
// 100, replicas' shares of the keys stay within about ±10-20% of even.
const ringVnodes = 100

// HashKey returns the 64-bit FNV-1a hash of b: the gateway turns a session
// header's value into a key with it. FNV-1a is fixed by its
// specification, so every process and release agrees on a key. HashKey
// neither allocates nor retains b.
func HashKey(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is splitmix64's finalizer: a bijection of uint64 whose every output
// bit depends on every input bit, so that keys that differ little (FNV-1a
// of similar strings, sequential IDs) land far apart on the ring.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

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
		h := hashString(fnvOffset, addr)
		if k := seen[addr]; k > 0 {
			h = hashString(h, "#"+strconv.Itoa(k))
		}
		seen[addr]++
		for v := range uint64(ringVnodes) {
			vs = append(vs, vnode{mix64(h + (v+1)*0x9e3779b97f4a7c15), int32(i)})
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
