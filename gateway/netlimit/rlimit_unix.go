//go:build unix

package netlimit

import "syscall"

// FileLimit returns the process's soft limit on open files
// (RLIMIT_NOFILE), and false when it cannot be read or is unlimited.
//
// Go raises the soft limit to the hard one when a program starts (package
// syscall does it, since Go 1.19, and restores the original limit in the
// processes it starts), so this is the most a process may open: a gateway
// has no need to raise it again, and doing so by hand would make its child
// processes inherit the raised limit.
func FileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	// Cur is signed on some systems, and "unlimited" is spelled in several
	// ways (RLIM_INFINITY is all ones on Linux, 1<<63-1 on macOS).
	cur := uint64(lim.Cur) //nolint:unconvert // int64 on the BSDs
	if cur >= 1<<62 {
		return 0, false
	}
	return cur, true
}
