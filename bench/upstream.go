package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// The iris-shaped model the trivial runtime serves: four FP32 features in,
// three FP32 class probabilities out.
var (
	irisInput  = []float32{5.1, 3.5, 1.4, 0.2}
	irisOutput = []float32{0.99877673, 0.001223306, 1.0885588e-15}
)

// IrisRequestJSON returns an OIP REST infer request body for the
// iris-shaped model, as JSON.
func IrisRequestJSON() []byte {
	return []byte(`{"id":"bench","inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`)
}

// IrisResponseJSON returns the body the trivial runtime answers to an
// infer request for model.
func IrisResponseJSON(model string) []byte {
	return []byte(`{"model_name":` + strconv.Quote(model) + `,"model_version":"1","id":"bench","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.99877673,0.001223306,1.0885588e-15]}]}`)
}

// IrisRequestProto returns a gRPC ModelInferRequest for the iris-shaped
// model, with its tensor in raw_input_contents.
func IrisRequestProto(model string) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName: model,
		Id:        "bench",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}},
		},
		RawInputContents: [][]byte{float32sLE(irisInput)},
	}
}

// IrisResponseProto returns the ModelInferResponse the trivial runtime
// answers for model.
func IrisResponseProto(model string) *pb.ModelInferResponse {
	return &pb.ModelInferResponse{
		ModelName:    model,
		ModelVersion: "1",
		Id:           "bench",
		Outputs: []*pb.ModelInferResponse_InferOutputTensor{
			{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 3}},
		},
		RawOutputContents: [][]byte{float32sLE(irisOutput)},
	}
}

func float32sLE(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// UpstreamOptions configures an Upstream. Zero fields take the documented
// defaults.
type UpstreamOptions struct {
	// Models are the model names served (default: "iris").
	Models []string
	// IdleTimeout closes idle REST keep-alive connections (default 5m).
	IdleTimeout time.Duration
}

// Upstream is a trivial OIP runtime for proxy comparisons: it answers every
// infer request for a model it serves with one fixed, valid, iris-shaped
// response, without decoding the request, over REST (fasthttp) and gRPC. It
// also answers the health, readiness and metadata endpoints, so a gateway
// takes it for a real runtime. It is safe for concurrent use.
type Upstream struct {
	opts   UpstreamOptions
	models map[string]*upstreamModel
}

type upstreamModel struct {
	inferJSON, metaJSON []byte
	inferProto          *pb.ModelInferResponse
	metaProto           *pb.ModelMetadataResponse
}

var serverMetaJSON = []byte(`{"name":"infergate-bench-upstream","version":"1","extensions":[]}`)

// NewUpstream returns an upstream; it starts nothing until Serve.
func NewUpstream(opts UpstreamOptions) (*Upstream, error) {
	if len(opts.Models) == 0 {
		opts.Models = []string{"iris"}
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	u := &Upstream{opts: opts, models: make(map[string]*upstreamModel, len(opts.Models))}
	for _, name := range opts.Models {
		if name == "" || bytes.ContainsAny([]byte(name), "/ ") {
			return nil, fmt.Errorf("bench: upstream model name %q is not a path segment", name)
		}
		u.models[name] = &upstreamModel{
			inferJSON: IrisResponseJSON(name),
			metaJSON: []byte(`{"name":` + strconv.Quote(name) + `,"versions":["1"],"platform":"bench",` +
				`"inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],` +
				`"outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,3]}]}`),
			inferProto: IrisResponseProto(name),
			metaProto: &pb.ModelMetadataResponse{
				Name: name, Versions: []string{"1"}, Platform: "bench",
				Inputs:  []*pb.ModelMetadataResponse_TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}}},
				Outputs: []*pb.ModelMetadataResponse_TensorMetadata{{Name: "probabilities", Datatype: "FP32", Shape: []int64{-1, 3}}},
			},
		}
	}
	return u, nil
}

var (
	pathV2Models = []byte("/v2/models/")
	suffixInfer  = []byte("/infer")
	suffixReady  = []byte("/ready")
)

