package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// testWait bounds every wait of these tests.
const testWait = 10 * time.Second

// inferService is the inference service as the gateway registers it:
// ModelInfer is a stream handler on encoded messages (oip.RawFrame), the
// other methods are generated unary handlers. hooks, when set, lets a test
// take over ModelInfer.
type inferService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	infer func(ss grpc.ServerStream) error
}

func (s *inferService) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ModelMetadata echoes the request's metadata and peer in the answer's
// headers and trailers, and its deadline in the name.
func (s *inferService) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no peer")
	}
	if err := grpc.SetHeader(ctx, metadata.Pairs("x-echo", strings.Join(md.Get("x-in"), ","), "x-peer", p.Addr.String())); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trailer-bin", strings.Join(md.Get("x-in-bin"), ","))); err != nil {
		return nil, err
	}
	name := req.GetName()
	if d, ok := ctx.Deadline(); ok {
		name += fmt.Sprintf(" deadline in %v", time.Until(d).Round(time.Hour))
	}
	if m, ok := grpc.Method(ctx); !ok || m != pb.GRPCInferenceService_ModelMetadata_FullMethodName {
		return nil, status.Errorf(codes.Internal, "method %q", m)
	}
	return &pb.ModelMetadataResponse{Name: name}, nil
}

func (s *inferService) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	if req.GetName() == "details" {
		st, err := status.New(codes.FailedPrecondition, "with details").WithDetails(&pb.ModelReadyResponse{Ready: true})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	return nil, status.Error(codes.NotFound, "no model "+req.GetName()+" \x00%")
}

// serviceDesc is the gateway's serviceDesc (gateway/grpc.go).
func serviceDesc() *grpc.ServiceDesc {
	desc := pb.GRPCInferenceService_ServiceDesc
	desc.Methods = slices.DeleteFunc(slices.Clone(desc.Methods), func(m grpc.MethodDesc) bool {
		return m.MethodName == "ModelInfer"
	})
	desc.Streams = append(slices.Clone(desc.Streams), grpc.StreamDesc{StreamName: "ModelInfer", Handler: modelInferStream})
	return &desc
}

// modelInferStream answers a ModelInferRequest with a ModelInferResponse
// naming its model, and its raw input contents echoed.
func modelInferStream(srv any, ss grpc.ServerStream) error {
	s := srv.(*inferService)
	if s.infer != nil {
		return s.infer(ss)
	}
	return echoInfer(ss)
}

func echoInfer(ss grpc.ServerStream) error {
	in := new(oip.RawFrame)
	if err := ss.RecvMsg(in); err != nil {
		return err
	}
	var req pb.ModelInferRequest
	if err := proto.Unmarshal(in.Bytes, &req); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	b, err := proto.Marshal(&pb.ModelInferResponse{ModelName: req.GetModelName(), RawOutputContents: req.GetRawInputContents()})
	if err != nil {
		return err
	}
	return ss.SendMsg(&oip.RawFrame{Bytes: b})
}

