package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/modelserver"
)

// TestBatchingKeepsEveryAnswerOwn sends 256 concurrent requests, half over
// REST and half over gRPC, to a batched model in front of a real model
// server, and checks each answer against the model's unbatched answer for
// that request's own input.
func TestBatchingKeepsEveryAnswerOwn(t *testing.T) {
	ms := startModelServer(t, "iris")
	direct := restClient(t, ms.RESTAddr)
	pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: "iris", Logger: slog.New(slog.DiscardHandler)}, []runtimes.Client{direct})
	if err != nil {
		t.Fatal(err)
	}
	pool.Probe(context.Background())
	reg := prometheus.NewRegistry()
	// The gRPC front door reserves MaxBodyBytes for each message until it
	// is in: with the default 64 MiB only 16 of the 128 gRPC calls below
	// fit under the in-flight bound at once, and on a loaded machine some
	// waited past InFlightWait and were refused. These requests are tiny.
	gw, err := gateway.New(gateway.Options{Routes: []gateway.Route{{Model: "iris", Pool: pool}}, Registerer: reg, Logger: slog.New(slog.DiscardHandler),
		MaxBodyBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	b, err := batcher.New(batcher.Options{
		Model: "iris", MaxBatchSize: 32, MaxQueueDelay: 5 * time.Millisecond,
		Dispatch: gw.Dispatcher("iris", "iris", pool), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.SetRoutes([]gateway.Route{{Model: "iris", Pool: pool, Batcher: b}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx) //nolint:errcheck
	restLn, grpcLn := listen(t), listen(t)
	go gw.Serve(ctx, restLn, grpcLn) //nolint:errcheck
	restURL := "http://" + restLn.Addr().String()
	grpcAPI := dialGRPC(t, grpcLn.Addr().String())

	const n = 256
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := make([][]float32, n)
	for i := range inputs {
		inputs[i] = []float32{4 + 4*rng.Float32(), 2 + 2*rng.Float32(), 1 + 6*rng.Float32(), 2.5 * rng.Float32()}
	}
	// The unbatched answers, straight from the runtime, one at a time.
	want := make([][]float64, n)
	for i, in := range inputs {
		body, _ := json.Marshal(jsonRequest{Inputs: []jsonTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}, Data: mustJSON(in)}}})
		code, resp := postJSON(t, "http://"+ms.RESTAddr+"/v2/models/iris/infer", body, nil)
		if code != http.StatusOK {
			t.Fatalf("direct %d: %d %s", i, code, resp.Error)
		}
		want[i] = floatsOf(t, resp.Outputs[0].Data)
	}

	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := fmt.Sprintf("c%d", i)
			var got []float64
			if i%2 == 0 {
				body, _ := json.Marshal(jsonRequest{ID: id, Inputs: []jsonTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}, Data: mustJSON(inputs[i])}}})
				resp, err := http.Post(restURL+"/v2/models/iris/infer", "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				var out jsonResponse
				if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
					errs <- fmt.Errorf("%s: REST %d %v %s", id, resp.StatusCode, err, out.Error)
					return
				}
				if out.ID != id {
					errs <- fmt.Errorf("%s: REST answer has id %q", id, out.ID)
					return
				}
				var rows []float64
				if err := json.Unmarshal(out.Outputs[0].Data, &rows); err != nil {
					errs <- err
					return
				}
				got = rows
			} else {
				c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				resp, err := grpcAPI.ModelInfer(c, &pb.ModelInferRequest{ModelName: "iris", Id: id,
					Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
						Contents: &pb.InferTensorContents{Fp32Contents: inputs[i]}}}})
				if err != nil {
					errs <- fmt.Errorf("%s: gRPC %v", id, err)
					return
				}
				if resp.GetId() != id {
					errs <- fmt.Errorf("%s: gRPC answer has id %q", id, resp.GetId())
					return
				}
				for _, v := range resp.GetOutputs()[0].GetContents().GetFp32Contents() {
					got = append(got, float64(v))
				}
			}
			if len(got) != len(want[i]) {
				errs <- fmt.Errorf("%s: %d values, want %d", id, len(got), len(want[i]))
				return
			}
			for j := range got {
				if math.Abs(got[j]-want[i][j]) > 1e-5 {
					errs <- fmt.Errorf("%s: output[%d] = %v, unbatched %v", id, j, got[j], want[i][j])
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Batching happened: fewer batches than requests.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "infergate_batcher_batch_size" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() >= n || h.GetSampleSum() != n {
				t.Errorf("%d batches for %v rows; want fewer batches than the %d requests", h.GetSampleCount(), h.GetSampleSum(), n)
			}
			return
		}
	}
	t.Error("no infergate_batcher_batch_size metric")
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestServeBatchingFromYAML configures batching in InferenceService YAML
// and sends 256 concurrent clients, REST and gRPC mixed, through `infergate
// serve` to a batched model on a supervised runtime; every answer must equal
// the same model's unbatched answer for that client's own input.
func TestServeBatchingFromYAML(t *testing.T) {
	dir := t.TempDir()
	abs, err := filepath.Abs(filepath.Join(samplesDir, "iris"))
	if err != nil {
		t.Fatal(err)
	}
	doc := func(name, batcher string) string {
		return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
spec:
  predictor:
    %s
    model:
      modelFormat: {name: onnx}
      storageUri: %s
`, name, batcher, abs)
	}
	yaml := doc("iris", "batcher: {maxBatchSize: 32, maxLatency: 2}") + "---\n" + doc("iris-unbatched", "minReplicas: 1")
	if err := os.WriteFile(filepath.Join(dir, "iris.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "/v2/health/ready", "-config", dir, "-data-dir", t.TempDir())
	rest, grpcAddr, admin := p.rest, p.grpc, p.admin

	const n = 256
	rng := rand.New(rand.NewPCG(3, 4))
	inputs := make([][]float32, n)
	want := make([][]float64, n)
	for i := range inputs {
		inputs[i] = []float32{4 + 4*rng.Float32(), 2 + 2*rng.Float32(), 1 + 6*rng.Float32(), 2.5 * rng.Float32()}
		body, _ := json.Marshal(jsonRequest{Inputs: []jsonTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}, Data: mustJSON(inputs[i])}}})
		code, resp := postJSON(t, "http://"+rest+"/v2/models/iris-unbatched/infer", body, nil)
		if code != http.StatusOK {
			t.Fatalf("unbatched %d: %d %s", i, code, resp.Error)
		}
		want[i] = floatsOf(t, resp.Outputs[0].Data)
	}
	grpcAPI := dialGRPC(t, grpcAddr)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := fmt.Sprintf("b%d", i)
			var got []float64
			if i%2 == 0 {
				body, _ := json.Marshal(jsonRequest{ID: id, Inputs: []jsonTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}, Data: mustJSON(inputs[i])}}})
				resp, err := http.Post("http://"+rest+"/v2/models/iris/infer", "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				var out jsonResponse
				if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.ID != id {
					errs <- fmt.Errorf("%s: REST %d %v %q id %q", id, resp.StatusCode, err, out.Error, out.ID)
					return
				}
				if err := json.Unmarshal(out.Outputs[0].Data, &got); err != nil {
					errs <- err
					return
				}
			} else {
				c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				resp, err := grpcAPI.ModelInfer(c, &pb.ModelInferRequest{ModelName: "iris", Id: id,
					Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
						Contents: &pb.InferTensorContents{Fp32Contents: inputs[i]}}}})
				if err != nil || resp.GetId() != id {
					errs <- fmt.Errorf("%s: gRPC %v id %q", id, err, resp.GetId())
					return
				}
				for _, v := range resp.GetOutputs()[0].GetContents().GetFp32Contents() {
					got = append(got, float64(v))
				}
			}
			for j := range want[i] {
				if j >= len(got) || math.Abs(got[j]-want[i][j]) > 1e-5 {
					errs <- fmt.Errorf("%s: got %v, unbatched %v", id, got, want[i])
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	r, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	metrics, _ := io.ReadAll(r.Body)
	if !bytes.Contains(metrics, []byte(`infergate_batcher_batch_size_sum{model="iris-00001"} 256`)) {
		t.Errorf("metrics do not show 256 rows through the batcher:\n%s", grepLines(metrics, "infergate_batcher_batch_size"))
	}
}

func grepLines(b []byte, substr string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkBatchedREST measures a REST request end to end on loopback —
// client, gateway and a built-in model server all in this process — for a
// simulated model (1 ms + 0.01 ms per row, one slot, x and y FP32
// [-1, 16], the shape of `make bench-batching`) served unbatched (the
// pass-through) and batched (maxBatchSize 64), with 1 and 64 clients in a
// closed loop. cpu-us/req is the whole process's CPU time per request
// (getrusage), so the difference between the two modes is what the
// batched path costs, or saves, per request; batched-rows is the mean
// batch.
func BenchmarkBatchedREST(b *testing.B) {
	repo := b.TempDir()
	const cfg = `{"simulate": {"latency_ms": 1, "per_item_ms": 0.01, "slots": 1,
		"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
		"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 16]}]}}`
	var srcs []modelserver.ModelSource
	for _, m := range []string{"sim", "simb"} {
		if err := os.MkdirAll(filepath.Join(repo, m), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, m, "config.json"), []byte(cfg), 0o644); err != nil {
			b.Fatal(err)
		}
		src, err := modelserver.ScanModel(m, filepath.Join(repo, m))
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	ms, err := modelserver.New(modelserver.Options{Models: srcs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer ms.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ms.LoadAll(ctx); err != nil {
		b.Fatal(err)
	}
	msLn := listenB(b)
	msSrv := &fasthttp.Server{Handler: ms.HandleREST}
	go msSrv.Serve(msLn)   //nolint:errcheck
	defer msSrv.Shutdown() //nolint:errcheck

	logger := slog.New(slog.DiscardHandler)
	pools := map[string]*runtimes.Pool{}
	for _, m := range []string{"sim", "simb"} {
		cl, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: msLn.Addr().String()})
		if err != nil {
			b.Fatal(err)
		}
		pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: m, Logger: logger}, []runtimes.Client{cl})
		if err != nil {
			b.Fatal(err)
		}
		pool.Probe(ctx)
		pools[m] = pool
	}
	reg := prometheus.NewRegistry()
	gw, err := gateway.New(gateway.Options{Routes: []gateway.Route{{Model: "sim", Pool: pools["sim"]}}, Registerer: reg, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	bt, err := batcher.New(batcher.Options{
		Model: "simb", MaxBatchSize: 64, MaxQueueDelay: 5 * time.Millisecond,
		Dispatch: gw.Dispatcher("simb", "simb", pools["simb"]), Registerer: reg, Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := gw.SetRoutes([]gateway.Route{{Model: "sim", Pool: pools["sim"]}, {Model: "simb", Pool: pools["simb"], Batcher: bt}}); err != nil {
		b.Fatal(err)
	}
	go bt.Run(ctx) //nolint:errcheck
	restLn, grpcLn := listenB(b), listenB(b)
	go gw.Serve(ctx, restLn, grpcLn) //nolint:errcheck

	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 16)
	for i := range x {
		x[i] = rng.Float32()
	}
	body, _ := json.Marshal(jsonRequest{ID: "bench", Inputs: []jsonTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 16}, Data: mustJSON(x)}}})
	for _, model := range []string{"sim", "simb"} {
		for _, clients := range []int{1, 64} {
			name := map[string]string{"sim": "unbatched", "simb": "batched"}[model]
			b.Run(fmt.Sprintf("%s/c%d", name, clients), func(b *testing.B) {
				hc := &fasthttp.HostClient{Addr: restLn.Addr().String(), MaxConns: clients}
				uri := "http://" + restLn.Addr().String() + "/v2/models/" + model + "/infer"
				send := func() error {
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					req.Header.SetMethod(fasthttp.MethodPost)
					req.SetRequestURI(uri)
					req.Header.SetContentType("application/json")
					req.SetBodyRaw(body)
					if err := hc.DoTimeout(req, resp, 10*time.Second); err != nil {
						return err
					}
					if resp.StatusCode() != fasthttp.StatusOK {
						return fmt.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
					}
					return nil
				}
				for range clients { // warm the connections and the batcher's estimates
					if err := send(); err != nil {
						b.Fatal(err)
					}
				}
				batches0, rows0 := batchStats(b, reg)
				cpu0 := processCPU()
				b.ReportAllocs()
				b.ResetTimer()
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				for range clients {
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							if err := send(); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/req")
				if batches, rows := batchStats(b, reg); model == "simb" && batches > batches0 {
					b.ReportMetric((rows-rows0)/(batches-batches0), "batched-rows")
				}
			})
		}
	}
}

func listenB(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln
}

// processCPU returns the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// batchStats returns the batches the batcher has sent and their rows.
func batchStats(b *testing.B, reg *prometheus.Registry) (batches, rows float64) {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "infergate_batcher_batch_size" {
			h := mf.GetMetric()[0].GetHistogram()
			return float64(h.GetSampleCount()), h.GetSampleSum()
		}
	}
	return 0, 0
}

// echoClient is an in-memory runtime: y is x, with no delay unless hold
// is set, when each call waits for it (simulating the service time) so
// that the callers come back while a batch is out, as closed-loop clients
// do.
type echoClient struct{ hold time.Duration }

func (echoClient) ModelReady(context.Context, string, string) (bool, error) { return true, nil }
func (echoClient) ModelMetadata(context.Context, string, string) (*oip.ModelMetadata, error) {
	return &oip.ModelMetadata{}, nil
}
func (echoClient) Close() error { return nil }
func (c echoClient) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	if c.hold > 0 {
		t := time.NewTimer(c.hold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	x := &req.Inputs[0]
	return &oip.InferResponse{ModelName: req.ModelName, Outputs: []oip.Tensor{
		{Name: "y", Datatype: x.Datatype, Shape: slices.Clone(x.Shape), Data: slices.Clone(x.Data)},
	}}, nil
}

// BenchmarkBatchedHandler measures the gateway's batched REST path alone
// — decode, Submit, the batcher's decisions, merge, split and encode —
// with no socket: 64 callers call HandleREST in a closed loop against an
// in-memory runtime that holds each batch for 2 ms. cpu-us/req is the
// process's CPU time per request.
func BenchmarkBatchedHandler(b *testing.B) {
	logger := slog.New(slog.DiscardHandler)
	pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: "simb", Logger: logger}, []runtimes.Client{echoClient{hold: 2 * time.Millisecond}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool.Probe(ctx)
	reg := prometheus.NewRegistry()
	gw, err := gateway.New(gateway.Options{Routes: []gateway.Route{{Model: "simb", Pool: pool}}, Registerer: reg, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	bt, err := batcher.New(batcher.Options{
		Model: "simb", MaxBatchSize: 64, MaxQueueDelay: 5 * time.Millisecond,
		Dispatch: gw.Dispatcher("simb", "simb", pool), Registerer: reg, Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := gw.SetRoutes([]gateway.Route{{Model: "simb", Pool: pool, Batcher: bt}}); err != nil {
		b.Fatal(err)
	}
	go bt.Run(ctx) //nolint:errcheck

	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 16)
	for i := range x {
		x[i] = rng.Float32()
	}
	body, _ := json.Marshal(jsonRequest{ID: "bench", Inputs: []jsonTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 16}, Data: mustJSON(x)}}})
	const clients = 64
	handle := func(rc *fasthttp.RequestCtx) error {
		rc.Request.Reset()
		rc.Response.Reset()
		rc.Request.Header.SetMethod(fasthttp.MethodPost)
		rc.Request.SetRequestURI("/v2/models/simb/infer")
		rc.Request.Header.SetContentType("application/json")
		rc.Request.SetBody(body)
		gw.HandleREST(rc)
		if rc.Response.StatusCode() != fasthttp.StatusOK {
			return fmt.Errorf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
		}
		return nil
	}
	rcs := make([]fasthttp.RequestCtx, clients)
	for i := range rcs {
		rcs[i].Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
		if err := handle(&rcs[i]); err != nil {
			b.Fatal(err)
		}
	}
	batches0, rows0 := batchStats(b, reg)
	cpu0 := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := handle(&rcs[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/req")
	if batches, rows := batchStats(b, reg); batches > batches0 {
		b.ReportMetric((rows-rows0)/(batches-batches0), "batched-rows")
	}
}
