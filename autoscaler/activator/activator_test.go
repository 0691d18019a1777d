package activator

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infergate/infergate/autoscaler"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// An Activator is the autoscaler's Observer.
var _ autoscaler.Observer = (*Activator)(nil)

// wait bounds every wait on a signal in these tests.
const wait = 10 * time.Second

// deadlineCtx is a context whose deadline passes when expire is called.
type deadlineCtx struct {
	context.Context
	done chan struct{}
}

func newDeadlineCtx() *deadlineCtx {
	return &deadlineCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.done }

func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *deadlineCtx) expire() { close(c.done) }

// harness is an Activator with a private registry and its pokes on a
// channel: each hold sends one after the request is queued, so a test
// waits for holds on it. Tests that measure time run it inside
// synctest.Test and move the bubble's time with advance.
type harness struct {
	*Activator
	reg   *prometheus.Registry
	pokes chan string
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{
		reg:   prometheus.NewRegistry(),
		pokes: make(chan string, 10_000),
	}
	opts.Registerer = h.reg
	opts.Poke = func(model string) { h.pokes <- model }
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.Activator = a
	return h
}

// advance moves the bubble's time on by d and waits until every goroutine
// in it is blocked; it must be called inside synctest.Test.
func (h *harness) advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// waitHolds waits for n holds of model.
func (h *harness) waitHolds(t *testing.T, model string, n int) {
	t.Helper()
	timeout := time.After(wait)
	for i := 0; i < n; i++ {
		select {
		case got := <-h.pokes:
			if got != model {
				t.Fatalf("Poke(%q), want Poke(%q)", got, model)
			}
		case <-timeout:
			t.Fatalf("saw %d holds of %q, want %d", i, model, n)
		}
	}
}

// noPoke fails if a hold was signalled.
func (h *harness) noPoke(t *testing.T) {
	t.Helper()
	select {
	case m := <-h.pokes:
		t.Fatalf("unexpected Poke(%q)", m)
	default:
	}
}

type result struct {
	release func()
	err     error
}

// goAcquire runs Acquire in a goroutine and delivers its result.
func goAcquire(ctx context.Context, a *Activator, model string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := a.Acquire(ctx, model)
		ch <- result{r, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(wait):
		t.Fatal("Acquire did not return")
		return result{}
	}
}

// pending fails if ch has a result.
func pending(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Acquire returned (err %v), want it held", r.err)
	default:
	}
}

