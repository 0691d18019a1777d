package autoscaler

import "github.com/prometheus/client_golang/prometheus"

// metrics are the decisions and their inputs, per model.
type metrics struct {
	desired, ready, panic, excess *prometheus.GaugeVec
	stableConc, panicConc         *prometheus.GaugeVec
	stableRPS, panicRPS           *prometheus.GaugeVec
	target                        *prometheus.GaugeVec
	scaleErrors                   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"model"})
	}
	m := &metrics{
		desired:    gauge("infergate_autoscaler_desired_replicas", "Replicas the autoscaler's last decision asked for."),
		ready:      gauge("infergate_autoscaler_ready_replicas", "Ready replicas seen by the autoscaler's last decision."),
		panic:      gauge("infergate_autoscaler_panic_mode", "1 while the model's autoscaler is in panic mode, else 0."),
		excess:     gauge("infergate_autoscaler_excess_burst_capacity", "Ready capacity beyond the panic average and the target burst capacity; negative means a burst would overload the replicas."),
		stableConc: gauge("infergate_autoscaler_stable_concurrency", "Requests in flight (held ones included) averaged over the stable window, for models scaled on concurrency."),
		panicConc:  gauge("infergate_autoscaler_panic_concurrency", "Requests in flight (held ones included) averaged over the panic window, for models scaled on concurrency."),
		stableRPS:  gauge("infergate_autoscaler_stable_requests_per_second", "Requests per second averaged over the stable window, for models scaled on rps."),
		panicRPS:   gauge("infergate_autoscaler_panic_requests_per_second", "Requests per second averaged over the panic window, for models scaled on rps."),
		target:     gauge("infergate_autoscaler_target", "Per-replica target of the model's metric, after target utilization."),
		scaleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_autoscaler_scale_errors_total",
			Help: "Scaler.SetReplicas calls that failed; the autoscaler retries at its next decision.",
		}, []string{"model"}),
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.desired, m.ready, m.panic, m.excess, m.stableConc, m.panicConc, m.stableRPS, m.panicRPS, m.target, m.scaleErrors}
}

// record exports one decision.
func (m *metrics) record(model string, s Settings, ready int, d Decision) {
	m.desired.WithLabelValues(model).Set(float64(d.Desired))
	m.ready.WithLabelValues(model).Set(float64(ready))
	p := 0.0
	if d.Panic {
		p = 1
	}
	m.panic.WithLabelValues(model).Set(p)
	m.excess.WithLabelValues(model).Set(d.ExcessBurstCapacity)
	target, _ := s.Targets()
	m.target.WithLabelValues(model).Set(target)
	stable, panicked := m.stableConc, m.panicConc
	if s.Metric == MetricRPS {
		stable, panicked = m.stableRPS, m.panicRPS
	}
	stable.WithLabelValues(model).Set(d.StableAverage)
	panicked.WithLabelValues(model).Set(d.PanicAverage)
}

// forget drops a model's series, as when it is removed or changes metric.
func (m *metrics) forget(model string) {
	for _, c := range []*prometheus.GaugeVec{m.desired, m.ready, m.panic, m.excess, m.stableConc, m.panicConc, m.stableRPS, m.panicRPS, m.target} {
		c.DeleteLabelValues(model)
	}
	m.scaleErrors.DeleteLabelValues(model)
}
