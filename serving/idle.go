package serving

import (
	"context"
	"time"
)

// inFlight counts a revision's requests begun and not answered, and says
// when none is: *router.Stats.
type inFlight interface {
	InFlight() int64
	Idle() <-chan struct{}
}

// idleGrace is how long waitIdle waits at least, for requests that chose
// a retired revision from the previous routing table and have not begun
// yet (the gateway resolves, then calls Stats.Begin).
const idleGrace = 20 * time.Millisecond

// waitIdle waits until no request that chose a retired revision is
// running, at most d or until ctx ends; at least idleGrace.
func waitIdle(ctx context.Context, stats inFlight, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	grace := time.NewTimer(idleGrace)
	defer grace.Stop()
	select {
	case <-ctx.Done():
		return
	case <-deadline.C:
		return
	case <-grace.C:
	}
	for stats.InFlight() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-stats.Idle():
		}
	}
}
