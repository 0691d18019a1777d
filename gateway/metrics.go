package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
}

// latencyBuckets span 100us to 30s: loopback pass-through up to slow
// models.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_gateway_requests_total",
			Help: "Requests answered by the gateway's front doors, by model, protocol and status code (HTTP status or gRPC code name).",
		}, []string{"model", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_gateway_request_duration_seconds",
			Help:    "Time from a request's arrival at a front door to its answer.",
			Buckets: latencyBuckets,
		}, []string{"model", "protocol"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_runtime_upstream_requests_total",
			Help: "Inference calls to runtime replicas, by model and outcome (HTTP status, gRPC code name, or error kind).",
		}, []string{"model", "code"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_runtime_upstream_duration_seconds",
			Help:    "Time of inference calls to runtime replicas.",
			Buckets: latencyBuckets,
		}, []string{"model"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.upstreamRequests, m.upstreamDuration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
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
	next := make(map[string]prometheus.Counter, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[code] = ctr
	c.byCode.Store(&next)
	return ctr
}

// inc counts one answer with HTTP status code.
func (c *codeCounters) inc(code int) { c.with(statusLabel(code)).Inc() }
