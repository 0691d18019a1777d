package gateway

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/router"
	"github.com/infergate/infergate/runtimes"
)

type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	inFlight         *prometheus.GaugeVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	mirror           *mirrorMetrics
	// The in-flight byte bound (see Options.MaxInFlightBytes).
	inFlightBytes, inFlightLimit prometheus.Gauge
	inFlightRefused              *prometheus.CounterVec
}

// latencyBuckets span 100us to 30s: loopback pass-through up to slow
// models.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_gateway_requests_total",
			Help: "Requests answered by the gateway's front doors, by model, revision, protocol and status code (HTTP status or gRPC code name). Requests for no known model have empty model and revision.",
		}, []string{"model", "revision", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_gateway_request_duration_seconds",
			Help:    "Time from an inference request's arrival at a front door to its answer.",
			Buckets: latencyBuckets,
		}, []string{"model", "revision", "protocol"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "infergate_gateway_in_flight_requests",
			Help: "Inference requests being served, waiting in the activator or batcher included.",
		}, []string{"model", "revision"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_runtime_upstream_requests_total",
			Help: "Inference calls to runtime replicas, by model, revision and outcome (HTTP status, gRPC code name, or error kind).",
		}, []string{"model", "revision", "code"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_runtime_upstream_duration_seconds",
			Help:    "Time of inference calls to runtime replicas.",
			Buckets: latencyBuckets,
		}, []string{"model", "revision"}),
		mirror: newMirrorMetrics(),
		inFlightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "infergate_gateway_in_flight_request_bytes",
			Help: "Request bytes the gateway holds (REST bodies, gRPC inference messages), from their arrival to their answer.",
		}),
		inFlightLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "infergate_gateway_in_flight_request_limit_bytes",
			Help: "The bound on infergate_gateway_in_flight_request_bytes (-max-inflight-bytes).",
		}),
		inFlightRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_gateway_in_flight_refused_total",
			Help: "Requests refused for want of room under the in-flight byte bound (REST 503, gRPC RESOURCE_EXHAUSTED), by protocol.",
		}, []string{"protocol"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.upstreamRequests, m.upstreamDuration, m.inFlightBytes, m.inFlightLimit, m.inFlightRefused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if err := m.mirror.register(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// countUnrouted counts an answer to a request that reached no revision (an
// unknown model, endpoint or revision; a malformed request), under empty
// model and revision labels.
func (g *Gateway) countUnrouted(protocol, code string) {
	g.metrics.requests.WithLabelValues("", "", protocol, code).Inc()
}

// forget deletes the series of a revision no longer routed.
func (m *metrics) forget(model, revision string) {
	labels := prometheus.Labels{"model": model, "revision": revision}
	m.requests.DeletePartialMatch(labels)
	m.duration.DeletePartialMatch(labels)
	m.inFlight.DeletePartialMatch(labels)
	m.upstreamRequests.DeletePartialMatch(labels)
	m.upstreamDuration.DeletePartialMatch(labels)
	m.mirror.forget(labels)
}

// poolCollector reads each routed revision's replica pool at scrape time:
// retries, ejections and breakers cost the request path nothing.
type poolCollector struct {
	g                                                *Gateway
	retries, budget, ejections, opens, ejected, open *prometheus.Desc
	replicas, ready, panicRouted                     *prometheus.Desc
}

func newPoolCollector(g *Gateway) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"model", "revision"}, nil)
	}
	return &poolCollector{
		g:         g,
		retries:   d("infergate_runtime_retries_total", "Calls retried on another replica."),
		budget:    d("infergate_runtime_retry_budget_exhausted_total", "Retries the retry budget refused."),
		ejections: d("infergate_runtime_ejections_total", "Replicas ejected as outliers."),
		opens:     d("infergate_runtime_breaker_opens_total", "Per-replica circuit breakers opened."),
		ejected:   d("infergate_runtime_ejected_replicas", "Replicas ejected now."),
		open:      d("infergate_runtime_breakers_open", "Replicas whose circuit breaker is open now."),
		replicas:  d("infergate_runtime_replicas", "Replicas in the revision's pool."),
		ready:     d("infergate_runtime_ready_replicas", "Replicas ready to take requests."),
		panicRouted: d("infergate_runtime_panic_routed_total",
			"Calls sent to replicas whose breaker was open or that were ejected, because no ready replica was healthy (panic routing)."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.retries, c.budget, c.ejections, c.opens, c.ejected, c.open, c.replicas, c.ready, c.panicRouted} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.g.router.Table()
	if t == nil {
		return
	}
	seen := make(map[*runtimes.Pool]bool)
	t.Each(func(model string, rev *router.Revision[*route]) {
		p := rev.Backend.Pool
		if seen[p] {
			return
		}
		seen[p] = true
		st := p.Stats()
		ready, reps := p.ReadyCount(), p.Replicas()
		for _, v := range []struct {
			d   *prometheus.Desc
			t   prometheus.ValueType
			val float64
		}{
			{c.retries, prometheus.CounterValue, float64(st.Retries)},
			{c.budget, prometheus.CounterValue, float64(st.RetryBudgetExhausted)},
			{c.ejections, prometheus.CounterValue, float64(st.Ejections)},
			{c.opens, prometheus.CounterValue, float64(st.BreakerOpens)},
			{c.ejected, prometheus.GaugeValue, float64(st.Ejected)},
			{c.open, prometheus.GaugeValue, float64(st.BreakersOpen)},
			{c.replicas, prometheus.GaugeValue, float64(len(reps))},
			{c.ready, prometheus.GaugeValue, float64(ready)},
			{c.panicRouted, prometheus.CounterValue, float64(st.PanicRouted)},
		} {
			ch <- prometheus.MustNewConstMetric(v.d, v.t, v.val, model, rev.Name)
		}
	})
}

// statusLabel returns the label for an HTTP status without allocating for
// the codes the gateway answers with.
func statusLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 400:
		return "400"
	case 404:
		return "404"
	case 405:
		return "405"
	case 413:
		return "413"
	case 429:
		return "429"
	case 499:
		return "499"
	case 500:
		return "500"
	case 501:
		return "501"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.Itoa(code)
}

// codeCounters caches the children of a counter vector for one model and
// protocol, so counting a request neither hashes labels nor takes a lock
// once a code has been seen: readers load an immutable map; a new code
// copies it under mu.
type codeCounters struct {
	vec    *prometheus.CounterVec
	labels []string // the fixed label values before "code"
	byCode atomic.Pointer[map[string]prometheus.Counter]
	mu     sync.Mutex
}

func newCodeCounters(vec *prometheus.CounterVec, labels ...string) *codeCounters {
	c := &codeCounters{vec: vec, labels: labels}
	c.byCode.Store(&map[string]prometheus.Counter{})
	return c
}

func (c *codeCounters) with(code string) prometheus.Counter {
	if ctr, ok := (*c.byCode.Load())[code]; ok {
		return ctr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.byCode.Load()
	if ctr, ok := old[code]; ok {
		return ctr
	}
	ctr := c.vec.WithLabelValues(append(append([]string(nil), c.labels...), code)...)
	next := maps.Clone(old) // never nil: newCodeCounters stores an empty map
	next[code] = ctr
	c.byCode.Store(&next)
	return ctr
}
