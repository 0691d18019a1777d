package batcher

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/infergate/infergate/oip"
	"github.com/prometheus/client_golang/prometheus"
)

// The scheduler tests run in a testing/synctest bubble, whose time moves
// only when every goroutine in it is blocked: after every step,
// synctest.Wait returns once the scheduler, the callers and the fake
// runtime are all blocked, so what has and has not happened is
// deterministic, and time moves only while the test sleeps (harness.advance)
// or waits for an answer.

// harness drives one Batcher whose upstream holds every call until the
// test releases it.
type harness struct {
	t     *testing.T
	logs  lockedBuffer
	rt    *fakeRuntime
	b     *Batcher
	reg   *prometheus.Registry
	limit atomic.Int32
}

// newHarness must be called inside a bubble. Model, Registerer and
// MaxBatchesInFlight (backed by h.limit, initially 1) are set for opts.
func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, rt: &fakeRuntime{hold: true}, reg: prometheus.NewRegistry()}
	h.limit.Store(1)
	opts.Model = "m"
	opts.Registerer = h.reg
	opts.Logger = slog.New(slog.NewTextHandler(&h.logs, nil))
	opts.MaxBatchesInFlight = func() int { return int(h.limit.Load()) }
	h.b = start(t, opts, h.rt)
	return h
}

// submit starts a Submit with the test's context and waits until
// everything it set off is done.
func (h *harness) submit(r *oip.InferRequest) *pending {
	return h.submitCtx(h.t.Context(), r)
}

func (h *harness) submitCtx(ctx context.Context, r *oip.InferRequest) *pending {
	p := submit(ctx, h.b, r)
	synctest.Wait()
	return p
}

// release lets upstream call i answer.
func (h *harness) release(i int) {
	h.t.Helper()
	close(h.rt.call(h.t, i).release)
	synctest.Wait()
}

// advance moves the bubble's time on by d, firing the batcher's timers
// that fall due on the way, and waits until everything they set off is
// done.
func (h *harness) advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// occupy fills the only batch slot with a request of its own group, so
// that the requests submitted next queue up; release(0) frees the slot.
func (h *harness) occupy() *pending {
	h.t.Helper()
	p := h.submit(req("blk", 3, "blk"))
	if h.rt.numCalls() != 1 {
		h.t.Fatalf("the blocker was not sent at once: %d calls", h.rt.numCalls())
	}
	return p
}

// occupyGroup is occupy with a blocker of the group of req(id, 2, ...):
// once it is answered, the group expects its caller back (see
// Batcher.hold), so the requests queued behind it may be held for it.
func (h *harness) occupyGroup() *pending {
	h.t.Helper()
	p := h.submit(req("blk", 2, "blk"))
	if h.rt.numCalls() != 1 {
		h.t.Fatalf("the blocker was not sent at once: %d calls", h.rt.numCalls())
	}
	return p
}

// wantCalls checks the tags of the rows of each upstream call so far.
func (h *harness) wantCalls(want ...[]string) {
	h.t.Helper()
	if diff := cmp.Diff(want, h.rt.callTags(h.t)); diff != "" {
		h.t.Fatalf("upstream calls (-want +got):\n%s", diff)
	}
}

// blk is the tag list of the blocker's call.
var blk = []string{"blk"}

// checkOwn checks that p was answered with exactly what r gets when sent
// alone, but for "row", which numbers rows within the upstream call.
func checkOwn(t *testing.T, p *pending, r *oip.InferRequest) {
	t.Helper()
	if !p.finished() {
		t.Fatalf("request %q not answered", r.ID)
	}
	if p.err != nil {
		t.Fatalf("request %q: %v", r.ID, p.err)
	}
	want, err := echoModel(r)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dropRow(want), dropRow(p.resp), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("request %q answer (-alone +batched):\n%s", r.ID, diff)
	}
}

func dropRow(r *oip.InferResponse) *oip.InferResponse {
	if r == nil {
		return nil
	}
	c := *r
	c.Outputs = nil
	for _, o := range r.Outputs {
		if o.Name != "row" {
			c.Outputs = append(c.Outputs, o)
		}
	}
	return &c
}

// checkErr checks that p failed with an error of kind whose text contains
// text.
func checkErr(t *testing.T, p *pending, kind oip.Kind, text string) {
	t.Helper()
	if !p.finished() {
		t.Fatalf("not answered; want %s error", kind)
	}
	if p.err == nil || oip.KindOf(p.err) != kind || !strings.Contains(p.err.Error(), text) {
		t.Fatalf("error = %v (%s); want %s containing %q", p.err, kindOf(p.err), kind, text)
	}
}

