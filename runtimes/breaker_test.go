package runtimes

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infergate/infergate/oip"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"nil", nil, outcomeOK},
		{"invalid argument", err400, outcomeOK},
		{"not found", err404, outcomeOK},
		{"too large", &oip.Error{Kind: oip.KindTooLarge}, outcomeOK},
		{"unimplemented", &oip.Error{Kind: oip.KindUnimplemented}, outcomeOK},
		{"unavailable", err503, outcomeFailure},
		{"unreachable", errRefused, outcomeFailure},
		{"internal", err500, outcomeFailure},
		{"untyped", errors.New("broken pipe"), outcomeFailure},
		{"runtime deadline", &oip.Error{Kind: oip.KindDeadlineExceeded}, outcomeFailure},
		{"context deadline", context.DeadlineExceeded, outcomeFailure},
		{"canceled", errCanceled, outcomeNeutral},
		{"overloaded", &oip.Error{Kind: oip.KindResourceExhausted}, outcomeNeutral},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// step is one move of a breaker script: let time pass, then make a call
// whose fn returns err, and check whether fn ran.
type step struct {
	wait       time.Duration
	err        error
	wantCalled bool
}

// TestBreaker runs scripts against a one-replica pool (which ejection never
// empties) inside a synctest bubble, whose fake clock gobreaker reads too:
// time.Sleep there advances the clock at once.
func TestBreaker(t *testing.T) {
	const timeout = 5 * time.Second
	fail := func(n int, err error) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{err: err, wantCalled: true}
		}
		return s
	}
	cat := func(parts ...[]step) []step {
		var s []step
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	tests := []struct {
		name      string
		steps     []step
		wantOpens uint64
		wantOpen  bool // the breaker is open after the script
	}{
		{
			name:      "opens after five failures",
			steps:     cat(fail(5, err500), []step{{err: nil, wantCalled: false}}),
			wantOpens: 1, wantOpen: true,
		},
		{
			name:  "four failures leave it closed",
			steps: cat(fail(4, err503), []step{{err: nil, wantCalled: true}}),
		},
		{
			name:  "a success ends the run",
			steps: cat(fail(4, err500), fail(1, nil), fail(4, err500), []step{{err: nil, wantCalled: true}}),
		},
		{
			name:  "client errors do not trip it",
			steps: cat(fail(10, err400), fail(10, err404), []step{{err: nil, wantCalled: true}}),
		},
		{
			name:      "cancellations do not trip it nor end a run",
			steps:     cat(fail(4, err500), fail(10, errCanceled), []step{{err: err500, wantCalled: true}, {wantCalled: false}}),
			wantOpens: 1, wantOpen: true,
		},
		{
			name: "stays open until the timeout",
			steps: cat(fail(5, err500), []step{
				{wait: timeout - time.Millisecond, wantCalled: false},
			}),
			wantOpens: 1, wantOpen: true,
		},
		{
			name: "half-opens after the timeout and closes on success",
			steps: cat(fail(5, err500), []step{
				{wait: timeout + time.Millisecond, err: nil, wantCalled: true},
				{err: nil, wantCalled: true},
			}, fail(4, err500), []step{{wantCalled: true}}),
			wantOpens: 1,
		},
		{
			name: "a failed half-open probe opens it again",
			steps: cat(fail(5, err503), []step{
				{wait: timeout + time.Millisecond, err: err503, wantCalled: true},
				{wantCalled: false},
				{wait: timeout - time.Millisecond, wantCalled: false},
				{wait: 2 * time.Millisecond, wantCalled: true},
			}),
			wantOpens: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newFakePool(t, 1, PoolOptions{BreakerOpenTimeout: timeout, EjectFailures: -1})
				for i, s := range tc.steps {
					time.Sleep(s.wait)
					called := false
					err := p.Do(context.Background(), func(Client) error { called = true; return s.err })
					if called != s.wantCalled {
						t.Fatalf("step %d: fn called = %v, want %v (Do = %v)", i, called, s.wantCalled, err)
					}
					if !called && (oip.KindOf(err) != oip.KindUnavailable || !strings.Contains(err.Error(), "circuit breaker")) {
						t.Fatalf("step %d: rejected call returned %v, want unavailable naming the breaker", i, err)
					}
				}
				st := p.Stats()
				if st.BreakerOpens != tc.wantOpens || (st.BreakersOpen == 1) != tc.wantOpen {
					t.Errorf("Stats = %+v, want %d opens and open now = %v", st, tc.wantOpens, tc.wantOpen)
				}
			})
		})
	}
}

