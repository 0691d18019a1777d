package runtimes

import (
	"context"
	"errors"

	"github.com/infergate/infergate/oip"
)

// Retries. A call that failed may go to another replica when running it
// again cannot do harm:
//   - it never reached its replica (ErrUnreachable in the chain: a refused
//     or failed dial, or a gRPC UNAVAILABLE), or
//   - the model is idempotent (PoolOptions.NonIdempotent unset, the
//     default) and the failure is unavailable: the runtime answered 503 or
//     502, or the connection broke before an answer. A pipelining REST
//     client is the exception: it has consumed the request's body, so its
//     failures are never retried (they never carry ErrUnreachable either).
//
// Other failures (internal errors, a deadline, client errors) go back to
// the caller as they are: the runtime did the work or the request is at
// fault. Each replica is tried at most once per call.
//
// Retries are bounded by a budget rather than a count, as Envoy's retry
// budget: the retries in flight may be at most RetryBudgetPercent of the
// pool's active calls, or MinRetryConcurrency when that is more. When
// every replica turns sick at once, the budget keeps retries from
// multiplying the load on what is left. A retry is never started once the
// call's context is done or its deadline has passed.

// ErrNoReplica is in the chain of the error of a call that found no ready
// replica in its pool: it was sent nowhere.
var ErrNoReplica = errors.New("no ready replica")

// MayRetry reports whether a call that failed with err (from Do or DoKey)
// may be sent again later without harm: it was sent nowhere, or reached no
// runtime, or the model is idempotent and the failure is unavailable (a
// connection that broke before an answer). A caller that knows the pool's
// replicas are changing (a crashed one about to be replaced) waits for the
// change and calls again.
func (p *Pool) MayRetry(err error) bool {
	if errors.Is(err, ErrNoReplica) || errors.Is(err, ErrUnreachable) {
		return true
	}
	return !p.opts.NonIdempotent && oip.KindOf(err) == oip.KindUnavailable
}

// retryable reports whether a call that failed with err on r may go to
// another replica.
func (p *Pool) retryable(r *Replica, err error) bool {
	switch {
	case errors.Is(err, ErrUnreachable):
		return true
	case p.opts.NonIdempotent || oip.KindOf(err) != oip.KindUnavailable:
		return false
	}
	rs, ok := r.Client.(resender)
	return !ok || !rs.mayHaveSent()
}

// beforeDeadline reports whether ctx may still start a retry: it is not
// done and its deadline, if any, is ahead by the pool's clock.
func (p *Pool) beforeDeadline(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	d, ok := ctx.Deadline()
	return !ok || p.now().Before(d)
}

// acquireRetry takes a place in the retry budget for one retry attempt, or
// reports false when the budget is spent. active is counted over rs: the
// calls in flight on its replicas plus the caller's own.
func (p *Pool) acquireRetry(rs []*Replica) bool {
	active := int64(1)
	for _, r := range rs {
		active += r.inflight.Load()
	}
	limit := int64(float64(active) * p.opts.RetryBudgetPercent / 100)
	limit = max(limit, int64(p.opts.MinRetryConcurrency))
	if p.retrying.Add(1) > limit {
		p.retrying.Add(-1)
		p.stats.budgetExhausted.Add(1)
		return false
	}
	return true
}

// releaseRetry gives back the place acquireRetry took.
func (p *Pool) releaseRetry() { p.retrying.Add(-1) }