func TestWhenABatchGoes(t *testing.T) {
	const delay = 10 * time.Millisecond
	tests := []struct {
		name string
		opts Options
		run  func(t *testing.T, h *harness)
	}{
		{"a lone request on an idle model goes at once", Options{MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			a := req("a", 2, "a0")
			p := h.submit(a)
			h.wantCalls([]string{"a0"})
			if h.rt.call(t, 0).req != a {
				t.Error("a batch of one was not sent unchanged")
			}
			h.release(0)
			checkOwn(t, p, a)
		}},
		{"a lone request waits only for a free slot", Options{MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			h.occupy()
			a := req("a", 2, "a0")
			p := h.submit(a)
			h.wantCalls(blk)
			h.release(0)
			h.wantCalls(blk, []string{"a0"})
			h.release(1)
			checkOwn(t, p, a)
		}},
		{"requests independent of each other go when the slot frees", Options{MaxQueueDelay: delay}, func(t *testing.T, h *harness) {
			// No caller of their group is out with an answer: no one is
			// expected, so nothing is waited for.
			h.occupy()
			pa, pb := h.submit(req("a", 2, "a0")), h.submit(req("b", 2, "b0"))
			h.release(0)
			h.wantCalls(blk, []string{"a0", "b0"})
			h.release(1)
			checkOwn(t, pa, req("a", 2, "a0"))
			checkOwn(t, pb, req("b", 2, "b0"))
		}},
		{"a caller expected back is waited for, the max queue delay from when the slot freed", Options{MaxQueueDelay: delay}, func(t *testing.T, h *harness) {
			h.occupyGroup()
			a, b := req("a", 2, "a0"), req("b", 2, "b0", "b1")
			pa, pb := h.submit(a), h.submit(b)
			h.advance(2 * time.Millisecond) // a and b wait for the slot: they are not held yet
			h.release(0)                    // the blocker's caller is expected back
			h.advance(delay - time.Microsecond)
			h.wantCalls(blk)
			h.advance(time.Microsecond)
			h.wantCalls(blk, []string{"a0", "b0", "b1"})
			h.release(1)
			checkOwn(t, pa, a)
			checkOwn(t, pb, b)
		}},
		{"a held batch goes once every caller expected is in", Options{MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			h.occupyGroup()
			h.submit(req("a", 2, "a0"))
			h.release(0)
			h.advance(time.Millisecond)
			h.wantCalls(blk)
			h.submit(req("c", 2, "c0")) // the blocker's caller is back
			h.wantCalls(blk, []string{"a0", "c0"})
		}},
		{"a caller not expected within the delay is not waited for", Options{MaxQueueDelay: delay}, func(t *testing.T, h *harness) {
			// Requests of the group come 2 delays apart: fewer than one
			// is expected within a delay.
			h.occupyGroup()
			h.advance(2 * delay)
			h.submit(req("a", 2, "a0"))
			h.release(0)
			h.wantCalls(blk, []string{"a0"})
		}},
		{"a hold ends when less than one arrival is expected in what is left of it", Options{MaxQueueDelay: delay}, func(t *testing.T, h *harness) {
			// Requests of the group come 4ms apart: of the 10ms hold
			// from 12ms, when the slot frees, the last 4ms are not worth
			// waiting.
			h.occupyGroup()
			h.advance(4 * time.Millisecond)
			h.submit(req("a", 2, "a0"))
			h.advance(4 * time.Millisecond)
			h.submit(req("b", 2, "b0"))
			h.advance(4 * time.Millisecond)
			h.release(0)
			h.advance(6*time.Millisecond - time.Microsecond)
			h.wantCalls(blk)
			h.advance(time.Microsecond)
			h.wantCalls(blk, []string{"a0", "b0"})
		}},
		{"zero max queue delay sends what is queued when a slot frees", Options{}, func(t *testing.T, h *harness) {
			h.occupyGroup()
			pa, pb := h.submit(req("a", 2, "a0")), h.submit(req("b", 2, "b0"))
			h.release(0)
			h.wantCalls(blk, []string{"a0", "b0"})
			h.release(1)
			checkOwn(t, pa, req("a", 2, "a0"))
			checkOwn(t, pb, req("b", 2, "b0"))
		}},
		{"a full batch goes at once", Options{MaxBatchSize: 4, MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			h.occupyGroup()
			h.submit(req("a", 2, "a0", "a1"))
			h.submit(req("b", 2, "b0"))
			h.release(0)
			h.wantCalls(blk)
			h.submit(req("c", 2, "c0"))
			h.wantCalls(blk, []string{"a0", "a1", "b0", "c0"})
		}},
		{"a batch the next request does not fit goes at once", Options{MaxBatchSize: 4, MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			h.occupy()
			h.submit(req("a", 2, "a0", "a1"))
			h.submit(req("b", 2, "b0", "b1", "b2"))
			h.release(0)
			h.wantCalls(blk, []string{"a0", "a1"})
			h.release(1) // b is now alone; the runtime answers in no time, so waiting cannot pay
			h.wantCalls(blk, []string{"a0", "a1"}, []string{"b0", "b1", "b2"})
		}},
		{"a preferred size goes at once, the rest waits", Options{MaxBatchSize: 8, PreferredBatchSizes: []int64{2, 5}, MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			h.occupy()
			h.submit(req("a", 2, "a0"))
			h.submit(req("b", 2, "b0"))
			h.submit(req("c", 2, "c0"))
			h.release(0)
			h.wantCalls(blk, []string{"a0", "b0"})
			h.release(1)
			h.wantCalls(blk, []string{"a0", "b0"}, []string{"c0"})
		}},
		{"the largest preferred prefix goes", Options{MaxBatchSize: 8, PreferredBatchSizes: []int64{2, 3}, MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			h.occupy()
			for _, id := range []string{"a", "b", "c", "d"} {
				h.submit(req(id, 2, id+"0"))
			}
			h.release(0)
			h.wantCalls(blk, []string{"a0", "b0", "c0"})
		}},
		{"a caller that gives up is not waited for", Options{MaxQueueDelay: time.Hour}, func(t *testing.T, h *harness) {
			h.occupyGroup()
			ctx, cancel := context.WithCancel(t.Context())
			pa := h.submit(req("a", 2, "a0"))
			pb := h.submitCtx(ctx, req("b", 2, "b0"))
			h.release(0)
			cancel()
			synctest.Wait()
			checkErr(t, pb, oip.KindCanceled, "cancelled after")
			h.wantCalls(blk) // the blocker's caller is still expected
			pc := h.submit(req("c", 2, "c0"))
			h.wantCalls(blk, []string{"a0", "c0"}) // and b's is not
			h.release(1)
			checkOwn(t, pa, req("a", 2, "a0"))
			checkOwn(t, pc, req("c", 2, "c0"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { tc.run(t, newHarness(t, tc.opts)) })
		})
	}
}

func TestIncompatibleRequestsNeverShareABatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{MaxBatchSize: 16, MaxQueueDelay: time.Millisecond})
		h.occupy()
		named := func(r *oip.InferRequest, outs ...string) *oip.InferRequest {
			for _, o := range outs {
				r.Outputs = append(r.Outputs, oip.RequestedOutput{Name: o})
			}
			return r
		}
		versioned := func(r *oip.InferRequest) *oip.InferRequest { r.ModelVersion = "2"; return r }
		reqs := []*oip.InferRequest{
			req("a1", 2, "A"), req("b1", 4, "B"), named(req("c1", 2, "C"), "y"), versioned(req("d1", 2, "D")),
			withParam(req("e1", 2, "E"), oip.Parameter{Key: "mode", Kind: oip.ParamString, String: "slow"}),
			req("a2", 2, "A", "A"), req("b2", 4, "B"), named(req("c2", 2, "C"), "y"), versioned(req("d2", 2, "D")),
			withParam(req("e2", 2, "E"), oip.Parameter{Key: "mode", Kind: oip.ParamString, String: "slow"}),
			named(req("f1", 2, "F"), "y", "sum"),
		}
		ps := make([]*pending, len(reqs))
		for i, r := range reqs {
			ps[i] = h.submit(r)
		}
		h.limit.Store(10)
		h.release(0)
		h.advance(time.Millisecond)
		got := map[string]bool{}
		for _, tags := range h.rt.callTags(t)[1:] {
			for _, tag := range tags[1:] {
				if tag != tags[0] {
					t.Errorf("one upstream call mixed groups %q and %q", tags[0], tag)
				}
			}
			got[tags[0]] = true
		}
		if want := map[string]bool{"A": true, "B": true, "C": true, "D": true, "E": true, "F": true}; !cmp.Equal(got, want) {
			t.Errorf("groups sent %v, want %v", got, want)
		}
		for i := 1; i < h.rt.numCalls(); i++ {
			h.release(i)
		}
		for i, r := range reqs {
			checkOwn(t, ps[i], r)
		}
	})
}

