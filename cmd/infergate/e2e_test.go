package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/gateway"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
)

// TestInferThroughGateway sends every reference case of every sample model
// through the gateway, over each pairing of front door and runtime
// protocol, and compares the predictions with the references.
func TestInferThroughGateway(t *testing.T) {
	models := []string{"iris", "digits", "textclass"}
	ms := startModelServer(t, models...)
	restRoutes := map[string][]runtimes.Client{}
	grpcRoutes := map[string][]runtimes.Client{}
	for _, m := range models {
		restRoutes[m] = []runtimes.Client{restClient(t, ms.RESTAddr)}
		grpcRoutes[m] = []runtimes.Client{grpcClient(t, ms.GRPCAddr)}
	}
	toREST := startGateway(t, gateway.Options{}, restRoutes)
	toGRPC := startGateway(t, gateway.Options{}, grpcRoutes)

	for _, m := range models {
		for _, tc := range loadReference(t, m) {
			for _, gw := range []struct {
				name string
				g    *testGateway
			}{{"rest-runtime", toREST}, {"grpc-runtime", toGRPC}} {
				t.Run(fmt.Sprintf("%s/%s/rest-in/%s", m, tc.Name, gw.name), func(t *testing.T) {
					body, _ := json.Marshal(jsonRequest{ID: "req-" + tc.Name, Inputs: tc.Inputs})
					code, resp := postJSON(t, gw.g.restURL+"/v2/models/"+m+"/infer", body, nil)
					if code != http.StatusOK {
						t.Fatalf("status %d: %s", code, resp.Error)
					}
					if resp.ID != "req-"+tc.Name || resp.ModelName != m {
						t.Errorf("id, model_name = %q, %q; want %q, %q", resp.ID, resp.ModelName, "req-"+tc.Name, m)
					}
					for i, want := range tc.Outputs {
						got := resp.Outputs[i]
						if got.Name != want.Name || got.Datatype != want.Datatype || fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
							t.Fatalf("output %d = %s %s %v, want %s %s %v", i, got.Name, got.Datatype, got.Shape, want.Name, want.Datatype, want.Shape)
						}
						assertClose(t, want.Name, floatsOf(t, got.Data), floatsOf(t, want.Data), 1e-4)
					}
				})
				t.Run(fmt.Sprintf("%s/%s/grpc-in/%s", m, tc.Name, gw.name), func(t *testing.T) {
					client := dialGRPC(t, gw.g.grpcAddr)
					req := &pb.ModelInferRequest{ModelName: m, Id: "g-" + tc.Name}
					for _, in := range tc.Inputs {
						req.Inputs = append(req.Inputs, protoInput(t, in))
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					resp, err := client.ModelInfer(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					if resp.GetId() != "g-"+tc.Name {
						t.Errorf("id = %q, want %q", resp.GetId(), "g-"+tc.Name)
					}
					for i, want := range tc.Outputs {
						out := resp.GetOutputs()[i]
						var got []float64
						for _, v := range out.GetContents().GetFp32Contents() {
							got = append(got, float64(v))
						}
						assertClose(t, want.Name, got, floatsOf(t, want.Data), 1e-4)
					}
				})
			}
		}
	}
}

// protoInput builds a typed-contents gRPC input, as grpcurl users write.
func protoInput(t *testing.T, in jsonTensor) *pb.ModelInferRequest_InferInputTensor {
	t.Helper()
	vals := floatsOf(t, in.Data)
	c := &pb.InferTensorContents{}
	for _, v := range vals {
		switch in.Datatype {
		case "FP32":
			c.Fp32Contents = append(c.Fp32Contents, float32(v))
		case "INT64":
			c.Int64Contents = append(c.Int64Contents, int64(v))
		default:
			t.Fatalf("datatype %s not handled by the test", in.Datatype)
		}
	}
	return &pb.ModelInferRequest_InferInputTensor{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape, Contents: c}
}

// TestGRPCRawThroughGateway sends raw_input_contents and expects
// raw_output_contents back.
func TestGRPCRawThroughGateway(t *testing.T) {
	ms := startModelServer(t, "iris")
	for _, rt := range []struct {
		name   string
		client runtimes.Client
	}{{"rest-runtime", restClient(t, ms.RESTAddr)}, {"grpc-runtime", grpcClient(t, ms.GRPCAddr)}} {
		t.Run(rt.name, func(t *testing.T) {
			g := startGateway(t, gateway.Options{}, map[string][]runtimes.Client{"iris": {rt.client}})
			raw := make([]byte, 16)
			for i, v := range []float32{5.1, 3.5, 1.4, 0.2} {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
			}
			resp, err := dialGRPC(t, g.grpcAddr).ModelInfer(context.Background(), &pb.ModelInferRequest{
				ModelName:        "iris",
				Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}}},
				RawInputContents: [][]byte{raw},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetRawOutputContents()) != 1 || len(resp.GetRawOutputContents()[0]) != 12 {
				t.Fatalf("raw_output_contents = %v, want one 12-byte entry", resp.GetRawOutputContents())
			}
			first := math.Float32frombits(binary.LittleEndian.Uint32(resp.GetRawOutputContents()[0]))
			if first < 0.9 {
				t.Errorf("setosa probability = %v, want > 0.9", first)
			}
		})
	}
}

