package quota

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/infergate/infergate/oip"
)

func newTestQueue(t *testing.T, opts FairQueueOptions) (*FairQueue, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if opts.Model == "" {
		opts.Model = "m"
	}
	opts.Metrics = m
	q, err := NewFairQueue(opts)
	if err != nil {
		t.Fatal(err)
	}
	return q, m
}

// fqStep is one step of a scripted queue: a request arriving (id set), or
// the oldest admitted request finishing (serve).
type fqStep struct {
	id       string
	tenant   string
	weight   int
	priority uint64
	serve    bool
}

// runScript runs steps against q, of capacity 1, in a synctest bubble: a
// first request holds the place, each arrival waits in the queue, and each
// serve releases the place to the next. It returns the ids in the order
// they were admitted. Every request is served in the end.
func runScript(t *testing.T, q *FairQueue, steps []fqStep) []string {
	t.Helper()
	hold, ok := q.TryAcquire()
	if !ok {
		t.Fatal("the first request did not pass an empty queue")
	}
	var mu sync.Mutex
	var order []string
	got := make(chan Slot, len(steps))
	held := []Slot{hold}
	serve := func() bool {
		if len(held) == 0 {
			return false
		}
		held[0].Release()
		held = held[1:]
		synctest.Wait()
		select {
		case s := <-got:
			held = append(held, s)
		default:
		}
		return true
	}
	for _, s := range steps {
		if s.serve {
			serve()
			continue
		}
		go func() {
			slot, err := q.Acquire(context.Background(), s.tenant, s.weight, s.priority)
			if err != nil {
				t.Errorf("Acquire %s: %v", s.id, err)
				return
			}
			mu.Lock()
			order = append(order, s.id)
			mu.Unlock()
			got <- slot
		}()
		synctest.Wait() // queued, in this order
	}
	for serve() {
	}
	if q.InFlight() != 0 || q.Waiting() != 0 {
		t.Errorf("after the script: %d in flight, %d waiting", q.InFlight(), q.Waiting())
	}
	return order
}

func arrive(id, tenant string, weight int, priority uint64) fqStep {
	return fqStep{id: id, tenant: tenant, weight: weight, priority: priority}
}

var serve = fqStep{serve: true}

func TestFairQueueOrder(t *testing.T) {
	twoToOne := []fqStep{
		arrive("a1", "A", 2, 0), arrive("a2", "A", 2, 0), arrive("a3", "A", 2, 0), arrive("a4", "A", 2, 0),
		arrive("b1", "B", 1, 0), arrive("b2", "B", 1, 0), arrive("b3", "B", 1, 0), arrive("b4", "B", 1, 0),
	}
	tests := []struct {
		name   string
		opts   FairQueueOptions
		vtime  uint64 // V at the start, to check the rebase
		steps  []fqStep
		want   []string
		levels int
	}{
		{
			// Finish times: A 1/2, 1, 3/2, 2; B 1, 2, 3, 4; ties go to
			// the finish time given first.
			name:  "weights 2:1",
			steps: twoToOne,
			want:  []string{"a1", "b1", "a2", "a3", "b2", "a4", "b3", "b4"},
		},
		{
			name:  "weights 2:1 across a rebase of virtual time",
			vtime: rebaseAt - 1,
			steps: twoToOne,
			want:  []string{"a1", "b1", "a2", "a3", "b2", "a4", "b3", "b4"},
		},
		{
			name: "a flood does not hold back a later tenant",
			steps: []fqStep{
				arrive("a1", "A", 1, 0), arrive("a2", "A", 1, 0), arrive("a3", "A", 1, 0),
				arrive("a4", "A", 1, 0), arrive("a5", "A", 1, 0), arrive("a6", "A", 1, 0),
				arrive("b1", "B", 1, 0), arrive("b2", "B", 1, 0),
			},
			want: []string{"a1", "b1", "a2", "b2", "a3", "a4", "a5", "a6"},
		},
		{
			name: "priority orders a tenant's own requests",
			steps: []fqStep{
				arrive("p3-1", "A", 1, 3), arrive("p3-2", "A", 1, 3), arrive("p1", "A", 1, 1),
				arrive("p2", "A", 1, 2), arrive("p0-default", "A", 1, 0), arrive("p9-default", "A", 1, 9),
			},
			want: []string{"p1", "p2", "p0-default", "p9-default", "p3-1", "p3-2"},
		},
		{
			name: "priority does not cross tenants",
			steps: []fqStep{
				arrive("a1", "A", 1, 3), arrive("a2", "A", 1, 3),
				arrive("b1", "B", 1, 1), arrive("b2", "B", 1, 1),
			},
			want: []string{"a1", "b1", "a2", "b2"},
		},
		{
			name: "default priority is configurable",
			opts: FairQueueOptions{PriorityLevels: 2, DefaultPriority: 2},
			steps: []fqStep{
				arrive("none", "A", 1, 0), arrive("low", "A", 1, 2), arrive("high", "A", 1, 1),
			},
			want: []string{"high", "none", "low"},
		},
		{
			// A served alone moves V on; B arriving later starts from V,
			// not from its own idle past, so it does not take every place
			// until it has caught up.
			name: "an idle tenant saves no credit",
			steps: []fqStep{
				arrive("a1", "A", 1, 0), arrive("a2", "A", 1, 0), arrive("a3", "A", 1, 0), arrive("a4", "A", 1, 0),
				serve, serve,
				arrive("b1", "B", 1, 0), arrive("b2", "B", 1, 0),
			},
			want: []string{"a1", "a2", "a3", "b1", "a4", "b2"},
		},
		{
			name: "a tenant's weight is its latest",
			steps: []fqStep{
				arrive("a1", "A", 1, 0), arrive("a2", "A", 1, 0),
				arrive("b1", "B", 3, 0), arrive("b2", "B", 3, 0), arrive("b3", "B", 3, 0), arrive("b4", "B", 3, 0),
			},
			// A 1, 2; B 1/3, 2/3, 1, 4/3.
			want: []string{"b1", "b2", "a1", "b3", "b4", "a2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := tc.opts
				opts.Capacity = 1
				q, _ := newTestQueue(t, opts)
				q.vtime = tc.vtime
				got := runScript(t, q, tc.steps)
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("order (-want +got):\n%s", diff)
				}
				if tc.vtime != 0 && q.vtime >= rebaseAt {
					t.Errorf("V %d was not rebased", q.vtime)
				}
			})
		})
	}
}

