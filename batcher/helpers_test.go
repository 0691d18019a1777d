package batcher

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/infergate/infergate/oip"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeCall is one upstream call the fake runtime received.
type fakeCall struct {
	req     *oip.InferRequest
	ctx     context.Context
	release chan struct{}
}

// fakeRuntime is the narrowest seam: a DispatchFunc that records each
// request, optionally holds it until the test releases it, and answers
// with answer (echoModel by default).
//
// The blocker (see harness.occupy) is answered with errBlocker, so that
// its service time never trains the batcher's estimate.
type fakeRuntime struct {
	mu     sync.Mutex
	calls  []*fakeCall
	hold   bool
	deaf   bool // a held call ignores its context's end
	answer func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error)
}

var errBlocker = oip.Errorf(oip.KindUnavailable, "blocker answered")

func (rt *fakeRuntime) setHold(hold bool) {
	rt.mu.Lock()
	rt.hold = hold
	rt.mu.Unlock()
}

func (rt *fakeRuntime) setAnswer(f func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error)) {
	rt.mu.Lock()
	rt.answer = f
	rt.mu.Unlock()
}

func (rt *fakeRuntime) dispatch(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	c := &fakeCall{req: req, ctx: ctx, release: make(chan struct{})}
	rt.mu.Lock()
	rt.calls = append(rt.calls, c)
	hold, deaf, answer := rt.hold, rt.deaf, rt.answer
	rt.mu.Unlock()
	done := ctx.Done()
	if deaf {
		done = nil
	}
	if hold {
		select {
		case <-c.release:
		case <-done:
			return nil, oip.Errorf(oip.KindCanceled, "fake runtime: %w", ctx.Err())
		}
	}
	switch {
	case req.ID == "blk":
		return nil, errBlocker
	case answer == nil:
		return echoModel(req)
	}
	return answer(ctx, req)
}

// call returns the i-th call, failing the test when there is none.
func (rt *fakeRuntime) call(t *testing.T, i int) *fakeCall {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if i >= len(rt.calls) {
		t.Fatalf("upstream call %d not made; %d calls", i, len(rt.calls))
	}
	return rt.calls[i]
}

func (rt *fakeRuntime) numCalls() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.calls)
}

// callTags returns, for each upstream call in order, the tags of the rows
// it carried (see req), or "id:<id>" for a request without tags.
func (rt *fakeRuntime) callTags(t *testing.T) [][]string {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out [][]string
	for _, c := range rt.calls {
		out = append(out, tagsOf(c.req))
	}
	return out
}

// tagsOf returns the elements of req's "tag" BYTES input, which the test
// requests carry as one tag per row.
func tagsOf(req *oip.InferRequest) []string {
	in := req.Input("tag")
	if in == nil {
		return []string{"id:" + req.ID}
	}
	var tags []string
	for d := in.Data; len(d) >= 4; {
		n := binary.LittleEndian.Uint32(d)
		tags = append(tags, string(d[4:4+n]))
		d = d[4+n:]
	}
	return tags
}

// echoModel is the test model: output "y" is input "x" unchanged (any
// datatype and shape), output "row" (INT64 [n]) numbers the rows of the
// request it received, and output "sum" (FP64 [n]) is, for an FP32 "x",
// the sum over each row of x[i][j]*(j+1). It returns the requested outputs
// (all when none are named) and echoes the id.
func echoModel(req *oip.InferRequest) (*oip.InferResponse, error) {
	x := req.Input("x")
	if x == nil || len(x.Shape) == 0 {
		return nil, oip.Errorf(oip.KindInvalidArgument, "echo model: no input x")
	}
	n := x.Shape[0]
	all := map[string]oip.Tensor{
		"y":   {Name: "y", Datatype: x.Datatype, Shape: slices.Clone(x.Shape), Data: slices.Clone(x.Data)},
		"row": {Name: "row", Datatype: oip.INT64, Shape: []int64{n}, Data: rowNumbers(n)},
	}
	if x.Datatype == oip.FP32 {
		all["sum"] = oip.Tensor{Name: "sum", Datatype: oip.FP64, Shape: []int64{n}, Data: rowSums(x)}
	}
	resp := &oip.InferResponse{ModelName: req.ModelName, ModelVersion: req.ModelVersion, ID: req.ID,
		Parameters: oip.Parameters{{Key: "served_by", Kind: oip.ParamString, String: "fake"}}}
	names := []string{"y", "row", "sum"}
	if len(req.Outputs) > 0 {
		names = names[:0]
		for _, o := range req.Outputs {
			names = append(names, o.Name)
		}
	}
	for _, name := range names {
		t, ok := all[name]
		if !ok {
			if len(req.Outputs) == 0 {
				continue
			}
			return nil, oip.Errorf(oip.KindInvalidArgument, "echo model: unknown output %q", name)
		}
		resp.Outputs = append(resp.Outputs, t)
	}
	return resp, nil
}

