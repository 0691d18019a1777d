package main

import "syscall"

// sysProcAttr puts the gateway in its own process group and has the
// kernel kill it if this program dies; its runtimes die with it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
