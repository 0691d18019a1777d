package controlplane

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/infergate/infergate/runtimes/supervisor"
)

// The loops below carry a revision's runtime status into the deployed
// state (Deployments.MarkReady and MarkFailed) and into the activator that
// holds its requests. Each runs for one revision until its context ends.

// StatusReporter hears when a revision first has a ready replica, or has
// failed: Deployments.
type StatusReporter interface {
	MarkReady(revision string) error
	MarkFailed(revision, reason string) error
}

// Capacity is what holds a revision's requests while it has no ready
// replica: autoscaler/activator.Activator.
type Capacity interface {
	// SetCapacity reports the revision's ready replicas.
	SetCapacity(revision string, ready int)
	// Fail fails the requests held now, and those that would be held for
	// a short while, with reason.
	Fail(revision string, reason error)
	// FailUntilReady fails them until the revision has ready replicas.
	FailUntilReady(revision string, reason error)
}

// Replicas is a supervised revision's replicas: runtimes/supervisor's
// Supervisor.
type Replicas interface {
	Status() supervisor.Status
	// Changed is signalled when Status may have changed.
	Changed() <-chan struct{}
}

// WatchSupervised tells capacity how many of a supervised revision's
// replicas are ready, and rep when the revision first has a ready replica
// (again after none) or has failed, each time the replicas signal a
// change, until ctx ends; then it reports no capacity. Reports rep does
// not take (the revision was dropped meanwhile) are logged at debug level.
//
// A replica that exits before it was ever ready fails the requests held
// for the revision at once with the cause (they would wait for nothing
// while it backs off); one that exits after it was ready (a crash, a kill)
// does not: it is restarted, and requests wait, within their deadline, for
// it to be back. A revision whose runtime gave up restarting fails new
// requests at once until it is ready again. Causes sent to capacity are
// the client-safe ones (Status.Cause, ReplicaStatus.LastExitCause).
func WatchSupervised(ctx context.Context, revision string, reps Replicas, capacity Capacity, rep StatusReporter, log *slog.Logger) {
	ready, failed, crashed := -1, false, false
	for {
		st := reps.Status()
		if st.Ready != ready {
			if st.Ready > 0 && ready <= 0 {
				report(log, revision, rep.MarkReady(revision))
			}
			ready = st.Ready
			capacity.SetCapacity(revision, ready)
		}
		startFailed := st.Ready == 0 && exitedBeforeReady(st)
		switch {
		case st.Failed && !failed:
			capacity.FailUntilReady(revision, errors.New(st.Cause))
			report(log, revision, rep.MarkFailed(revision, st.Reason))
		case startFailed && !crashed:
			capacity.Fail(revision, errors.New(lastExitCause(st)))
		}
		failed, crashed = st.Failed, startFailed
		select {
		case <-ctx.Done():
			capacity.SetCapacity(revision, 0)
			return
		case <-reps.Changed():
		}
	}
}

// ReadyCounter counts a revision's ready replicas: runtimes.Pool.
type ReadyCounter interface{ ReadyCount() int }

// WatchEndpoints reports a revision served by runtimes at URLs ready to
// rep once pool has a ready replica, looking every interval (the pool
// signals nothing), until then or until ctx ends.
func WatchEndpoints(ctx context.Context, revision string, pool ReadyCounter, interval time.Duration, rep StatusReporter, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for pool.ReadyCount() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	report(log, revision, rep.MarkReady(revision))
}

// report logs a status report the deployed state did not take: the
// revision was dropped meanwhile, which is not a problem.
func report(log *slog.Logger, revision string, err error) {
	if err != nil {
		log.Debug("revision status not recorded", "revision", revision, "err", err)
	}
}

// exitedBeforeReady reports whether a replica is waiting to restart after
// a process that exited before it was ever ready: a start that failed,
// not a crash of a replica that served.
func exitedBeforeReady(st supervisor.Status) bool {
	for _, r := range st.Replicas {
		if r.State == supervisor.StateBackoff && r.StartToReady == 0 {
			return true
		}
	}
	return false
}

// lastExitCause is how the most recently started replica's process last
// ended, in words fit for a client (no log line, path or address).
func lastExitCause(st supervisor.Status) string {
	var last supervisor.ReplicaStatus
	for _, r := range st.Replicas {
		if r.LastExitCause != "" && !r.Started.Before(last.Started) {
			last = r
		}
	}
	if last.LastExitCause == "" {
		return "runtime replica exited before it was ready"
	}
	return "runtime replica " + last.LastExitCause
}
