//go:build !unix

package netlimit

// FileLimit returns false: this system has no RLIMIT_NOFILE.
func FileLimit() (uint64, bool) { return 0, false }
