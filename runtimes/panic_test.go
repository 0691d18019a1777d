package runtimes

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infergate/infergate/oip"
)

// TestPanicRouting: when no ready replica is healthy (each has its breaker
// open or is ejected), calls still go to the ready ones, spread as usual,
// and the runtime's own answers come back; a healthy replica, or a replica
// that is not ready, is never routed to in panic. Breakers and ejections
// come from real runs of failures, inside a synctest bubble so that the
// breakers' open timeout (5s) never passes by itself.
func TestPanicRouting(t *testing.T) {
	tests := []struct {
		name     string
		replicas int
		open     []int // replicas whose breaker a run of 500s opens
		eject    []int // replicas ejected (their breaker opens too), before open
		notReady []int
		key      bool // DoKey rather than Do
		// Calls in the script: fn answers what the runtime would.
		want      []int // the replicas that must get calls (all of them, no other)
		wantPanic bool
		wantErr   oip.Kind // for no replica able to take the call; else the runtime's answers
	}{
		{name: "one replica, breaker open", replicas: 1, open: []int{0}, want: []int{0}, wantPanic: true},
		{name: "every breaker open", replicas: 3, open: []int{0, 1, 2}, want: []int{0, 1, 2}, wantPanic: true},
		{name: "every breaker open, by key", replicas: 3, open: []int{0, 1, 2}, key: true, want: []int{0, 1, 2}, wantPanic: true},
		{name: "ejected and open", replicas: 2, eject: []int{0}, open: []int{1}, want: []int{0, 1}, wantPanic: true},
		{name: "one healthy: no panic", replicas: 3, open: []int{0, 1}, want: []int{2}},
		{name: "one healthy: no panic, by key", replicas: 3, open: []int{0, 1}, key: true, want: []int{2}},
		{name: "not ready never takes a call", replicas: 3, open: []int{0, 1}, notReady: []int{2}, want: []int{0, 1}, wantPanic: true},
		{name: "none ready", replicas: 1, open: []int{0}, notReady: []int{0}, wantErr: oip.KindUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newFakePool(t, tc.replicas, PoolOptions{Seed: 3, MaxEjectionPercent: 100})
				rs := p.Replicas()
				for _, i := range tc.eject {
					failRun(p, rs[i], 5)
					if !p.ejectedNow(rs[i]) {
						t.Fatalf("replica %d not ejected", i)
					}
				}
				for _, i := range tc.open {
					failRun(p, rs[i], 5)
					if !rs[i].brk.open() {
						t.Fatalf("replica %d: breaker not open", i)
					}
				}
				for _, i := range tc.notReady {
					rs[i].SetReady(false)
				}
				index := map[Client]int{}
				for i, r := range rs {
					index[r.Client] = i
				}
				got := map[int]int{}
				const calls = 300
				for i := range calls {
					// The runtime rejects every other request as malformed;
					// the rejection must reach the caller as it is.
					answer := error(nil)
					if i%2 == 1 {
						answer = err400
					}
					fn := func(c Client) error { got[index[c]]++; return answer }
					var err error
					if tc.key {
						err = p.DoKey(context.Background(), uint64(i), fn)
					} else {
						err = p.Do(context.Background(), fn)
					}
					if tc.wantErr != 0 {
						if oip.KindOf(err) != tc.wantErr {
							t.Fatalf("call %d: %v, want %v", i, err, tc.wantErr)
						}
						continue
					}
					if err != answer {
						t.Fatalf("call %d: Do = %v, want the runtime's answer %v", i, err, answer)
					}
				}
				for _, i := range tc.want {
					if got[i] == 0 {
						t.Errorf("replica %d got no call; calls by replica: %v", i, got)
					}
				}
				if len(got) != len(tc.want) {
					t.Errorf("calls by replica: %v, want calls on %v only", got, tc.want)
				}
				st := p.Stats()
				wantRouted := uint64(0)
				if tc.wantPanic {
					wantRouted = calls
				}
				if st.PanicRouted != wantRouted {
					t.Errorf("PanicRouted = %d, want %d", st.PanicRouted, wantRouted)
				}
				// Panic calls told the open breakers nothing.
				if st.BreakersOpen != len(tc.open)+len(tc.eject) {
					t.Errorf("BreakersOpen = %d, want %d", st.BreakersOpen, len(tc.open)+len(tc.eject))
				}
			})
		})
	}
}

// TestPanicEndsWithRecovery: a single replica whose breaker opened takes
// every call in panic; once the open timeout passes, its half-open probe
// goes through the breaker and closes it, and calls leave panic.
func TestPanicEndsWithRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePool(t, 1, PoolOptions{EjectFailures: -1})
		for range 5 {
			_ = p.Do(context.Background(), func(Client) error { return err500 })
		}
		for range 10 {
			if err := p.Do(context.Background(), func(Client) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		if st := p.Stats(); st.PanicRouted != 10 || st.BreakersOpen != 1 {
			t.Fatalf("while open: %+v, want 10 panic calls and the breaker still open", st)
		}
		time.Sleep(6 * time.Second)
		for range 10 {
			if err := p.Do(context.Background(), func(Client) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		if st := p.Stats(); st.PanicRouted != 10 || st.BreakersOpen != 0 {
			t.Errorf("after the timeout: %+v, want the probe to close the breaker and no more panic", st)
		}
		if p.inPanic.Load() {
			t.Error("the pool still says it is in panic")
		}
	})
}

// TestPanicRetries: in panic, a retryable failure goes to another replica
// as usual, each at most once, and never to one that is not ready.
func TestPanicRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePool(t, 4, PoolOptions{Seed: 5, EjectFailures: -1})
		rs := p.Replicas()
		for _, r := range rs[:3] {
			failRun(p, r, 5)
		}
		rs[3].SetReady(false)
		seen := map[Client]bool{}
		err := p.Do(context.Background(), func(c Client) error {
			if seen[c] {
				t.Errorf("replica %v called twice", c)
			}
			if c == rs[3].Client {
				t.Error("a replica that is not ready got a call")
			}
			seen[c] = true
			return err503
		})
		if len(seen) != 3 || !errors.Is(err, err503) {
			t.Errorf("Do = %v after %d replicas, want the runtime's 503 after 3", err, len(seen))
		}
		if st := p.Stats(); st.PanicRouted != 3 || st.Retries != 2 {
			t.Errorf("Stats = %+v, want 3 panic calls, 2 of them retries", st)
		}
	})
}

// TestPanicDoesNotOverrideTried: a call that finds no healthy replica left
// only because it tried the healthy one already does not go in panic to a
// replica whose breaker is open.
func TestPanicDoesNotOverrideTried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newFakePool(t, 2, PoolOptions{EjectFailures: -1})
		rs := p.Replicas()
		failRun(p, rs[0], 5)
		calls := 0
		err := p.Do(context.Background(), func(c Client) error {
			calls++
			if c == rs[0].Client {
				t.Error("the retry went to the replica whose breaker is open")
			}
			return err503
		})
		if calls != 1 || !errors.Is(err, err503) || p.Stats().PanicRouted != 0 {
			t.Errorf("Do = %v after %d calls, %+v; want the healthy replica's 503 after 1, no panic", err, calls, p.Stats())
		}
	})
}
