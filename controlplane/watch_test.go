package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/runtimes/supervisor"
)

// fakeReplicas is a supervisor whose status the test sets.
type fakeReplicas struct {
	mu      sync.Mutex
	st      supervisor.Status
	changed chan struct{}
}

func newFakeReplicas() *fakeReplicas { return &fakeReplicas{changed: make(chan struct{})} }

func (f *fakeReplicas) Status() supervisor.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeReplicas) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// set changes the status and signals it, then lets the watcher act.
func (f *fakeReplicas) set(st supervisor.Status) {
	f.mu.Lock()
	f.st = st
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	synctest.Wait()
}

// calls records what the watcher told the activator and the state, in
// order, as "Verb(args)".
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, fmt.Sprintf(format, args...))
}

func (c *calls) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.log
	c.log = nil
	return out
}

func (c *calls) SetCapacity(rev string, ready int) { c.add("SetCapacity(%s, %d)", rev, ready) }
func (c *calls) Fail(rev string, reason error)     { c.add("Fail(%s, %v)", rev, reason) }
func (c *calls) FailUntilReady(rev string, reason error) {
	c.add("FailUntilReady(%s, %v)", rev, reason)
}
func (c *calls) MarkReady(rev string) error { c.add("MarkReady(%s)", rev); return nil }
func (c *calls) MarkFailed(rev, reason string) error {
	c.add("MarkFailed(%s, %s)", rev, reason)
	return nil
}
func replica(state supervisor.ReplicaState, started time.Time, startToReady time.Duration, cause string) supervisor.ReplicaStatus {
	return supervisor.ReplicaStatus{State: state, Started: started, StartToReady: startToReady, LastExitCause: cause}
}

func TestWatchSupervised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reps, c := newFakeReplicas(), &calls{}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			WatchSupervised(ctx, "m-00001", reps, c, c, slog.New(slog.DiscardHandler))
			close(done)
		}()
		synctest.Wait()
		check := func(what string, want ...string) {
			t.Helper()
			if diff := cmp.Diff(want, c.take()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", what, diff)
			}
		}
		check("at start", "SetCapacity(m-00001, 0)")

		now := time.Now()
		// A start that fails before the replica was ever ready fails the
		// held requests with the client-safe cause, once.
		failedStart := supervisor.Status{Replicas: []supervisor.ReplicaStatus{
			replica(supervisor.StateBackoff, now, 0, "exited with exit status 3 before it was ready")}}
		reps.set(failedStart)
		check("a failed start", "Fail(m-00001, runtime replica exited with exit status 3 before it was ready)")
		reps.set(failedStart)
		check("the same failed start again")

		// The replica comes up: the state hears it is ready.
		reps.set(supervisor.Status{Ready: 1, Replicas: []supervisor.ReplicaStatus{replica(supervisor.StateReady, now, time.Second, "")}})
		check("ready", "MarkReady(m-00001)", "SetCapacity(m-00001, 1)")

		// It is killed after it served: no failure, requests wait.
		reps.set(supervisor.Status{Replicas: []supervisor.ReplicaStatus{
			replica(supervisor.StateBackoff, now, time.Second, "was killed by signal 9")}})
		check("a crash after ready", "SetCapacity(m-00001, 0)")
		reps.set(supervisor.Status{Ready: 1, Replicas: []supervisor.ReplicaStatus{replica(supervisor.StateReady, now, time.Second, "")}})
		check("back", "MarkReady(m-00001)", "SetCapacity(m-00001, 1)")

		// The runtime gives up: requests fail until it is ready again.
		reps.set(supervisor.Status{Failed: true, Reason: "5 exits; log: weights corrupt", Cause: "runtime failed: 5 starts in a row did not become ready"})
		check("failed", "SetCapacity(m-00001, 0)",
			"FailUntilReady(m-00001, runtime failed: 5 starts in a row did not become ready)",
			"MarkFailed(m-00001, 5 exits; log: weights corrupt)")

		cancel()
		<-done
		check("stopped", "SetCapacity(m-00001, 0)")
	})
}

type readyCount struct{ n atomic.Int64 }

func (r *readyCount) ReadyCount() int { return int(r.n.Load()) }

func TestWatchEndpoints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool, c := &readyCount{}, &calls{}
		done := make(chan struct{})
		go func() {
			WatchEndpoints(t.Context(), "m-00002", pool, 100*time.Millisecond, c, slog.New(slog.DiscardHandler))
			close(done)
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		if got := c.take(); len(got) != 0 {
			t.Fatalf("reported %v with no ready replica", got)
		}
		pool.n.Store(1)
		<-done
		if diff := cmp.Diff([]string{"MarkReady(m-00002)"}, c.take()); diff != "" {
			t.Errorf("once a replica is ready (-want +got):\n%s", diff)
		}

		// Nothing is reported when the revision goes first.
		ctx, cancel := context.WithCancel(t.Context())
		done = make(chan struct{})
		go func() {
			WatchEndpoints(ctx, "m-00003", &readyCount{}, 100*time.Millisecond, c, slog.New(slog.DiscardHandler))
			close(done)
		}()
		cancel()
		<-done
		if got := c.take(); len(got) != 0 {
			t.Errorf("reported %v for a revision never ready", got)
		}
	})
}