func mustAcquire(t *testing.T, a *Activator, model string) func() {
	t.Helper()
	release, err := a.Acquire(context.Background(), model)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", model, err)
	}
	return release
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func rejected(t *testing.T, reg *prometheus.Registry, model, reason string) float64 {
	t.Helper()
	m := metric(t, reg, "infergate_activator_rejected_total", map[string]string{"model": model, "reason": reason})
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func histogram(t *testing.T, reg *prometheus.Registry, name, model string) (count uint64, sum float64) {
	t.Helper()
	m := metric(t, reg, name, map[string]string{"model": model})
	if m == nil {
		return 0, 0
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"negative MaxQueue", Options{MaxQueue: -1}},
		{"negative ContainerConcurrency", Options{ContainerConcurrency: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

func TestFastPath(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cc, ready int
		admitted  int // acquired at once before the first hold
	}{
		{"unlimited", 0, 1, 50},
		{"one per replica", 1, 3, 3},
		{"four per replica", 4, 2, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{ContainerConcurrency: tc.cc})
			h.SetCapacity("m", tc.ready)
			var releases []func()
			for range tc.admitted {
				releases = append(releases, mustAcquire(t, h.Activator, "m"))
			}
			h.noPoke(t)
			if got, want := h.Concurrency("m"), float64(tc.admitted); got != want {
				t.Errorf("Concurrency = %v, want %v", got, want)
			}
			if got, want := h.Requests("m"), uint64(tc.admitted); got != want {
				t.Errorf("Requests = %v, want %v", got, want)
			}
			for _, r := range releases {
				r()
			}
			releases[0]() // a second call of a release not yet reused is a no-op
			if got := h.Concurrency("m"); got != 0 {
				t.Errorf("Concurrency after release = %v, want 0", got)
			}
			if got := h.Concurrency("other"); got != 0 {
				t.Errorf("Concurrency(unknown) = %v, want 0", got)
			}
		})
	}
}

func TestFastPathAllocatesNothing(t *testing.T) {
	h := newHarness(t, Options{ContainerConcurrency: 2})
	h.SetCapacity("m", 1)
	ctx := context.Background()
	mustAcquire(t, h.Activator, "m")() // warm the model and the pool
	allocs := testing.AllocsPerRun(1000, func() {
		release, err := h.Acquire(ctx, "m")
		if err != nil {
			t.Fatal(err)
		}
		release()
	})
	if allocs != 0 {
		t.Fatalf("Acquire+release allocates %v times, want 0", allocs)
	}
}

func TestHeldAtZeroAdmittedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{ContainerConcurrency: 1})
		const n = 5
		var chs []<-chan result
		for range n {
			chs = append(chs, goAcquire(context.Background(), h.Activator, "m"))
			h.waitHolds(t, "m", 1) // queued before the next one starts
		}
		if got := h.Concurrency("m"); got != n {
			t.Fatalf("Concurrency = %v, want %d", got, n)
		}
		if got := metric(t, h.reg, "infergate_activator_queue_depth", map[string]string{"model": "m"}).GetGauge().GetValue(); got != n {
			t.Fatalf("queue depth = %v, want %d", got, n)
		}
		h.advance(2 * time.Second)
		h.SetCapacity("m", 1)
		for i := range n {
			r := await(t, chs[i])
			if r.err != nil {
				t.Fatalf("request %d: %v", i, r.err)
			}
			for _, ch := range chs[i+1:] {
				pending(t, ch)
			}
			r.release()
		}
		if got := h.Concurrency("m"); got != 0 {
			t.Fatalf("Concurrency = %v, want 0", got)
		}
		if count, sum := histogram(t, h.reg, "infergate_activator_wait_seconds", "m"); count != n || sum != 2*n {
			t.Fatalf("wait histogram count %d sum %v, want %d and %d", count, sum, n, 2*n)
		}
	})
}

func TestManyHeldAtZeroAllSucceed(t *testing.T) {
	h := newHarness(t, Options{})
	const n = 500
	chs := make([]<-chan result, n)
	for i := range chs {
		chs[i] = goAcquire(context.Background(), h.Activator, "m")
	}
	h.waitHolds(t, "m", n)
	if got := h.Concurrency("m"); got != n {
		t.Fatalf("Concurrency = %v, want %d", got, n)
	}
	h.SetCapacity("m", 1)
	for i, ch := range chs {
		r := await(t, ch)
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		r.release()
	}
	if got := h.Concurrency("m"); got != 0 {
		t.Errorf("Concurrency = %v, want 0", got)
	}
	if got := h.Requests("m"); got != n {
		t.Errorf("Requests = %d, want %d", got, n)
	}
	if count, _ := histogram(t, h.reg, "infergate_activator_cold_start_seconds", "m"); count != 1 {
		t.Errorf("cold starts = %d, want 1", count)
	}
}

