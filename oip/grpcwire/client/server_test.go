package client

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// The test runtime's behaviours, chosen by a request's model_name.
const (
	modelEcho       = "echo"        // answers its id and raw inputs back
	modelBlock      = "block"       // waits for its context, then reports how it ended
	modelHold       = "hold"        // waits until the test releases it
	modelError      = "error"       // fails with FAILED_PRECONDITION and the request's id as message, trailers-only
	modelErrorAfter = "error-after" // the same, after sending headers
	modelBig        = "big"         // answers raw output of the size in its id
)

// testService is a gRPC runtime for the tests, served by grpc-go.
type testService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	started chan string   // a block or hold call began (its id)
	ended   chan error    // a block call's context ended, with this error
	release chan struct{} // closed to let hold calls answer

	mu         sync.Mutex
	active     int // hold calls under way
	maxActive  int
	hdrTimeout chan string // grpc-timeout seen, if set
}

func newTestService() *testService {
	return &testService{started: make(chan string, 256), ended: make(chan error, 256), release: make(chan struct{})}
}

func (s *testService) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	switch req.ModelName {
	case modelEcho:
		return &pb.ModelInferResponse{ModelName: req.ModelName, Id: req.Id, RawOutputContents: req.RawInputContents}, nil
	case modelBlock:
		s.started <- req.Id
		<-ctx.Done()
		s.ended <- ctx.Err()
		return nil, status.FromContextError(ctx.Err()).Err()
	case modelHold:
		s.mu.Lock()
		s.active++
		s.maxActive = max(s.maxActive, s.active)
		s.mu.Unlock()
		s.started <- req.Id
		select {
		case <-s.release:
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
		return &pb.ModelInferResponse{ModelName: req.ModelName, Id: req.Id}, nil
	case modelError:
		return nil, status.Error(codes.FailedPrecondition, req.Id)
	case modelErrorAfter:
		if err := grpc.SendHeader(ctx, nil); err != nil {
			return nil, err
		}
		return nil, status.Error(codes.FailedPrecondition, req.Id)
	case modelBig:
		n, err := strconv.Atoi(req.Id)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "id is not a size")
		}
		out := make([]byte, n)
		for i := range out {
			out[i] = byte(i * 7)
		}
		return &pb.ModelInferResponse{ModelName: req.ModelName, Id: req.Id, RawOutputContents: [][]byte{out}}, nil
	}
	return nil, status.Errorf(codes.NotFound, "model %q not found", req.ModelName)
}

// serveGRPC serves svc with grpc-go on ln until the test ends.
func serveGRPC(t testing.TB, ln net.Listener, svc pb.GRPCInferenceServiceServer, opts ...grpc.ServerOption) *grpc.Server {
	t.Helper()
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20), grpc.MaxSendMsgSize(64 << 20)}, opts...)
	srv := grpc.NewServer(opts...)
	pb.RegisterGRPCInferenceServiceServer(srv, svc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return srv
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startGRPC serves svc on a new loopback address.
func startGRPC(t testing.TB, svc pb.GRPCInferenceServiceServer, opts ...grpc.ServerOption) (string, *grpc.Server) {
	t.Helper()
	ln := listen(t)
	return ln.Addr().String(), serveGRPC(t, ln, svc, opts...)
}

func newClient(t testing.TB, addr string, opts Options) *Client {
	t.Helper()
	c, err := New(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const inferMethod = "/inference.GRPCInferenceService/ModelInfer"

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// infer calls model with id and raw input, decoding the answer.
func infer(ctx context.Context, t testing.TB, c *Client, model, id string, raw []byte) (*pb.ModelInferResponse, error) {
	t.Helper()
	req := &pb.ModelInferRequest{ModelName: model, Id: id}
	if raw != nil {
		req.RawInputContents = [][]byte{raw}
	}
	b, err := c.Invoke(ctx, inferMethod, marshal(t, req), nil)
	if err != nil {
		return nil, err
	}
	resp := new(pb.ModelInferResponse)
	if err := proto.Unmarshal(b, resp); err != nil {
		t.Errorf("response does not decode: %v", err)
		return nil, err
	}
	return resp, nil
}

// testCtx bounds a test's waits.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recv waits for a value from ch, failing the test at ctx's end.
func recv[T any](ctx context.Context, t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// deadlineService reports the deadline and metadata each call arrives with.
type deadlineService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	got chan time.Duration
	md  chan metadata.MD
}

func (s *deadlineService) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	d := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	if s.got != nil {
		s.got <- d
	}
	if s.md != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		s.md <- md
	}
	return &pb.ModelInferResponse{Id: req.Id}, nil
}