// TestGatewayErrors checks that bad input and failures get the protocol's
// error form with the right status, over REST and gRPC.
func TestGatewayErrors(t *testing.T) {
	ms := startModelServer(t, "iris")
	g := startGateway(t, gateway.Options{MaxBodyBytes: 1 << 20}, map[string][]runtimes.Client{"iris": {restClient(t, ms.RESTAddr)}})
	url := g.restURL + "/v2/models/iris/infer"
	tests := []struct {
		name, url, body string
		wantCode        int
		wantMsg         string
	}{
		{"unknown model", g.restURL + "/v2/models/nope/infer", `{"inputs":[]}`, 404, `model "nope" not found`},
		{"unknown path", g.restURL + "/v3/whatever", `{}`, 404, "no OIP endpoint"},
		{"malformed json", url, `{"inputs": [`, 400, "JSON"},
		{"wrong datatype", url, `{"inputs":[{"name":"input","datatype":"INT32","shape":[1,4],"data":[1,2,3,4]}]}`, 400, `input "input"`},
		{"wrong shape", url, `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,5],"data":[1,2,3,4,5]}]}`, 400, `input "input"`},
		{"data length mismatch", url, `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3]}]}`, 400, `input "input"`},
		{"missing input", url, `{"inputs":[]}`, 400, `missing input "input"`},
		{"unknown output", url, `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}],"outputs":[{"name":"nope"}]}`, 400, `unknown output "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := postJSON(t, tc.url, []byte(tc.body), nil)
			if code != tc.wantCode {
				t.Errorf("status = %d, want %d (error %q)", code, tc.wantCode, resp.Error)
			}
			mustContain(t, "error", resp.Error, tc.wantMsg)
		})
	}

	t.Run("oversize body then next request succeeds", func(t *testing.T) {
		// A raw connection: the gateway answers 413 from the headers and
		// closes, so a client still sending the 2 MiB body may see a reset
		// instead of the answer; send the headers and the first 16 KiB
		// only (the server reads up to 8 KiB of body with the headers).
		conn, err := net.Dial("tcp", strings.TrimPrefix(g.restURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"inputs\":[%s", 2<<20, strings.Repeat(" ", 16<<10))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		var body jsonResponse
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status = %d, want 413 (%q)", resp.StatusCode, body.Error)
		}
		mustContain(t, "error", body.Error, "exceeds")
		code, r := postJSON(t, url, []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`), nil)
		if code != http.StatusOK {
			t.Fatalf("after 413: status = %d (%q), want 200", code, r.Error)
		}
	})

	t.Run("grpc unknown model", func(t *testing.T) {
		_, err := dialGRPC(t, g.grpcAddr).ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "nope"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("code = %v, want NotFound (%v)", status.Code(err), err)
		}
	})
	t.Run("grpc oversize message", func(t *testing.T) {
		_, err := dialGRPC(t, g.grpcAddr).ModelInfer(context.Background(), &pb.ModelInferRequest{
			ModelName: "iris", RawInputContents: [][]byte{make([]byte, 2<<20)},
		})
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("code = %v, want ResourceExhausted (%v)", status.Code(err), err)
		}
	})
	t.Run("grpc invalid argument", func(t *testing.T) {
		_, err := dialGRPC(t, g.grpcAddr).ModelInfer(context.Background(), &pb.ModelInferRequest{
			ModelName: "iris",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
				Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}}},
		})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("code = %v, want InvalidArgument (%v)", status.Code(err), err)
		}
		mustContain(t, "message", status.Convert(err).Message(), `"input"`)
	})
}