func rowNumbers(n int64) []byte {
	b := make([]byte, 0, 8*n)
	for i := range n {
		b = binary.LittleEndian.AppendUint64(b, uint64(i))
	}
	return b
}

func rowSums(x *oip.Tensor) []byte {
	per := int(oip.ShapeElements(x.Shape[1:]))
	var out []byte
	for r := range int(x.Shape[0]) {
		s := 0.0
		for j := range per {
			v := math.Float32frombits(binary.LittleEndian.Uint32(x.Data[4*(r*per+j):]))
			s += float64(v) * float64(j+1)
		}
		out = binary.LittleEndian.AppendUint64(out, math.Float64bits(s))
	}
	return out
}

// fp32 builds the FP32 data of vals.
func fp32(vals ...float32) []byte {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// bytesData builds the canonical BYTES data of elems.
func bytesData(elems ...string) []byte {
	var b []byte
	for _, e := range elems {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// req builds a request for model "m" with an FP32 input "x" of shape
// [len(tags), width] and a BYTES input "tag" of shape [len(tags)] holding
// one tag per row, so that upstream calls show which rows they carry.
func req(id string, width int64, tags ...string) *oip.InferRequest {
	n := int64(len(tags))
	vals := make([]float32, 0, n*width)
	for i := range n * width {
		vals = append(vals, float32(i)+float32(len(id)))
	}
	return &oip.InferRequest{
		ModelName: "m",
		ID:        id,
		Inputs: []oip.Tensor{
			{Name: "x", Datatype: oip.FP32, Shape: []int64{n, width}, Data: fp32(vals...)},
			{Name: "tag", Datatype: oip.BYTES, Shape: []int64{n}, Data: bytesData(tags...)},
		},
	}
}

// withParam returns r with parameter p set.
func withParam(r *oip.InferRequest, p oip.Parameter) *oip.InferRequest {
	r.Parameters = r.Parameters.Set(p)
	return r
}

func intParam(key string, v int64) oip.Parameter {
	return oip.Parameter{Key: key, Kind: oip.ParamInt64, Int64: v}
}

// pending is a Submit running in its own goroutine.
type pending struct {
	resp *oip.InferResponse
	err  error
	done chan struct{}
}

func submit(ctx context.Context, b *Batcher, r *oip.InferRequest) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.resp, p.err = b.Submit(ctx, r)
	}()
	return p
}

func (p *pending) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns p's outcome; under synctest a Submit that can never finish
// is reported as a deadlock rather than hanging.
func (p *pending) wait() (*oip.InferResponse, error) {
	<-p.done
	return p.resp, p.err
}

// start creates a Batcher from opts with rt as its upstream and runs it
// until the test ends.
func start(t *testing.T, opts Options, rt *fakeRuntime) *Batcher {
	t.Helper()
	if opts.Dispatch == nil {
		opts.Dispatch = rt.dispatch
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return b
}

// kindOf returns the oip kind of err, or "ok" for nil, for comparisons.
func kindOf(err error) string {
	if err == nil {
		return "ok"
	}
	return oip.KindOf(err).String()
}

// metricValue returns the value of a counter or gauge, or the sample count
// of a histogram.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	case out.Histogram != nil:
		return float64(out.Histogram.GetSampleCount())
	}
	t.Fatalf("metric %v has no value", m.Desc())
	return 0
}

// lockedBuffer collects logs written from the batcher's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var discardLogger = slog.New(slog.DiscardHandler)