func TestContainerConcurrencyLimitsInFlight(t *testing.T) {
	h := newHarness(t, Options{ContainerConcurrency: 2})
	h.SetCapacity("m", 2)
	var releases []func()
	for range 4 {
		releases = append(releases, mustAcquire(t, h.Activator, "m"))
	}
	fifth := goAcquire(context.Background(), h.Activator, "m")
	h.waitHolds(t, "m", 1)
	sixth := goAcquire(context.Background(), h.Activator, "m")
	h.waitHolds(t, "m", 1)
	if got := h.Concurrency("m"); got != 6 {
		t.Fatalf("Concurrency = %v, want 6", got)
	}
	pending(t, fifth)
	releases[0]()
	r5 := await(t, fifth)
	if r5.err != nil {
		t.Fatal(r5.err)
	}
	pending(t, sixth)
	h.SetCapacity("m", 3)
	r6 := await(t, sixth)
	if r6.err != nil {
		t.Fatal(r6.err)
	}
	if count, _ := histogram(t, h.reg, "infergate_activator_cold_start_seconds", "m"); count != 0 {
		t.Errorf("cold starts = %d, want 0: waiting for a slot is not one", count)
	}
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	h := newHarness(t, Options{MaxQueue: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		goAcquire(ctx, h.Activator, "m")
	}
	h.waitHolds(t, "m", 2)
	_, err := h.Acquire(ctx, "m")
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Acquire = %v, want ErrQueueFull", err)
	}
	h.noPoke(t)
	if got := rejected(t, h.reg, "m", "queue_full"); got != 1 {
		t.Errorf("rejected{queue_full} = %v, want 1", got)
	}
	if got := h.Concurrency("m"); got != 2 {
		t.Errorf("Concurrency = %v, want 2", got)
	}
}

func TestContextEndsHold(t *testing.T) {
	for _, tc := range []struct {
		name   string
		end    func(*deadlineCtx, context.CancelFunc)
		want   []error
		reason string
	}{
		{"deadline", func(d *deadlineCtx, _ context.CancelFunc) { d.expire() }, []error{ErrDeadline, context.DeadlineExceeded}, "deadline"},
		{"cancel", func(_ *deadlineCtx, cancel context.CancelFunc) { cancel() }, []error{context.Canceled}, "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{ContainerConcurrency: 1})
			d := newDeadlineCtx()
			ctx, cancel := context.WithCancel(d)
			defer cancel()
			first := goAcquire(ctx, h.Activator, "m")
			h.waitHolds(t, "m", 1)
			second := goAcquire(context.Background(), h.Activator, "m")
			h.waitHolds(t, "m", 1)

			tc.end(d, cancel)
			r := await(t, first)
			for _, want := range tc.want {
				if !errors.Is(r.err, want) {
					t.Errorf("Acquire = %v, want errors.Is %v", r.err, want)
				}
			}
			if got := h.Concurrency("m"); got != 1 {
				t.Errorf("Concurrency = %v, want 1: the ended request left the queue", got)
			}
			if got := rejected(t, h.reg, "m", tc.reason); got != 1 {
				t.Errorf("rejected{%s} = %v, want 1", tc.reason, got)
			}
			h.SetCapacity("m", 1)
			if r := await(t, second); r.err != nil {
				t.Fatalf("second request: %v", r.err)
			}
			if got := h.Concurrency("m"); got != 1 {
				t.Errorf("Concurrency = %v, want 1", got)
			}
		})
	}
}

func TestEndedContextIsNotHeld(t *testing.T) {
	h := newHarness(t, Options{})
	d := newDeadlineCtx()
	d.expire()
	if _, err := h.Acquire(d, "m"); !errors.Is(err, ErrDeadline) {
		t.Fatalf("Acquire = %v, want ErrDeadline", err)
	}
	h.noPoke(t)
	if got := h.Concurrency("m"); got != 0 {
		t.Errorf("Concurrency = %v, want 0", got)
	}
}