func TestPreserveOrdering(t *testing.T) {
	for _, preserve := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[preserve], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{PreserveOrdering: preserve})
				h.limit.Store(2)
				pa := h.submit(req("a", 2, "a0"))
				pb := h.submit(req("b", 2, "b0"))
				h.wantCalls([]string{"a0"}, []string{"b0"})
				h.release(1) // the later batch completes first
				if got, want := pb.finished(), !preserve; got != want {
					t.Errorf("the later request answered before the earlier = %v, want %v", got, want)
				}
				h.release(0)
				checkOwn(t, pa, req("a", 2, "a0"))
				checkOwn(t, pb, req("b", 2, "b0"))
			})
		})
	}
}

func TestPriority(t *testing.T) {
	prio := func(r *oip.InferRequest, p int64) *oip.InferRequest { return withParam(r, intParam("priority", p)) }
	tests := []struct {
		name string
		opts Options
		reqs []*oip.InferRequest // submitted in this order behind the blocker
		want [][]string          // upstream calls after the blocker's
	}{
		{
			name: "a higher priority group goes first",
			opts: Options{PriorityLevels: 3},
			reqs: []*oip.InferRequest{prio(req("l", 2, "low"), 3), prio(req("h", 4, "high"), 1)},
			want: [][]string{{"high"}, {"low"}},
		},
		{
			name: "within a group higher priority fills the batch first",
			opts: Options{PriorityLevels: 3, MaxBatchSize: 2},
			reqs: []*oip.InferRequest{prio(req("l1", 2, "l1"), 3), prio(req("l2", 2, "l2"), 3), prio(req("h", 2, "h"), 1)},
			want: [][]string{{"h", "l1"}, {"l2"}},
		},
		{
			name: "no priority means the middle level",
			opts: Options{PriorityLevels: 3},
			reqs: []*oip.InferRequest{prio(req("l", 2, "low"), 3), req("d", 3, "default"), prio(req("h", 4, "high"), 1)},
			want: [][]string{{"high"}, {"default"}, {"low"}},
		},
		{
			name: "an out of range priority means the default",
			opts: Options{PriorityLevels: 2, DefaultPriority: 2},
			reqs: []*oip.InferRequest{prio(req("o", 2, "out of range"), 9), prio(req("z", 3, "zero"), 0), prio(req("h", 4, "high"), 1)},
			want: [][]string{{"high"}, {"out of range"}, {"zero"}},
		},
		{
			name: "equal priorities go in arrival order",
			opts: Options{PriorityLevels: 2},
			reqs: []*oip.InferRequest{req("a", 2, "first"), req("b", 3, "second"), req("c", 4, "third")},
			want: [][]string{{"first"}, {"second"}, {"third"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, tc.opts)
				h.occupy()
				for _, r := range tc.reqs {
					h.submit(r)
				}
				for i := range tc.want {
					h.release(i)
				}
				h.wantCalls(append([][]string{blk}, tc.want...)...)
			})
		})
	}
}

