package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/oip"
)

// activate waits, when the route has an activator, until the model may take
// the request (a replica is ready and has room), and returns the release
// to call once the request is answered. The error is in oip form.
func (r *route) activate(deadline time.Time) (release func(), err error) {
	if r.Activator == nil {
		return noRelease, nil
	}
	// The common case, a replica with room, needs no context: one is made
	// (with its timer) only for a request that must wait.
	if release, ok := r.Activator.TryAcquire(r.Revision); ok {
		return release, nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return r.activateCtx(ctx)
}

func noRelease() {}

func (r *route) activateCtx(ctx context.Context) (release func(), err error) {
	if r.Activator == nil {
		return noRelease, nil
	}
	release, err = r.Activator.Acquire(ctx, r.Revision)
	if err != nil {
		return nil, activationError(r.Model, err)
	}
	return release, nil
}

// activationError maps the activator's errors to the protocol's kinds.
func activationError(model string, err error) error {
	switch {
	case errors.Is(err, activator.ErrQueueFull):
		return &oip.Error{Kind: oip.KindUnavailable, Msg: "model \"" + model + "\": too many requests waiting for a replica; retry later", Err: err}
	case errors.Is(err, activator.ErrDeadline):
		return &oip.Error{Kind: oip.KindDeadlineExceeded, Msg: "model \"" + model + "\": no replica became ready before the request's deadline", Err: err}
	case errors.Is(err, activator.ErrFailed):
		return &oip.Error{Kind: oip.KindUnavailable, Msg: "model \"" + model + "\" failed to start", Err: err}
	}
	return err
}

// setRetryAfter tells a REST client held back by a full activator queue
// when to try again.
func setRetryAfter(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, activator.ErrQueueFull) {
		ctx.Response.Header.Set("Retry-After", "1")
	}
}
