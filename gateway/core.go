package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/router"
)

// The inference core: what every inference request goes through,
// whatever its front door. A front door reads its request into a
// router.Request and resolves it, hands send its own way of sending the
// request (attempt), records the answer with record, and writes answers
// and errors in its protocol's form (writeRESTError; oip.GRPCStatus).
// Capabilities of the replica's client (runtimes.Forwarder,
// runtimes.RawInferer) are the front doors' fast paths.

// send runs attempt on r, counted in flight on r meanwhile, and once more
// on the revision the current table resolves req to when attempt reports
// that r was retired while the request waited for it. attempt sends the
// request to a replica of r, under r's activator, batcher and the pool's
// retries, and keeps the answer where its front door wants it. send
// returns the revision that answered and the one to mirror to (nil for
// none), or the error of a request that then reached no revision.
//
// attempt does not escape, so a closure over the caller's locals stays
// on its stack: the REST pass-through allocates nothing.
func (g *Gateway) send(req router.Request, r, mirror *route, attempt func(r *route) (retired bool)) (*route, *route, error) {
	for try := 1; ; try++ {
		r.stats.Begin()
		r.inFlight.Inc()
		retired := attempt(r)
		r.inFlight.Dec()
		r.stats.End()
		if !retired || try > 1 {
			return r, mirror, nil
		}
		var err error
		if r, mirror, err = g.resolve(req); err != nil {
			return nil, nil, err
		}
	}
}

// record counts an answered request on its revision: under its code's
// label in the front door's counters, its time since start in the front
// door's histogram, and its outcome for the revision's health.
func (r *route) record(counters *codeCounters, duration prometheus.Observer, code string, start time.Time, o router.Outcome) {
	counters.with(code).Inc()
	d := time.Since(start)
	duration.Observe(d.Seconds())
	r.stats.Record(d, o)
}
