package bench

import (
	"context"
	"fmt"
	"time"
)

// Target is what a load generator drives: one call of Do sends one request
// and waits for its answer.
//
// Do must be safe for concurrent use: a closed loop calls it from every
// worker at once. It returns nil for a successful answer and an error for
// anything else (a transport failure, an unexpected status); an error is
// counted, not fatal. Do bounds each request by its own timeout and returns
// early when ctx is done. It should not allocate in steady state where the
// protocol allows it, since what Do costs is taken from what it measures.
type Target interface {
	Do(ctx context.Context) error
}

// TargetFunc adapts a function to a Target.
type TargetFunc func(ctx context.Context) error

// Do calls f(ctx).
func (f TargetFunc) Do(ctx context.Context) error { return f(ctx) }

// StatusError is the error of a REST answer whose status was not the one
// expected.
type StatusError struct {
	// Code is the HTTP status received.
	Code int
}

func (e *StatusError) Error() string { return fmt.Sprintf("bench: HTTP status %d", e.Code) }

// defaultTimeout bounds one request of a target that sets none.
const defaultTimeout = 10 * time.Second