func TestQueueTimeout(t *testing.T) {
	timeout := func(r *oip.InferRequest, us int64) *oip.InferRequest { return withParam(r, intParam("timeout", us)) }
	tests := []struct {
		name    string
		policy  QueuePolicy
		r       *oip.InferRequest
		expires time.Duration // 0: never
	}{
		{"the timeout parameter", QueuePolicy{AllowTimeoutOverride: true}, timeout(req("a", 2, "a0"), 5000), 5 * time.Millisecond},
		{"the default timeout", QueuePolicy{DefaultTimeout: 7 * time.Millisecond}, req("a", 2, "a0"), 7 * time.Millisecond},
		{"the parameter may shorten the default", QueuePolicy{DefaultTimeout: 7 * time.Millisecond, AllowTimeoutOverride: true}, timeout(req("a", 2, "a0"), 3000), 3 * time.Millisecond},
		{"the parameter may not lengthen it", QueuePolicy{DefaultTimeout: 7 * time.Millisecond, AllowTimeoutOverride: true}, timeout(req("a", 2, "a0"), 9000), 7 * time.Millisecond},
		{"the parameter is ignored without override", QueuePolicy{}, timeout(req("a", 2, "a0"), 5000), 0},
		{"zero means the default", QueuePolicy{AllowTimeoutOverride: true}, timeout(req("a", 2, "a0"), 0), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{DefaultQueuePolicy: tc.policy})
				h.occupy()
				p := h.submit(tc.r)
				if tc.expires == 0 {
					h.advance(time.Hour)
					h.release(0)
					h.wantCalls(blk, []string{"a0"})
					return
				}
				h.advance(tc.expires - time.Microsecond)
				if p.finished() {
					t.Fatalf("answered before its timeout: %v", p.err)
				}
				h.advance(time.Microsecond)
				checkErr(t, p, oip.KindDeadlineExceeded, "queue timeout exceeded after "+tc.expires.String())
				if got := metricValue(t, h.b.metrics.expired); got != 1 {
					t.Errorf("expired_total = %v, want 1", got)
				}
				h.release(0)
				h.wantCalls(blk) // never sent upstream
			})
		})
	}
}

func TestQueueTimeoutDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{MaxBatchSize: 1, DefaultQueuePolicy: QueuePolicy{TimeoutAction: TimeoutDelay, AllowTimeoutOverride: true}})
		h.occupy()
		a := withParam(req("a", 2, "a0"), intParam("timeout", 1000))
		pa := h.submit(a)
		pb := h.submit(req("b", 2, "b0"))
		h.advance(time.Millisecond) // a's timeout passes: it moves behind b
		if pa.finished() {
			t.Fatalf("a delayed request was answered: %v", pa.err)
		}
		h.release(0)
		h.release(1)
		h.release(2)
		h.wantCalls(blk, []string{"b0"}, []string{"a0"})
		checkOwn(t, pa, a)
		checkOwn(t, pb, req("b", 2, "b0"))
	})
}

func TestContextWhileQueued(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		// The context's deadline and the batcher's timer run on the
		// same (bubble) time.
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{MaxQueueDelay: time.Hour})
			h.occupy()
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			begin := time.Now()
			p := h.submitCtx(ctx, req("a", 2, "a0"))
			p.wait() // time moves on in the bubble until the deadline
			if waited := time.Since(begin); waited != 50*time.Millisecond {
				t.Errorf("answered after %s, want 50ms", waited)
			}
			checkErr(t, p, oip.KindDeadlineExceeded, "deadline exceeded after 50ms queued for batching")
			if !errors.Is(p.err, context.DeadlineExceeded) {
				t.Error("the error does not wrap context.DeadlineExceeded")
			}
			h.release(0)
			h.wantCalls(blk)
			if got := metricValue(t, h.b.metrics.expired); got != 1 {
				t.Errorf("expired_total = %v, want 1", got)
			}
		})
	})
	t.Run("deadline passed on arrival", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{})
			ctx, cancel := context.WithDeadline(t.Context(), time.Now())
			defer cancel()
			p := h.submitCtx(ctx, req("a", 2, "a0"))
			checkErr(t, p, oip.KindDeadlineExceeded, "on arrival")
			h.wantCalls()
		})
	})
	t.Run("cancel", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{MaxQueueDelay: time.Hour})
			h.occupy()
			ctx, cancel := context.WithCancel(t.Context())
			p := h.submitCtx(ctx, req("a", 2, "a0"))
			if got := metricValue(t, h.b.metrics.depth); got != 1 {
				t.Errorf("queue depth = %v, want 1", got)
			}
			cancel()
			synctest.Wait()
			checkErr(t, p, oip.KindCanceled, "cancelled after 0s queued")
			if got := metricValue(t, h.b.metrics.depth); got != 0 {
				t.Errorf("queue depth = %v, want 0", got)
			}
			h.release(0)
			h.wantCalls(blk)
		})
	})
}

func TestContextWhileUpstream(t *testing.T) {
	t.Run("merged", testCancelMerged)
	t.Run("alone", func(t *testing.T) {
		// A request sent unchanged is read by Dispatch until it returns,
		// so Submit waits for that, however long the runtime takes to
		// notice the cancellation.
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.rt.deaf = true
			ctx, cancel := context.WithCancel(t.Context())
			p := h.submitCtx(ctx, req("a", 2, "a0"))
			upstream := h.rt.call(t, 0).ctx
			cancel()
			synctest.Wait()
			if upstream.Err() == nil {
				t.Fatal("the upstream call of a request whose caller left was not cancelled")
			}
			if p.finished() {
				t.Fatal("Submit returned while Dispatch may still read the request")
			}
			h.release(0)
			checkErr(t, p, oip.KindCanceled, "while its batch was upstream")
		})
	})
}

func testCancelMerged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		h.occupy()
		ctxA, cancelA := context.WithCancel(t.Context())
		ctxB, cancelB := context.WithCancel(t.Context())
		pa := h.submitCtx(ctxA, req("a", 2, "a0"))
		pb := h.submitCtx(ctxB, req("b", 2, "b0"))
		h.release(0)
		h.wantCalls(blk, []string{"a0", "b0"})
		upstream := h.rt.call(t, 1).ctx

		cancelA()
		synctest.Wait()
		checkErr(t, pa, oip.KindCanceled, "while its batch was upstream")
		if upstream.Err() != nil {
			t.Fatal("the upstream call was cancelled while b still waits")
		}
		cancelB()
		synctest.Wait()
		checkErr(t, pb, oip.KindCanceled, "while its batch was upstream")
		if upstream.Err() == nil {
			t.Fatal("the upstream call goes on with no caller left")
		}
	})
}

func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{MaxQueueSize: 2, MaxQueueDelay: time.Hour})
		h.occupy() // in flight, not queued
		pa, pb := h.submit(req("a", 2, "a0")), h.submit(req("b", 2, "b0"))
		pc := h.submit(req("c", 2, "c0"))
		checkErr(t, pc, oip.KindResourceExhausted, "batch queue is full (2 requests)")
		if pa.finished() || pb.finished() {
			t.Fatal("a queued request was answered")
		}
		if got := metricValue(t, h.b.metrics.rejectedFull); got != 1 {
			t.Errorf("rejected_total{reason=queue_full} = %v, want 1", got)
		}
	})
}

