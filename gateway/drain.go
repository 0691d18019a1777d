package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/infergate/infergate/gateway/netlimit"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/router"
)

// front is one server on its capped listener, as serveFronts runs it.
type front struct {
	name string
	ln   *netlimit.Listener
	// serve serves ln until it is closed.
	serve func(net.Listener) error
	// drain closes ln and waits for the work in flight until ctx ends; it
	// reports whether all of it finished.
	drain func(ctx context.Context) bool
	// stop, when set, ends what drain left behind; it is called once the
	// listener's connections are closed.
	stop func()
}

// serveFronts runs fronts until ctx is done or one of them fails, then
// drains them all together within drain: past it, every connection still
// open is closed, so that nothing (a stuck request, a connection that
// never finished its handshake) keeps the process up longer. It returns
// the first failure, nil after a drain started by ctx.
func serveFronts(ctx context.Context, drain time.Duration, fronts []front) error {
	return serveFrontsAborting(ctx, drain, nil, fronts)
}

// drainGrace is how long past the drain deadline the front doors have to
// write the answers of the requests the deadline cut short before their
// connections are closed. Those answers need no runtime: this is the time
// for their handlers to return and their bytes to be written.
const drainGrace = time.Second

// serveFrontsAborting is serveFronts with abort, when set, called at the
// drain deadline if the fronts have not drained by then. abort must make
// the requests still in flight return with an answer at once; it may keep
// at it until its channel is closed, once every front has drained or been
// closed. The fronts then have drainGrace more to write those answers and
// close their connections; past it, the connections still open are
// closed.
func serveFrontsAborting(ctx context.Context, drain time.Duration, abort func(drained <-chan struct{}), fronts []front) error {
	served := make(chan error, len(fronts))
	for _, f := range fronts {
		go func() {
			err := f.serve(f.ln)
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				err = fmt.Errorf("gateway: %s: %w", f.name, err)
			} else {
				err = nil
			}
			served <- err
		}()
	}
	var failed error
	pending := len(fronts)
	select {
	case <-ctx.Done():
	case failed = <-served:
		pending--
	}
	limit := drain
	drained := make(chan struct{})
	var aborting sync.WaitGroup
	if abort != nil {
		// The connections are closed only after the aborted requests had
		// the grace to be answered: closed at the deadline, they would
		// take the answers with them.
		limit += drainGrace
		aborting.Go(func() {
			t := time.NewTimer(drain)
			defer t.Stop()
			select {
			case <-t.C:
				abort(drained)
			case <-drained:
			}
		})
	}
	dctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fronts {
		wg.Go(func() {
			if f.drain(dctx) {
				return
			}
			f.ln.CloseConns()
			if f.stop != nil {
				f.stop()
			}
		})
	}
	wg.Wait()
	close(drained)
	aborting.Wait()
	// The listeners are closed and every server stopped: each serve
	// returns now, if it has not already.
	for ; pending > 0; pending-- {
		if err := <-served; failed == nil {
			failed = err
		}
	}
	return failed
}

// errDrainDeadline answers the requests still waiting for a runtime when
// the drain deadline passes.
var errDrainDeadline = &oip.Error{Kind: oip.KindUnavailable, Msg: "gateway shutting down: the request did not finish within the drain timeout"}

// abortSweep is how often abortInFlight closes the runtimes' connections
// again while the front doors finish.
const abortSweep = 100 * time.Millisecond

// abortInFlight runs at the drain deadline, so that every request still in
// flight is answered (errDrainDeadline) rather than dropped when its
// connection is closed. It cancels g.drain, which every wait built on a
// context (the activator, the batcher, gRPC and translated calls, the
// pool's retries) derives from or checks, and closes the connections of
// the routed revisions' REST clients, on which a pass-through Forward (a
// blocking call with no context) may be waiting. It closes them again
// every abortSweep until drained is closed: a forward that checked g.drain
// just before it was cancelled may have dialled anew since.
func (g *Gateway) abortInFlight(drained <-chan struct{}) {
	g.cancelDrain()
	t := time.NewTicker(abortSweep)
	defer t.Stop()
	for {
		g.closeRuntimeConns()
		select {
		case <-drained:
			return
		case <-t.C:
		}
	}
}

// connCloser is a runtime client that can close its connections in use
// (runtimes.RESTClient, runtimes.KServeV1Client).
type connCloser interface{ CloseConns() }

// closeRuntimeConns closes the connections of every replica client of the
// table's revisions that can. A revision already retired from the table
// is not reached: its requests still in flight end at the forced close.
func (g *Gateway) closeRuntimeConns() {
	g.router.Table().Each(func(_ string, rev *router.Revision[*route]) {
		for _, rep := range rev.Backend.Pool.Replicas() {
			if c, ok := rep.Client.(connCloser); ok {
				c.CloseConns()
			}
		}
	})
}

// draining reports whether the drain deadline has passed. It is an atomic
// load: the pass-through's hot path asks it.
func (g *Gateway) draining() bool { return g.drain.Err() != nil }

// drainError returns errDrainDeadline in place of a request's error once
// the drain deadline has passed: whatever broke first (a closed runtime
// connection, a cancelled wait), the drain cut the request short.
func (g *Gateway) drainError(err error) error {
	if err != nil && g.draining() {
		return errDrainDeadline
	}
	return err
}

// maxKeepAliveGrace bounds keepAliveGrace: long enough for clients that
// keep a connection busy to send their next request on it and read its
// answer with Connection: close, short enough not to slow a drain with
// nothing in flight much.
const maxKeepAliveGrace = 500 * time.Millisecond

// keepAliveGrace is the first part of the REST drain, once the listener is
// closed: for up to maxKeepAliveGrace (and no more than a quarter of the
// drain), kept-alive connections stay open, and the requests they bring
// are served with Connection: close, so that their clients stop reusing
// them. Closed at once instead, an idle kept-alive connection races with
// the request its client is writing on it at that moment: HTTP/1.1 lets a
// server close such a connection, and the client gets no answer (a POST
// is not retried). Connections still idle after the grace are closed by
// the server's shutdown; the race is left to clients idle for all of it.
func (g *Gateway) keepAliveGrace(ctx context.Context) {
	g.closing.Store(true)
	t := time.NewTimer(min(maxKeepAliveGrace, g.opts.DrainTimeout/4))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
