package supervisor

import "time"

// policy decides what follows a replica's exit. Its method is a pure
// function of the replica's history and the exit, so that the decisions are
// tested without processes or clocks.
type policy struct {
	initial, max time.Duration // backoff before the first restart, and its cap
	reset        time.Duration // a replica ready this long starts its backoff over
	maxFailures  int           // exits in a row before ready that fail the model
}

// history is what the policy remembers of one replica.
type history struct {
	// crashes counts the exits since the replica last stayed ready for
	// policy.reset; it sets the backoff.
	crashes int
	// unready counts the exits in a row of starts that never became
	// ready; it fails the model.
	unready int
}

// exit describes how one start of a replica ended.
type exit struct {
	started time.Time // when the process started (or the start was tried)
	readyAt time.Time // when it first became ready; zero if never
	at      time.Time // when the exit was seen
	// permanent says starting again cannot help (the executable does not
	// exist, the command template does not expand).
	permanent bool
}

// next returns the replica's history after e, how long to wait before
// starting it again, and whether the model is now failed (no restart).
func (p policy) next(h history, e exit) (history, time.Duration, bool) {
	if !e.readyAt.IsZero() && e.at.Sub(e.readyAt) >= p.reset {
		h.crashes = 0
	}
	h.crashes++
	if e.readyAt.IsZero() {
		h.unready++
	} else {
		h.unready = 0
	}
	if e.permanent || h.unready >= p.maxFailures {
		return h, 0, true
	}
	return h, p.delay(h.crashes), false
}

// delay is the backoff before the restart that follows the n-th crash
// (n >= 1): initial, doubling, capped at max.
func (p policy) delay(n int) time.Duration {
	d := p.initial
	for i := 1; i < n && d < p.max; i++ {
		d *= 2
	}
	return min(d, p.max)
}
