package serving

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infergate/infergate/router"
)

// TestWaitIdle runs waitIdle in a bubble of fake time on a real
// router.Stats: it returns as the last request in flight ends (told, not
// polled), at the drain bound if
// they never are, when its context ends, and never before idleGrace, for
// requests that chose the revision and have not begun.
func TestWaitIdle(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight int64
		doneAt   time.Duration // when the requests in flight end; 0: never
		cancelAt time.Duration // when the context ends; 0: never
		want     time.Duration // when waitIdle returns
	}{
		{name: "idle from the start", want: idleGrace},
		{name: "requests end", inFlight: 3, doneAt: 105 * time.Millisecond, want: 105 * time.Millisecond},
		{name: "requests end within the grace", inFlight: 2, doneAt: 5 * time.Millisecond, want: idleGrace},
		{name: "requests outlast the drain", inFlight: 1, want: time.Second},
		{name: "context ends", inFlight: 1, cancelAt: 300 * time.Millisecond, want: 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stats := &router.Stats{}
				for range tc.inFlight {
					stats.Begin()
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tc.doneAt > 0 {
					time.AfterFunc(tc.doneAt, func() {
						for range tc.inFlight {
							stats.End()
						}
					})
				}
				if tc.cancelAt > 0 {
					time.AfterFunc(tc.cancelAt, cancel)
				}
				start := time.Now()
				waitIdle(ctx, stats, time.Second)
				if got := time.Since(start); got != tc.want {
					t.Errorf("returned after %v, want %v", got, tc.want)
				}
			})
		})
	}
}