func TestOversize(t *testing.T) {
	big := func() *oip.InferRequest { return req("big", 2, "g0", "g1", "g2") }
	t.Run("reject", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{MaxBatchSize: 2, OversizePolicy: OversizeReject})
			p := h.submit(big())
			checkErr(t, p, oip.KindInvalidArgument, "batch size 3 is larger than the max batch size 2")
			h.wantCalls()
			if got := metricValue(t, h.b.metrics.rejectedOversize); got != 1 {
				t.Errorf("rejected_total{reason=oversize} = %v, want 1", got)
			}
		})
	})
	t.Run("send alone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{MaxBatchSize: 2, MaxQueueDelay: time.Hour})
			h.occupy()
			g := big()
			pa := h.submit(req("a", 2, "a0"))
			pg := h.submit(g)
			pb := h.submit(req("b", 2, "b0"))
			h.release(0)
			h.release(1)
			h.release(2)
			h.wantCalls(blk, []string{"a0", "b0"}, []string{"g0", "g1", "g2"})
			if h.rt.call(t, 2).req != g {
				t.Error("an oversize request was not sent unchanged")
			}
			checkOwn(t, pg, g)
			checkOwn(t, pa, req("a", 2, "a0"))
			checkOwn(t, pb, req("b", 2, "b0"))
		})
	})
	t.Run("sequence requests go alone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.occupy()
			seq := func(id string) *oip.InferRequest { return withParam(req(id, 2, id), intParam("sequence_id", 7)) }
			h.submit(seq("s1"))
			h.submit(seq("s2"))
			h.release(0)
			h.release(1)
			h.wantCalls(blk, []string{"s1"}, []string{"s2"})
		})
	})
}

func TestUpstreamFailure(t *testing.T) {
	errDown := oip.Errorf(oip.KindUnavailable, "replica down")
	tests := []struct {
		name   string
		answer func(ctx context.Context, r *oip.InferRequest) (*oip.InferResponse, error)
		kind   oip.Kind
		text   string
		logged bool // as a runtime answer that does not match the batch
	}{
		{"an upstream error fails everyone with it", func(context.Context, *oip.InferRequest) (*oip.InferResponse, error) {
			return nil, errDown
		}, oip.KindUnavailable, "replica down", false},
		{"too few rows fail everyone", func(_ context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
			resp, err := echoModel(r)
			y := resp.Output("y")
			y.Shape[0]--
			y.Data = y.Data[:len(y.Data)-8]
			return resp, err
		}, oip.KindInternal, "runtime returned 2 rows for a batch of 3", true},
		{"a missing output fails everyone", func(_ context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
			resp, err := echoModel(r)
			resp.Outputs = resp.Outputs[:1]
			return resp, err
		}, oip.KindInternal, `runtime returned no output "sum"`, true},
		{"no response fails everyone", func(context.Context, *oip.InferRequest) (*oip.InferResponse, error) {
			return nil, nil
		}, oip.KindInternal, "no response and no error", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{})
				h.rt.setAnswer(tc.answer)
				h.occupy()
				named := func(r *oip.InferRequest) *oip.InferRequest {
					r.Outputs = []oip.RequestedOutput{{Name: "y"}, {Name: "sum"}}
					return r
				}
				pa := h.submit(named(req("a", 2, "a0")))
				pb := h.submit(named(req("b", 2, "b0", "b1")))
				h.release(0)
				h.release(1)
				h.wantCalls(blk, []string{"a0", "b0", "b1"})
				for _, p := range []*pending{pa, pb} {
					checkErr(t, p, tc.kind, tc.text)
					if p.resp != nil {
						t.Error("a failed request got a response")
					}
				}
				if tc.kind == oip.KindUnavailable && !errors.Is(pa.err, errDown) {
					t.Error("the upstream error was not passed on unchanged")
				}
				logs := h.logs.String()
				if logged := strings.Contains(logs, `level=WARN msg="batcher: runtime answer does not match the batch`); logged != tc.logged {
					t.Errorf("mismatch logged = %v, want %v; logs:\n%s", logged, tc.logged, logs)
				}
			})
		})
	}
}

func TestMaxBatchesInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		h.limit.Store(2)
		h.submit(req("a", 2, "a0"))
		h.submit(req("b", 3, "b0"))
		pc := h.submit(req("c", 4, "c0"))
		h.wantCalls([]string{"a0"}, []string{"b0"})
		h.release(0)
		h.wantCalls([]string{"a0"}, []string{"b0"}, []string{"c0"})
		h.limit.Store(3) // one more ready replica
		h.submit(req("d", 5, "d0"))
		h.wantCalls([]string{"a0"}, []string{"b0"}, []string{"c0"}, []string{"d0"})
		h.limit.Store(0) // below 1 counts as 1
		h.release(1)
		h.release(3)
		h.submit(req("e", 6, "e0"))
		h.wantCalls([]string{"a0"}, []string{"b0"}, []string{"c0"}, []string{"d0"})
		h.release(2)
		h.wantCalls([]string{"a0"}, []string{"b0"}, []string{"c0"}, []string{"d0"}, []string{"e0"})
		checkOwn(t, pc, req("c", 4, "c0"))
	})
}

func TestDeadlineAwareDispatch(t *testing.T) {
	// The runtime takes 10ms + 1ms per row. Requests a and b, with a 20ms
	// queue timeout and an hour of max queue delay, are held for the
	// blocker's caller, expected back. A batcher that has learnt the
	// service time holds them for at most 12ms, the time two rows take,
	// but sends them at 8ms (20ms less 12ms) so as not to miss their
	// timeout; one that has not holds them for the hour and lets them
	// expire.
	for _, trained := range []bool{true, false} {
		t.Run(map[bool]string{true: "trained", false: "untrained"}[trained], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{MaxQueueDelay: time.Hour, DefaultQueuePolicy: QueuePolicy{AllowTimeoutOverride: true}})
				if trained {
					h.rt.setHold(false)
					h.rt.setAnswer(func(_ context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
						time.Sleep(10*time.Millisecond + time.Duration(r.Inputs[0].Shape[0])*time.Millisecond)
						return echoModel(r)
					})
					// Of another group than a and b, whose arrivals they
					// do not time.
					for i, rows := range []int{1, 3, 1, 3} {
						h.submit(req("train", 3, make([]string, rows)...)).wait()
						if h.rt.numCalls() != i+1 {
							t.Fatal("a training request was not sent at once")
						}
					}
					if got := h.b.service.estimate(2); got != 12*time.Millisecond {
						t.Fatalf("estimate for 2 rows = %s, want 12ms", got)
					}
					h.rt.setHold(true)
					h.rt.setAnswer(nil)
				}
				calls := h.rt.numCalls()
				h.submit(req("blk", 2, "blk"))
				if h.rt.numCalls() != calls+1 {
					t.Fatalf("the blocker was not sent at once")
				}
				pa := h.submit(withParam(req("a", 2, "a0"), intParam("timeout", 20000)))
				pb := h.submit(withParam(req("b", 2, "b0"), intParam("timeout", 20000)))
				h.release(calls)
				h.advance(8*time.Millisecond - time.Microsecond)
				if got := h.rt.numCalls(); got != calls+1 {
					t.Fatalf("sent before the deadline-aware time: %d calls", got)
				}
				h.advance(time.Microsecond)
				if !trained {
					if got := h.rt.numCalls(); got != calls+1 {
						t.Fatalf("untrained batcher sent at 8ms: %d calls", got)
					}
					h.advance(12 * time.Millisecond)
					checkErr(t, pa, oip.KindDeadlineExceeded, "queue timeout")
					checkErr(t, pb, oip.KindDeadlineExceeded, "queue timeout")
					return
				}
				if got := h.rt.call(t, calls+1); got == nil || !cmp.Equal(tagsOf(got.req), []string{"a0", "b0"}) {
					t.Fatalf("a and b not sent together at 8ms")
				}
				h.release(calls + 1)
				checkOwn(t, pa, req("a", 2, "a0"))
				checkOwn(t, pb, req("b", 2, "b0"))
			})
		})
	}
}

