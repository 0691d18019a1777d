package runtimes

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/oip"
)

func TestRetryable(t *testing.T) {
	pipelined, err := NewRESTClient(RESTOptions{Addr: "127.0.0.1:1", Pipeline: true})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewRESTClient(RESTOptions{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	broken := &oip.Error{Kind: oip.KindUnavailable, Msg: "runtime x failed", Err: errors.New("connection reset by peer")}
	tests := []struct {
		name          string
		err           error
		client        Client
		nonIdempotent bool
		want          bool
	}{
		{name: "unreachable", err: errRefused, want: true},
		{name: "unreachable, not idempotent", err: errRefused, nonIdempotent: true, want: true},
		{name: "503 answer", err: err503, want: true},
		{name: "503 answer, not idempotent", err: err503, nonIdempotent: true, want: false},
		{name: "connection broken before an answer", err: broken, client: plain, want: true},
		{name: "pipelined connection broken", err: broken, client: pipelined, want: false},
		{name: "503 on a pipelined client", err: err503, client: pipelined, want: false},
		{name: "internal", err: err500, want: false},
		{name: "deadline", err: &oip.Error{Kind: oip.KindDeadlineExceeded}, want: false},
		{name: "invalid argument", err: err400, want: false},
		{name: "canceled", err: errCanceled, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, 1, PoolOptions{NonIdempotent: tc.nonIdempotent})
			r := p.Replicas()[0]
			if tc.client != nil {
				r = &Replica{Client: tc.client}
			}
			if got := p.retryable(r, tc.err); got != tc.want {
				t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestRetryGoesElsewhere: a retryable failure goes once to each other
// replica and no further; what Do returns is fn's last error, or the
// unavailable error naming the model when nothing could be reached.
func TestRetryGoesElsewhere(t *testing.T) {
	tests := []struct {
		name      string
		replicas  int
		failFirst int   // calls that fail before one succeeds; -1: all fail
		err       error // what the failing calls return
		wantCalls int
		wantErr   error // nil: success; else the kind and chain to check
	}{
		{name: "503 then success", replicas: 3, failFirst: 1, err: err503, wantCalls: 2},
		{name: "unreachable then success", replicas: 3, failFirst: 2, err: errRefused, wantCalls: 3},
		{name: "every replica once", replicas: 3, failFirst: -1, err: err503, wantCalls: 3, wantErr: err503},
		{name: "every replica unreachable", replicas: 2, failFirst: -1, err: errRefused, wantCalls: 2, wantErr: ErrUnreachable},
		{name: "no retry of internal errors", replicas: 3, failFirst: -1, err: err500, wantCalls: 1, wantErr: err500},
		{name: "single replica", replicas: 1, failFirst: -1, err: err503, wantCalls: 1, wantErr: err503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, tc.replicas, PoolOptions{Seed: 11})
			seen := map[Client]bool{}
			err := p.Do(context.Background(), func(c Client) error {
				if seen[c] {
					t.Errorf("replica %v called twice", c)
				}
				seen[c] = true
				if tc.failFirst < 0 || len(seen) <= tc.failFirst {
					return tc.err
				}
				return nil
			})
			if len(seen) != tc.wantCalls {
				t.Errorf("fn called on %d replicas, want %d", len(seen), tc.wantCalls)
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("Do = %v, want success", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("Do = %v, want %v in the chain", err, tc.wantErr)
			case errors.Is(tc.wantErr, ErrUnreachable) && (oip.KindOf(err) != oip.KindUnavailable || !containsModel(err)):
				t.Errorf("Do = %v, want unavailable naming the model", err)
			}
			if got, want := p.Stats().Retries, uint64(tc.wantCalls-1); got != want {
				t.Errorf("Stats.Retries = %d, want %d", got, want)
			}
		})
	}
}

func containsModel(err error) bool { return err != nil && strings.Contains(err.Error(), `model "m"`) }

// TestRetryDeadline: no retry starts once the call's context is done or
// its deadline has passed by the pool's clock.
func TestRetryDeadline(t *testing.T) {
	tests := []struct {
		name      string
		ctx       func(now time.Time) (context.Context, context.CancelFunc)
		during    func(clock *fakeClock, cancel context.CancelFunc) // in the first call
		wantCalls int
		wantErr   error
	}{
		{
			name:      "no deadline",
			ctx:       func(time.Time) (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			during:    func(*fakeClock, context.CancelFunc) {},
			wantCalls: 2,
		},
		{
			name: "deadline ahead",
			ctx: func(now time.Time) (context.Context, context.CancelFunc) {
				return context.WithDeadline(context.Background(), now.Add(time.Hour))
			},
			during:    func(c *fakeClock, _ context.CancelFunc) { c.Advance(time.Hour - time.Nanosecond) },
			wantCalls: 2,
		},
		{
			name: "deadline passed during the call",
			ctx: func(now time.Time) (context.Context, context.CancelFunc) {
				return context.WithDeadline(context.Background(), now.Add(time.Hour))
			},
			during:    func(c *fakeClock, _ context.CancelFunc) { c.Advance(time.Hour) },
			wantCalls: 1, wantErr: err503,
		},
		{
			name:      "context canceled during the call",
			ctx:       func(time.Time) (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			during:    func(_ *fakeClock, cancel context.CancelFunc) { cancel() },
			wantCalls: 1, wantErr: context.Canceled,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The context's deadline is set on the fake clock's scale, an
			// hour or more past the real one, so it never fires by itself.
			clock := &fakeClock{t: time.Now().Add(time.Hour)}
			p := newFakePool(t, 3, PoolOptions{Seed: 13, Now: clock.Now})
			ctx, cancel := tc.ctx(clock.Now())
			defer cancel()
			calls := 0
			err := p.Do(ctx, func(Client) error {
				calls++
				if calls == 1 {
					tc.during(clock, cancel)
					return err503
				}
				return nil
			})
			if calls != tc.wantCalls {
				t.Errorf("fn called %d times, want %d", calls, tc.wantCalls)
			}
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("Do = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestRetryBudget sends failing calls one after another while earlier
// retries stay in flight, so the budget's arithmetic is exact: with held
// healthy calls in flight, retries may reach 20% of the active calls;
// without, the minimum of 3.
func TestRetryBudget(t *testing.T) {
	tests := []struct {
		name        string
		held        int // healthy calls held in flight throughout
		failing     int // calls whose first attempt fails with a 503
		wantRetries int
	}{
		{name: "minimum concurrency", held: 0, failing: 12, wantRetries: 3},
		{name: "fewer failures than the minimum", held: 0, failing: 2, wantRetries: 2},
		// With r retries in flight, the next may start while
		// r+1 <= (1 + held + r) * 20%: up to r+1 = 7 at held 30.
		{name: "percent of active calls", held: 30, failing: 12, wantRetries: 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, 8, PoolOptions{Seed: 17, BreakerFailures: -1, EjectFailures: -1})
			release := make(chan struct{})
			var wg sync.WaitGroup
			defer func() { close(release); wg.Wait() }()

			entered := make(chan struct{})
			for range tc.held {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = p.Do(context.Background(), func(Client) error { entered <- struct{}{}; <-release; return nil })
				}()
				<-entered
			}
			// Each failing call ends in one of two ways before the next
			// starts: its retry holds in flight, or Do returns.
			settled := make(chan error)
			for range tc.failing {
				wg.Add(1)
				go func() {
					defer wg.Done()
					attempt := 0
					err := p.Do(context.Background(), func(Client) error {
						attempt++
						if attempt == 1 {
							return err503
						}
						settled <- nil
						<-release
						return nil
					})
					if err != nil {
						settled <- err
					}
				}()
				<-settled
			}
			st := p.Stats()
			if st.Retries != uint64(tc.wantRetries) || st.RetryBudgetExhausted != uint64(tc.failing-tc.wantRetries) {
				t.Errorf("Stats = %+v, want %d retries and %d refused", st, tc.wantRetries, tc.failing-tc.wantRetries)
			}
		})
	}
}

// TestRetryBudgetReleased: places taken by finished retries are free again,
// so sequential retries never run out.
func TestRetryBudgetReleased(t *testing.T) {
	p := newFakePool(t, 3, PoolOptions{Seed: 19, BreakerFailures: -1, EjectFailures: -1})
	for i := range 50 {
		first := true
		err := p.Do(context.Background(), func(Client) error {
			if first {
				first = false
				return err503
			}
			return nil
		})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if st := p.Stats(); st.Retries != 50 || st.RetryBudgetExhausted != 0 || p.retrying.Load() != 0 {
		t.Errorf("Stats = %+v, %d retries in flight; want 50 retries, none refused, none in flight", st, p.retrying.Load())
	}
}
