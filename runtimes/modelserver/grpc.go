package modelserver

import (
	"context"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// GRPCService returns the server's implementation of
// inference.GRPCInferenceService.
func (s *Server) GRPCService() pb.GRPCInferenceServiceServer { return grpcService{s: s} }

type grpcService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (g grpcService) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (g grpcService) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: g.s.Ready()}, nil
}

func (g grpcService) ModelReady(_ context.Context, r *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	ok, err := g.s.ModelReady(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	return &pb.ModelReadyResponse{Ready: ok}, nil
}

func (g grpcService) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	md := g.s.Metadata()
	return oip.ServerMetadataToProto(&md), nil
}

func (g grpcService) ModelMetadata(_ context.Context, r *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	md, err := g.s.ModelMetadata(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	return oip.MetadataToProto(md), nil
}

// ModelInfer answers in the form the request used: raw_output_contents for
// a request with raw_input_contents, typed contents otherwise (so grpcurl
// users read numbers).
func (g grpcService) ModelInfer(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	g.s.activity.begin()
	var req oip.InferRequest
	defer func() { g.s.activity.end(tensorBytes(req.Inputs)) }()
	if err := oip.RequestFromProto(r, &req); err != nil {
		return nil, oip.GRPCStatus(err)
	}
	resp, err := g.s.Infer(ctx, &req)
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	return oip.ResponseToProto(resp, len(r.GetRawInputContents()) > 0), nil
}

// tensorBytes returns the bytes of ts's data: a gRPC request's size, for
// Run, without walking the message again.
func tensorBytes(ts []oip.Tensor) int {
	n := 0
	for i := range ts {
		n += len(ts[i].Data)
	}
	return n
}
