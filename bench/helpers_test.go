package bench

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"google.golang.org/grpc"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// memServer serves h on an in-memory listener until the test ends and
// returns a dialer for it.
func memServer(t testing.TB, h fasthttp.RequestHandler) func(string) (net.Conn, error) {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: h, NoDefaultServerHeader: true, NoDefaultDate: true, Logger: quietLogger{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return func(string) (net.Conn, error) { return ln.Dial() }
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// countingHandler answers 200 with body, or 500 for every failEvery-th
// request (never when failEvery is 0), and counts what it saw.
type countingHandler struct {
	seen      atomic.Int64
	failEvery int64
	body      []byte
}

func (c *countingHandler) handle(ctx *fasthttp.RequestCtx) {
	n := c.seen.Add(1)
	if c.failEvery > 0 && n%c.failEvery == 0 {
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		return
	}
	ctx.Response.SetBodyRaw(c.body)
}

func newMemRESTTarget(t testing.TB, h fasthttp.RequestHandler) *RESTTarget {
	t.Helper()
	return newMemRESTTargetOpts(t, h, RESTOptions{Body: IrisRequestJSON()})
}

// newMemRESTTargetOpts is newMemRESTTarget with opts (Addr, Dial and
// Timeout are set here).
func newMemRESTTargetOpts(t testing.TB, h fasthttp.RequestHandler, opts RESTOptions) *RESTTarget {
	t.Helper()
	opts.Addr, opts.Dial, opts.Timeout = "mem:80", memServer(t, h), 5*time.Second
	rt, err := NewRESTTarget(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// startUpstream serves a trivial runtime on loopback until the test ends
// and returns its REST and gRPC addresses.
func startUpstream(t testing.TB, models ...string) (restAddr, grpcAddr string) {
	t.Helper()
	u, err := NewUpstream(UpstreamOptions{Models: models})
	if err != nil {
		t.Fatal(err)
	}
	restLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Serve(ctx, restLn, grpcLn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("upstream: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("upstream did not stop within 10s")
		}
	})
	return restLn.Addr().String(), grpcLn.Addr().String()
}

func typedClient(t testing.TB, gt *GRPCTarget) pb.GRPCInferenceServiceClient {
	t.Helper()
	return pb.NewGRPCInferenceServiceClient(grpc.ClientConnInterface(gt.Conn()))
}
