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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/gateway"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
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
	gw, err := gateway.New(gateway.Options{Routes: []gateway.Route{{Model: "iris", Pool: pool}}, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
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
