package oip

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// RawFrame is a gRPC message kept as its encoded bytes. With Codec, a
// server or client sends and receives a RawFrame without decoding it, which
// is how the gateway forwards ModelInfer from a gRPC client to a gRPC
// runtime.
type RawFrame struct {
	Bytes []byte
}

// Codec is a gRPC codec that passes RawFrame values through as bytes and
// handles every other message with gRPC's own protobuf codec. It names
// itself "proto", so peers see ordinary protobuf traffic.
type Codec struct{}

var protoCodec = encoding.GetCodecV2(grpcproto.Name)

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*RawFrame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.Bytes)}, nil
	}
	return protoCodec.Marshal(v)
}

// Unmarshal implements encoding.CodecV2. A RawFrame receives a copy of the
// message's bytes that it owns.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*RawFrame); ok {
		f.Bytes = data.Materialize()
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return grpcproto.Name }

// ModelInferRequest field numbers read without decoding the message.
const (
	fieldModelName    = 1
	fieldModelVersion = 2
)

// PeekModel returns the model_name and model_version of an encoded
// ModelInferRequest without decoding the rest of it (the tensors). It
// allocates nothing: the results alias b.
func PeekModel(b []byte) (name, version []byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, Errorf(KindInvalidArgument, "malformed ModelInferRequest: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldModelName || num == fieldModelVersion) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, nil, Errorf(KindInvalidArgument, "malformed ModelInferRequest: %v", protowire.ParseError(n))
			}
			if num == fieldModelName {
				name = v
			} else {
				version = v
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, nil, Errorf(KindInvalidArgument, "malformed ModelInferRequest: field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return name, version, nil
}

var _ encoding.CodecV2 = Codec{}

// String describes a frame for logs.
func (f *RawFrame) String() string { return fmt.Sprintf("RawFrame(%d bytes)", len(f.Bytes)) }

// WithoutModelVersion returns the encoded ModelInferRequest b without its
// model_version field, in a new slice; b itself when it has none. The
// gateway uses it when a version chose a revision: the runtime serves the
// model under versions of its own.
func WithoutModelVersion(b []byte) ([]byte, error) {
	var out []byte
	rest := b
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return nil, Errorf(KindInvalidArgument, "malformed ModelInferRequest: %v", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return nil, Errorf(KindInvalidArgument, "malformed ModelInferRequest: field %d: %v", num, protowire.ParseError(m))
		}
		field := rest[:n+m]
		rest = rest[n+m:]
		if num == fieldModelVersion {
			if out == nil {
				out = append(make([]byte, 0, len(b)), b[:len(b)-len(rest)-len(field)]...)
			}
			continue
		}
		if out != nil {
			out = append(out, field...)
		}
	}
	if out == nil {
		return b, nil
	}
	return out, nil
}
