package runtimes

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// traceService answers with the trace context metadata it received, and
// any x-other, as "traceparent|tracestate|x-other" in model_version.
type traceService struct {
	pb.UnimplementedGRPCInferenceServiceServer
}

func (traceService) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	got := strings.Join([]string{strings.Join(md.Get("traceparent"), ","), strings.Join(md.Get("tracestate"), ","), strings.Join(md.Get("x-other"), ",")}, "|")
	return &pb.ModelInferResponse{ModelName: req.ModelName, ModelVersion: got}, nil
}

// TestModelInferRawTraceContext: the pass-through sends the trace context
// of the outgoing metadata, and no other metadata; without any, nothing.
func TestModelInferRawTraceContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGRPCInferenceServiceServer(srv, traceService{})
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(srv.Stop)
	c, err := NewGRPCClient(GRPCOptions{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	in, err := proto.Marshal(&pb.ModelInferRequest{ModelName: "m"})
	if err != nil {
		t.Fatal(err)
	}
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tc := range []struct {
		name string
		kv   []string
		want string
	}{
		{"none", nil, "||"},
		{"traceparent", []string{"traceparent", tp, "x-other", "1"}, tp + "||"},
		{"both", []string{"traceparent", tp, "tracestate", "vendor=x"}, tp + "|vendor=x|"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if tc.kv != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tc.kv...)
			}
			out, err := c.ModelInferRaw(ctx, &oip.RawFrame{Bytes: in})
			if err != nil {
				t.Fatal(err)
			}
			var resp pb.ModelInferResponse
			if err := proto.Unmarshal(out.Bytes, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.ModelVersion != tc.want {
				t.Errorf("runtime received %q, want %q", resp.ModelVersion, tc.want)
			}
		})
	}
}