// TestBreakerHalfOpenAdmitsOne: while the half-open probe is in flight,
// other calls are turned away; its success lets them all through again.
func TestBreakerHalfOpenAdmitsOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePool(t, 1, PoolOptions{EjectFailures: -1})
		for range 5 {
			_ = p.Do(context.Background(), func(Client) error { return err500 })
		}
		time.Sleep(6 * time.Second)
		entered, release := make(chan struct{}), make(chan struct{})
		probe := make(chan error)
		go func() {
			probe <- p.Do(context.Background(), func(Client) error { close(entered); <-release; return nil })
		}()
		<-entered
		err := p.Do(context.Background(), func(Client) error { t.Error("a second call went through a half-open breaker"); return nil })
		if oip.KindOf(err) != oip.KindUnavailable {
			t.Errorf("second call: %v, want unavailable", err)
		}
		close(release)
		if err := <-probe; err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			called := false
			if err := p.Do(context.Background(), func(Client) error { called = true; return nil }); err != nil || !called {
				t.Fatalf("call %d after the probe succeeded: called %v, %v", i, called, err)
			}
		}
	})
}

// TestBreakerSteersToHealthy: with two replicas, the one whose breaker
// opened takes no call until its timeout passes, and retries go around it.
func TestBreakerSteersToHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePool(t, 2, PoolOptions{Seed: 1, EjectFailures: -1})
		sick := p.Replicas()[0].Client
		for i := 0; i < 1000 && p.Stats().BreakerOpens == 0; i++ {
			_ = p.Do(context.Background(), func(c Client) error {
				if c == sick {
					return err500
				}
				return nil
			})
		}
		if p.Stats().BreakerOpens != 1 {
			t.Fatalf("breaker never opened: %+v", p.Stats())
		}
		for i := range 100 {
			_ = p.Do(context.Background(), func(c Client) error {
				if c == sick {
					t.Fatalf("call %d reached the replica with an open breaker", i)
				}
				return nil
			})
		}
		time.Sleep(6 * time.Second)
		reached := false
		for i := 0; i < 100 && !reached; i++ {
			_ = p.Do(context.Background(), func(c Client) error { reached = reached || c == sick; return nil })
		}
		if !reached {
			t.Error("the replica never got a call after its breaker's timeout")
		}
	})
}

// TestBreakerIgnoresStaleCalls: a call that went out while the breaker was
// closed and came back after it opened does not count, as gobreaker's
// generations would have it; only the half-open probe decides.
func TestBreakerIgnoresStaleCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePool(t, 1, PoolOptions{EjectFailures: -1})
		entered, release, stale := make(chan struct{}), make(chan struct{}), make(chan error)
		go func() {
			stale <- p.Do(context.Background(), func(Client) error { close(entered); <-release; return nil })
		}()
		<-entered
		for range 5 {
			_ = p.Do(context.Background(), func(Client) error { return err500 })
		}
		time.Sleep(6 * time.Second)
		close(release)
		if err := <-stale; err != nil {
			t.Fatal(err)
		}
		called := false
		_ = p.Do(context.Background(), func(Client) error { called = true; return err500 })
		if !called {
			t.Fatal("the half-open probe was not let through")
		}
		if err := p.Do(context.Background(), func(Client) error { t.Error("the stale success closed the breaker"); return nil }); err == nil {
			t.Error("call after a failed probe succeeded")
		}
		if got := p.Stats().BreakerOpens; got != 2 {
			t.Errorf("BreakerOpens = %d, want 2", got)
		}
	})
}
