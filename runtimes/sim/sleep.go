package sim

import (
	"context"
	"errors"
	"time"
)

// Sleep is the default SleepFunc. It waits until d has passed, or until ctx
// is done, without holding a thread or a CPU.
//
// On Linux it waits on a timerfd through the runtime's network poller,
// which wakes within tens of microseconds of the due time. A runtime timer
// (time.Timer) wakes up to a millisecond late there: the poller takes its
// timeout in whole milliseconds, so a timer due in 8.2 ms wakes after 8,
// finds 0.2 ms left, and waits a whole millisecond more. A run of 64 rows
// of the batching benchmark's model (5 ms + 0.05 ms per row) took 9.2 ms
// instead of 8.2, which moved the very limit the benchmark measures the
// batcher against. Where no timerfd can be made, Sleep uses a runtime
// timer.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	if err := preciseSleep(ctx, d); err != errNoPreciseTimer {
		return err
	}
	return timerSleep(ctx, d-time.Since(start))
}

// errNoPreciseTimer is preciseSleep's answer when it cannot wait: Sleep
// then uses a runtime timer.
var errNoPreciseTimer = errors.New("sim: no precise timer")

// timerSleep waits for d on a runtime timer, or until ctx is done.
func timerSleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