func TestFail(t *testing.T) {
	reason := errors.New("runtime exited 1: CUDA out of memory")
	for _, tc := range []struct {
		name  string
		clear func(*harness)
		ready int // capacity after clear
	}{
		{"FailureHold passes", func(h *harness) { h.advance(5 * time.Second) }, 0},
		{"Reset", func(h *harness) { h.Reset("m") }, 0},
		{"ready replica", func(h *harness) { h.SetCapacity("m", 1) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{})
				var chs []<-chan result
				for range 3 {
					chs = append(chs, goAcquire(context.Background(), h.Activator, "m"))
				}
				h.waitHolds(t, "m", 3)
				h.Fail("m", reason)
				for i, ch := range chs {
					r := await(t, ch)
					if !errors.Is(r.err, ErrFailed) || !errors.Is(r.err, reason) {
						t.Errorf("request %d: %v, want ErrFailed wrapping the reason", i, r.err)
					}
				}
				if got := h.Concurrency("m"); got != 0 {
					t.Errorf("Concurrency = %v, want 0", got)
				}

				// While failed, a request that would be held fails at once.
				h.advance(4 * time.Second)
				if _, err := h.Acquire(context.Background(), "m"); !errors.Is(err, reason) {
					t.Fatalf("Acquire while failed = %v, want the reason", err)
				}
				h.noPoke(t)
				if got := rejected(t, h.reg, "m", "failed"); got != 4 {
					t.Errorf("rejected{failed} = %v, want 4", got)
				}

				tc.clear(h)
				ch := goAcquire(context.Background(), h.Activator, "m")
				if tc.ready == 0 {
					h.waitHolds(t, "m", 1)
					pending(t, ch)
					h.SetCapacity("m", 1)
				}
				if r := await(t, ch); r.err != nil {
					t.Fatalf("Acquire after the failure cleared: %v", r.err)
				}
			})
		})
	}
}

func TestFailUntilReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		held := goAcquire(context.Background(), h.Activator, "m")
		h.waitHolds(t, "m", 1)
		reason := errors.New("runtime failed: 5 starts in a row exited before they were ready")
		h.FailUntilReady("m", reason)
		if r := await(t, held); !errors.Is(r.err, ErrFailed) || !errors.Is(r.err, reason) {
			t.Fatalf("held request: %v, want ErrFailed wrapping the reason", r.err)
		}
		// Long past FailureHold, requests still fail at once: nothing
		// will start the runtime by itself.
		h.advance(time.Hour)
		if _, err := h.Acquire(context.Background(), "m"); !errors.Is(err, reason) {
			t.Fatalf("Acquire an hour later = %v, want the reason at once", err)
		}
		h.noPoke(t)
		h.SetCapacity("m", 1)
		release, err := h.Acquire(context.Background(), "m")
		if err != nil {
			t.Fatalf("Acquire once a replica is ready: %v", err)
		}
		release()
	})
}

func TestColdStartObservedOncePerColdStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{})
		start := func(n int, took time.Duration) {
			t.Helper()
			var chs []<-chan result
			for range n {
				chs = append(chs, goAcquire(context.Background(), h.Activator, "m"))
			}
			h.waitHolds(t, "m", n)
			h.advance(took)
			h.SetCapacity("m", 1)
			h.SetCapacity("m", 2) // more replicas end no cold start
			for _, ch := range chs {
				if r := await(t, ch); r.err != nil {
					t.Fatal(r.err)
				} else {
					r.release()
				}
			}
			h.SetCapacity("m", 0)
		}
		start(3, 3*time.Second)
		if count, sum := histogram(t, h.reg, "infergate_activator_cold_start_seconds", "m"); count != 1 || sum != 3 {
			t.Fatalf("cold start count %d sum %v, want 1 and 3", count, sum)
		}
		start(2, time.Second)
		if count, sum := histogram(t, h.reg, "infergate_activator_cold_start_seconds", "m"); count != 2 || sum != 4 {
			t.Fatalf("cold start count %d sum %v, want 2 and 4", count, sum)
		}
	})
}

