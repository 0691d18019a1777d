package gateway

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
)

// grpcService is the gateway's inference.GRPCInferenceService.
type grpcService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	g *Gateway
}

func (s grpcService) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (s grpcService) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: s.g.Ready()}, nil
}

func (s grpcService) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	md := s.g.serverMetadata()
	return oip.ServerMetadataToProto(&md), nil
}

func (s grpcService) ModelReady(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	r, err := s.g.lookup([]byte(req.GetName()))
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	return &pb.ModelReadyResponse{Ready: r.Pool.Ready()}, nil
}

func (s grpcService) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	r, err := s.g.lookup([]byte(req.GetName()))
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	ctx, cancel := withDefaultTimeout(ctx, r.Timeout)
	defer cancel()
	md, err := r.Pool.Metadata(ctx)
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	return oip.MetadataToProto(md), nil
}

// serviceDesc is inference.GRPCInferenceService with ModelInfer taking
// and returning encoded messages (oip.RawFrame): the gateway reads only the
// model name from a request, and decodes it only to translate for a
// runtime that does not speak gRPC.
func serviceDesc() *grpc.ServiceDesc {
	desc := pb.GRPCInferenceService_ServiceDesc
	desc.Methods = append([]grpc.MethodDesc(nil), desc.Methods...)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == "ModelInfer" {
			desc.Methods[i].Handler = modelInferRawHandler
		}
	}
	return &desc
}

func modelInferRawHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(oip.RawFrame)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(grpcService)
	if interceptor == nil {
		return s.modelInferRaw(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.GRPCInferenceService_ModelInfer_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.modelInferRaw(ctx, req.(*oip.RawFrame))
	})
}

// modelInferRaw routes an encoded ModelInferRequest: as bytes to a gRPC
// replica, decoded and translated for any other, answering in the
// request's form (raw or typed contents).
func (s grpcService) modelInferRaw(ctx context.Context, in *oip.RawFrame) (*oip.RawFrame, error) {
	start := time.Now()
	name, _, err := oip.PeekModel(in.Bytes)
	if err == nil && len(name) == 0 {
		err = oip.Errorf(oip.KindInvalidArgument, "model_name is required")
	}
	if err != nil {
		s.g.metrics.requests.WithLabelValues("", "grpc", oip.GRPCCode(err).String()).Inc()
		return nil, oip.GRPCStatus(err)
	}
	r, err := s.g.lookup(name)
	if err != nil {
		s.g.metrics.requests.WithLabelValues("", "grpc", status.Code(oip.GRPCStatus(err)).String()).Inc()
		return nil, oip.GRPCStatus(err)
	}
	resp, err := s.infer(ctx, r, in)
	code := codes.OK
	if err != nil {
		err = oip.GRPCStatus(err)
		code = status.Code(err)
	}
	r.grpcRequests.with(code.String()).Inc()
	r.gatewayGRPC.Observe(time.Since(start).Seconds())
	return resp, err
}

func (s grpcService) infer(ctx context.Context, r *route, in *oip.RawFrame) (*oip.RawFrame, error) {
	ctx, cancel := withDefaultTimeout(ctx, r.Timeout)
	defer cancel()
	release, err := r.activateCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if r.Batcher != nil {
		return s.batched(ctx, r, in)
	}
	var (
		resp    *oip.RawFrame
		decoded *decodedFrame
	)
	err = r.Pool.Do(ctx, func(cl runtimes.Client) error {
		t0 := time.Now()
		var err error
		if gc, ok := cl.(*runtimes.GRPCClient); ok {
			resp, err = gc.ModelInferRaw(ctx, in)
			s.g.countUpstream(r, t0, err, 0)
			return err
		}
		if decoded == nil {
			if decoded, err = decodeFrame(in); err != nil {
				return err
			}
		}
		out, err := cl.Infer(ctx, &decoded.req)
		s.g.countUpstream(r, t0, err, 0)
		if err != nil {
			return err
		}
		resp, err = decoded.answer(out)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// decodedFrame is a ModelInferRequest decoded for a batcher or a runtime
// that does not speak gRPC, remembering the form its answer must take.
type decodedFrame struct {
	req oip.InferRequest
	raw bool // the request used raw_input_contents
}

func decodeFrame(in *oip.RawFrame) (*decodedFrame, error) {
	var msg pb.ModelInferRequest
	if err := proto.Unmarshal(in.Bytes, &msg); err != nil {
		return nil, oip.Errorf(oip.KindInvalidArgument, "malformed ModelInferRequest: %v", err)
	}
	d := &decodedFrame{raw: len(msg.GetRawInputContents()) > 0}
	if err := oip.RequestFromProto(&msg, &d.req); err != nil {
		return nil, err
	}
	return d, nil
}

// answer encodes resp in the request's form (raw or typed contents).
func (d *decodedFrame) answer(resp *oip.InferResponse) (*oip.RawFrame, error) {
	b, err := proto.Marshal(oip.ResponseToProto(resp, d.raw))
	if err != nil {
		return nil, oip.Errorf(oip.KindInternal, "encoding response: %v", err)
	}
	return &oip.RawFrame{Bytes: b}, nil
}

// batched decodes a ModelInferRequest and hands it to the model's batcher,
// answering in the request's form (raw or typed contents).
func (s grpcService) batched(ctx context.Context, r *route, in *oip.RawFrame) (*oip.RawFrame, error) {
	d, err := decodeFrame(in)
	if err != nil {
		return nil, err
	}
	resp, err := r.Batcher.Submit(ctx, &d.req)
	if err != nil {
		return nil, err
	}
	return d.answer(resp)
}

// withDefaultTimeout gives ctx the route's timeout when the client sent no
// grpc-timeout.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
