package activator

import "github.com/prometheus/client_golang/prometheus"

// metrics are the activator's, labelled by model.
type metrics struct {
	depth     *prometheus.GaugeVec
	wait      *prometheus.HistogramVec
	coldStart *prometheus.HistogramVec
	rejected  *prometheus.CounterVec
}

// modelMetrics are one model's children, bound once so that the request
// path does no label lookup.
type modelMetrics struct {
	depth                                 prometheus.Gauge
	wait, coldStart                       prometheus.Observer
	queueFull, deadline, canceled, failed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "infergate_activator_queue_depth",
			Help: "Requests the activator holds for want of a ready replica with spare capacity.",
		}, []string{"model"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_activator_wait_seconds",
			Help:    "How long each held request waited before it was admitted.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, []string{"model"}),
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_activator_cold_start_seconds",
			Help:    "Time from the first request held for a model with no ready replica to its first ready replica.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"model"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_activator_rejected_total",
			Help: "Requests the activator did not let go, by reason: queue_full, deadline, canceled, failed.",
		}, []string{"model", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.depth, m.wait, m.coldStart, m.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) forModel(name string) modelMetrics {
	return modelMetrics{
		depth:     m.depth.WithLabelValues(name),
		wait:      m.wait.WithLabelValues(name),
		coldStart: m.coldStart.WithLabelValues(name),
		queueFull: m.rejected.WithLabelValues(name, "queue_full"),
		deadline:  m.rejected.WithLabelValues(name, "deadline"),
		canceled:  m.rejected.WithLabelValues(name, "canceled"),
		failed:    m.rejected.WithLabelValues(name, "failed"),
	}
}

// forget deletes a model's series.
func (m *metrics) forget(name string) {
	labels := prometheus.Labels{"model": name}
	m.depth.DeletePartialMatch(labels)
	m.wait.DeletePartialMatch(labels)
	m.coldStart.DeletePartialMatch(labels)
	m.rejected.DeletePartialMatch(labels)
}
