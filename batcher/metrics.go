package batcher

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons for infergate_batcher_rejected_total.
const (
	reasonQueueFull = "queue_full"
	reasonOversize  = "oversize"
)

// metrics are one model's children of the shared collectors, looked up
// once so that the hot path neither hashes labels nor allocates.
type metrics struct {
	batchSize        prometheus.Observer
	queueDelay       prometheus.Observer
	depth            prometheus.Gauge
	rejectedFull     prometheus.Counter
	rejectedOversize prometheus.Counter
	expired          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, model string) (*metrics, error) {
	batchSize := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "infergate_batcher_batch_size",
		Help:    "Rows (the sum of dimension 0) in each batch sent upstream, by model.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
	}, []string{"model"})
	queueDelay := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "infergate_batcher_queue_delay_seconds",
		Help:    "Time from a request's arrival at the batcher to the dispatch of its batch, by model.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"model"})
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "infergate_batcher_queue_depth",
		Help: "Requests waiting in the batcher's queue (not in flight), by model.",
	}, []string{"model"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "infergate_batcher_rejected_total",
		Help: "Requests the batcher refused at arrival, by model and reason (queue_full: RESOURCE_EXHAUSTED; oversize: larger than the max batch size under the reject policy).",
	}, []string{"model", "reason"})
	expired := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "infergate_batcher_expired_total",
		Help: "Requests answered DEADLINE_EXCEEDED by the batcher, never sent upstream: their deadline or queue timeout passed while queued, or had passed on arrival; by model.",
	}, []string{"model"})

	if reg != nil {
		var err error
		if batchSize, err = register(reg, batchSize); err != nil {
			return nil, err
		}
		if queueDelay, err = register(reg, queueDelay); err != nil {
			return nil, err
		}
		if depth, err = register(reg, depth); err != nil {
			return nil, err
		}
		if rejected, err = register(reg, rejected); err != nil {
			return nil, err
		}
		if expired, err = register(reg, expired); err != nil {
			return nil, err
		}
	}
	return &metrics{
		batchSize:        batchSize.WithLabelValues(model),
		queueDelay:       queueDelay.WithLabelValues(model),
		depth:            depth.WithLabelValues(model),
		rejectedFull:     rejected.WithLabelValues(model, reasonQueueFull),
		rejectedOversize: rejected.WithLabelValues(model, reasonOversize),
		expired:          expired.WithLabelValues(model),
	}, nil
}

// register registers c, or returns the equal collector another batcher
// registered before, so that the batchers of several models share one.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
