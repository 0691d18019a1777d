package runtimes

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestPickPowerOfTwo draws many choices from a seeded pool with fixed loads
// and compares each replica's share with what power of two choices gives:
// the least loaded of two distinct replicas drawn uniformly among those
// that may take the call.
func TestPickPowerOfTwo(t *testing.T) {
	const picks = 20000
	type setup func(p *Pool, clock *fakeClock)
	notReady := func(i int) setup { return func(p *Pool, _ *fakeClock) { p.Replicas()[i].SetReady(false) } }
	draining := func(i int) setup { return func(p *Pool, _ *fakeClock) { p.Replicas()[i].draining.Store(true) } }
	ejected := func(i int) setup {
		return func(p *Pool, c *fakeClock) { p.Replicas()[i].ejectedUntil.Store(c.Now().Add(time.Minute).UnixNano()) }
	}
	breakerOpen := func(i int) setup {
		return func(p *Pool, _ *fakeClock) {
			b := p.Replicas()[i].brk
			b.openUntil.Store(time.Now().Add(time.Hour).UnixNano())
			b.state.Store(stateOpen)
		}
	}
	tests := []struct {
		name  string
		loads []int64
		setup []setup
		want  []float64 // expected share of picks per replica
	}{
		{name: "one replica", loads: []int64{7}, want: []float64{1}},
		{name: "less loaded of two always", loads: []int64{3, 0}, want: []float64{0, 1}},
		{name: "ties split evenly", loads: []int64{2, 2}, want: []float64{0.5, 0.5}},
		{name: "idle pool spreads evenly", loads: []int64{0, 0, 0, 0}, want: []float64{0.25, 0.25, 0.25, 0.25}},
		// The least loaded wins whenever it is drawn (2 of 3 pairs), the
		// middle one against the busiest (1 of 3), the busiest never.
		{name: "three loads", loads: []int64{10, 0, 5}, want: []float64{0, 2.0 / 3, 1.0 / 3}},
		{name: "one candidate left", loads: []int64{0, 0, 9}, setup: []setup{notReady(0), notReady(1)}, want: []float64{0, 0, 1}},
		{
			name:  "unavailable replicas never chosen",
			loads: []int64{0, 0, 0, 0, 4, 8},
			setup: []setup{notReady(0), draining(1), ejected(2), breakerOpen(3)},
			want:  []float64{0, 0, 0, 0, 1, 0},
		},
		{
			// Six replicas of which three may take the call, loads 1, 2, 3:
			// shares 2/3, 1/3, 0, as for three replicas alone.
			name:  "even choice among the healthy",
			loads: []int64{0, 1, 0, 2, 0, 3},
			setup: []setup{ejected(0), notReady(2), breakerOpen(4)},
			want:  []float64{0, 2.0 / 3, 0, 1.0 / 3, 0, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			p := newFakePool(t, len(tc.loads), PoolOptions{Seed: 42, Now: clock.Now})
			rs := p.Replicas()
			for i, l := range tc.loads {
				rs[i].inflight.Store(l)
			}
			for _, s := range tc.setup {
				s(p, clock)
			}
			counts := make([]int, len(rs))
			for range picks {
				var tr tried
				i := p.pick(rs, &tr, false)
				if i < 0 {
					t.Fatal("no replica chosen")
				}
				counts[i]++
			}
			for i, w := range tc.want {
				got := float64(counts[i]) / picks
				if math.Abs(got-w) > 0.02 || (w == 0 && counts[i] != 0) {
					t.Errorf("replica %d (load %d) got %.3f of the picks, want %.3f", i, tc.loads[i], got, w)
				}
			}
		})
	}
}

// TestPickSkipsTried: a retry never goes back to a replica the call tried.
func TestPickSkipsTried(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		tried []int
		want  int // -1: none
	}{
		{name: "single replica tried", n: 1, tried: []int{0}, want: -1},
		{name: "the other of two", n: 2, tried: []int{1}, want: 0},
		{name: "the last untried of five", n: 5, tried: []int{0, 1, 3, 4}, want: 2},
		{name: "all tried", n: 3, tried: []int{2, 0, 1}, want: -1},
		{name: "past the stack set", n: 12, tried: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11}, want: 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, tc.n, PoolOptions{Seed: 7})
			for range 100 {
				var tr tried
				for _, i := range tc.tried {
					tr.add(i)
				}
				if got := p.pick(p.Replicas(), &tr, false); got != tc.want {
					t.Fatalf("pick = %d, want %d", got, tc.want)
				}
			}
		})
	}
}

// TestDoFollowsLoad: calls in flight steer new calls away through Do, not
// only through pick.
func TestDoFollowsLoad(t *testing.T) {
	p := newFakePool(t, 2, PoolOptions{Seed: 3})
	busy := p.Replicas()[0]
	busy.inflight.Store(100)
	for i := range 50 {
		err := p.Do(context.Background(), func(c Client) error {
			if c == busy.Client {
				t.Errorf("call %d went to the busy replica", i)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestQuietPoolSpreads: one call at a time finds every replica idle; ties
// go to the replica that has started fewer calls, so the calls go round
// the pool, and a replica added later joins the round instead of taking
// every call until it has caught up.
func TestQuietPoolSpreads(t *testing.T) {
	tests := []struct {
		name      string
		replicas  int
		before    int // calls before a replica is added; -1: none added
		calls     int
		maxSpread int // most calls minus fewest, over the replicas
	}{
		{name: "two replicas alternate", replicas: 2, before: -1, calls: 10, maxSpread: 0},
		{name: "five replicas go round", replicas: 5, before: -1, calls: 100, maxSpread: 2},
		{name: "a newcomer joins the round", replicas: 2, before: 100, calls: 30, maxSpread: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, tc.replicas, PoolOptions{Seed: 23})
			counts := map[Client]int{}
			call := func() {
				t.Helper()
				if err := p.Do(context.Background(), func(c Client) error { counts[c]++; return nil }); err != nil {
					t.Fatal(err)
				}
			}
			if tc.before >= 0 {
				for range tc.before {
					call()
				}
				p.Add(&fakeClient{name: "newcomer"}).SetReady(true)
				clear(counts)
			}
			for range tc.calls {
				call()
			}
			lo, hi := tc.calls, 0
			for _, r := range p.Replicas() {
				lo, hi = min(lo, counts[r.Client]), max(hi, counts[r.Client])
			}
			if hi-lo > tc.maxSpread {
				t.Errorf("calls per replica from %d to %d, want a spread of at most %d: %v", lo, hi, tc.maxSpread, counts)
			}
		})
	}
}
