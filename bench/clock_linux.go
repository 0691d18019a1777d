package bench

import (
	"syscall"
	"time"
)

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// threadSleep sleeps the calling thread for d. It first sets the thread's
// timer slack to 1ns, so that the sleep wakes within microseconds rather
// than the default 50: the goroutine may be on any thread, and a thread
// left with a small slack only keeps its timers precise.
func threadSleep(d time.Duration) {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem
	}
}
