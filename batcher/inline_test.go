package batcher

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infergate/infergate/oip"
	"github.com/prometheus/client_golang/prometheus"
)

// callerKey marks a caller's context, to tell whose context an upstream
// call runs under.
type callerKey struct{}

// TestLoneRequestSentByItsCaller checks the fast path: a request that
// the scheduler would send at once (nothing queued, a slot free) is sent
// from its caller's goroutine, under a context derived from the caller's
// (its values and deadline), and everything else the scheduler guarantees
// holds: the slot is taken, so the next request queues; it is counted in
// the metrics; it frees the slot when it comes back.
func TestLoneRequestSentByItsCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{MaxQueueDelay: time.Hour})
		synctest.Wait() // Run has started
		ctx, cancel := context.WithTimeout(context.WithValue(t.Context(), callerKey{}, "a"), time.Minute)
		defer cancel()
		pa := h.submitCtx(ctx, req("a", 2, "a0"))
		h.wantCalls([]string{"a0"})
		up := h.rt.call(t, 0).ctx
		if got := up.Value(callerKey{}); got != "a" {
			t.Errorf("the upstream call's context has the caller's value %v, want %q: not sent from the caller's goroutine", got, "a")
		}
		want, _ := ctx.Deadline()
		if got, ok := up.Deadline(); !ok || !got.Equal(want) {
			t.Errorf("upstream deadline = %v, %v; want the caller's, %v", got, ok, want)
		}
		if got := metricValue(t, h.b.metrics.batchSize.(prometheus.Metric)); got != 1 {
			t.Errorf("%v batches counted, want 1", got)
		}

		pb := h.submit(req("b", 2, "b0"))
		h.wantCalls([]string{"a0"}) // the only slot is a's
		if got := metricValue(t, h.b.metrics.depth.(prometheus.Metric)); got != 1 {
			t.Errorf("queue depth = %v, want 1", got)
		}
		h.release(0)
		checkOwn(t, pa, req("a", 2, "a0"))
		h.wantCalls([]string{"a0"}, []string{"b0"})
		h.release(1)
		checkOwn(t, pb, req("b", 2, "b0"))
		if got := metricValue(t, h.b.metrics.queueDelay.(prometheus.Metric)); got != 2 {
			t.Errorf("%v queue delays observed, want 2", got)
		}
	})
}

// TestCallerSentRequestCancelledWhenRunStops checks that Run, stopping,
// cancels a call that a caller sends itself, as it cancels the batches it
// sends, and waits for it.
func TestCallerSentRequestCancelledWhenRunStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRuntime{hold: true}
		b, err := New(Options{Model: "m", Dispatch: rt.dispatch, Logger: discardLogger})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		synctest.Wait()
		p := submit(t.Context(), b, req("a", 2, "a0"))
		synctest.Wait()
		if rt.numCalls() != 1 {
			t.Fatalf("%d upstream calls, want 1", rt.numCalls())
		}
		up := rt.call(t, 0).ctx
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if up.Err() == nil {
			t.Error("Run returned with a caller's call still upstream and not cancelled")
		}
		synctest.Wait()
		checkErr(t, p, oip.KindCanceled, "fake runtime")
	})
}

// TestCallerSentRequestHeldForOrdering checks that under PreserveOrdering
// a request its caller sent, answered before a batch sent earlier, waits
// for that batch's answer, and that its caller may give up meanwhile.
func TestCallerSentRequestHeldForOrdering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{PreserveOrdering: true})
		h.limit.Store(3)
		synctest.Wait() // Run has started
		pa := h.submit(req("a", 2, "a0"))
		pb := h.submit(req("b", 2, "b0"))
		ctxC, cancelC := context.WithCancel(context.WithValue(t.Context(), callerKey{}, "c"))
		pc := h.submitCtx(ctxC, req("c", 2, "c0"))
		h.wantCalls([]string{"a0"}, []string{"b0"}, []string{"c0"})
		if h.rt.call(t, 2).ctx.Value(callerKey{}) != "c" {
			t.Fatal("c was not sent by its caller")
		}
		h.release(1)
		h.release(2)
		if pb.finished() || pc.finished() {
			t.Fatal("answered before the request sent earlier")
		}
		cancelC()
		synctest.Wait()
		checkErr(t, pc, oip.KindCanceled, "while its batch was upstream")
		h.release(0)
		checkOwn(t, pa, req("a", 2, "a0"))
		checkOwn(t, pb, req("b", 2, "b0"))
	})
}