func TestAdmittedAsContextEndsReleasesSlot(t *testing.T) {
	// Whatever wins the race between admission and cancel, the slot is not
	// leaked.
	h := newHarness(t, Options{ContainerConcurrency: 1})
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		ch := goAcquire(ctx, h.Activator, "m")
		h.waitHolds(t, "m", 1)
		go cancel()
		h.SetCapacity("m", 1)
		if r := await(t, ch); r.err == nil {
			r.release()
		}
		h.SetCapacity("m", 0)
		if got := h.Concurrency("m"); got != 0 {
			t.Fatalf("Concurrency = %v, want 0", got)
		}
	}
}

func BenchmarkAcquireFastPath(b *testing.B) {
	a, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	a.SetCapacity("m", 1)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			release, err := a.Acquire(ctx, "m")
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
	})
}

func TestSetContainerConcurrencyPerModel(t *testing.T) {
	h := newHarness(t, Options{})
	h.SetContainerConcurrency("m", 1)
	h.SetCapacity("m", 1)
	h.SetCapacity("other", 1)
	first := mustAcquire(t, h.Activator, "m")
	second := goAcquire(context.Background(), h.Activator, "m")
	h.waitHolds(t, "m", 1)
	// The default (no limit) still applies to other models.
	for range 3 {
		mustAcquire(t, h.Activator, "other")()
	}
	pending(t, second)
	// Raising the limit admits the held request at once.
	h.SetContainerConcurrency("m", 2)
	if r := await(t, second); r.err != nil {
		t.Fatal(r.err)
	}
	first()
}

func TestTryAcquire(t *testing.T) {
	h := newHarness(t, Options{ContainerConcurrency: 1})
	if _, ok := h.TryAcquire("m"); ok {
		t.Fatal("TryAcquire admitted a request with no ready replica")
	}
	if got := h.Requests("m"); got != 0 {
		t.Errorf("Requests = %d after a refused TryAcquire, want 0", got)
	}
	h.SetCapacity("m", 1)
	release, ok := h.TryAcquire("m")
	if !ok {
		t.Fatal("TryAcquire refused with room on a ready replica")
	}
	if _, ok := h.TryAcquire("m"); ok {
		t.Error("TryAcquire went past containerConcurrency")
	}
	release()
	if _, ok := h.TryAcquire("m"); !ok {
		t.Error("TryAcquire refused after the slot was released")
	}
}

func TestForgetFailsHeldAndDropsState(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	gone := errors.New("revision retired")
	held := make(chan error, 1)
	go func() {
		_, err := a.Acquire(context.Background(), "m-00001")
		held <- err
	}()
	for a.Concurrency("m-00001") == 0 {
		runtime.Gosched()
	}
	a.Forget("m-00001", gone)
	if err := <-held; !errors.Is(err, gone) || !errors.Is(err, ErrFailed) {
		t.Fatalf("held request got %v, want the reason", err)
	}
	if _, ok := (*a.models.Load())["m-00001"]; ok {
		t.Fatal("the model's state outlived Forget")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "m-00001" {
					t.Errorf("%s still has a series for the forgotten model", mf.GetName())
				}
			}
		}
	}
	a.Forget("never-seen", gone) // no-op
}

func TestChanged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(a *Activator)
	}{
		{"SetCapacity", func(a *Activator) { a.SetCapacity("m", 0) }},
		{"Fail", func(a *Activator) { a.Fail("m", errors.New("exit 1")) }},
		{"Reset", func(a *Activator) { a.Reset("m") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			ch := h.Changed("m")
			if ch2 := h.Changed("m"); ch2 != ch {
				t.Fatal("two callers before a change got two channels")
			}
			other := h.Changed("other")
			select {
			case <-ch:
				t.Fatal("closed before any change")
			default:
			}
			tc.change(h.Activator)
			select {
			case <-ch:
			default:
				t.Fatal("not closed by the change")
			}
			select {
			case <-other:
				t.Fatal("another model's channel closed")
			default:
			}
			if next := h.Changed("m"); next == ch {
				t.Fatal("the closed channel was given out again")
			}
		})
	}
}