func TestHold(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	// A group of two queued requests, three outstanding before: one
	// caller expected back; arrivals 100us apart; the oldest arrived at t0.
	// The budget is the delay, or the service time of two rows if learnt;
	// callers come back 100us apart.
	base := func() group {
		return group{n: 2, gap: 100 * time.Microsecond, gaps: gapWeight, burstGap: 100 * time.Microsecond, burstGaps: gapWeight, peak: 3}
	}
	tests := []struct {
		name      string
		delay     time.Duration
		service   time.Duration // of every batch; zero: none observed
		fit       bool          // batches of 1 and 64 rows took 5ms + 50us per row: a is 5ms
		freeSince time.Duration // after t0; zero: never busy
		g         func(g *group)
		now       time.Duration // after t0
		want      time.Duration // after t0, when the hold ends; -1: no hold
	}{
		{name: "held for the delay, less the mean gap", delay: 10 * ms, want: 10*ms - 100*time.Microsecond},
		{name: "the service time bounds the hold", delay: 10 * ms, service: 4 * ms, want: 4*ms - 100*time.Microsecond},
		{name: "callers coming back faster than the fixed cost are waited for", delay: 3 * ms, fit: true, g: func(g *group) { g.burstGap = 2 * ms }, want: 3*ms - 100*time.Microsecond},
		{name: "a batch as large as the callers back within the fixed cost goes", delay: 3 * ms, fit: true, g: func(g *group) { g.burstGap = 2600 * time.Microsecond }, want: -1},
		{name: "no rate of callers coming back learnt yet", delay: 3 * ms, fit: true, g: func(g *group) { g.burstGap, g.burstGaps = 2600*time.Microsecond, 0 }, want: 3*ms - 100*time.Microsecond},
		{name: "counted from when the slot freed", delay: 10 * ms, freeSince: 3 * ms, now: 3 * ms, want: 13*ms - 100*time.Microsecond},
		{name: "a slot freed before the oldest arrived does not count", delay: 10 * ms, freeSince: -ms, want: 10*ms - 100*time.Microsecond},
		{name: "the previous period's callers are expected", delay: 10 * ms, g: func(g *group) { g.peak, g.prevPeak = 2, 3 }, want: 10*ms - 100*time.Microsecond},
		{name: "callers upstream count as outstanding", delay: 10 * ms, g: func(g *group) { g.inFlight = 1 }, want: -1},
		{name: "a lone client is never held", delay: 10 * ms, g: func(g *group) { g.n, g.peak = 1, 1 }, want: -1},
		{name: "no max queue delay", delay: 0, want: -1},
		{name: "a runtime that answers at once", delay: 10 * ms, service: time.Nanosecond, want: -1},
		{name: "no gap learned yet", delay: 10 * ms, g: func(g *group) { g.gaps = 0 }, want: -1},
		{name: "arrivals sparser than the delay", delay: 10 * ms, g: func(g *group) { g.gap = 10 * ms }, want: -1},
		{name: "fewer than one arrival expected in what is left", delay: 10 * ms, now: 10*ms - 100*time.Microsecond, want: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(Options{MaxQueueDelay: tc.delay, Dispatch: (&fakeRuntime{}).dispatch})
			if err != nil {
				t.Fatal(err)
			}
			if tc.service > 0 {
				b.service.observe(2, tc.service)
			}
			if tc.fit {
				b.service.observe(1, 5*ms+50*time.Microsecond)
				b.service.observe(64, 5*ms+64*50*time.Microsecond)
			}
			if tc.freeSince != 0 {
				b.freeSince = t0.Add(tc.freeSince)
			}
			g := base()
			if tc.g != nil {
				tc.g(&g)
			}
			c := candidate{items: make([]*item, 2), rows: 2, oldest: t0}
			until, ok := b.hold(&g, &c, t0.Add(tc.now))
			switch {
			case tc.want < 0 && ok:
				t.Errorf("held until %s after t0, want no hold", until.Sub(t0))
			case tc.want >= 0 && !ok:
				t.Errorf("not held, want held until %s after t0", tc.want)
			case ok && !until.Equal(t0.Add(tc.want)):
				t.Errorf("held until %s after t0, want %s", until.Sub(t0), tc.want)
			}
		})
	}
}

func TestGroupStatistics(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	us := time.Microsecond
	var g group
	arrive := func(at time.Duration) { g.n++; g.arrive(t0.Add(at)) }
	// Three callers 1ms apart, sent upstream together, back at 3ms; two
	// come back at 10ms and 11ms, and one of them gives up.
	arrive(0)
	arrive(1000 * us)
	arrive(2000 * us)
	g.n, g.inFlight = 0, 3
	g.returned(3, t0.Add(3000*us))
	arrive(10000 * us)
	arrive(11000 * us)
	type stats struct {
		Gap, BurstGap               time.Duration
		Outstanding, Peak, PrevPeak int
		Population, Gaps, BurstGaps int
	}
	got := func() stats {
		return stats{g.gap, g.burstGap, g.outstanding(), g.peak, g.prevPeak, g.population(), g.gaps, g.burstGaps}
	}
	// The gap from 2ms to 10ms spans the batch upstream: it counts in
	// the mean gap, not in how fast callers come back.
	want := stats{Gap: 2750 * us, BurstGap: 1000 * us, Outstanding: 2, Peak: 2, PrevPeak: 3, Population: 3, Gaps: 4, BurstGaps: 3}
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Fatalf("after the arrivals (-want +got):\n%s", diff)
	}
	g.gaveUp()
	g.n--
	want.Outstanding, want.Peak, want.PrevPeak, want.Population = 1, 1, 2, 2
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Fatalf("after one gave up (-want +got):\n%s", diff)
	}
}
