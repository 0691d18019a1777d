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
	dctx, cancel := context.WithTimeout(context.Background(), drain)
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
	// The listeners are closed and every server stopped: each serve
	// returns now, if it has not already.
	for ; pending > 0; pending-- {
		if err := <-served; failed == nil {
			failed = err
		}
	}
	return failed
}
