package quota

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// gate is what stands in front of the simulated model: the fair queue, or
// the FIFO baseline.
type gate interface {
	acquire(ctx context.Context, tenant string) (release func(), err error)
}

type fairGate struct{ q *FairQueue }

func (g fairGate) acquire(ctx context.Context, tenant string) (func(), error) {
	s, err := g.q.Acquire(ctx, tenant, 1, 0)
	return s.Release, err
}

// fifoGate admits at most capacity requests at once, in arrival order
// whatever their tenant: the gate a model has without fair queuing.
type fifoGate struct {
	mu       sync.Mutex
	capacity int
	inFlight int
	waiting  []chan struct{}
}

func (g *fifoGate) acquire(ctx context.Context, _ string) (func(), error) {
	g.mu.Lock()
	if g.inFlight < g.capacity && len(g.waiting) == 0 {
		g.inFlight++
		g.mu.Unlock()
		return g.release, nil
	}
	ch := make(chan struct{})
	g.waiting = append(g.waiting, ch)
	g.mu.Unlock()
	<-ch // the simulation's contexts never end
	return g.release, nil
}

func (g *fifoGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) > 0 {
		close(g.waiting[0]) // the place passes on
		g.waiting = g.waiting[1:]
		return
	}
	g.inFlight--
}

// load is one tenant's offered load: a request every period from offset,
// count of them.
type load struct {
	tenant string
	offset time.Duration
	period time.Duration
	count  int
}

// simulate offers loads to a model behind g that serves each request in
// exactly service, on synctest's fake clock, and returns each tenant's
// waits in front of g, and the time until the last request was served.
func simulate(t *testing.T, g gate, service time.Duration, loads ...load) (map[string][]time.Duration, time.Duration) {
	t.Helper()
	begin := time.Now()
	var mu sync.Mutex
	waits := map[string][]time.Duration{}
	var wg sync.WaitGroup
	for _, l := range loads {
		wg.Go(func() {
			time.Sleep(l.offset)
			for i := range l.count {
				if i > 0 {
					time.Sleep(l.period)
				}
				wg.Go(func() {
					start := time.Now()
					release, err := g.acquire(context.Background(), l.tenant)
					if err != nil {
						t.Errorf("%s: %v", l.tenant, err)
						return
					}
					wait := time.Since(start)
					time.Sleep(service)
					release()
					mu.Lock()
					waits[l.tenant] = append(waits[l.tenant], wait)
					mu.Unlock()
				})
			}
		})
	}
	wg.Wait()
	for _, l := range loads {
		if n := len(waits[l.tenant]); n != l.count {
			t.Fatalf("%s: %d requests served, want %d", l.tenant, n, l.count)
		}
	}
	return waits, time.Since(begin)
}

// p99 is the 99th percentile of ds (nearest rank).
func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// TestFairnessTwoTenants is the fairness test: tenant A offers ten
// times tenant B's load to a model of capacity 4 with a fixed service time
// S, A alone 2.5 times what the model serves. B's p99 wait in front of
// the fair queue stays within one service time of B's p99 with the model
// to itself (bound: p99(B, fair) <= p99(B alone) + S), whereas behind a
// FIFO gate it grows with A's backlog (here to seconds). Times are
// synctest's fake clock: deterministic, and the test takes milliseconds.
func TestFairnessTwoTenants(t *testing.T) {
	const (
		capacity = 4
		service  = 100 * time.Millisecond // the model serves 40 requests/s
	)
	// A: 100 requests/s for 2s; B: 10/s, off A's beat so that no B
	// arrives at the instant of a release.
	heavy := load{tenant: "A", period: 10 * time.Millisecond, count: 200}
	light := load{tenant: "B", offset: 5 * time.Millisecond, period: 100 * time.Millisecond, count: 20}

	var alone, fair, fifo map[string][]time.Duration
	var fairEnd, fifoEnd time.Duration
	synctest.Test(t, func(t *testing.T) {
		q, _ := newTestQueue(t, FairQueueOptions{Capacity: capacity})
		alone, _ = simulate(t, fairGate{q}, service, light)
	})
	synctest.Test(t, func(t *testing.T) {
		q, _ := newTestQueue(t, FairQueueOptions{Capacity: capacity})
		fair, fairEnd = simulate(t, fairGate{q}, service, heavy, light)
	})
	synctest.Test(t, func(t *testing.T) {
		fifo, fifoEnd = simulate(t, &fifoGate{capacity: capacity}, service, heavy, light)
	})

	bAlone, bFair, bFIFO := p99(alone["B"]), p99(fair["B"]), p99(fifo["B"])
	t.Logf("B's p99 wait: alone %s, with A behind the fair queue %s, behind FIFO %s (A's p99: fair %s, FIFO %s; all served in %s, %s)",
		bAlone, bFair, bFIFO, p99(fair["A"]), p99(fifo["A"]), fairEnd, fifoEnd)
	if bound := bAlone + service; bFair > bound {
		t.Errorf("B's p99 wait behind the fair queue is %s, over the bound p99(B alone) + S = %s", bFair, bound)
	}
	// The baseline shows what the bound protects against: without fair
	// queuing B waits behind A's backlog.
	if bFIFO < 10*service {
		t.Errorf("B's p99 wait behind FIFO is %s: the simulation does not saturate the model", bFIFO)
	}
	// Fair queuing wastes none of the model: the last request is served
	// no later than behind FIFO (220 requests at 40/s: 5.5s).
	if fairEnd > fifoEnd {
		t.Errorf("the fair queue served everything in %s, FIFO in %s", fairEnd, fifoEnd)
	}
}