// serve starts a Server with opts and the inference service on 127.0.0.1,
// and returns it and its address. It is stopped when the test ends.
func serve(t testing.TB, opts Options, svc *inferService) (*Server, string) {
	t.Helper()
	if opts.Codec == nil {
		opts.Codec = oip.Codec{}
	}
	s := New(opts)
	if svc == nil {
		svc = &inferService{}
	}
	s.RegisterService(serviceDesc(), svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

// inferRaw calls ModelInfer with encoded messages, as the gateway's own
// client to runtimes does.
func inferRaw(ctx context.Context, cc *grpc.ClientConn, req *pb.ModelInferRequest, opts ...grpc.CallOption) (*pb.ModelInferResponse, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	out := new(oip.RawFrame)
	opts = append([]grpc.CallOption{grpc.ForceCodecV2(oip.Codec{})}, opts...)
	if err := cc.Invoke(ctx, pb.GRPCInferenceService_ModelInfer_FullMethodName, &oip.RawFrame{Bytes: b}, out, opts...); err != nil {
		return nil, err
	}
	var resp pb.ModelInferResponse
	if err := proto.Unmarshal(out.Bytes, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want code %v", got, err, want)
	}
}

func TestUnaryAndStreamHandlers(t *testing.T) {
	_, addr := serve(t, Options{}, nil)
	cc := dial(t, addr)
	ctx := testContext(t)
	client := pb.NewGRPCInferenceServiceClient(cc)

	live, err := client.ServerLive(ctx, &pb.ServerLiveRequest{})
	if err != nil || !live.GetLive() {
		t.Fatalf("ServerLive = %v, %v", live, err)
	}
	_, err = client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "m"})
	wantCode(t, err, codes.NotFound)
	if got := status.Convert(err).Message(); got != "no model m \x00%" {
		t.Errorf("message %q: not decoded as sent", got)
	}
	_, err = client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "details"})
	wantCode(t, err, codes.FailedPrecondition)
	if d := status.Convert(err).Details(); len(d) != 1 || !d[0].(*pb.ModelReadyResponse).GetReady() {
		t.Errorf("status details %v, want the ModelReadyResponse sent", d)
	}
	_, err = client.ServerReady(ctx, &pb.ServerReadyRequest{})
	wantCode(t, err, codes.Unimplemented)

	raw := []byte("tensor bytes")
	for i := range 3 {
		// Typed messages from the generated client, and encoded ones.
		resp, err := client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "typed", RawInputContents: [][]byte{raw}})
		if err != nil || resp.GetModelName() != "typed" || !bytes.Equal(resp.GetRawOutputContents()[0], raw) {
			t.Fatalf("call %d: typed ModelInfer = %v, %v", i, resp, err)
		}
		resp, err = inferRaw(ctx, cc, &pb.ModelInferRequest{ModelName: "raw", RawInputContents: [][]byte{raw}})
		if err != nil || resp.GetModelName() != "raw" || !bytes.Equal(resp.GetRawOutputContents()[0], raw) {
			t.Fatalf("call %d: raw ModelInfer = %v, %v", i, resp, err)
		}
	}

	// gzip-compressed requests are read.
	resp, err := client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "gzip", RawInputContents: [][]byte{bytes.Repeat(raw, 100)}}, grpc.UseCompressor(gzip.Name))
	if err != nil || resp.GetModelName() != "gzip" || len(resp.GetRawOutputContents()[0]) != 100*len(raw) {
		t.Fatalf("gzip ModelInfer = %v, %v", resp, err)
	}

	err = cc.Invoke(ctx, "/inference.GRPCInferenceService/Nope", &pb.ServerLiveRequest{}, new(pb.ServerLiveResponse))
	wantCode(t, err, codes.Unimplemented)
	err = cc.Invoke(ctx, "/no.Service/Nope", &pb.ServerLiveRequest{}, new(pb.ServerLiveResponse))
	wantCode(t, err, codes.Unimplemented)
	if got := status.Convert(err).Message(); got != "unknown service no.Service" {
		t.Errorf("unknown service: message %q", got)
	}
}

func TestReflectionAndHealth(t *testing.T) {
	s := New(Options{})
	s.RegisterService(serviceDesc(), &inferService{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Stop()
	cc := dial(t, ln.Addr().String())
	ctx := testContext(t)

	rc, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range r.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	slices.Sort(names)
	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "inference.GRPCInferenceService"}
	if !slices.Equal(names, want) {
		t.Errorf("reflection lists %v, want %v", names, want)
	}
	// A second request on the same stream: the handler reads on.
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "inference.GRPCInferenceService"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := rc.Recv(); err != nil || len(r.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("file containing symbol: %v, %v", r, err)
	}
	rc.CloseSend()
	if _, err := rc.Recv(); err != io.EOF {
		t.Fatalf("reflection stream ends with %v", err)
	}

	hc := healthpb.NewHealthClient(cc)
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check = %v, %v", r, err)
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "other"})
	wantCode(t, err, codes.NotFound)
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first = %v, %v", r, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch update = %v, %v", r, err)
	}
}

func TestMetadataHeadersTrailersDeadline(t *testing.T) {
	_, addr := serve(t, Options{}, nil)
	cc := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Hour)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-in", "a", "x-in", "b", "x-in-bin", "\x00\xffbin")
	var header, trailer metadata.MD
	resp, err := pb.NewGRPCInferenceServiceClient(cc).ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "m"}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.GetName(), "m deadline in 5h0m0s"; got != want {
		t.Errorf("name %q, want %q: the grpc-timeout is the handler's deadline", got, want)
	}
	if got := header.Get("x-echo"); !slices.Equal(got, []string{"a,b"}) {
		t.Errorf("header x-echo = %q", got)
	}
	if got := header.Get("x-peer"); len(got) != 1 || !strings.HasPrefix(got[0], "127.0.0.1:") {
		t.Errorf("header x-peer = %q", got)
	}
	if got := trailer.Get("x-trailer-bin"); !slices.Equal(got, []string{"\x00\xffbin"}) {
		t.Errorf("trailer x-trailer-bin = %q", got)
	}
}

