package main

import "syscall"

// sysProcAttr puts a child in its own process group and has the kernel
// kill it if this driver dies, so that nothing it started outlives it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
