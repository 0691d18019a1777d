// Package keyhash is the hashing that sticky routing agrees on across
// processes and releases: FNV-1a for keys (a session header's value, a
// revision's name, a replica's address) and splitmix64's finalizer to
// spread them. The router (which revision a session keeps) and the
// runtime pools (which replica) both use it; it imports nothing.
//
// FNV-1a is fixed by its specification, so every process agrees on a
// key. For the short keys hashed here (tens of bytes, once per request)
// it is as fast as xxhash and needs no dependency.
package keyhash

const (
	// Offset is FNV-1a's offset basis: the hash of no bytes, from which
	// String continues.
	Offset = 14695981039346656037
	prime  = 1099511628211
)

// Bytes returns the 64-bit FNV-1a hash of b. It neither allocates nor
// retains b.
func Bytes(b []byte) uint64 {
	h := uint64(Offset)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime
	}
	return h
}

// String continues the FNV-1a hash h with the bytes of s.
func String(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// Mix is splitmix64's finalizer: a bijection of uint64 whose every output
// bit depends on every input bit, so that keys that differ little (FNV-1a
// of similar strings, sequential IDs) land far apart.
func Mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
