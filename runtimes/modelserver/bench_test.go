package modelserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
)

// samplesDir holds the sample models.
const samplesDir = "../../examples/models"

var sampleModels = []string{"iris", "digits", "textclass"}

var benchBatches = []int{1, 32}

// sampleBody returns an OIP JSON request body for model with a batch of n
// rows, cycling through the rows of the last case in its reference.json.
func sampleBody(tb testing.TB, model string, n int) []byte {
	tb.Helper()
	var ref struct {
		Cases []struct {
			Inputs []struct {
				Name     string        `json:"name"`
				Datatype string        `json:"datatype"`
				Shape    []int64       `json:"shape"`
				Data     []json.Number `json:"data"`
			} `json:"inputs"`
		} `json:"cases"`
	}
	b, err := os.ReadFile(filepath.Join(samplesDir, model, "reference.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		tb.Fatal(err)
	}
	type input struct {
		Name     string        `json:"name"`
		Datatype string        `json:"datatype"`
		Shape    []int64       `json:"shape"`
		Data     []json.Number `json:"data"`
	}
	var req struct {
		Inputs []input `json:"inputs"`
	}
	for _, in := range ref.Cases[len(ref.Cases)-1].Inputs {
		have := int(in.Shape[0])
		size := len(in.Data) / have
		out := input{Name: in.Name, Datatype: in.Datatype, Shape: append([]int64{int64(n)}, in.Shape[1:]...)}
		for r := range n {
			k := r % have
			out.Data = append(out.Data, in.Data[k*size:(k+1)*size]...)
		}
		req.Inputs = append(req.Inputs, out)
	}
	body, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// sampleServer serves the three sample models through the ONNX engine.
func sampleServer(tb testing.TB) *Server {
	tb.Helper()
	var srcs []ModelSource
	for _, m := range sampleModels {
		src, err := ScanModel(m, filepath.Join(samplesDir, m))
		if err != nil {
			tb.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	s, err := New(Options{Models: srcs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.LoadAll(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkInfer measures Server.Infer (validation, version pick, the ONNX
// engine, output selection) for each sample model at batch 1 and 32, with
// the request decoded once outside the loop.
func BenchmarkInfer(b *testing.B) {
	s := sampleServer(b)
	for _, model := range sampleModels {
		b.Run(model, func(b *testing.B) {
			for _, n := range benchBatches {
				b.Run("batch"+strconv.Itoa(n), func(b *testing.B) {
					var req oip.InferRequest
					if err := oip.DecodeInferRequest(sampleBody(b, model, n), -1, &req); err != nil {
						b.Fatal(err)
					}
					req.ModelName = model
					ctx := context.Background()
					b.ReportAllocs()
					for b.Loop() {
						if _, err := s.Infer(ctx, &req); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/item")
				})
			}
		})
	}
}

// BenchmarkInferREST measures the REST handler end to end without a socket:
// path parsing, JSON decoding, Server.Infer and JSON encoding.
func BenchmarkInferREST(b *testing.B) {
	s := sampleServer(b)
	for _, model := range sampleModels {
		b.Run(model, func(b *testing.B) {
			for _, n := range benchBatches {
				b.Run("batch"+strconv.Itoa(n), func(b *testing.B) {
					var ctx fasthttp.RequestCtx
					ctx.Request.Header.SetMethod("POST")
					ctx.Request.SetRequestURI("/v2/models/" + model + "/infer")
					ctx.Request.SetBody(sampleBody(b, model, n))
					b.ReportAllocs()
					for b.Loop() {
						ctx.Response.Reset()
						s.HandleREST(&ctx)
						if ctx.Response.StatusCode() != fasthttp.StatusOK {
							b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/item")
				})
			}
		})
	}
}

// BenchmarkInferParallel measures concurrent Server.Infer calls at batch 1,
// the shape of unbatched traffic; the version's reference count is the only
// state the calls share besides the engine.
func BenchmarkInferParallel(b *testing.B) {
	s := sampleServer(b)
	for _, model := range sampleModels {
		b.Run(model, func(b *testing.B) {
			body := sampleBody(b, model, 1)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var req oip.InferRequest
				if err := oip.DecodeInferRequest(body, -1, &req); err != nil {
					b.Error(err)
					return
				}
				req.ModelName = model
				ctx := context.Background()
				for pb.Next() {
					if _, err := s.Infer(ctx, &req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkInferSimulated measures Server.Infer on a simulated model with no
// latency: the floor of the model server's own cost, and the cost of the
// simulated model's outputs.
func BenchmarkInferSimulated(b *testing.B) {
	dir := b.TempDir()
	cfg := `{"simulate": {"latency_ms": 0, "per_item_ms": 0, "slots": 64,
		"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
		"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}}`
	if err := os.MkdirAll(filepath.Join(dir, "sim"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sim", "config.json"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	src, err := ScanModel("sim", filepath.Join(dir, "sim"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Models: []ModelSource{src}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.LoadAll(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, n := range benchBatches {
		b.Run("batch"+strconv.Itoa(n), func(b *testing.B) {
			req := oip.InferRequest{ModelName: "sim", Inputs: []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{int64(n), 16}, Data: make([]byte, n*16*4)}}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Infer(ctx, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
