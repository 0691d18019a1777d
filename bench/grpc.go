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

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// GRPCOptions configures a GRPCTarget. Zero fields take the documented
// defaults.
type GRPCOptions struct {
	// Addr is the server's host:port. Required.
	Addr string
	// Request is the ModelInferRequest sent by every call. Required; it is
	// encoded once, so changing it later changes nothing.
	Request *pb.ModelInferRequest
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

// GRPCTarget calls ModelInfer with one fixed request over plaintext HTTP/2.
// The request is encoded once and the response is not decoded (a call
// succeeds when its status is OK), so the target costs little more than
// gRPC's own transport. It is safe for concurrent use.
type GRPCTarget struct {
	conns   []*grpc.ClientConn
	next    atomic.Uint32
	timeout time.Duration
	req     *rawMessage
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
	if opts.Request == nil {
		return nil, errors.New("bench: GRPCOptions.Request is nil")
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
	b, err := proto.Marshal(opts.Request)
	if err != nil {
		return nil, fmt.Errorf("bench: encoding the request: %w", err)
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodecV2(rawCodec{}),
			grpc.MaxCallRecvMsgSize(opts.MaxMessageSize)),
	}
	if opts.Dial != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(opts.Dial))
	}
	t := &GRPCTarget{timeout: opts.Timeout, req: &rawMessage{data: mem.BufferSlice{mem.SliceBuffer(b)}}}
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

// Do calls ModelInfer once; any status but OK is an error.
func (t *GRPCTarget) Do(ctx context.Context) error {
	conn := t.conns[int(t.next.Add(1))%len(t.conns)]
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	err := conn.Invoke(ctx, pb.GRPCInferenceService_ModelInfer_FullMethodName, t.req, &sink)
	cancel()
	return err
}

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
