package bench

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

func TestUpstreamREST(t *testing.T) {
	restAddr, _ := startUpstream(t, "iris", "other")
	tests := []struct {
		name, method, path string
		body               []byte
		wantStatus         int
		wantBody           []byte // nil: any valid JSON or empty
	}{
		{"live", "GET", "/v2/health/live", nil, 200, nil},
		{"ready", "GET", "/v2/health/ready", nil, 200, nil},
		{"server metadata", "GET", "/v2", nil, 200, nil},
		{"model ready", "GET", "/v2/models/iris/ready", nil, 200, nil},
		{"model metadata", "GET", "/v2/models/other", nil, 200, nil},
		{"infer", "POST", "/v2/models/iris/infer", IrisRequestJSON(), 200, IrisResponseJSON("iris")},
		{"infer other model", "POST", "/v2/models/other/infer", IrisRequestJSON(), 200, IrisResponseJSON("other")},
		{"infer without body", "POST", "/v2/models/iris/infer", nil, 400, nil},
		{"infer with GET", "GET", "/v2/models/iris/infer", nil, 400, nil},
		{"unknown model", "POST", "/v2/models/nope/infer", IrisRequestJSON(), 404, nil},
		{"not OIP", "GET", "/metrics", nil, 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + restAddr + tc.path)
			req.Header.SetMethod(tc.method)
			req.SetBody(tc.body)
			if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode(), tc.wantStatus, resp.Body())
			}
			if tc.wantBody != nil && string(resp.Body()) != string(tc.wantBody) {
				t.Errorf("body %s, want %s", resp.Body(), tc.wantBody)
			}
			if len(resp.Body()) > 0 && !json.Valid(resp.Body()) {
				t.Errorf("body is not JSON: %s", resp.Body())
			}
		})
	}
}

func TestUpstreamGRPC(t *testing.T) {
	_, grpcAddr := startUpstream(t, "iris")
	gt, err := NewGRPCTarget(GRPCOptions{Addr: grpcAddr, Request: IrisRequestProto("iris"), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer gt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	api := typedClient(t, gt)
	resp, err := api.ModelInfer(ctx, IrisRequestProto("iris"))
	if err != nil {
		t.Fatal(err)
	}
	if want := IrisResponseProto("iris"); !proto.Equal(resp, want) {
		t.Errorf("ModelInfer = %v, want %v", resp, want)
	}
	if r, err := api.ModelReady(ctx, &pb.ModelReadyRequest{Name: "iris"}); err != nil || !r.GetReady() {
		t.Errorf("ModelReady = %v, %v", r, err)
	}
	if md, err := api.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "iris"}); err != nil || len(md.GetInputs()) != 1 {
		t.Errorf("ModelMetadata = %v, %v", md, err)
	}
	if _, err := api.ModelInfer(ctx, IrisRequestProto("nope")); status.Code(err) != codes.NotFound {
		t.Errorf("unknown model: %v, want NotFound", err)
	}
	if err := gt.Do(ctx); err != nil {
		t.Errorf("Do: %v", err)
	}
}

func TestGRPCTargetLoop(t *testing.T) {
	_, grpcAddr := startUpstream(t, "iris")
	for _, tc := range []struct {
		name       string
		model      string
		wantErrors bool
	}{
		{"served model", "iris", false},
		{"unknown model counts errors", "nope", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gt, err := NewGRPCTarget(GRPCOptions{Addr: grpcAddr, Request: IrisRequestProto(tc.model), Conns: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer gt.Close()
			res, err := RunClosedLoop(context.Background(), gt, LoopOptions{Concurrency: 8, Requests: 300, Duration: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			wantErrs := int64(0)
			if tc.wantErrors {
				wantErrs = 300
			}
			if res.Requests != 300 || res.Errors != wantErrs {
				t.Fatalf("requests %d errors %d (%s), want 300 and %d", res.Requests, res.Errors, res.FirstError, wantErrs)
			}
		})
	}
}

func TestRESTTargetTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	rt, err := NewRESTTarget(RESTOptions{
		Addr: "mem:80", Timeout: 50 * time.Millisecond,
		Dial: memServer(t, func(*fasthttp.RequestCtx) { <-block }),
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = rt.Do(context.Background())
	if !errors.Is(err, fasthttp.ErrTimeout) {
		t.Errorf("Do = %v, want a timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a 50ms timeout took %v", took)
	}
}

func TestTargetOptionsValidated(t *testing.T) {
	if _, err := NewRESTTarget(RESTOptions{}); err == nil {
		t.Error("NewRESTTarget without Addr must fail")
	}
	if _, err := NewRESTTarget(RESTOptions{Addr: "no-port"}); err == nil {
		t.Error("NewRESTTarget with a bad Addr must fail")
	}
	if _, err := NewGRPCTarget(GRPCOptions{Addr: "127.0.0.1:1"}); err == nil {
		t.Error("NewGRPCTarget without Request must fail")
	}
	if _, err := NewUpstream(UpstreamOptions{Models: []string{"a/b"}}); err == nil {
		t.Error("NewUpstream with a model name holding / must fail")
	}
}

func TestRESTTargetDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	body := IrisResponseJSON("iris")
	rt := newMemRESTTarget(t, func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(body) })
	ctx := context.Background()
	for range 100 { // fill the pools
		if err := rt.Do(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The in-memory server runs in this process too, so its allocations
	// count here: the bound leaves room for it, not for the client.
	if n := testing.AllocsPerRun(500, func() { _ = rt.Do(ctx) }); n > 1 {
		t.Errorf("RESTTarget.Do with its server allocates %v times per request", n)
	}
}