func TestClientCancelCancelsHandler(t *testing.T) {
	entered, ended := make(chan struct{}), make(chan error, 1)
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		close(entered)
		<-ss.Context().Done()
		ended <- ss.Context().Err()
		return ss.Context().Err()
	}}
	_, addr := serve(t, Options{}, svc)
	cc := dial(t, addr)
	ctx, cancel := context.WithCancel(testContext(t))
	errc := make(chan error, 1)
	go func() {
		_, err := inferRaw(ctx, cc, &pb.ModelInferRequest{ModelName: "m"})
		errc <- err
	}()
	<-entered
	cancel()
	wantCode(t, <-errc, codes.Canceled)
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler's context ended with %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("the handler's context was not cancelled")
	}
}

func TestMessageSizeLimits(t *testing.T) {
	_, addr := serve(t, Options{MaxRecvMsgSize: 1 << 10, MaxSendMsgSize: 2 << 10}, nil)
	cc := dial(t, addr)
	ctx := testContext(t)
	_, err := inferRaw(ctx, cc, &pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{make([]byte, 2<<10)}})
	wantCode(t, err, codes.ResourceExhausted)
	// Under the receive limit, over the send one (the answer echoes the
	// input, twice over with the client's own send).
	_, err = inferRaw(ctx, cc, &pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{make([]byte, 900)}})
	if err != nil {
		t.Fatal(err)
	}
	// The connection still serves.
	if _, err := pb.NewGRPCInferenceServiceClient(cc).ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestSendLimit(t *testing.T) {
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		in := new(oip.RawFrame)
		if err := ss.RecvMsg(in); err != nil {
			return err
		}
		return ss.SendMsg(&oip.RawFrame{Bytes: make([]byte, 4<<10)})
	}}
	_, addr := serve(t, Options{MaxSendMsgSize: 2 << 10}, svc)
	_, err := inferRaw(testContext(t), dial(t, addr), &pb.ModelInferRequest{ModelName: "m"})
	wantCode(t, err, codes.ResourceExhausted)
}

func TestLargeMessagesBothWays(t *testing.T) {
	_, addr := serve(t, Options{MaxRecvMsgSize: 8 << 20, MaxSendMsgSize: 8 << 20, InitialWindowSize: 64 << 10, InitialConnWindowSize: 1 << 20}, nil)
	cc := dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20), grpc.MaxCallSendMsgSize(8<<20)))
	ctx := testContext(t)
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			resp, err := inferRaw(ctx, cc, &pb.ModelInferRequest{ModelName: fmt.Sprint(i), RawInputContents: [][]byte{big}})
			if err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(resp.GetRawOutputContents()[0], big) || resp.GetModelName() != fmt.Sprint(i) {
				t.Errorf("call %d: the 4 MiB answer differs", i)
			}
		})
	}
	wg.Wait()
}

func TestMaxConcurrentStreams(t *testing.T) {
	var running, most atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- struct{}{}
		<-release
		return echoInfer(ss)
	}}
	_, addr := serve(t, Options{MaxConcurrentStreams: 2}, svc)
	cc := dial(t, addr)
	ctx := testContext(t)
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := inferRaw(ctx, cc, &pb.ModelInferRequest{ModelName: "m"})
			errc <- err
		}()
	}
	<-entered
	<-entered
	// The third call waits for one of the first two: the client honours
	// the advertised limit (refusals beyond it are tested with a raw
	// client).
	close(release)
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if m := most.Load(); m != 2 {
		t.Errorf("%d handlers ran at once, want 2", m)
	}
}

