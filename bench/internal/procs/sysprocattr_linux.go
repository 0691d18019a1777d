package procs

import "syscall"

// sysProcAttr puts a child in its own process group and has the kernel
// kill it if the thread that started it dies, so that nothing this
// program started outlives it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
