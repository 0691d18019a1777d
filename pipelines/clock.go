package pipelines

import "time"

// Clock is the engine's time: retry backoffs, step timeouts, the grace
// before SIGKILL and the log follower's wait all go through it, so that
// tests can drive them. Its methods are called from many goroutines.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed, and a
	// stop function (true if it stopped the timer before it fired).
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
