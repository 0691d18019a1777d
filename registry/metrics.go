package registry

import "github.com/prometheus/client_golang/prometheus"

// metrics are the registry's Prometheus metrics, registered on the injected
// Registerer (none when it is nil).
type metrics struct {
	eventsDropped prometheus.Counter
	uploadBytes   prometheus.Counter
	uploads       *prometheus.CounterVec
	verifyFailed  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "infergate_registry_events_dropped_total",
			Help: "Events not delivered to a Subscribe reader that fell behind (each replaced by a gap marker).",
		}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "infergate_registry_artifact_upload_bytes_total",
			Help: "Bytes of artifacts received and stored.",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_registry_artifact_uploads_total",
			Help: "Artifact uploads by result: stored, or the error code that refused them.",
		}, []string{"result"}),
		verifyFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "infergate_registry_artifact_verify_failures_total",
			Help: "Stored artifacts found not to match their digest when given to a runtime.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.eventsDropped, m.uploadBytes, m.uploads, m.verifyFailed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
