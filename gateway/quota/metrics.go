package quota

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the package's collectors. One Metrics serves a Limiter and
// every model's FairQueue: they share the collectors and are told apart by
// their labels. Its methods are safe for concurrent use.
//
// The tenant label takes only names the caller knows (configured tenants
// for the Limiter; the names the gateway authenticated for a FairQueue),
// so its cardinality is the number of tenants.
type Metrics struct {
	refused *prometheus.CounterVec
	queued  *prometheus.GaugeVec
	wait    *prometheus.HistogramVec
}

// NewMetrics makes the collectors and registers them on reg (nil: none
// are registered, which suits tests):
//   - infergate_quota_refused_total{tenant,model,scope,reason}: requests
//     refused, by the limit's scope (tenant, model, tenant_model) and the
//     reason (rate, concurrency, queue_full).
//   - infergate_quota_queued_requests{model,tenant}: requests waiting in
//     a model's fair queue now.
//   - infergate_quota_queue_wait_seconds{model}: how long each request
//     that had to wait in a fair queue waited before it was admitted.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_quota_refused_total",
			Help: "Requests refused by a quota, by the limit's scope (tenant, model, tenant_model) and reason (rate, concurrency, queue_full).",
		}, []string{"tenant", "model", "scope", "reason"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "infergate_quota_queued_requests",
			Help: "Requests waiting in a model's fair queue for a share of its capacity.",
		}, []string{"model", "tenant"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_quota_queue_wait_seconds",
			Help:    "How long each request that waited in a model's fair queue waited before it was admitted.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"model"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.refused, m.queued, m.wait} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// unregistered returns Metrics registered nowhere, for a nil option.
func unregistered() *Metrics {
	m, _ := NewMetrics(nil) // cannot fail without a registerer
	return m
}

// refusal counts one refusal. It is off the admitted path, so the label
// lookup is paid only by refused requests.
func (m *Metrics) refusal(tenant, model string, s Scope, r Reason) {
	m.refused.WithLabelValues(tenant, model, s.String(), r.String()).Inc()
}

// ForgetModel deletes a model's series, for a model the gateway no longer
// routes.
func (m *Metrics) ForgetModel(model string) {
	labels := prometheus.Labels{"model": model}
	m.refused.DeletePartialMatch(labels)
	m.queued.DeletePartialMatch(labels)
	m.wait.DeletePartialMatch(labels)
}

// ForgetTenant deletes a tenant's series, for a tenant removed from the
// configuration.
func (m *Metrics) ForgetTenant(tenant string) {
	labels := prometheus.Labels{"tenant": tenant}
	m.refused.DeletePartialMatch(labels)
	m.queued.DeletePartialMatch(labels)
}