// TestRuntimeDown: a model whose runtime refuses connections answers 503 /
// UNAVAILABLE, naming the model, rather than holding the request: a request
// held until its deadline (the route's 10 s) would be answered 504 /
// DEADLINE_EXCEEDED instead.
func TestRuntimeDown(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	g := startGateway(t, gateway.Options{}, map[string][]runtimes.Client{
		"iris": {restClient(t, addr)}, "iris-grpc": {grpcClient(t, addr)},
	})
	code, resp := postJSON(t, g.restURL+"/v2/models/iris/infer", []byte(`{"inputs":[]}`), nil)
	if code != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503 (%q)", code, resp.Error)
	}
	mustContain(t, "error", resp.Error, `model "iris"`)
	_, err := dialGRPC(t, g.grpcAddr).ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "iris-grpc"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("grpc code = %v, want Unavailable (%v)", status.Code(err), err)
	}
	r, err := http.Get(g.restURL + "/v2/models/iris/ready")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode == http.StatusOK {
		t.Error("model ready = 200 with its runtime down")
	}
}

// stallingRuntime is an OIP REST endpoint that answers after delay: a
// stand-in for a slow model, which the built-in runtime cannot yet be.
// Each infer request that arrives is signalled on the returned channel.
func stallingRuntime(t *testing.T, delay time.Duration) (string, <-chan struct{}) {
	t.Helper()
	ln := listen(t)
	arrived := make(chan struct{}, 1024)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if !bytes.HasSuffix(ctx.Path(), []byte("/infer")) {
			// Readiness and the pool's metadata call are answered at
			// once and are not arrivals: a test counting in-flight infer
			// requests must not count them.
			if bytes.HasSuffix(ctx.Path(), []byte("/slow")) {
				ctx.SetContentType("application/json")
				fmt.Fprint(ctx, `{"name":"slow","platform":"test","inputs":[],"outputs":[{"name":"y","datatype":"FP32","shape":[1]}]}`)
			}
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		time.Sleep(delay)
		ctx.SetContentType("application/json")
		fmt.Fprintf(ctx, `{"model_name":"slow","outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[1]}]}`)
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String(), arrived
}

// holdingRuntime is an OIP REST endpoint that never answers an infer
// request before the test ends (and answers readiness and metadata at
// once). Each infer request that arrives is signalled on the returned
// channel.
func holdingRuntime(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln := listen(t)
	arrived := make(chan struct{}, 1024)
	release := make(chan struct{})
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch {
		case bytes.HasSuffix(ctx.Path(), []byte("/ready")):
			return
		case !bytes.HasSuffix(ctx.Path(), []byte("/infer")):
			ctx.SetContentType("application/json")
			fmt.Fprint(ctx, `{"name":"slow","versions":["1"],"platform":"holding","inputs":[],"outputs":[]}`)
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		ctx.SetStatusCode(http.StatusInternalServerError)
	}}
	go srv.Serve(ln)
	// Cleanups run last first: release the held handlers, then shut down.
	t.Cleanup(func() { srv.Shutdown() })
	t.Cleanup(func() { close(release) })
	return ln.Addr().String(), arrived
}