func TestTapRefusesBeforeReading(t *testing.T) {
	var handled atomic.Bool
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		handled.Store(true)
		return echoInfer(ss)
	}}
	var tapped atomic.Int32
	opts := Options{InTapHandle: func(ctx context.Context, info *tap.Info) (context.Context, error) {
		tapped.Add(1)
		if info.FullMethodName != pb.GRPCInferenceService_ModelInfer_FullMethodName {
			return ctx, nil
		}
		switch info.Header.Get("x-refuse")[0] {
		case "status":
			return nil, status.Error(codes.ResourceExhausted, "no room")
		case "plain":
			return nil, errors.New("go away")
		}
		return ctx, nil
	}}
	_, addr := serve(t, opts, svc)
	cc := dial(t, addr)
	ctx := testContext(t)
	big := &pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{make([]byte, 1<<20)}}
	_, err := inferRaw(metadata.AppendToOutgoingContext(ctx, "x-refuse", "status"), cc, big)
	wantCode(t, err, codes.ResourceExhausted)
	_, err = inferRaw(metadata.AppendToOutgoingContext(ctx, "x-refuse", "plain"), cc, big)
	wantCode(t, err, codes.PermissionDenied)
	if handled.Load() {
		t.Error("a refused call reached its handler")
	}
	if _, err := inferRaw(metadata.AppendToOutgoingContext(ctx, "x-refuse", "no"), cc, big); err != nil {
		t.Fatal(err)
	}
	if !handled.Load() || tapped.Load() != 3 {
		t.Errorf("handled %v, tapped %d times", handled.Load(), tapped.Load())
	}
}

// tapContext is a context a tap returns, that a handler ends itself, as
// the gateway's recvContext does.
type tapContext struct {
	context.Context
	cancel context.CancelFunc
}

type tapContextKey struct{}

func (c *tapContext) Value(k any) any {
	if k == (tapContextKey{}) {
		return c
	}
	return c.Context.Value(k)
}

func TestRecvMsgFollowsTapContext(t *testing.T) {
	got := make(chan error, 1)
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		tc, ok := ss.Context().Value(tapContextKey{}).(*tapContext)
		if !ok {
			return status.Error(codes.Internal, "the stream's context is not the tap's")
		}
		tc.cancel() // as recvInfer's timer does for a stalled message
		err := ss.RecvMsg(new(oip.RawFrame))
		got <- err
		return err
	}}
	opts := Options{InTapHandle: func(ctx context.Context, info *tap.Info) (context.Context, error) {
		c, cancel := context.WithCancel(ctx)
		return &tapContext{Context: c, cancel: cancel}, nil
	}}
	_, addr := serve(t, opts, svc)
	cc := dial(t, addr)
	ctx := testContext(t)
	// A client stream that sends no message: the read can only end with
	// the tap's context.
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, pb.GRPCInferenceService_ModelInfer_FullMethodName, grpc.ForceCodecV2(oip.Codec{}))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, <-got, codes.Canceled)
	wantCode(t, cs.RecvMsg(new(oip.RawFrame)), codes.Canceled)
}

// TestWindowBeforeRecvMsg shows that a call whose handler has not asked
// for its message holds no more of it than its stream's window, and that
// the whole message comes once the handler reads it.
func TestWindowBeforeRecvMsg(t *testing.T) {
	const window = 64 << 10
	var mu sync.Mutex
	most, full := 0, make(chan struct{})
	testHookData = func(st *stream, buffered int) {
		mu.Lock()
		defer mu.Unlock()
		if buffered > most {
			most = buffered
			if most == window {
				close(full)
			}
		}
	}
	defer func() { testHookData = nil }()
	read := make(chan struct{})
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		<-read
		return echoInfer(ss)
	}}
	_, addr := serve(t, Options{InitialWindowSize: window, MaxRecvMsgSize: 4 << 20, MaxSendMsgSize: 4 << 20}, svc)
	cc := dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20)))
	msg := make([]byte, 1<<20)
	errc := make(chan error, 1)
	go func() {
		resp, err := inferRaw(testContext(t), cc, &pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{msg}})
		if err == nil && len(resp.GetRawOutputContents()[0]) != len(msg) {
			err = errors.New("the answer is short")
		}
		errc <- err
	}()
	select {
	case <-full:
	case <-time.After(testWait):
		t.Fatal("the client did not fill the stream's window")
	}
	mu.Lock()
	before := most
	mu.Unlock()
	close(read)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if before > window {
		t.Errorf("%d bytes were buffered before RecvMsg, more than the %d-byte window", before, window)
	}
	mu.Lock()
	defer mu.Unlock()
	if most < len(msg) {
		t.Errorf("at most %d bytes were buffered: the window did not open to the message", most)
	}
}

