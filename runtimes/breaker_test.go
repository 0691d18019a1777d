package runtimes

import (
	"context"
	"errors"
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
// whose fn returns err, and check whether the breaker admitted it.
type step struct {
	wait         time.Duration
	err          error
	wantAdmitted bool
}

// TestBreaker runs scripts against a one-replica pool (which ejection never
// empties) inside a synctest bubble, whose fake clock gobreaker reads too:
// time.Sleep there advances the clock at once. With one replica, a call its
// breaker refuses goes to it anyway in panic (panic.go): every call runs,
// returns the runtime's answer, and PanicRouted tells the refused ones.
func TestBreaker(t *testing.T) {
	const timeout = 5 * time.Second
	fail := func(n int, err error) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{err: err, wantAdmitted: true}
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
			steps:     cat(fail(5, err500), []step{{err: nil, wantAdmitted: false}}),
			wantOpens: 1, wantOpen: true,
		},
		{
			name:  "four failures leave it closed",
			steps: cat(fail(4, err503), []step{{err: nil, wantAdmitted: true}}),
		},
		{
			name:  "a success ends the run",
			steps: cat(fail(4, err500), fail(1, nil), fail(4, err500), []step{{err: nil, wantAdmitted: true}}),
		},
		{
			name:  "client errors do not trip it",
			steps: cat(fail(10, err400), fail(10, err404), []step{{err: nil, wantAdmitted: true}}),
		},
		{
			name:      "cancellations do not trip it nor end a run",
			steps:     cat(fail(4, err500), fail(10, errCanceled), []step{{err: err500, wantAdmitted: true}, {wantAdmitted: false}}),
			wantOpens: 1, wantOpen: true,
		},
		{
			name: "stays open until the timeout",
			steps: cat(fail(5, err500), []step{
				{wait: timeout - time.Millisecond, wantAdmitted: false},
			}),
			wantOpens: 1, wantOpen: true,
		},
		{
			name: "half-opens after the timeout and closes on success",
			steps: cat(fail(5, err500), []step{
				{wait: timeout + time.Millisecond, err: nil, wantAdmitted: true},
				{err: nil, wantAdmitted: true},
			}, fail(4, err500), []step{{wantAdmitted: true}}),
			wantOpens: 1,
		},
		{
			name: "a failed half-open probe opens it again",
			steps: cat(fail(5, err503), []step{
				{wait: timeout + time.Millisecond, err: err503, wantAdmitted: true},
				{wantAdmitted: false},
				{wait: timeout - time.Millisecond, wantAdmitted: false},
				{wait: 2 * time.Millisecond, wantAdmitted: true},
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
					panics := p.Stats().PanicRouted
					err := p.Do(context.Background(), func(Client) error { called = true; return s.err })
					if !called {
						t.Fatalf("step %d: the only replica did not get the call (Do = %v)", i, err)
					}
					if admitted := p.Stats().PanicRouted == panics; admitted != s.wantAdmitted {
						t.Fatalf("step %d: admitted by the breaker = %v, want %v", i, admitted, s.wantAdmitted)
					}
					if err != s.err {
						t.Fatalf("step %d: Do = %v, want the runtime's answer %v", i, err, s.err)
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
		// The breaker turns the second call away; with no other replica it
		// goes in panic, and its success does not close the breaker.
		if err := p.Do(context.Background(), func(Client) error { return nil }); err != nil {
			t.Errorf("second call: %v", err)
		}
		if st := p.Stats(); st.PanicRouted != 1 {
			t.Errorf("second call: PanicRouted = %d, want 1 (the half-open breaker admitted it)", st.PanicRouted)
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
		if st := p.Stats(); st.PanicRouted != 1 || st.BreakersOpen != 0 {
			t.Errorf("after the probe: %+v, want the breaker closed and no more panic", st)
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
		// The breaker is open again: the next call goes in panic.
		_ = p.Do(context.Background(), func(Client) error { return nil })
		if st := p.Stats(); st.BreakerOpens != 2 || st.BreakersOpen != 1 || st.PanicRouted != 1 {
			t.Errorf("Stats = %+v, want 2 opens, open now, and the last call sent in panic (the stale success closed the breaker?)", st)
		}
	})
}