func TestFairQueuePassThrough(t *testing.T) {
	q, _ := newTestQueue(t, FairQueueOptions{Capacity: 2})
	s1, ok1 := q.TryAcquire()
	s2, err := q.Acquire(context.Background(), "a", 1, 0)
	if !ok1 || err != nil {
		t.Fatalf("two requests, capacity 2: %v %v", ok1, err)
	}
	if _, ok := q.TryAcquire(); ok {
		t.Fatal("a third request passed a capacity of 2")
	}
	if q.InFlight() != 2 || q.Waiting() != 0 {
		t.Fatalf("in flight %d, waiting %d; want 2, 0", q.InFlight(), q.Waiting())
	}
	s1.Release()
	s2.Release()
	Slot{}.Release() // the zero Slot's release does nothing
	if q.InFlight() != 0 {
		t.Fatalf("in flight %d after releasing all", q.InFlight())
	}
	// No bound.
	u, _ := newTestQueue(t, FairQueueOptions{})
	var slots []Slot
	for range 100 {
		s, ok := u.TryAcquire()
		if !ok {
			t.Fatal("a queue with no bound refused")
		}
		slots = append(slots, s)
	}
	for _, s := range slots {
		s.Release()
	}
}

func TestFairQueueContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, m := newTestQueue(t, FairQueueOptions{Capacity: 1})
		hold, _ := q.TryAcquire()

		// Cancelled while waiting: leaves the queue; the place is not
		// lost.
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := q.Acquire(ctx, "a", 1, 0)
			errc <- err
		}()
		synctest.Wait()
		if q.Waiting() != 1 || testutil.ToFloat64(m.queued.WithLabelValues("m", "a")) != 1 {
			t.Fatalf("waiting %d, gauge %v; want 1", q.Waiting(), testutil.ToFloat64(m.queued.WithLabelValues("m", "a")))
		}
		cancel()
		err := <-errc
		if !errors.Is(err, context.Canceled) || oip.KindOf(err) != oip.KindCanceled {
			t.Fatalf("cancelled: err %v (kind %v), want context.Canceled", err, oip.KindOf(err))
		}
		if q.Waiting() != 0 || testutil.ToFloat64(m.queued.WithLabelValues("m", "a")) != 0 {
			t.Fatalf("after cancel: waiting %d, gauge %v", q.Waiting(), testutil.ToFloat64(m.queued.WithLabelValues("m", "a")))
		}

		// Deadline while waiting, on the fake clock.
		start := time.Now()
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer dcancel()
		_, err = q.Acquire(dctx, "a", 1, 0)
		if !errors.Is(err, context.DeadlineExceeded) || oip.KindOf(err) != oip.KindDeadlineExceeded {
			t.Fatalf("deadline: err %v (kind %v)", err, oip.KindOf(err))
		}
		if !strings.Contains(err.Error(), `model "m": the request waited 3s`) {
			t.Errorf("deadline message %q", err)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("left the queue after %s, want 3s", waited)
		}

		// A context already done does not queue.
		_, err = q.Acquire(ctx, "a", 1, 0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("done context: err %v", err)
		}

		hold.Release()
		if q.InFlight() != 0 || q.Waiting() != 0 {
			t.Fatalf("in flight %d, waiting %d after all left", q.InFlight(), q.Waiting())
		}
		s, ok := q.TryAcquire()
		if !ok {
			t.Fatal("the place was leaked")
		}
		s.Release()
	})
}

