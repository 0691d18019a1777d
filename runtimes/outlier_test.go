package runtimes

import (
	"context"
	"testing"
	"time"
)

// failRun records n consecutive 5xx-class failures on r, as Do does after
// each failed call.
func failRun(p *Pool, r *Replica, n int) {
	for range n {
		p.observe(p.Replicas(), r, nil, err500)
	}
}

// TestEjectionTiming: each ejection of the same replica lasts the base time
// times the number of ejections, up to the cap; time back in the pool
// shrinks the multiplier; the replica comes back by itself once its time
// is up, seen by the next choice.
func TestEjectionTiming(t *testing.T) {
	const base, maxTime = 30 * time.Second, 100 * time.Second
	type ejection struct {
		healthy time.Duration // time back in the pool before the run of failures
		want    time.Duration // how long the ejection must last
	}
	tests := []struct {
		name      string
		ejections []ejection
	}{
		{name: "first ejection lasts the base time", ejections: []ejection{{want: base}}},
		{
			name:      "repeated ejections grow up to the cap",
			ejections: []ejection{{want: base}, {want: 2 * base}, {want: 3 * base}, {want: maxTime}, {want: maxTime}},
		},
		{
			name: "time back in the pool shrinks the multiplier",
			ejections: []ejection{
				{want: base}, {want: 2 * base}, {want: 3 * base},
				{healthy: 2 * base, want: 2 * base}, // 3 - 2 + 1
				{healthy: 10 * base, want: base},    // never below one
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			p := newFakePool(t, 3, PoolOptions{
				Seed: 5, Now: clock.Now, BreakerFailures: -1,
				EjectFailures: 3, BaseEjectionTime: base, MaxEjectionTime: maxTime,
			})
			sick := p.Replicas()[0]
			for k, e := range tc.ejections {
				clock.Advance(e.healthy)
				failRun(p, sick, 2)
				if p.ejectedNow(sick) {
					t.Fatalf("ejection %d: ejected after 2 failures, want 3", k)
				}
				failRun(p, sick, 1)
				if !p.ejectedNow(sick) {
					t.Fatalf("ejection %d: not ejected after 3 failures", k)
				}
				if got := p.Stats(); got.Ejections != uint64(k+1) || got.Ejected != 1 {
					t.Fatalf("ejection %d: Stats = %+v", k, got)
				}
				for i := range 20 {
					_ = p.Do(context.Background(), func(c Client) error {
						if c == sick.Client {
							t.Fatalf("ejection %d: call %d went to the ejected replica", k, i)
						}
						return nil
					})
				}
				clock.Advance(e.want - 1)
				if !p.ejectedNow(sick) {
					t.Fatalf("ejection %d: back after %v, want %v", k, e.want-1, e.want)
				}
				clock.Advance(1)
				if !p.eligible(sick) {
					t.Fatalf("ejection %d: still out after %v", k, e.want)
				}
				if sick.ejectedUntil.Load() != 0 {
					t.Fatalf("ejection %d: the choice did not clear the ended ejection", k)
				}
			}
		})
	}
}

// TestEjectionLimits: ejection takes at most MaxEjectionPercent of the pool
// and never the last replica able to take calls.
func TestEjectionLimits(t *testing.T) {
	tests := []struct {
		name        string
		replicas    int
		percent     int
		sick        []int
		notReady    []int
		openBreaker []int
		want        int // replicas ejected in the end
	}{
		{name: "the only replica", replicas: 1, percent: 100, sick: []int{0}, want: 0},
		{name: "the only ready replica", replicas: 2, percent: 100, sick: []int{0}, notReady: []int{1}, want: 0},
		{name: "the only replica whose breaker is closed", replicas: 2, percent: 100, sick: []int{0}, openBreaker: []int{1}, want: 0},
		{name: "one of two", replicas: 2, sick: []int{0}, want: 1},
		{name: "both of two sick, half by default", replicas: 2, sick: []int{0, 1}, want: 1},
		{name: "half of four", replicas: 4, sick: []int{0, 1, 2}, want: 2},
		{name: "half of three rounds down", replicas: 3, sick: []int{0, 1, 2}, want: 1},
		{name: "all percent keeps the last", replicas: 3, percent: 100, sick: []int{0, 1, 2}, want: 2},
		{name: "ten percent of ten", replicas: 10, percent: 10, sick: []int{0, 1, 2, 3, 4}, want: 1},
		{name: "ten percent of five is none", replicas: 5, percent: 10, sick: []int{0}, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			p := newFakePool(t, tc.replicas, PoolOptions{Now: clock.Now, MaxEjectionPercent: tc.percent})
			rs := p.Replicas()
			for _, i := range tc.notReady {
				rs[i].SetReady(false)
			}
			for _, i := range tc.openBreaker {
				rs[i].brk.openUntil.Store(time.Now().Add(time.Hour).UnixNano())
				rs[i].brk.state.Store(stateOpen)
			}
			for _, i := range tc.sick {
				r := rs[i]
				for range 3 { // past the threshold, again and again
					failRun(p, r, 5)
				}
			}
			if got := p.Stats().Ejected; got != tc.want {
				t.Errorf("%d replicas ejected, want %d", got, tc.want)
			}
			// Once an ejection ends, the share it held is free again.
			clock.Advance(time.Hour)
			if got := p.Stats().Ejected; got != 0 {
				t.Errorf("%d replicas still ejected an hour later", got)
			}
		})
	}
}

// TestEjectionThroughDo: failures Do sees eject the replica they came from,
// and client errors never do.
func TestEjectionThroughDo(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want uint64
	}{
		{name: "internal errors eject", err: err500, want: 1},
		{name: "unavailable answers eject", err: err503, want: 1},
		{name: "client errors do not", err: err400, want: 0},
		{name: "cancellations do not", err: errCanceled, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, 4, PoolOptions{Seed: 9, Now: newFakeClock().Now, BreakerFailures: -1, MinRetryConcurrency: -1, RetryBudgetPercent: -1})
			sick := p.Replicas()[2].Client
			calls := 0
			for i := 0; i < 2000 && calls < 20; i++ {
				_ = p.Do(context.Background(), func(c Client) error {
					if c == sick {
						calls++
						return tc.err
					}
					return nil
				})
			}
			if got := p.Stats().Ejections; got != tc.want {
				t.Errorf("%d ejections after %d failed calls, want %d", got, calls, tc.want)
			}
		})
	}
}
