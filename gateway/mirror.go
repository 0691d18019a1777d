package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
	"github.com/infergate/infergate/runtimes"
)

// mirrorer sends copies of answered requests to a model's mirror revision
// and compares the mirror's outputs with the answer the client got. A copy
// never changes the client's answer and costs it little: once the answer
// is ready, the handler takes the request body (no copy), copies the
// answer's body (REST, at most maxMirrorBytes) and starts a goroutine;
// the copy is dropped (and counted) when the mirrorer already has its
// limit of copies in flight, the answer is too large, or the mirror
// revision has no ready replica with room.
type mirrorer struct {
	g     *Gateway
	slots chan struct{}
}

// maxMirrorBytes bounds the answer a mirrored request copies.
const maxMirrorBytes = 4 << 20

func newMirrorer(g *Gateway, limit int) *mirrorer {
	if limit <= 0 {
		limit = 64
	}
	return &mirrorer{g: g, slots: make(chan struct{}, limit)}
}

// copied is one mirrored request with the primary's answer, each decoded
// lazily on the mirror's goroutine.
type copied struct {
	model          string
	target         *route
	decodeRequest  func(*oip.InferRequest) error
	decodeResponse func(*oip.InferResponse) error
}

// rest mirrors a REST request the primary answered with 200. It takes the
// request's body and copies the answer's before the handler returns them
// to fasthttp.
func (m *mirrorer) rest(ctx *fasthttp.RequestCtx, model string, target *route) {
	if ctx.Response.StatusCode() != fasthttp.StatusOK {
		return
	}
	if len(ctx.Response.Body()) > maxMirrorBytes {
		m.g.metrics.mirror.outcome(model, target.Revision, "dropped").Inc()
		return
	}
	if !m.take(model, target) {
		return
	}
	reqLen, err := rest.HeaderLength(&ctx.Request.Header, len(ctx.Request.Body()))
	if err != nil {
		m.release()
		return
	}
	respLen := -1
	if v := ctx.Response.Header.Peek(rest.HeaderInferenceHeaderContentLength); len(v) > 0 {
		if respLen, err = fasthttp.ParseUint(v); err != nil {
			respLen = -1
		}
	}
	// The request was answered: its body is ours to keep.
	reqBody := ctx.Request.SwapBody(nil)
	respBody := append([]byte(nil), ctx.Response.Body()...)
	go m.run(copied{
		model:  model,
		target: target,
		decodeRequest: func(req *oip.InferRequest) error {
			return oip.DecodeInferRequest(reqBody, reqLen, req)
		},
		decodeResponse: func(resp *oip.InferResponse) error {
			return oip.DecodeInferResponse(respBody, respLen, resp)
		},
	})
}

// grpc mirrors a gRPC request the primary answered. The frames need no
// copy: oip.Codec gives each request its own bytes, and the answer's are
// fresh too (from the runtime's codec or an encoding here), and neither
// is reused once sent.
func (m *mirrorer) grpc(model string, target *route, in, out *oip.RawFrame) {
	if len(out.Bytes) > maxMirrorBytes {
		m.g.metrics.mirror.outcome(model, target.Revision, "dropped").Inc()
		return
	}
	if !m.take(model, target) {
		return
	}
	reqBytes, respBytes := in.Bytes, out.Bytes
	go m.run(copied{
		model:  model,
		target: target,
		decodeRequest: func(req *oip.InferRequest) error {
			var msg pb.ModelInferRequest
			if err := proto.Unmarshal(reqBytes, &msg); err != nil {
				return err
			}
			return oip.RequestFromProto(&msg, req)
		},
		decodeResponse: func(resp *oip.InferResponse) error {
			var msg pb.ModelInferResponse
			if err := proto.Unmarshal(respBytes, &msg); err != nil {
				return err
			}
			return oip.ResponseFromProto(&msg, resp)
		},
	})
}

// take reserves a slot for one copy, or counts it dropped.
func (m *mirrorer) take(model string, target *route) bool {
	select {
	case m.slots <- struct{}{}:
		return true
	default:
		m.g.metrics.mirror.outcome(model, target.Revision, "dropped").Inc()
		return false
	}
}

func (m *mirrorer) release() { <-m.slots }

