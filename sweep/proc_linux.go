package sweep

import "syscall"

// sysProcAttr puts a trial in a process group of its own, so that it and
// whatever it starts are stopped together, and has the kernel kill it if
// the sweep dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
