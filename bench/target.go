package bench

import (
	"context"
	"time"
)

// Target is what a load generator drives: one call of Do sends one request
// and waits for its answer.
//
// Do must be safe for concurrent use: a loop calls it from every worker at
// once. It returns nil for a successful answer and an error for anything
// else (a transport failure, an unexpected status); an error is counted by
// its ErrorKind, not fatal. Do bounds each request by its own timeout and
// returns early when ctx is done. It should not allocate in steady state
// where the protocol allows it, since what Do costs is taken from what it
// measures.
type Target interface {
	Do(ctx context.Context) error
}

// TargetFunc adapts a function to a Target.
type TargetFunc func(ctx context.Context) error

// Do calls f(ctx).
func (f TargetFunc) Do(ctx context.Context) error { return f(ctx) }

// ByteCounter is implemented by targets that count the bytes they move on
// the wire (TCP payload: headers, framing and bodies). The loops read it
// when the measured window starts and when the run ends.
type ByteCounter interface {
	// BytesMoved returns the bytes sent and received so far on every
	// connection the target opened.
	BytesMoved() (sent, received int64)
}

// defaultTimeout bounds one request of a target that sets none.
const defaultTimeout = 10 * time.Second