func TestGracefulStopWaitsForCalls(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		close(entered)
		<-release
		return echoInfer(ss)
	}}
	s := New(Options{Codec: oip.Codec{}})
	s.RegisterService(serviceDesc(), svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	cc := dial(t, ln.Addr().String())
	errc := make(chan error, 1)
	go func() {
		_, err := inferRaw(testContext(t), cc, &pb.ModelInferRequest{ModelName: "m"})
		errc <- err
	}()
	<-entered
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v before GracefulStop finished", err)
	case <-stopped:
		t.Fatal("GracefulStop returned with a call in flight")
	default:
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatalf("the call in flight failed: %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(testWait):
		t.Fatal("GracefulStop did not return")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	if err := s.Serve(ln); !errors.Is(err, grpc.ErrServerStopped) {
		t.Fatalf("Serve after GracefulStop = %v", err)
	}
}

func TestStopCancelsCalls(t *testing.T) {
	entered, ended := make(chan struct{}), make(chan error, 1)
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		close(entered)
		<-ss.Context().Done()
		ended <- ss.Context().Err()
		return nil
	}}
	s, addr := serve(t, Options{}, svc)
	cc := dial(t, addr)
	errc := make(chan error, 1)
	go func() {
		_, err := inferRaw(testContext(t), cc, &pb.ModelInferRequest{ModelName: "m"})
		errc <- err
	}()
	<-entered
	s.Stop()
	if err := <-ended; err == nil {
		t.Fatal("the handler's context was not ended")
	}
	wantCode(t, <-errc, codes.Unavailable)
}

// TestNextMessageSize: a handler learns the length its call's message
// declares before the message is read (the stream's window stays shut
// meanwhile), and RecvMsg then reads it whole; a call that sends no
// message gets io.EOF.
func TestNextMessageSize(t *testing.T) {
	type sizer interface {
		NextMessageSize() (int, bool, error)
	}
	const window = 64 << 10
	var mu sync.Mutex
	most := 0
	testHookData = func(st *stream, buffered int) {
		mu.Lock()
		defer mu.Unlock()
		most = max(most, buffered)
	}
	defer func() { testHookData = nil }()
	sizes := make(chan int, 2)
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		n, compressed, err := ss.(sizer).NextMessageSize()
		if err != nil {
			sizes <- -1
			return err
		}
		mu.Lock()
		before := most
		mu.Unlock()
		if compressed || before > window {
			sizes <- -2
		} else {
			sizes <- n
		}
		return echoInfer(ss)
	}}
	_, addr := serve(t, Options{InitialWindowSize: window, MaxRecvMsgSize: 4 << 20, MaxSendMsgSize: 4 << 20}, svc)
	cc := dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20)))
	req := &pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{make([]byte, 1<<20)}}
	resp, err := inferRaw(testContext(t), cc, req)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := <-sizes, proto.Size(req); got != want {
		t.Errorf("NextMessageSize = %d, want the encoded request's %d bytes, read before the window opened", got, want)
	}
	if len(resp.GetRawOutputContents()[0]) != 1<<20 {
		t.Error("RecvMsg after NextMessageSize did not read the whole message")
	}

	cs, err := cc.NewStream(testContext(t), &grpc.StreamDesc{ClientStreams: true}, pb.GRPCInferenceService_ModelInfer_FullMethodName, grpc.ForceCodecV2(oip.Codec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if got := <-sizes; got != -1 {
		t.Errorf("a call with no message: NextMessageSize gave %d, want an error", got)
	}
	if err := cs.RecvMsg(new(oip.RawFrame)); status.Code(err) == codes.OK {
		t.Error("a call with no message was answered OK")
	}
}

// TestWorkersShrinkWhenIdle: the goroutines that ran calls under load
// exit once no call has come for a while, so that a gateway's goroutines
// go back to their idle count after a burst.
func TestWorkersShrinkWhenIdle(t *testing.T) {
	s, addr := serve(t, Options{WorkerIdle: 20 * time.Millisecond}, &inferService{infer: echoInfer})
	cc := dial(t, addr)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := inferRaw(testContext(t), cc, &pb.ModelInferRequest{ModelName: "m"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if s.workers.Load() == 0 {
		t.Fatal("no worker ran the calls")
	}
	deadline := time.Now().Add(testWait)
	for s.workers.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still wait for calls %v after the last one", s.workers.Load(), testWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
