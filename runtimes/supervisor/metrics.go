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
	unreadyRestarts        prometheus.Counter
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
	unreadyRestarts, err := registerShared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "infergate_runtime_unready_restarts_total",
		Help: "Replicas restarted because they stayed not ready (probes answering not ready, failing or timing out) for Options.UnreadyRestart after they had been ready.",
	}, []string{"model"}))
	if err != nil {
		return modelMetrics{}, err
	}
	return modelMetrics{
		startToReady:    startToReady.WithLabelValues(model),
		probeGap:        probeGap.WithLabelValues(model),
		unreadyRestarts: unreadyRestarts.WithLabelValues(model),
	}, nil
}

// registerShared registers c on reg, or returns the collector of the same
// description that another Supervisor registered there already.
func registerShared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
	var zero C
	return zero, err
}
