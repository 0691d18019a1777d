package pipelines

import "github.com/prometheus/client_golang/prometheus"

// metrics are the engine's; see the package documentation.
type metrics struct {
	runs     *prometheus.CounterVec
	steps    *prometheus.CounterVec
	attempts *prometheus.CounterVec
	running  prometheus.Gauge
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_pipelines_runs_total",
			Help: "Pipeline runs that ended, by final state.",
		}, []string{"state"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_pipelines_steps_total",
			Help: "Steps and parallelFor iterations that ended, by final state (succeeded, failed, cached, skipped, cancelled).",
		}, []string{"state"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_pipelines_step_attempts_total",
			Help: "Step attempts (processes) that ended, by result (succeeded, failed, timeout, cancelled).",
		}, []string{"result"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "infergate_pipelines_running_steps",
			Help: "Step processes running now.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "infergate_pipelines_step_attempt_duration_seconds",
			Help:    "How long step processes ran, from start to exit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.runs, m.steps, m.attempts, m.running, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
