package runtimes

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/oip"
)

// v1Server is a small KServe v1 runtime on loopback. Its models:
//
//	identity   predictions are the instances
//	sum        each prediction is the sum of its instance's numbers
//	short      one prediction fewer than instances
//	ragged     prediction i has i+1 elements
//	ragged0    prediction 0 is [[1,2],[3]]
//	mixed      predictions 1, "a", ...
//	object     predictions {"label": 1}, ...
//	nopreds    answers {"outputs": []}
//	reject     answers 400 with a KServe v1 error body
//	crash      answers 500 with a body that is not JSON
//	notready   model ready answers {"ready": false}
//	noready    model ready answers 200 with no "ready" field
//
// Any other model is not found.
type v1Server struct {
	addr string

	mu       sync.Mutex
	last     string // body of the last predict
	predicts int
}

func startV1Server(t *testing.T) *v1Server {
	t.Helper()
	s := &v1Server{}
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(ts.Close)
	s.addr = ts.Listener.Addr().String()
	return s
}

// lastPredict returns the body of the last predict request and how many
// predict requests came.
func (s *v1Server) lastPredict() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.predicts
}

var v1Models = map[string]bool{
	"identity": true, "sum": true, "short": true, "ragged": true, "ragged0": true, "mixed": true,
	"object": true, "nopreds": true, "reject": true, "crash": true, "notready": true, "noready": true,
}

