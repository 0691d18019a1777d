//go:build !linux

package runtimes

import "syscall"

// processAttr puts the child in its own process group.
func processAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
