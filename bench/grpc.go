package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// GRPCOptions configures a GRPCTarget. Zero fields take the documented
// defaults.
type GRPCOptions struct {
	// Addr is the server's host:port. Required.
	Addr string
	// Request is the ModelInferRequest sent by every call when Requests is
	// empty. It is encoded once, so changing it later changes nothing.
	Request *pb.ModelInferRequest
	// Requests, when not empty, are sent in turn instead of Request, each
	// encoded once.
	Requests []*pb.ModelInferRequest
	// Timeout bounds one call (default 10s).
	Timeout time.Duration
	// Conns is the number of HTTP/2 connections; calls take them in turn
	// (default 1: one connection multiplexes every call, as most clients
	// do).
	Conns int
	// MaxMessageSize bounds a response (default 64 MiB).
	MaxMessageSize int
	// Dial opens a connection to Addr (default TCP).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// GRPCTarget calls ModelInfer with prepared requests over plaintext HTTP/2.
// Requests are encoded once and responses are not decoded (a call succeeds
// when its status is OK), so the target costs little more than gRPC's own
// transport. It counts the bytes moved on its connections (ByteCounter). It
// is safe for concurrent use.
type GRPCTarget struct {
	conns   []*grpc.ClientConn
	next    atomic.Uint32
	timeout time.Duration
	reqs    []*rawMessage
	first   *pb.ModelInferRequest
	bytes   connCounter
}

// rawMessage is a message already in wire form.
type rawMessage struct{ data mem.BufferSlice }

// discard receives a response and keeps nothing of it.
type discard struct{}

var sink discard

// rawCodec sends rawMessages as they are and drops what it receives into a
// discard; it decodes and encodes other messages as protobuf, so that the
// same connection can still make ordinary calls.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*rawMessage); ok {
		// SliceBuffers are not reference counted, so the one slice serves
		// every call.
		return m.data, nil
	}
	pm, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("bench: cannot encode %T", v)
	}
	b, err := proto.Marshal(pm)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *discard:
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	}
	return fmt.Errorf("bench: cannot decode into %T", v)
}

func (rawCodec) Name() string { return "proto" }

// NewGRPCTarget validates opts, encodes the request and returns a target.
// It connects lazily.
func NewGRPCTarget(opts GRPCOptions) (*GRPCTarget, error) {
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("bench: GRPCOptions.Addr %q: %w", opts.Addr, err)
	}
	if len(opts.Requests) == 0 {
		if opts.Request == nil {
			return nil, errors.New("bench: GRPCOptions.Request is nil")
		}
		opts.Requests = []*pb.ModelInferRequest{opts.Request}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Conns <= 0 {
		opts.Conns = 1
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 64 << 20
	}
	t := &GRPCTarget{timeout: opts.Timeout, first: opts.Requests[0]}
	for i, r := range opts.Requests {
		if r == nil {
			return nil, fmt.Errorf("bench: GRPCOptions.Requests[%d] is nil", i)
		}
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("bench: encoding request %d: %w", i, err)
		}
		t.reqs = append(t.reqs, &rawMessage{data: mem.BufferSlice{mem.SliceBuffer(b)}})
	}
	dial := opts.Dial
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodecV2(rawCodec{}),
			grpc.MaxCallRecvMsgSize(opts.MaxMessageSize)),
	}
	dialOpts = append(dialOpts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		return t.bytes.wrap(c), nil
	}))
	for range opts.Conns {
		conn, err := grpc.NewClient("passthrough:///"+opts.Addr, dialOpts...)
		if err != nil {
			_ = t.Close()
			return nil, fmt.Errorf("bench: grpc client for %s: %w", opts.Addr, err)
		}
		t.conns = append(t.conns, conn)
	}
	return t, nil
}

// Do calls ModelInfer once with the next request; any status but OK is an
// error (a gRPC status error).
func (t *GRPCTarget) Do(ctx context.Context) error {
	n := int(t.next.Add(1))
	conn := t.conns[n%len(t.conns)]
	req := t.reqs[0]
	if len(t.reqs) > 1 {
		req = t.reqs[n%len(t.reqs)]
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	err := conn.Invoke(ctx, pb.GRPCInferenceService_ModelInfer_FullMethodName, req, &sink)
	cancel()
	return err
}

// BytesMoved returns the bytes sent and received on the target's
// connections so far, HTTP/2 framing included.
func (t *GRPCTarget) BytesMoved() (sent, received int64) { return t.bytes.total() }

// Conn returns the target's first connection, for ordinary calls (a
// readiness check, a typed call to look at an answer).
func (t *GRPCTarget) Conn() *grpc.ClientConn { return t.conns[0] }

// Close closes the connections.
func (t *GRPCTarget) Close() error {
	var errs []error
	for _, c := range t.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Probe sends the target's first request once as a typed call and checks
// that the answer converts to an OIP inference response, so that a server
// answering something else fails before a run.
func (t *GRPCTarget) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := pb.NewGRPCInferenceServiceClient(t.conns[0]).ModelInfer(ctx, t.first)
	if err != nil {
		return err
	}
	var out oip.InferResponse
	if err := oip.ResponseFromProto(resp, &out); err != nil {
		return fmt.Errorf("bench: the answer is not a valid OIP inference response: %s", oip.Message(err))
	}
	if len(out.Outputs) == 0 {
		return errors.New("bench: the answer is not an OIP inference response: it has no outputs")
	}
	return nil
}
