package runtimes

import (
	"context"
	"errors"
	"fmt"

	"github.com/infergate/infergate/oip"
)

// Protocol is the wire protocol a runtime replica speaks.
type Protocol uint8

// The protocols a runtime replica can speak.
const (
	REST     Protocol = iota + 1 // OIP over HTTP/1.1
	GRPC                         // OIP over gRPC
	KServeV1                     // KServe v1 (instances/predictions) over HTTP/1.1
)

func (p Protocol) String() string {
	switch p {
	case REST:
		return "rest"
	case GRPC:
		return "grpc"
	case KServeV1:
		return "kserve-v1"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// Client is a connection to one runtime replica. It is the extension point
// for runtime kinds, so it stays small; protocol-specific fast paths live on
// the concrete types (RESTClient.Forward, GRPCClient.ModelInferRaw).
//
// Every method honours ctx's deadline. Errors are *oip.Error values whose
// kind tells unavailable (the replica could not be reached) from errors the
// runtime returned.
type Client interface {
	// ModelReady reports whether the runtime serves the model now.
	ModelReady(ctx context.Context, model, version string) (bool, error)
	// ModelMetadata asks the runtime for the model's metadata.
	ModelMetadata(ctx context.Context, model, version string) (*oip.ModelMetadata, error)
	// Infer runs one decoded inference.
	Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error)
	// Close releases the client's connections.
	Close() error
}

// ErrUnreachable is in the chain of an error for a call that never reached
// its replica: a pool may send such a call to another replica.
var ErrUnreachable = errors.New("unreachable")

// unavailable wraps err as an unavailable, unreachable error naming the
// replica.
func unavailable(addr string, err error) error {
	return &oip.Error{Kind: oip.KindUnavailable, Msg: "runtime " + addr, Err: fmt.Errorf("%w: %w", ErrUnreachable, err)}
}