// run sends the copy to the mirror revision and compares the answers.
func (m *mirrorer) run(c copied) {
	defer m.release()
	mm := m.g.metrics.mirror
	rev := c.target.Revision
	// A mirror never wakes a revision or waits in its queue: the copy goes
	// only to a ready replica with room.
	release := noRelease
	if c.target.Activator != nil {
		var ok bool
		if release, ok = c.target.Activator.TryAcquire(rev); !ok {
			mm.outcome(c.model, rev, "dropped").Inc()
			return
		}
	} else if !c.target.Pool.Ready() {
		mm.outcome(c.model, rev, "dropped").Inc()
		return
	}
	defer release()
	var req oip.InferRequest
	var primary oip.InferResponse
	if c.decodeRequest(&req) != nil || c.decodeResponse(&primary) != nil {
		mm.outcome(c.model, rev, "undecodable").Inc()
		return
	}
	req.ModelName, req.ModelVersion = c.target.Model, ""
	ctx, cancel := context.WithTimeout(context.Background(), c.target.Timeout)
	defer cancel()
	t0 := time.Now()
	var got *oip.InferResponse
	err := c.target.Pool.Do(ctx, func(cl runtimes.Client) error {
		var err error
		got, err = cl.Infer(ctx, &req)
		return err
	})
	mm.duration.WithLabelValues(c.model, rev).Observe(time.Since(t0).Seconds())
	if err != nil {
		mm.outcome(c.model, rev, "error").Inc()
		return
	}
	mm.outcome(c.model, rev, "compared").Inc()
	mm.record(c.model, rev, oip.CompareResponses(&primary, got))
}

// mirrorMetrics are the mirror's counts and comparisons, by model and
// mirror revision.
type mirrorMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	maxDiff    *prometheus.HistogramVec
	argmax     *prometheus.CounterVec
	mismatched *prometheus.CounterVec
}

func newMirrorMetrics() *mirrorMetrics {
	return &mirrorMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_mirror_requests_total",
			Help: "Copies of requests for a mirror revision, by outcome: compared, error (the mirror failed), dropped (no room), undecodable.",
		}, []string{"model", "revision", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_mirror_duration_seconds",
			Help:    "Time of the mirror revision's calls.",
			Buckets: latencyBuckets,
		}, []string{"model", "revision"}),
		maxDiff: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "infergate_mirror_max_abs_diff",
			Help:    "Per compared request, the largest absolute difference between an output element of the mirror and of the answer the client got.",
			Buckets: prometheus.ExponentialBuckets(1e-7, 10, 11),
		}, []string{"model", "revision"}),
		argmax: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_mirror_argmax_rows_total",
			Help: "Rows of class-score outputs compared by argmax, by whether the mirror picked the same class (agree=true|false).",
		}, []string{"model", "revision", "agree"}),
		mismatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_mirror_mismatched_outputs_total",
			Help: "Outputs whose name, datatype or shape differed between the mirror and the answer the client got.",
		}, []string{"model", "revision"}),
	}
}

func (mm *mirrorMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{mm.requests, mm.duration, mm.maxDiff, mm.argmax, mm.mismatched} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (mm *mirrorMetrics) forget(labels prometheus.Labels) {
	mm.requests.DeletePartialMatch(labels)
	mm.duration.DeletePartialMatch(labels)
	mm.maxDiff.DeletePartialMatch(labels)
	mm.argmax.DeletePartialMatch(labels)
	mm.mismatched.DeletePartialMatch(labels)
}

func (mm *mirrorMetrics) outcome(model, rev, outcome string) prometheus.Counter {
	return mm.requests.WithLabelValues(model, rev, outcome)
}

func (mm *mirrorMetrics) record(model, rev string, c oip.Comparison) {
	mm.maxDiff.WithLabelValues(model, rev).Observe(c.MaxAbsDiff)
	if c.ArgmaxRows > 0 {
		mm.argmax.WithLabelValues(model, rev, "true").Add(float64(c.ArgmaxAgree))
		mm.argmax.WithLabelValues(model, rev, "false").Add(float64(c.ArgmaxRows - c.ArgmaxAgree))
	}
	if n := len(c.Mismatched); n > 0 {
		mm.mismatched.WithLabelValues(model, rev).Add(float64(n))
	}
}