// TestFairQueueCancelAsAdmitted ends a waiter's context at the moment a
// release gives it the place: whichever of the two it sees first, the
// place is neither leaked nor given twice. (In the bubble the waiter wakes
// to its done context after the hand-off, so this takes the path where it
// must pass the place on.)
func TestFairQueueCancelAsAdmitted(t *testing.T) {
	for range 16 {
		synctest.Test(t, func(t *testing.T) {
			q, _ := newTestQueue(t, FairQueueOptions{Capacity: 1})
			hold, _ := q.TryAcquire()
			ctx, cancel := context.WithCancel(context.Background())
			type result struct {
				s   Slot
				err error
			}
			res := make(chan result, 1)
			go func() {
				s, err := q.Acquire(ctx, "a", 1, 0)
				res <- result{s, err}
			}()
			synctest.Wait()
			// Both before the waiter runs again: it wakes to a place and a
			// done context at once.
			cancel()
			hold.Release()
			r := <-res
			if r.err == nil {
				r.s.Release()
			} else if !errors.Is(r.err, context.Canceled) {
				t.Fatalf("err %v", r.err)
			}
			if q.InFlight() != 0 || q.Waiting() != 0 {
				t.Fatalf("in flight %d, waiting %d", q.InFlight(), q.Waiting())
			}
		})
	}
}

func TestFairQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, m := newTestQueue(t, FairQueueOptions{Model: "resnet", Capacity: 1, MaxQueue: 2, RetryAfter: 2 * time.Second})
		hold, _ := q.TryAcquire()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				s, err := q.Acquire(context.Background(), "a", 1, 0)
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				s.Release()
			})
		}
		synctest.Wait()
		_, err := q.Acquire(context.Background(), "b", 1, 0)
		var re *RefusedError
		if !errors.As(err, &re) || !errors.Is(err, ErrQueueFull) {
			t.Fatalf("third waiter of 2: err %v, want ErrQueueFull", err)
		}
		want := &RefusedError{Reason: ReasonQueueFull, Scope: ScopeModel, Tenant: "b", Model: "resnet", Limit: 2, After: 2 * time.Second}
		if diff := cmp.Diff(want, re); diff != "" {
			t.Errorf("refusal (-want +got):\n%s", diff)
		}
		if oip.KindOf(err) != oip.KindResourceExhausted {
			t.Errorf("kind %v", oip.KindOf(err))
		}
		if got := oip.Message(err); got != `model "resnet" has 2 requests queued, its limit; retry after 2s` {
			t.Errorf("message %q", got)
		}
		if got := testutil.ToFloat64(m.refused.WithLabelValues("b", "resnet", "model", "queue_full")); got != 1 {
			t.Errorf("queue_full refusals %v, want 1", got)
		}
		hold.Release()
		wg.Wait()
		if q.InFlight() != 0 || q.Waiting() != 0 {
			t.Fatalf("in flight %d, waiting %d", q.InFlight(), q.Waiting())
		}
	})
}

func TestFairQueueSetCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, _ := newTestQueue(t, FairQueueOptions{Capacity: 1})
		hold, _ := q.TryAcquire()
		var admitted atomic.Int32
		done := make(chan struct{})
		slots := make(chan Slot, 4)
		for range 4 {
			go func() {
				s, err := q.Acquire(context.Background(), "a", 1, 0)
				if err != nil {
					t.Errorf("Acquire: %v", err)
				}
				admitted.Add(1)
				slots <- s
				<-done
			}()
		}
		synctest.Wait()
		q.SetCapacity(3) // two more places
		synctest.Wait()
		if n := admitted.Load(); n != 2 || q.InFlight() != 3 || q.Waiting() != 2 {
			t.Fatalf("raised to 3: admitted %d, in flight %d, waiting %d; want 2, 3, 2", n, q.InFlight(), q.Waiting())
		}
		q.SetCapacity(1)
		hold.Release()
		(<-slots).Release()
		synctest.Wait()
		if n := admitted.Load(); n != 2 || q.InFlight() != 1 {
			t.Fatalf("lowered to 1 with 3 in flight, two released: admitted %d, in flight %d; want 2, 1", n, q.InFlight())
		}
		(<-slots).Release()
		synctest.Wait()
		if n := admitted.Load(); n != 3 || q.InFlight() != 1 {
			t.Fatalf("below the capacity again: admitted %d, in flight %d; want 3, 1", n, q.InFlight())
		}
		q.SetCapacity(0) // no bound: everyone goes
		synctest.Wait()
		if n := admitted.Load(); n != 4 || q.Waiting() != 0 || q.Capacity() != 0 {
			t.Fatalf("no bound: admitted %d, waiting %d", n, q.Waiting())
		}
		close(done)
		for range 2 {
			(<-slots).Release()
		}
		if q.InFlight() != 0 {
			t.Fatalf("in flight %d", q.InFlight())
		}
	})
}

func TestNewFairQueueRejects(t *testing.T) {
	tests := []struct {
		name string
		opts FairQueueOptions
		want string
	}{
		{"negative capacity", FairQueueOptions{Capacity: -1}, "Capacity -1"},
		{"negative queue", FairQueueOptions{MaxQueue: -1}, "MaxQueue -1"},
		{"huge queue", FairQueueOptions{MaxQueue: 1 << 33}, "MaxQueue 8589934592"},
		{"too many levels", FairQueueOptions{PriorityLevels: 65}, "PriorityLevels 65"},
		{"default outside levels", FairQueueOptions{PriorityLevels: 2, DefaultPriority: 3}, "DefaultPriority 3"},
		{"negative retry", FairQueueOptions{RetryAfter: -time.Second}, "RetryAfter -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFairQueue(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestFairQueueConcurrent runs many tenants' requests through a small
// queue from many goroutines, some cancelled while waiting, under -race:
// the capacity is never exceeded, and nothing is left in flight or
// waiting.
func TestFairQueueConcurrent(t *testing.T) {
	const capacity = 3
	q, _ := newTestQueue(t, FairQueueOptions{Capacity: capacity, MaxQueue: 16})
	var in, most atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 300 {
				ctx, cancel := context.WithCancel(context.Background())
				if r.IntN(4) == 0 {
					go cancel()
				}
				s, err := q.Acquire(ctx, []string{"a", "b", "c"}[r.IntN(3)], 1+r.IntN(3), uint64(r.IntN(4)))
				if err != nil {
					cancel()
					if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrQueueFull) {
						t.Errorf("Acquire: %v", err)
						return
					}
					continue
				}
				n := in.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				in.Add(-1)
				s.Release()
				cancel()
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > capacity {
		t.Errorf("%d in flight at once, over the capacity of %d", m, capacity)
	}
	// Capacity changes under load leak nothing either.
	stop := make(chan struct{})
	var cg sync.WaitGroup
	cg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			q.SetCapacity(i % 4)
		}
	})
	for g := range 4 {
		wg.Go(func() {
			for range 300 {
				s, err := q.Acquire(context.Background(), []string{"a", "b"}[g%2], 1, 0)
				if err != nil {
					if !errors.Is(err, ErrQueueFull) {
						t.Errorf("Acquire: %v", err)
						return
					}
					continue
				}
				s.Release()
			}
		})
	}
	wg.Wait()
	close(stop)
	cg.Wait()
	q.SetCapacity(capacity)
	if q.InFlight() != 0 || q.Waiting() != 0 {
		t.Fatalf("in flight %d, waiting %d after all done", q.InFlight(), q.Waiting())
	}
}

func TestFairQueuePassAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("-race allocates")
	}
	q, _ := newTestQueue(t, FairQueueOptions{Capacity: 4})
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() {
		s, err := q.Acquire(ctx, "a", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		s.Release()
	}); n != 0 {
		t.Errorf("Acquire and Release with room allocate %v times", n)
	}
}