func (s *v1Server) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/v1/models/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	model, predict := strings.CutSuffix(name, ":predict")
	if !v1Models[model] {
		v1Reply(w, http.StatusNotFound, map[string]any{"error": "Model with name " + model + " does not exist."})
		return
	}
	if !predict {
		switch model {
		case "notready":
			v1Reply(w, http.StatusOK, map[string]any{"name": model, "ready": false})
		case "noready":
			v1Reply(w, http.StatusOK, map[string]any{"name": model})
		default:
			v1Reply(w, http.StatusOK, map[string]any{"name": model, "ready": true})
		}
		return
	}
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.last = string(body)
	s.predicts++
	s.mu.Unlock()
	var req struct {
		Instances []any `json:"instances"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		v1Reply(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	in := req.Instances
	preds := make([]any, len(in))
	switch model {
	case "identity":
		preds = in
	case "sum":
		for i, x := range in {
			preds[i] = v1Sum(x)
		}
	case "short":
		preds = in[1:]
	case "ragged":
		for i := range preds {
			preds[i] = make([]int, i+1)
		}
	case "ragged0":
		preds[0] = []any{[]int{1, 2}, []int{3}}
		for i := 1; i < len(preds); i++ {
			preds[i] = []any{[]int{1, 2}, []int{3, 4}}
		}
	case "mixed":
		for i := range preds {
			preds[i] = []any{1, "a"}[i%2]
		}
	case "object":
		for i := range preds {
			preds[i] = map[string]any{"label": 1}
		}
	case "nopreds":
		v1Reply(w, http.StatusOK, map[string]any{"outputs": []any{}})
		return
	case "reject":
		v1Reply(w, http.StatusBadRequest, map[string]any{"error": "instance 0: expected 4 features"})
		return
	case "crash":
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "Traceback (most recent call last):") //nolint:errcheck
		return
	}
	v1Reply(w, http.StatusOK, map[string]any{"predictions": preds})
}

// v1Sum adds the numbers in x, as an integer when they all are integers.
func v1Sum(x any) json.Number {
	var ints int64
	var floats float64
	allInts := true
	var walk func(any)
	walk = func(x any) {
		switch v := x.(type) {
		case []any:
			for _, e := range v {
				walk(e)
			}
		case json.Number:
			if i, err := v.Int64(); err == nil && allInts {
				ints += i
				return
			}
			if allInts {
				allInts, floats = false, float64(ints)
			}
			f, _ := v.Float64()
			floats += f
		}
	}
	walk(x)
	if allInts {
		return json.Number(strconv.FormatInt(ints, 10))
	}
	return json.Number(strconv.FormatFloat(floats, 'g', -1, 64))
}

func v1Reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck
}

func v1Client(t *testing.T, addr string, opts KServeV1Options) *KServeV1Client {
	t.Helper()
	opts.Addr = addr
	c, err := NewKServeV1Client(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Canonical tensor data for the tests.

func v1F32(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func v1F16(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, oip.Float32ToFP16(v))
	}
	return b
}

func v1I64(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func v1I32(vs ...int32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b
}

func v1Bools(vs ...bool) []byte {
	var b []byte
	for _, v := range vs {
		if v {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

func v1Strs(vs ...string) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

func v1Req(model string, inputs ...oip.Tensor) *oip.InferRequest {
	return &oip.InferRequest{ModelName: model, ModelVersion: "3", ID: "req-1", Inputs: inputs}
}

func TestKServeV1Infer(t *testing.T) {
	srv := startV1Server(t)
	tests := []struct {
		name     string
		opts     KServeV1Options
		req      *oip.InferRequest
		wantBody string // the instances sent
		want     oip.Tensor
	}{
		{
			name:     "rank 1 FP32 identity",
			req:      v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{3}, Data: v1F32(1, 2.5, -3)}),
			wantBody: `{"instances":[1.0,2.5,-3.0]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.FP32, Shape: []int64{3}, Data: v1F32(1, 2.5, -3)},
		},
		{
			name:     "rank 2 FP32 sum to scalars",
			req:      v1Req("sum", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{2, 3}, Data: v1F32(1, 2, 3, 4, 5, 6.5)}),
			wantBody: `{"instances":[[1.0,2.0,3.0],[4.0,5.0,6.5]]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.FP32, Shape: []int64{2}, Data: v1F32(6, 15.5)},
		},
		{
			name: "rank 3 INT64 identity keeps 64-bit values",
			opts: KServeV1Options{OutputDatatype: oip.INT64},
			req: v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.INT64, Shape: []int64{2, 2, 2},
				Data: v1I64(1, 2, 3, 4, 5, -6, 1<<62+1, 0)}),
			wantBody: `{"instances":[[[1,2],[3,4]],[[5,-6],[4611686018427387905,0]]]}`,
			want: oip.Tensor{Name: "predictions", Datatype: oip.INT64, Shape: []int64{2, 2, 2},
				Data: v1I64(1, 2, 3, 4, 5, -6, 1<<62+1, 0)},
		},
		{
			name:     "INT32 sum to declared INT64 output",
			opts:     KServeV1Options{Outputs: []oip.TensorMetadata{{Name: "total", Datatype: oip.INT64, Shape: []int64{-1}}}},
			req:      v1Req("sum", oip.Tensor{Name: "x", Datatype: oip.INT32, Shape: []int64{2, 2}, Data: v1I32(1, -2, 30, 40)}),
			wantBody: `{"instances":[[1,-2],[30,40]]}`,
			want:     oip.Tensor{Name: "total", Datatype: oip.INT64, Shape: []int64{2}, Data: v1I64(-1, 70)},
		},
		{
			name:     "Python-style floats into an integer output",
			opts:     KServeV1Options{OutputDatatype: oip.INT64},
			req:      v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{2}, Data: v1F32(3, -7)}),
			wantBody: `{"instances":[3.0,-7.0]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.INT64, Shape: []int64{2}, Data: v1I64(3, -7)},
		},
		{
			name:     "BOOL identity infers BOOL",
			req:      v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.BOOL, Shape: []int64{2, 2}, Data: v1Bools(true, false, false, true)}),
			wantBody: `{"instances":[[true,false],[false,true]]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.BOOL, Shape: []int64{2, 2}, Data: v1Bools(true, false, false, true)},
		},
		{
			name:     "BYTES identity infers BYTES",
			req:      v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.BYTES, Shape: []int64{3}, Data: v1Strs("héllo", `say "hi"`, "")}),
			wantBody: `{"instances":["héllo","say \"hi\"",""]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.BYTES, Shape: []int64{3}, Data: v1Strs("héllo", `say "hi"`, "")},
		},
		{
			name:     "FP16 by value, back to FP16",
			opts:     KServeV1Options{OutputDatatype: oip.FP16},
			req:      v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.FP16, Shape: []int64{1, 3}, Data: v1F16(0.5, 1, 0.1)}),
			wantBody: `{"instances":[[0.5,1.0,0.099975586]]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.FP16, Shape: []int64{1, 3}, Data: v1F16(0.5, 1, 0.1)},
		},
		{
			name:     "INT64 identity with no output datatype is FP32",
			req:      v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.INT64, Shape: []int64{2}, Data: v1I64(3, 255)}),
			wantBody: `{"instances":[3,255]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.FP32, Shape: []int64{2}, Data: v1F32(3, 255)},
		},
		{
			name: "requested output by its configured name",
			opts: KServeV1Options{OutputName: "scores"},
			req: func() *oip.InferRequest {
				r := v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: v1F32(2)})
				r.Outputs = []oip.RequestedOutput{{Name: "scores"}}
				return r
			}(),
			wantBody: `{"instances":[2.0]}`,
			want:     oip.Tensor{Name: "scores", Datatype: oip.FP32, Shape: []int64{1}, Data: v1F32(2)},
		},
		{
			name: "declared input validates and passes",
			opts: KServeV1Options{Inputs: []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 2}}}},
			req:  v1Req("sum", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: v1F32(0.25, 0.5)}),
			// 0.75 from the server's float64 sum.
			wantBody: `{"instances":[[0.25,0.5]]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.FP32, Shape: []int64{1}, Data: v1F32(0.75)},
		},
		{
			name:     "empty rows",
			req:      v1Req("identity", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{2, 0}}),
			wantBody: `{"instances":[[],[]]}`,
			want:     oip.Tensor{Name: "predictions", Datatype: oip.FP32, Shape: []int64{2, 0}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := v1Client(t, srv.addr, tc.opts)
			got, err := c.Infer(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("Infer: %v", err)
			}
			if body, _ := srv.lastPredict(); body != tc.wantBody {
				t.Errorf("instances sent:\n got %s\nwant %s", body, tc.wantBody)
			}
			want := &oip.InferResponse{ModelName: tc.req.ModelName, ModelVersion: "3", ID: "req-1", Outputs: []oip.Tensor{tc.want}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKServeV1InferErrors(t *testing.T) {
	srv := startV1Server(t)
	x := func(dt oip.DataType, shape []int64, data []byte) oip.Tensor {
		return oip.Tensor{Name: "x", Datatype: dt, Shape: shape, Data: data}
	}
	fp32x2 := x(oip.FP32, []int64{2}, v1F32(1, 2))
	tests := []struct {
		name     string
		opts     KServeV1Options
		req      *oip.InferRequest
		wantKind oip.Kind
		wantMsg  string
		wantSent bool // whether the runtime was asked
	}{
		// The request cannot be put in v1 form.
		{
			name:     "two inputs",
			req:      v1Req("identity", fp32x2, fp32x2),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  "a KServe v1 runtime takes one input tensor; request has 2",
		},
		{
			name:     "no input",
			req:      v1Req("identity"),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  "request has 0",
		},
		{
			name:     "scalar input",
			req:      v1Req("identity", x(oip.FP32, nil, v1F32(1))),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": shape [] has no batch dimension`,
		},
		{
			name:     "empty batch",
			req:      v1Req("identity", x(oip.FP32, []int64{0, 3}, nil)),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": batch of 0`,
		},
		{
			name:     "data short of the shape",
			req:      v1Req("identity", x(oip.FP32, []int64{2}, v1F32(1))),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": data has 4 bytes, shape [2] of FP32 needs 2 elements of 4 bytes`,
		},
		{
			name:     "malformed BYTES",
			req:      v1Req("identity", x(oip.BYTES, []int64{1}, []byte{9, 0, 0, 0, 'a'})),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": BYTES element 0`,
		},
		{
			name:     "empty arrays without bound",
			req:      v1Req("identity", x(oip.FP32, []int64{1 << 20, 1 << 20, 0}, nil)),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  "too many empty arrays to send as JSON",
		},
		{
			name:     "rank past NumPy's",
			req:      v1Req("identity", x(oip.FP32, slices.Repeat([]int64{1}, 65), v1F32(1))),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": rank 65 is more than a KServe v1 runtime takes (64)`,
		},
		{
			name:     "NaN",
			req:      v1Req("identity", x(oip.FP32, []int64{2}, v1F32(1, float32(math.NaN())))),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": element 1 is NaN`,
		},
		{
			name:     "BYTES not UTF-8",
			req:      v1Req("identity", x(oip.BYTES, []int64{2}, v1Strs("ok", "\xff\xfe"))),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": BYTES element 1 is not UTF-8`,
		},
		{
			name: "unknown requested output",
			req: func() *oip.InferRequest {
				r := v1Req("identity", fp32x2)
				r.Outputs = []oip.RequestedOutput{{Name: "probs"}}
				return r
			}(),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `unknown output "probs"; model "identity" has outputs "predictions"`,
		},
		{
			name:     "request against declared input",
			opts:     KServeV1Options{Inputs: []oip.TensorMetadata{{Name: "x", Datatype: oip.INT64, Shape: []int64{-1}}}},
			req:      v1Req("identity", fp32x2),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  `input "x": datatype FP32, model expects INT64`,
		},
		// The predictions cannot be made a tensor.
		{
			name:     "prediction count",
			req:      v1Req("short", fp32x2),
			wantKind: oip.KindInternal,
			wantMsg:  "returned 1 predictions for 2 instances",
			wantSent: true,
		},
		{
			name:     "ragged predictions",
			req:      v1Req("ragged", x(oip.FP32, []int64{3}, v1F32(1, 2, 3))),
			wantKind: oip.KindInternal,
			wantMsg:  "prediction 1 does not have the shape of prediction 0",
			wantSent: true,
		},
		{
			name:     "ragged prediction 0",
			req:      v1Req("ragged0", fp32x2),
			wantKind: oip.KindInternal,
			wantMsg:  "prediction 0 is ragged",
			wantSent: true,
		},
		{
			name:     "mixed kinds",
			req:      v1Req("mixed", fp32x2),
			wantKind: oip.KindInternal,
			wantMsg:  `prediction 1: element 0 is a string, output "predictions" is FP32`,
			wantSent: true,
		},
		{
			name:     "objects",
			req:      v1Req("object", fp32x2),
			wantKind: oip.KindInternal,
			wantMsg:  "prediction 0: element 0 is an object",
			wantSent: true,
		},
		{
			name:     "out of range for the output datatype",
			opts:     KServeV1Options{OutputDatatype: oip.INT8},
			req:      v1Req("identity", x(oip.INT32, []int64{2}, v1I32(1, 300))),
			wantKind: oip.KindInternal,
			wantMsg:  "prediction 1: element 0 (300) is out of range for INT8",
			wantSent: true,
		},
		{
			name:     "not an integer",
			opts:     KServeV1Options{OutputDatatype: oip.UINT16},
			req:      v1Req("identity", x(oip.FP32, []int64{1, 2}, v1F32(1, 1.5))),
			wantKind: oip.KindInternal,
			wantMsg:  "prediction 0: element 1 (1.5) is not an integer",
			wantSent: true,
		},
		{
			name:     "booleans into a numeric output",
			opts:     KServeV1Options{OutputDatatype: oip.FP64},
			req:      v1Req("identity", x(oip.BOOL, []int64{1}, v1Bools(true))),
			wantKind: oip.KindInternal,
			wantMsg:  `prediction 0: element 0 is a boolean, output "predictions" is FP64`,
			wantSent: true,
		},
		{
			name:     "predictions outside the declared output shape",
			opts:     KServeV1Options{Outputs: []oip.TensorMetadata{{Name: "predictions", Datatype: oip.FP32, Shape: []int64{-1, 2}}}},
			req:      v1Req("sum", fp32x2),
			wantKind: oip.KindInternal,
			wantMsg:  `predictions have shape [2], output "predictions" is declared [-1,2]`,
			wantSent: true,
		},
		{
			name:     "no predictions",
			req:      v1Req("nopreds", fp32x2),
			wantKind: oip.KindInternal,
			wantMsg:  `without "predictions"`,
			wantSent: true,
		},
		// The runtime's own errors keep their meaning.
		{
			name:     "runtime rejects the instances",
			req:      v1Req("reject", fp32x2),
			wantKind: oip.KindInvalidArgument,
			wantMsg:  "instance 0: expected 4 features",
			wantSent: true,
		},
		{
			name:     "runtime does not know the model",
			req:      v1Req("nope", fp32x2),
			wantKind: oip.KindNotFound,
			wantMsg:  "Model with name nope does not exist.",
		},
		{
			name:     "runtime fails without a JSON error",
			req:      v1Req("crash", fp32x2),
			wantKind: oip.KindInternal,
			wantMsg:  "runtime answered HTTP 500",
			wantSent: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := v1Client(t, srv.addr, tc.opts)
			_, before := srv.lastPredict()
			got, err := c.Infer(context.Background(), tc.req)
			if err == nil {
				t.Fatalf("Infer = %+v, want an error", got)
			}
			if k := oip.KindOf(err); k != tc.wantKind || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Infer error = %v (%s), want %s containing %q", err, k, tc.wantKind, tc.wantMsg)
			}
			if _, after := srv.lastPredict(); (after > before) != tc.wantSent {
				t.Errorf("runtime asked: %v, want %v", after > before, tc.wantSent)
			}
		})
	}
}

