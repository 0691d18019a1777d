package runtimes

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// TestClassifyAnswers: what a runtime's error answer says about the
// replica goes by its status: every client error (4xx, or a gRPC code that
// blames the request) leaves the replica's health alone, whatever oip kind
// the status maps to.
func TestClassifyAnswers(t *testing.T) {
	grpcErr := func(c codes.Code) error { return (&GRPCClient{name: "r"}).callError(status.Error(c, "no")) }
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"HTTP 400", responseError(400, nil), outcomeOK},
		{"HTTP 401", responseError(401, nil), outcomeOK},
		{"HTTP 403", responseError(403, []byte(`{"error":"forbidden"}`)), outcomeOK},
		{"HTTP 405", responseError(405, nil), outcomeOK},
		{"HTTP 409", responseError(409, nil), outcomeOK},
		{"HTTP 415", responseError(415, nil), outcomeOK},
		{"HTTP 422", responseError(422, nil), outcomeOK},
		{"HTTP 408", responseError(408, nil), outcomeNeutral},
		{"HTTP 429", responseError(429, nil), outcomeNeutral},
		{"HTTP 499", responseError(499, nil), outcomeNeutral},
		{"HTTP 500", responseError(500, nil), outcomeFailure},
		{"HTTP 501", responseError(501, nil), outcomeOK},
		{"HTTP 502", responseError(502, nil), outcomeFailure},
		{"HTTP 503", responseError(503, nil), outcomeFailure},
		{"HTTP 504", responseError(504, nil), outcomeFailure},
		{"gRPC InvalidArgument", grpcErr(codes.InvalidArgument), outcomeOK},
		{"gRPC NotFound", grpcErr(codes.NotFound), outcomeOK},
		{"gRPC AlreadyExists", grpcErr(codes.AlreadyExists), outcomeOK},
		{"gRPC PermissionDenied", grpcErr(codes.PermissionDenied), outcomeOK},
		{"gRPC Unauthenticated", grpcErr(codes.Unauthenticated), outcomeOK},
		{"gRPC FailedPrecondition", grpcErr(codes.FailedPrecondition), outcomeOK},
		{"gRPC OutOfRange", grpcErr(codes.OutOfRange), outcomeOK},
		{"gRPC Aborted", grpcErr(codes.Aborted), outcomeOK},
		{"gRPC Unimplemented", grpcErr(codes.Unimplemented), outcomeOK},
		{"gRPC Canceled", grpcErr(codes.Canceled), outcomeNeutral},
		{"gRPC ResourceExhausted", grpcErr(codes.ResourceExhausted), outcomeNeutral},
		{"gRPC Internal", grpcErr(codes.Internal), outcomeFailure},
		{"gRPC Unknown", grpcErr(codes.Unknown), outcomeFailure},
		{"gRPC DataLoss", grpcErr(codes.DataLoss), outcomeFailure},
		{"gRPC DeadlineExceeded", grpcErr(codes.DeadlineExceeded), outcomeFailure},
		{"gRPC Unavailable", grpcErr(codes.Unavailable), outcomeFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
	// The answer keeps the runtime's message and its kind's mapping.
	err := responseError(403, []byte(`{"error":"forbidden"}`))
	if oip.Message(err) != "forbidden" || oip.KindOf(err) != oip.KindInternal {
		t.Errorf("403 answer: message %q kind %v, want the runtime's message and the kind its status maps to", oip.Message(err), oip.KindOf(err))
	}
}

// statusRuntime answers every request with code and an OIP error body.
func statusRuntime(t *testing.T, code int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(code)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":"not for you"}`)
	}}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// TestClientErrorsKeepBreakerClosed: a runtime that answers every request
