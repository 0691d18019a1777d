package batcher

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/oip"
)

// timedCall is a SubmitTimed running in its own goroutine.
type timedCall struct {
	timing Timing
	err    error
	done   chan struct{}
}

func (h *harness) submitTimed(ctx context.Context, r *oip.InferRequest) *timedCall {
	c := &timedCall{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_, c.err = h.b.SubmitTimed(ctx, r, &c.timing)
	}()
	synctest.Wait()
	return c
}

// TestSubmitTimed: SubmitTimed reports when a request was queued, when
// its batch's upstream call began and returned, and how many requests the
// batch held, for a request sent inline, for requests merged by the
// scheduler, and for one that expired in the queue (never sent).
func TestSubmitTimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		t0 := time.Now()
		blocker := h.submitTimed(t.Context(), req("blk", 3, "blk"))
		h.advance(time.Millisecond)
		a := h.submitTimed(t.Context(), req("a", 2, "a0"))
		b := h.submitTimed(t.Context(), req("b", 2, "b0", "b1"))
		expiring, cancel := context.WithTimeout(t.Context(), 2*time.Millisecond)
		defer cancel()
		c := h.submitTimed(expiring, req("c", 4, "c0"))
		h.advance(3 * time.Millisecond)
		h.release(0) // the blocker answers at t0+4ms; a and b go together
		h.advance(2 * time.Millisecond)
		h.release(1)
		for _, p := range []*timedCall{blocker, a, b, c} {
			<-p.done
		}
		ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
		for _, tc := range []struct {
			name string
			got  *timedCall
			want Timing
		}{
			{"inline", blocker, Timing{Enqueued: ms(0), Sent: ms(0), Returned: ms(4), Requests: 1}},
			{"merged a", a, Timing{Enqueued: ms(1), Sent: ms(4), Returned: ms(6), Requests: 2}},
			{"merged b", b, Timing{Enqueued: ms(1), Sent: ms(4), Returned: ms(6), Requests: 2}},
			{"expired", c, Timing{Enqueued: ms(1)}},
		} {
			if diff := cmp.Diff(tc.want, tc.got.timing); diff != "" {
				t.Errorf("%s: timing (-want +got):\n%s", tc.name, diff)
			}
		}
		if kindOf(c.err) != oip.KindDeadlineExceeded.String() {
			t.Errorf("expiring request: %v, want DEADLINE_EXCEEDED", c.err)
		}
		if a.err != nil || b.err != nil {
			t.Errorf("merged requests failed: %v, %v", a.err, b.err)
		}
	})
}