func TestKServeV1Unreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := v1Client(t, addr, KServeV1Options{})

	_, err = c.Infer(context.Background(), v1Req("m", oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: v1F32(1)}))
	if !errors.Is(err, ErrUnreachable) || oip.KindOf(err) != oip.KindUnavailable {
		t.Errorf("Infer on a refused connection: %v, want unavailable and unreachable", err)
	}
	ready, err := c.ModelReady(context.Background(), "m", "")
	if ready || !errors.Is(err, ErrUnreachable) || oip.KindOf(err) != oip.KindUnavailable {
		t.Errorf("ModelReady on a refused connection = %v, %v; want false, unavailable and unreachable", ready, err)
	}
}

func TestKServeV1ModelReady(t *testing.T) {
	srv := startV1Server(t)
	c := v1Client(t, srv.addr, KServeV1Options{})
	tests := []struct {
		model    string
		want     bool
		wantKind oip.Kind // when an error is wanted
		wantErr  bool
	}{
		{model: "identity", want: true},
		{model: "notready", want: false},
		{model: "nope", want: false}, // 404
		{model: "noready", want: false, wantErr: true, wantKind: oip.KindInternal},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			got, err := c.ModelReady(context.Background(), tc.model, "")
			if got != tc.want || (err != nil) != tc.wantErr || (err != nil && oip.KindOf(err) != tc.wantKind) {
				t.Errorf("ModelReady(%q) = %v, %v; want %v, error %v", tc.model, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestKServeV1ModelMetadata(t *testing.T) {
	in := []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 4}}}
	out := []oip.TensorMetadata{{Name: "label", Datatype: oip.INT64, Shape: []int64{-1}}}
	tests := []struct {
		name string
		opts KServeV1Options
		want *oip.ModelMetadata
	}{
		{
			name: "nothing declared",
			want: &oip.ModelMetadata{Name: "m", Platform: "kserve_v1", Inputs: []oip.TensorMetadata{}, Outputs: []oip.TensorMetadata{}},
		},
		{
			name: "declared",
			opts: KServeV1Options{Inputs: in, Outputs: out},
			want: &oip.ModelMetadata{Name: "m", Platform: "kserve_v1", Inputs: in, Outputs: out},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := v1Client(t, "127.0.0.1:1", tc.opts)
			got, err := c.ModelMetadata(context.Background(), "m", "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			if b, err := json.Marshal(got); err != nil || !bytes.Contains(b, []byte(`"inputs":[`)) {
				t.Errorf("metadata JSON = %s, %v; want inputs as a list", b, err)
			}
			// The metadata is the caller's: changing it changes nothing.
			for i := range got.Inputs {
				got.Inputs[i].Shape[0] = 7
			}
			again, _ := c.ModelMetadata(context.Background(), "m", "")
			if diff := cmp.Diff(tc.want, again); diff != "" {
				t.Errorf("metadata after the caller changed a copy (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewKServeV1ClientErrors(t *testing.T) {
	fp32 := []oip.TensorMetadata{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1}}}
	tests := []struct {
		name    string
		opts    KServeV1Options
		wantErr string
	}{
		{name: "no address", opts: KServeV1Options{}, wantErr: "Addr is empty"},
		{name: "bad address", opts: KServeV1Options{Addr: "localhost"}, wantErr: `Addr "localhost"`},
		{
			name:    "two inputs",
			opts:    KServeV1Options{Addr: "127.0.0.1:1", Inputs: append(fp32, fp32...)},
			wantErr: "Inputs has 2 tensors",
		},
		{
			name:    "input without a batch dimension",
			opts:    KServeV1Options{Addr: "127.0.0.1:1", Inputs: []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32}}},
			wantErr: "Inputs[0].Shape is []",
		},
		{
			name:    "output without a datatype",
			opts:    KServeV1Options{Addr: "127.0.0.1:1", Outputs: []oip.TensorMetadata{{Name: "y", Shape: []int64{-1}}}},
			wantErr: "Outputs[0].Datatype INVALID",
		},
		{
			name:    "output name disagrees",
			opts:    KServeV1Options{Addr: "127.0.0.1:1", OutputName: "z", Outputs: fp32},
			wantErr: `OutputName "z" differs from Outputs[0].Name "y"`,
		},
		{
			name:    "output datatype disagrees",
			opts:    KServeV1Options{Addr: "127.0.0.1:1", OutputDatatype: oip.INT64, Outputs: fp32},
			wantErr: "OutputDatatype INT64 differs from Outputs[0].Datatype FP32",
		},
		{
			name:    "output datatype out of range",
			opts:    KServeV1Options{Addr: "127.0.0.1:1", OutputDatatype: oip.DataType(99)},
			wantErr: "OutputDatatype DataType(99)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewKServeV1Client(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewKServeV1Client = %v, %v; want an error containing %q", c, err, tc.wantErr)
			}
		})
	}
	c, err := NewKServeV1Client(KServeV1Options{Addr: "127.0.0.1:1"})
	if err != nil || c.Addr() != "127.0.0.1:1" {
		t.Errorf("NewKServeV1Client = %v, %v; want a kserve-v1 client for 127.0.0.1:1", c, err)
	}
}
