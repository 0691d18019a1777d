package runtimes

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// wireService is a gRPC runtime for ModelInferRaw's tests: model "echo"
// answers the request's id and raw inputs, with the caller's user-agent
// as model_version; "block" waits for its context; "refuse" fails with a
// message the caller must get.
type wireService struct {
	pb.UnimplementedGRPCInferenceServiceServer
}

const wireRefusal = "100% refused:\nnot for \"you\" ✗"

func (wireService) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	switch req.ModelName {
	case "echo":
		md, _ := metadata.FromIncomingContext(ctx)
		return &pb.ModelInferResponse{ModelName: req.ModelName, ModelVersion: strings.Join(md.Get("user-agent"), ","), Id: req.Id, RawOutputContents: req.RawInputContents}, nil
	case "block":
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	case "refuse":
		return nil, status.Error(codes.FailedPrecondition, wireRefusal)
	}
	return nil, status.Errorf(codes.NotFound, "model %q not found", req.ModelName)
}

func startWireRuntime(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGRPCInferenceServiceServer(srv, wireService{})
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func rawInfer(t *testing.T, c *GRPCClient, ctx context.Context, model, id string) (*pb.ModelInferResponse, error) {
	t.Helper()
	b, err := proto.Marshal(&pb.ModelInferRequest{ModelName: model, Id: id, RawInputContents: [][]byte{[]byte(id)}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.ModelInferRaw(ctx, &oip.RawFrame{Bytes: b})
	if err != nil {
		return nil, err
	}
	resp := new(pb.ModelInferResponse)
	if err := proto.Unmarshal(out.Bytes, resp); err != nil {
		t.Fatalf("the answer does not decode: %v", err)
	}
	return resp, nil
}

// TestModelInferRawWire: the pass-through goes over the gateway's own
// gRPC client (its user-agent reaches the runtime), and answers come back
// as bytes.
func TestModelInferRawWire(t *testing.T) {
	c, err := NewGRPCClient(GRPCOptions{Addr: startWireRuntime(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	resp, err := rawInfer(t, c, context.Background(), "echo", "call-1")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Id != "call-1" || string(resp.RawOutputContents[0]) != "call-1" {
		t.Errorf("answer %v, want the echo of call-1", resp)
	}
	if !strings.HasPrefix(resp.ModelVersion, "infergate-grpcwire") {
		t.Errorf("the runtime saw user-agent %q, want the grpcwire client's", resp.ModelVersion)
	}
}

// TestModelInferRawErrors: through the new path a runtime's error status
// keeps its message and kind and does not count against the replica; an
// unreachable replica is ErrUnreachable, named without its address; a
// deadline is DeadlineExceeded.
func TestModelInferRawErrors(t *testing.T) {
	const name = `model "m" replica 1`
	c, err := NewGRPCClient(GRPCOptions{Addr: startWireRuntime(t), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	_, err = rawInfer(t, c, context.Background(), "refuse", "x")
	if oip.Message(err) != wireRefusal || oip.KindOf(err) != oip.KindOf(status.Error(codes.FailedPrecondition, "")) || classify(err) != outcomeOK {
		t.Errorf("refusal = %v (message %q, kind %v, outcome %d), want the runtime's message and kind, not counted", err, oip.Message(err), oip.KindOf(err), classify(err))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = rawInfer(t, c, ctx, "block", "x")
	if oip.KindOf(err) != oip.KindDeadlineExceeded {
		t.Errorf("deadline: %v (kind %v), want DeadlineExceeded", err, oip.KindOf(err))
	}

	down := closedAddr(t)
	dc, err := NewGRPCClient(GRPCOptions{Addr: down, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	_, err = rawInfer(t, dc, context.Background(), "echo", "x")
	if !errors.Is(err, ErrUnreachable) || oip.KindOf(err) != oip.KindUnavailable {
		t.Fatalf("unreachable: %v, want ErrUnreachable and KindUnavailable", err)
	}
	if msg := oip.Message(err); strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, name) {
		t.Errorf("message %q: want the replica's name and no address", msg)
	}
	if d := Detail(err); !strings.Contains(d, down) {
		t.Errorf("Detail %q: want the address", d)
	}
}
