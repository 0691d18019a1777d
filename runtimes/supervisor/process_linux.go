package supervisor

import "syscall"

// processAttr puts the child in its own process group, and asks the kernel
// to kill it when its parent dies so no runtime outlives the gateway.
func processAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
