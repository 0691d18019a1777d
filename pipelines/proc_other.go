//go:build !linux

package pipelines

import "syscall"

// sysProcAttr puts a step in a process group of its own, so that it and
// whatever it starts are killed together.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killOrphans would kill what is left of an attempt a dead engine
// started; without /proc it cannot tell the attempt's processes from
// others' that reuse the group id, so it leaves them (they end on their
// own; their outputs are ignored).
func killOrphans(pgid int, marker string) int { return 0 }
