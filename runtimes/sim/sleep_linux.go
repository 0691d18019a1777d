package sim

import (
	"context"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Linux's timerfd flags and clock.
const (
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
	clockMonotonic = 1
)

// itimerspec is Linux's struct itimerspec.
type itimerspec struct {
	interval, value syscall.Timespec
}

// preciseSleep waits for d on a timerfd read through the network poller,
// or until ctx is done, and returns ctx's error in that case. It returns
// errNoPreciseTimer, having waited for nothing or less than d, when no
// timerfd could be made or read.
func preciseSleep(ctx context.Context, d time.Duration) error {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return errNoPreciseTimer
	}
	spec := itimerspec{value: syscall.NsecToTimespec(d.Nanoseconds())}
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		syscall.Close(int(fd))
		return errNoPreciseTimer
	}
	// A non-blocking descriptor makes a pollable File: Read parks the
	// goroutine in the poller, and a read deadline in the past wakes it.
	f := os.NewFile(fd, "sim-timer")
	defer f.Close()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	var expirations [8]byte
	if _, err := f.Read(expirations[:]); err != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		return errNoPreciseTimer
	}
	return nil
}
