//go:build !linux

package procs

import "syscall"

// sysProcAttr puts a child in its own process group. (Only Linux has a
// signal for a parent's death.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