// with a client error (403, which maps to no client kind) never trips the
// breaker nor ejects the replica, however many such answers it gives.
func TestClientErrorsKeepBreakerClosed(t *testing.T) {
	for _, code := range []int{403, 409, 415} {
		p, err := NewPool(PoolOptions{Model: "m", Logger: quiet}, []Client{restTo(t, statusRuntime(t, code))})
		if err != nil {
			t.Fatal(err)
		}
		p.Replicas()[0].SetReady(true)
		for range 20 {
			err := p.Do(context.Background(), func(c Client) error {
				_, err := c.Infer(context.Background(), &oip.InferRequest{ModelName: "m"})
				return err
			})
			if oip.Message(err) != "not for you" {
				t.Fatalf("HTTP %d: Do = %v, want the runtime's answer", code, err)
			}
		}
		if st := p.Stats(); st.BreakerOpens != 0 || st.Ejections != 0 || st.PanicRouted != 0 {
			t.Errorf("HTTP %d: Stats = %+v after 20 client errors, want no breaker, ejection or panic", code, st)
		}
	}
}

// TestErrorsNameNoAddress: the errors a client returns, which the gateway
// hands to its own clients, name the replica by the client's Name, never
// by its address; Detail, for logs, has the address too.
func TestErrorsNameNoAddress(t *testing.T) {
	const name = `model "m" replica 3`
	down := closedAddr(t)
	rc, err := NewRESTClient(RESTOptions{Addr: down, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := NewGRPCClient(GRPCOptions{Addr: down, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gc.Close() })
	kc, err := NewKServeV1Client(KServeV1Options{Addr: down, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	// A listener that never answers, for a timeout.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mute.Close() })
	slow, err := NewRESTClient(RESTOptions{Addr: mute.Addr().String(), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	infer := func(c Client, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := c.Infer(ctx, &oip.InferRequest{ModelName: "m", Inputs: []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: make([]byte, 4)}}})
		return err
	}
	tests := []struct {
		name       string
		err        error
		wantKind   oip.Kind
		wantDetail bool // Detail names the address
	}{
		{"REST refused", infer(rc, 10*time.Second), oip.KindUnavailable, true},
		{"gRPC refused", infer(gc, 10*time.Second), oip.KindUnavailable, true},
		{"KServe v1 refused", infer(kc, 10*time.Second), oip.KindUnavailable, true},
		{"REST timeout", infer(slow, 100*time.Millisecond), oip.KindDeadlineExceeded, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if oip.KindOf(tc.err) != tc.wantKind {
				t.Errorf("kind %v, want %v (%v)", oip.KindOf(tc.err), tc.wantKind, tc.err)
			}
			msg := oip.Message(tc.err)
			if strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, name) {
				t.Errorf("client message %q: want it to name %s and no address", msg, name)
			}
			if tc.wantKind == oip.KindUnavailable && !errors.Is(tc.err, ErrUnreachable) {
				t.Errorf("%v: want ErrUnreachable in the chain", tc.err)
			}
			if d := Detail(tc.err); tc.wantDetail && !strings.Contains(d, "127.0.0.1") {
				t.Errorf("Detail = %q, want the transport's words with the address", d)
			}
		})
	}

	// Through a pool, as the gateway calls: still no address.
	p, err := NewPool(PoolOptions{Model: "m", Logger: quiet}, []Client{rc})
	if err != nil {
		t.Fatal(err)
	}
	p.Replicas()[0].SetReady(true)
	err = p.Do(context.Background(), func(c Client) error { return infer(c, 10*time.Second) })
	if msg := oip.Message(err); strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, `model "m"`) {
		t.Errorf("pool error %q: want the model named and no address", msg)
	}
}

// TestGRPCAnswerKeepsMessage: a gRPC runtime's own error status reaches
// the caller with its message and kind.
func TestGRPCAnswerKeepsMessage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGRPCInferenceServiceServer(srv, refusingService{})
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(srv.Stop)
	c, err := NewGRPCClient(GRPCOptions{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Infer(context.Background(), &oip.InferRequest{ModelName: "m"})
	if oip.Message(err) != "not for you" || oip.KindOf(err) != oip.KindInternal || classify(err) != outcomeOK {
		t.Errorf("Infer = %v (kind %v, outcome %d), want the runtime's message, internal kind, and no count against the replica", err, oip.KindOf(err), classify(err))
	}
}

type refusingService struct {
	pb.UnimplementedGRPCInferenceServiceServer
}

func (refusingService) ModelInfer(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return nil, status.Error(codes.PermissionDenied, "not for you")
}
