package gateway

import (
	"context"
	"time"

	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes"
)

// Dispatcher returns the batcher's upstream call for a model's revision: a
// merged request sent to one ready replica of pool, decoded on the way
// back. Upstream calls are counted under the revision like unbatched ones
// while it is routed.
func (g *Gateway) Dispatcher(model, revision string, pool *runtimes.Pool) batcher.DispatchFunc {
	return func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
		var resp *oip.InferResponse
		err := pool.Do(ctx, func(cl runtimes.Client) error {
			t0 := time.Now()
			var err error
			resp, err = cl.Infer(ctx, req)
			if rev := g.router.Table().Lookup(model, revision); rev != nil {
				g.countUpstream(rev.Backend, time.Since(t0), err, 0)
			}
			return err
		})
		return resp, err
	}
}

// ReadyReplicas returns a count of pool's ready replicas, at least 1: the
// batcher's default limit of batches in flight is one per ready replica.
func ReadyReplicas(pool *runtimes.Pool) func() int {
	return func() int { return max(pool.ReadyCount(), 1) }
}
