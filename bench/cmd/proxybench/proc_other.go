//go:build !linux

package main

import "syscall"

// sysProcAttr puts a child in its own process group. (The driver measures
// CPU from /proc, so it is of use on Linux only.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
