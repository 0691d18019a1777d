package bench

import (
	"context"
	"runtime"
	"time"
)

// Clock is the open loop's time source: when it is, and a way to wait
// until a given time. Tests run loops under testing/synctest with
// SystemClock, whose timers are then virtual.
type Clock interface {
	Now() time.Time
	// SleepUntil returns at t or soon after, or earlier when ctx is done.
	SleepUntil(ctx context.Context, t time.Time)
}

// SystemClock is time.Now and Go timers. A Go timer may fire up to a
// millisecond late when the process is otherwise idle, which in an open
// loop counts as latency; PreciseClock waits more exactly.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// SleepUntil waits on a timer.
func (SystemClock) SleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// coarseWait is how long before its time a PreciseClock stops waiting on a
// Go timer and sleeps the thread instead.
const coarseWait = 2 * time.Millisecond

// PreciseClock waits on a Go timer until shortly before the time (a Go
// timer may fire a millisecond late when the process is otherwise idle),
// then yields once, so that a worker just handed a send runs now rather
// than after the sleep, then sleeps the thread with a nanosleep at a timer
// slack of 1ns (on Linux). A nanosleep wakes some microseconds late, tens
// on a busy virtual machine, where each also costs tens of microseconds of
// CPU; the open loop reports the lag (Result.SendLagP50/P99) rather than
// spinning a core to hide it. With GOMAXPROCS=1 it waits on Go timers
// only: a sleeping thread would hold the one processor the workers need.
type PreciseClock struct{}

// Now returns time.Now().
func (PreciseClock) Now() time.Time { return time.Now() }

// SleepUntil waits until t, or until ctx is done.
func (PreciseClock) SleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if runtime.GOMAXPROCS(0) == 1 {
		SystemClock{}.SleepUntil(ctx, t)
		return
	}
	if d > coarseWait {
		SystemClock{}.SleepUntil(ctx, t.Add(-coarseWait/2))
		if ctx.Err() != nil {
			return
		}
	}
	runtime.Gosched()
	if d = time.Until(t); d > 0 {
		threadSleep(d)
	}
}
