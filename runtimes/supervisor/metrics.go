package supervisor

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the supervisors', labelled by model. Supervisors that share a
// Registerer share one set: the first registers it, the others find it
// there.
type metrics struct {
	startToReady *prometheus.HistogramVec
	probeGap     *prometheus.HistogramVec
}

// modelMetrics are one model's children, bound once.
type modelMetrics struct {
	startToReady, probeGap prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, model string) (modelMetrics, error) {
	startToReady, err := registerShared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "infergate_runtime_start_to_ready_seconds",
		Help: "Time from the start of a replica's process to its first answer that the runtime and the model are ready.",
		// 5 ms to about 2.7 min.
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
	}, []string{"model"}))
	if err != nil {
		return modelMetrics{}, err
	}
	probeGap, err := registerShared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "infergate_runtime_ready_probe_gap_seconds",
		Help: "Time from the last probe that found a starting replica not ready (or its start) to the first that found it ready: the most it may have been ready before the supervisor saw it.",
		// 0.25 ms to about 1 s.
		Buckets: prometheus.ExponentialBuckets(0.00025, 2, 13),
	}, []string{"model"}))
	if err != nil {
		return modelMetrics{}, err
	}
	return modelMetrics{
		startToReady: startToReady.WithLabelValues(model),
		probeGap:     probeGap.WithLabelValues(model),
	}, nil
}

// registerShared registers c on reg, or returns the collector of the same
// description that another Supervisor registered there already.
func registerShared(reg prometheus.Registerer, c *prometheus.HistogramVec) (*prometheus.HistogramVec, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
			return existing, nil
		}
	}
	return nil, err
}