// TestDeadlineExceeded: a request whose X-Request-Timeout passes while its
// runtime works on it is answered 504 at that deadline, without waiting
// for the runtime. Here the runtime answers nothing before the test ends
// and the model's own timeout is ten minutes, so a 504 within postJSON's
// two minutes can only come from the header's 200 ms.
func TestDeadlineExceeded(t *testing.T) {
	addr, arrived := holdingRuntime(t)
	// startGateway gives routes DrainTimeout + 10s as their timeout.
	g := startGateway(t, gateway.Options{DrainTimeout: 10 * time.Minute}, map[string][]runtimes.Client{"slow": {restClient(t, addr)}})
	code, resp := postJSON(t, g.restURL+"/v2/models/slow/infer", []byte(`{"inputs":[]}`), map[string]string{gateway.HeaderRequestTimeout: "200ms"})
	if code != http.StatusGatewayTimeout {
		t.Errorf("status = %d, want 504 (%q)", code, resp.Error)
	}
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Error("the request never reached the runtime: the 504 was not its deadline passing upstream")
	}
	code, resp = postJSON(t, g.restURL+"/v2/models/slow/infer", []byte(`{}`), map[string]string{gateway.HeaderRequestTimeout: "soon"})
	if code != http.StatusBadRequest {
		t.Errorf("bad timeout header: status = %d, want 400 (%q)", code, resp.Error)
	}
}

func TestGRPCDeadlineExceeded(t *testing.T) {
	ms := startModelServer(t, "iris")
	addr, _ := stallingRuntime(t, 2*time.Second)
	g := startGateway(t, gateway.Options{}, map[string][]runtimes.Client{"slow": {restClient(t, addr)}, "iris": {grpcClient(t, ms.GRPCAddr)}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := dialGRPC(t, g.grpcAddr).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "slow"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("code = %v, want DeadlineExceeded (%v)", status.Code(err), err)
	}
}

// TestConcurrentRequestsKeepTheirIDs sends 200 requests at once and checks
// every one is answered with its own id and its own prediction.
func TestConcurrentRequestsKeepTheirIDs(t *testing.T) {
	ms := startModelServer(t, "iris")
	g := startGateway(t, gateway.Options{}, map[string][]runtimes.Client{"iris": {restClient(t, ms.RESTAddr)}})
	cases := loadReference(t, "iris")
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc := cases[i%len(cases)]
			id := fmt.Sprintf("req-%d", i)
			body, _ := json.Marshal(jsonRequest{ID: id, Inputs: tc.Inputs})
			resp, err := http.Post(g.restURL+"/v2/models/iris/infer", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var out jsonResponse
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
				errs <- fmt.Errorf("%s: status %d, %v %q", id, resp.StatusCode, err, out.Error)
				return
			}
			if out.ID != id {
				errs <- fmt.Errorf("sent id %q, got %q", id, out.ID)
				return
			}
			var want []float64
			for _, o := range tc.Outputs {
				want = append(want, floatsOf(t, o.Data)...)
			}
			got := floatsOf(t, out.Outputs[0].Data)
			for j := range got {
				if math.Abs(got[j]-want[j]) > 1e-4 {
					errs <- fmt.Errorf("%s: output[%d] = %v, want %v", id, j, got[j], want[j])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestGracefulDrain stops the gateway while requests are in flight: every
// one of them must still be answered 200.
func TestGracefulDrain(t *testing.T) {
	addr, arrived := stallingRuntime(t, time.Second)
	g := startGateway(t, gateway.Options{DrainTimeout: 10 * time.Second}, map[string][]runtimes.Client{"slow": {restClient(t, addr)}})
	const n = 20
	var wg sync.WaitGroup
	codes := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(g.restURL+"/v2/models/slow/infer", "application/json", strings.NewReader(`{"inputs":[]}`))
			if err != nil {
				codes <- err.Error()
				return
			}
			resp.Body.Close()
			codes <- strconv.Itoa(resp.StatusCode)
		}()
	}
	// Stop once every request is in flight at the runtime.
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-arrived:
		case <-timeout:
			t.Fatal("requests did not reach the runtime")
		}
	}
	g.cancel()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != "200" {
			t.Errorf("in-flight request answered %s during drain, want 200", c)
		}
	}
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("Serve returned %v after drain", err)
		}
		g.done <- err
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not finish draining")
	}
}
