package netlimit

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the listener metrics of one registerer; every Listener
// given it reports under its own listener label.
type Metrics struct {
	open, limit                      *prometheus.GaugeVec
	acceptErrors, fullWaits, evicted *prometheus.CounterVec
}

// NewMetrics registers the listener metrics on reg. When they are already
// registered there (another part of the process made its own Metrics on
// the same registerer), it shares those.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "infergate_listener_open_connections",
			Help: "Connections accepted by a listener and not yet closed.",
		}, []string{"listener"}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "infergate_listener_max_connections",
			Help: "The cap on a listener's open connections; at the cap new clients wait in the listen backlog.",
		}, []string{"listener"}),
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_listener_accept_errors_total",
			Help: "Accept errors a listener backed off from and retried (EMFILE, ENFILE, ENOBUFS, ECONNABORTED, ...).",
		}, []string{"listener"}),
		fullWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_listener_full_waits_total",
			Help: "Times a listener was at its connection cap and waited for a connection to close before accepting another.",
		}, []string{"listener"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_listener_evicted_connections_total",
			Help: "Silent connections (open for the grace period without sending a byte) a listener at its cap closed to accept a waiting one.",
		}, []string{"listener"}),
	}
	var err error
	m.open, err = register(reg, m.open)
	if err == nil {
		m.limit, err = register(reg, m.limit)
	}
	if err == nil {
		m.acceptErrors, err = register(reg, m.acceptErrors)
	}
	if err == nil {
		m.fullWaits, err = register(reg, m.fullWaits)
	}
	if err == nil {
		m.evicted, err = register(reg, m.evicted)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg, or returns the collector of the same
// description already there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// listenerMetrics are one listener's series; without Metrics they are
// unregistered and count for no one.
type listenerMetrics struct {
	open, limit                      prometheus.Gauge
	acceptErrors, fullWaits, evicted prometheus.Counter
}

func (m *Metrics) forListener(name string) listenerMetrics {
	if m == nil {
		return listenerMetrics{
			open:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered"}),
			limit:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered"}),
			acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"}),
			fullWaits:    prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"}),
			evicted:      prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"}),
		}
	}
	return listenerMetrics{
		open:         m.open.WithLabelValues(name),
		limit:        m.limit.WithLabelValues(name),
		acceptErrors: m.acceptErrors.WithLabelValues(name),
		fullWaits:    m.fullWaits.WithLabelValues(name),
		evicted:      m.evicted.WithLabelValues(name),
	}
}
