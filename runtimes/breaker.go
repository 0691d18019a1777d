package runtimes

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/infergate/infergate/oip"
)

// outcome is what one call told the pool about the replica's health.
type outcome uint8

const (
	// outcomeOK: the replica answered; a client error (invalid argument,
	// not found, too large, unimplemented, and any other 4xx answer or gRPC
	// code that blames the request) is the request's fault, not the
	// replica's, and counts here too.
	outcomeOK outcome = iota
	// outcomeFailure: a 5xx-class failure (unavailable, unreachable,
	// internal, or a deadline the runtime did not meet).
	outcomeFailure
	// outcomeNeutral: the call says nothing about the replica (the client
	// canceled, or the runtime shed load with resource exhausted).
	outcomeNeutral
)

// classify sorts a call's error by what it says about the replica: by the
// status of the runtime's answer when the error is one (a client error
// never counts against the replica), else by its oip error kind.
func classify(err error) outcome {
	if err == nil {
		return outcomeOK
	}
	var a *answerError
	if errors.As(err, &a) {
		return a.outcome
	}
	return classifyKind(oip.KindOf(err))
}

// classifyKind sorts an error kind by what it says about the replica.
func classifyKind(k oip.Kind) outcome {
	switch k {
	case oip.KindUnavailable, oip.KindInternal, oip.KindDeadlineExceeded:
		return outcomeFailure
	case oip.KindCanceled, oip.KindResourceExhausted:
		return outcomeNeutral
	}
	return outcomeOK
}

// Breaker states mirrored from gobreaker for a lock-free look on the hot path.
const (
	stateClosed = int32(gobreaker.StateClosed)
	stateOpen   = int32(gobreaker.StateOpen)
)

// breaker is a replica's circuit breaker: a gobreaker TwoStepCircuitBreaker
// that opens after a run of consecutive failures, rejects calls for the open
// timeout, then lets HalfOpenRequests calls through and closes when they all
// succeed (or opens again on the first failure).
//
// gobreaker takes a mutex and reads the clock twice per call, and its Allow
// allocates the done callback. A healthy replica needs none of that: while
// the breaker is closed and the replica's last outcome was a success, the
// breaker's consecutive-failure count is zero, so a success changes nothing
// it decides on. The pool therefore calls Allow before a call only when the
// breaker is not closed (so half-open admits its probes), and otherwise
// reports after the call: a failure always, a success only when it ends a
// run of failures. The trip decision is the same as reporting every call.
//
// gobreaker reads time.Now itself; the mirror's openUntil uses the same
// clock, not PoolOptions.Now.
type breaker struct {
	cb        *gobreaker.TwoStepCircuitBreaker[struct{}]
	state     atomic.Int32 // the gobreaker state, set from OnStateChange
	openUntil atomic.Int64 // UnixNano when the open state ends
	timeout   time.Duration
}

func newBreaker(name string, o *PoolOptions, opened func()) *breaker {
	b := &breaker{timeout: o.BreakerOpenTimeout}
	threshold := uint32(o.BreakerFailures)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: uint32(o.BreakerHalfOpenRequests),
		Timeout:     o.BreakerOpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsExcluded:  func(err error) bool { return classify(err) == outcomeNeutral },
		IsSuccessful: func(err error) bool {
			return classify(err) == outcomeOK
		},
		// Called under the breaker's mutex, so the mirror follows the
		// breaker's own order of transitions.
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openUntil.Store(time.Now().Add(b.timeout).UnixNano())
				opened()
			}
			b.state.Store(int32(to))
		},
	})
	return b
}

// mayAllow reports, without locking, whether Allow could let a call
// through now: the breaker is closed or half-open, or open with its timeout
// passed (Allow then moves it to half-open).
func (b *breaker) mayAllow() bool {
	return b.state.Load() != stateOpen || b.openTimedOut()
}

func (b *breaker) openTimedOut() bool { return time.Now().UnixNano() >= b.openUntil.Load() }

// before is the breaker's first step for a call about to go to the replica.
// It returns ok false when the breaker rejects the call. done is nil when
// the call needs no Allow (the closed fast path); report it to after.
func (b *breaker) before() (done func(error), ok bool) {
	if b.state.Load() == stateClosed {
		return nil, true
	}
	done, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return done, true
}

// after is the breaker's second step. done is what before returned;
// endedRun says the call succeeded after a run of failures on the replica.
func (b *breaker) after(done func(error), err error, o outcome, endedRun bool) {
	if done != nil {
		done(err)
		return
	}
	if b.state.Load() != stateClosed {
		// The breaker opened while the call was out: like gobreaker's
		// generations, a call from before the change says nothing now.
		return
	}
	if o == outcomeFailure || (o == outcomeOK && endedRun) {
		// A closed breaker admits any call, so the late Allow fails only
		// if another call opened it meanwhile.
		if d, aerr := b.cb.Allow(); aerr == nil {
			d(err)
		}
	}
}

// open reports whether the breaker is open now, by the mirror.
func (b *breaker) open() bool { return b.state.Load() == stateOpen && !b.openTimedOut() }