// HandleREST is the upstream's fasthttp handler: /v2, /v2/health/{live,ready},
// and /v2/models/{m}[/ready|/infer] (versions are not served).
func (u *Upstream) HandleREST(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch string(path) {
	case "/v2/health/live", "/v2/health/ready":
		return
	case "/v2", "/v2/":
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(serverMetaJSON)
		return
	}
	rest, ok := bytes.CutPrefix(path, pathV2Models)
	if !ok {
		restError(ctx, fasthttp.StatusNotFound, "no OIP endpoint here")
		return
	}
	var suffix []byte
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		rest, suffix = rest[:i], rest[i:]
	}
	m := u.models[string(rest)]
	if m == nil {
		restError(ctx, fasthttp.StatusNotFound, "model not found")
		return
	}
	switch {
	case bytes.Equal(suffix, suffixInfer):
		if !ctx.IsPost() || len(ctx.Request.Body()) == 0 {
			restError(ctx, fasthttp.StatusBadRequest, "POST an infer request body")
			return
		}
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(m.inferJSON)
	case bytes.Equal(suffix, suffixReady):
	case len(suffix) == 0:
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(m.metaJSON)
	default:
		restError(ctx, fasthttp.StatusNotFound, "no OIP endpoint here")
	}
}

func restError(ctx *fasthttp.RequestCtx, code int, msg string) {
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"error":` + strconv.Quote(msg) + `}`)
}

// GRPCService returns the upstream's inference.GRPCInferenceService.
func (u *Upstream) GRPCService() pb.GRPCInferenceServiceServer { return upstreamGRPC{u: u} }

type upstreamGRPC struct {
	pb.UnimplementedGRPCInferenceServiceServer
	u *Upstream
}

func (g upstreamGRPC) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

func (g upstreamGRPC) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: true}, nil
}

func (g upstreamGRPC) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: "infergate-bench-upstream", Version: "1"}, nil
}

func (g upstreamGRPC) model(name string) (*upstreamModel, error) {
	if m := g.u.models[name]; m != nil {
		return m, nil
	}
	return nil, status.Errorf(codes.NotFound, "model %q not found", name)
}

func (g upstreamGRPC) ModelReady(_ context.Context, r *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	_, err := g.model(r.GetName())
	return &pb.ModelReadyResponse{Ready: err == nil}, nil
}

func (g upstreamGRPC) ModelMetadata(_ context.Context, r *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	m, err := g.model(r.GetName())
	if err != nil {
		return nil, err
	}
	return m.metaProto, nil
}

// ModelInfer answers the fixed response. The response message is shared by
// every call: gRPC only reads it.
func (g upstreamGRPC) ModelInfer(_ context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	m, err := g.model(r.GetModelName())
	if err != nil {
		return nil, err
	}
	if len(r.GetInputs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "the request has no input")
	}
	return m.inferProto, nil
}

// Serve runs the REST server on restLn and the gRPC server on grpcLn
// (either may be nil) until ctx is done, then stops them and returns nil.
// It returns early with an error if a server fails.
func (u *Upstream) Serve(ctx context.Context, restLn, grpcLn net.Listener) error {
	eg, ctx := errgroup.WithContext(ctx)
	if restLn != nil {
		srv := &fasthttp.Server{
			Handler:               u.HandleREST,
			Name:                  "bench-upstream",
			IdleTimeout:           u.opts.IdleTimeout,
			NoDefaultServerHeader: true,
			NoDefaultDate:         true,
			CloseOnShutdown:       true,
		}
		eg.Go(func() error {
			if err := srv.Serve(restLn); err != nil {
				return fmt.Errorf("bench: upstream REST: %w", err)
			}
			return nil
		})
		eg.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.ShutdownWithContext(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return nil
		})
	}
	if grpcLn != nil {
		srv := grpc.NewServer()
		pb.RegisterGRPCInferenceServiceServer(srv, u.GRPCService())
		eg.Go(func() error {
			if err := srv.Serve(grpcLn); err != nil {
				return fmt.Errorf("bench: upstream gRPC: %w", err)
			}
			return nil
		})
		eg.Go(func() error {
			<-ctx.Done()
			srv.Stop()
			return nil
		})
	}
	return eg.Wait()
}
