package runtimes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/oip"
	wireclient "github.com/infergate/infergate/oip/grpcwire/client"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// GRPCOptions configures a GRPCClient. Zero fields take the documented
// defaults.
type GRPCOptions struct {
	// Addr is the runtime's host:port. Required.
	Addr string
	// Name is how the client's errors, which may reach the gateway's
	// clients, name the replica: `model "iris" replica 0`, say (default
	// "runtime"). They never name Addr; Detail adds what a transport
	// failure said about it, for logs.
	Name string
	// MaxMessageSize bounds messages in both directions (default 64 MiB).
	MaxMessageSize int
	// TLS makes both of the client's connections (grpc-go's and the
	// pass-through's) TLS, with ALPN h2: a grpcs:// endpoint.
	TLS bool
	// TLSConfig configures TLS when TLS is set, and is ignored otherwise.
	// The client uses a copy, with ServerName set to Addr's host when
	// empty. Nil means the system's roots.
	TLSConfig *tls.Config
}

// GRPCClient is a Client for a runtime speaking OIP over gRPC. The
// pass-through, ModelInferRaw, goes over the gateway's own lean unary
// client (oip/grpcwire/client); the other calls over one grpc-go
// connection. It is safe for concurrent use.
type GRPCClient struct {
	addr string
	name string // how errors name the replica
	conn *grpc.ClientConn
	api  pb.GRPCInferenceServiceClient
	wire *wireclient.Client // ModelInferRaw
}

// NewGRPCClient returns a client for the runtime at opts.Addr. It connects
// lazily.
func NewGRPCClient(opts GRPCOptions) (*GRPCClient, error) {
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("runtimes: GRPCOptions.Addr %q: %w", opts.Addr, err)
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 64 << 20
	}
	creds := insecure.NewCredentials()
	var wireTLS *tls.Config
	if opts.TLS {
		wireTLS = clientTLS(opts.TLSConfig, opts.Addr, "h2")
		creds = credentials.NewTLS(wireTLS)
	}
	conn, err := grpc.NewClient("passthrough:///"+opts.Addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(opts.MaxMessageSize),
			grpc.MaxCallSendMsgSize(opts.MaxMessageSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("runtimes: grpc client for %s: %w", opts.Addr, err)
	}
	wire, err := wireclient.New(opts.Addr, wireclient.Options{MaxMessageSize: opts.MaxMessageSize, TLSConfig: wireTLS})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("runtimes: grpc client for %s: %w", opts.Addr, err)
	}
	if opts.Name == "" {
		opts.Name = defaultReplicaName
	}
	return &GRPCClient{addr: opts.Addr, name: opts.Name, conn: conn, api: pb.NewGRPCInferenceServiceClient(conn), wire: wire}, nil
}

// Addr returns the replica's host:port.
func (c *GRPCClient) Addr() string { return c.addr }

// Name returns how the client's errors name the replica.
func (c *GRPCClient) Name() string { return c.name }

// Close closes both clients' connections (calls under way on the
// pass-through finish first).
func (c *GRPCClient) Close() error { return errors.Join(c.wire.Close(), c.conn.Close()) }

// modelInferProto sends a decoded gRPC request. Errors carry the runtime's
// status code as an *oip.Error kind.
func (c *GRPCClient) modelInferProto(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	resp, err := c.api.ModelInfer(ctx, req)
	if err != nil {
		return nil, c.callError(err)
	}
	return resp, nil
}

// modelInferMethod is the full gRPC method name of ModelInfer.
const modelInferMethod = "/inference.GRPCInferenceService/ModelInfer"

// ModelInferRaw sends an encoded ModelInferRequest and returns the encoded
// response, decoding neither: the gateway's gRPC pass-through. Of ctx's
// outgoing metadata (metadata.AppendToOutgoingContext) it sends the W3C
// trace context, traceparent and tracestate, and nothing else: the lean
// client is not grpc-go, which would send all of it.
func (c *GRPCClient) ModelInferRaw(ctx context.Context, req *oip.RawFrame) (*oip.RawFrame, error) {
	b, err := c.wire.Invoke(ctx, modelInferMethod, req.Bytes, traceMetadata(ctx))
	if err != nil {
		return nil, c.callError(err)
	}
	return &oip.RawFrame{Bytes: b}, nil
}

// traceMetadata returns the W3C trace context keys of ctx's outgoing
// metadata as key, value pairs, nil when it has none (without
// allocating).
func traceMetadata(ctx context.Context) []string {
	var kv []string
	for _, k := range [...]string{"traceparent", "tracestate"} {
		// One key each: FromOutgoingContext would copy the whole map.
		if v := metadata.ValueFromOutgoingContext(ctx, k); len(v) > 0 && v[0] != "" {
			kv = append(kv, k, v[0])
		}
	}
	return kv
}

// callError keeps the runtime's status message, with what its code says
// about the replica (see answerError). UNAVAILABLE, which gRPC gives a
// connection it could not make as well as a runtime that answers it, is
// unreachable: its message, which may name the replica's address, is kept
// for Detail only.
func (c *GRPCClient) callError(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	k := oip.KindOf(err)
	switch s.Code() {
	case codes.Unavailable:
		what := "unavailable"
		if m := s.Message(); strings.Contains(m, "handshake failed") || strings.Contains(m, "TLS handshake") {
			// grpc-go's "authentication handshake failed: ...", the
			// pass-through's "TLS handshake: ...".
			what = "TLS handshake failed"
		}
		return &oip.Error{Kind: oip.KindUnavailable, Msg: c.name + " could not be reached",
			Err: &transportError{what: what, err: fmt.Errorf("%w: %s", ErrUnreachable, s.Message())}}
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.Unauthenticated, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Aborted:
		return answered(k, s.Message(), outcomeOK)
	}
	return answered(k, s.Message(), classifyKind(k))
}

// ServerReady reports the runtime's ServerReady answer.
func (c *GRPCClient) ServerReady(ctx context.Context) (bool, error) {
	r, err := c.api.ServerReady(ctx, &pb.ServerReadyRequest{})
	if err != nil {
		return false, c.callError(err)
	}
	return r.GetReady(), nil
}

// ModelReady reports the runtime's ModelReady answer.
func (c *GRPCClient) ModelReady(ctx context.Context, model, version string) (bool, error) {
	r, err := c.api.ModelReady(ctx, &pb.ModelReadyRequest{Name: model, Version: version})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return false, nil
		}
		return false, c.callError(err)
	}
	return r.GetReady(), nil
}

// ModelMetadata fetches the model's metadata.
func (c *GRPCClient) ModelMetadata(ctx context.Context, model, version string) (*oip.ModelMetadata, error) {
	r, err := c.api.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: model, Version: version})
	if err != nil {
		return nil, c.callError(err)
	}
	md, err := oip.MetadataFromProto(r)
	if err != nil {
		return nil, &oip.Error{Kind: oip.KindInternal, Msg: c.name + " sent bad model metadata", Err: err}
	}
	return md, nil
}

// Infer converts req to a raw-contents gRPC request, sends it and converts
// the answer back.
func (c *GRPCClient) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	resp, err := c.modelInferProto(ctx, oip.RequestToProto(req))
	if err != nil {
		return nil, err
	}
	out := new(oip.InferResponse)
	if err := oip.ResponseFromProto(resp, out); err != nil {
		return nil, &oip.Error{Kind: oip.KindInternal, Msg: c.name + " sent a malformed response", Err: err}
	}
	return out, nil
}
