package payloadlog

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons an event is dropped (label reason of
// infergate_payloadlog_events_dropped_total).
const (
	// ReasonQueueFull: the queue was at its length or byte bound.
	ReasonQueueFull = "queue_full"
	// ReasonUnredactable: the model redacts and the payload is not JSON.
	ReasonUnredactable = "unredactable"
	// ReasonShutdown: logged after Run's context ended, or still queued
	// at the drain deadline.
	ReasonShutdown = "shutdown"
)

// Metrics are the payload logger's counters, per model:
//   - infergate_payloadlog_events_sent_total{model}
//   - infergate_payloadlog_events_failed_total{model}: the sink refused
//     or did not answer within the send timeout; not retried
//   - infergate_payloadlog_events_dropped_total{model,reason}
//
// and the queue's gauges, infergate_payloadlog_queued_events and
// infergate_payloadlog_queued_bytes.
type Metrics struct {
	sent, failed, dropped *prometheus.CounterVec
	logger                atomic.Pointer[Logger]
}

// NewMetrics makes the metrics and registers them on reg (nil registers
// nowhere).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_payloadlog_events_sent_total",
			Help: "Payload log events (requests and responses) the sink accepted.",
		}, []string{"model"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_payloadlog_events_failed_total",
			Help: "Payload log events the sink refused, failed to take or took too long for; they are not retried.",
		}, []string{"model"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_payloadlog_events_dropped_total",
			Help: "Payload log events dropped before delivery: queue_full (the request path never waits), unredactable (redaction configured, payload not JSON), shutdown.",
		}, []string{"model", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "infergate_payloadlog_queued_events",
		Help: "Payload log events waiting for a sender.",
	}, func() float64 {
		if l := m.logger.Load(); l != nil {
			return float64(len(l.queue))
		}
		return 0
	})
	queuedBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "infergate_payloadlog_queued_bytes",
		Help: "Payload bytes held by the payload log events waiting for a sender.",
	}, func() float64 {
		if l := m.logger.Load(); l != nil {
			return float64(l.bytes.Load())
		}
		return 0
	})
	var errs []error
	for _, c := range []prometheus.Collector{m.sent, m.failed, m.dropped, queued, queuedBytes} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) watch(l *Logger) { m.logger.Store(l) }

// modelCounters are one model's counters, looked up once per SetModels.
type modelCounters struct {
	sent, failed                                      prometheus.Counter
	droppedFull, droppedUnredactable, droppedShutdown prometheus.Counter
}

func (m *Metrics) forModel(name string) modelCounters {
	return modelCounters{
		sent:                m.sent.WithLabelValues(name),
		failed:              m.failed.WithLabelValues(name),
		droppedFull:         m.dropped.WithLabelValues(name, ReasonQueueFull),
		droppedUnredactable: m.dropped.WithLabelValues(name, ReasonUnredactable),
		droppedShutdown:     m.dropped.WithLabelValues(name, ReasonShutdown),
	}
}
