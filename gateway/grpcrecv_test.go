package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// partialCall is a gRPC call made over a raw HTTP/2 connection whose one
// message declares more bytes than it sends: what a slow or stalled
// client looks like to the gateway, which no gRPC client library makes.
type partialCall struct {
	conn net.Conn
	fr   *http2.Framer
}

// startPartialCall calls method on the gRPC server at addr with a message
// that declares declared bytes and carries sent bytes of them.
func startPartialCall(t *testing.T, addr, method string, declared int, sent int) *partialCall {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "gateway"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	msg := make([]byte, 5+sent)
	binary.BigEndian.PutUint32(msg[1:5], uint32(declared))
	for _, err := range []error{
		fr.WriteSettings(),
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}),
		fr.WriteData(1, false, msg),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return &partialCall{conn: conn, fr: fr}
}

// status reads the call's answer: its grpc-status and grpc-message.
func (p *partialCall) status(t *testing.T) (codes.Code, string) {
	t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(waitLimit))
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			t.Fatalf("no answer to the call: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = p.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if v := f.PseudoValue("status"); v != "" && v != "200" {
				t.Fatalf("HTTP status %s", v)
			}
			if v := headerValue(f, "grpc-status"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("grpc-status %q", v)
				}
				return codes.Code(n), headerValue(f, "grpc-message")
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset (%v) before a status", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("connection closed (GOAWAY %v) before a status", f.ErrCode)
		}
	}
}

// TestGRPCSlowMessageEnds: a message that does not arrive within
// ReadTimeout ends its call with DEADLINE_EXCEEDED, as a slow REST body
// gets 408; the room it held is given back.
func TestGRPCSlowMessageEnds(t *testing.T) { forEachGRPCServer(t, testGRPCSlowMessageEnds) }

func testGRPCSlowMessageEnds(t *testing.T, server string) {
	held := newHeldRuntime(t)
	s := serve(t, Options{
		Routes:      []Route{{Model: "m", Pool: readyPool(t, "m", held.client(t))}},
		ReadTimeout: 200 * time.Millisecond,
		GRPCServer:  server,
	}, nil)
	call := startPartialCall(t, s.grpc, pb.GRPCInferenceService_ModelInfer_FullMethodName, 4000, 100)
	code, msg := call.status(t)
	if code != codes.DeadlineExceeded {
		t.Errorf("a stalled message: %v %q, want DEADLINE_EXCEEDED", code, msg)
	}
	eventually(t, "room given back", func() bool {
		return metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes") == 0
	})
}

// TestGRPCRoomHeldWhileReceiving: a message being read holds room under
// the in-flight byte bound before its bytes are in: on infergate's own
// server the length its prefix declares, on grpc-go's (which cannot say)
// the largest message's. Another call that finds too little room is
// refused before its own message is read; when the first call ends, its
// room is given back.
func TestGRPCRoomHeldWhileReceiving(t *testing.T) {
	forEachGRPCServer(t, testGRPCRoomHeldWhileReceiving)
}

func testGRPCRoomHeldWhileReceiving(t *testing.T, server string) {
	held := newHeldRuntime(t)
	s := serve(t, Options{
		Routes:           []Route{{Model: "m", Pool: readyPool(t, "m", held.client(t))}},
		MaxInFlightBytes: 1000,
		MaxBodyBytes:     1000,
		InFlightWait:     10 * time.Millisecond,
		GRPCServer:       server,
	}, nil)
	call := startPartialCall(t, s.grpc, pb.GRPCInferenceService_ModelInfer_FullMethodName, 900, 100)
	want := 900.0
	if server == GRPCServerGRPCGo {
		want = 1000
	}
	eventually(t, "the stalled message holds room", func() bool {
		return metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes") == want
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	// About 250 bytes: more than the 100 left on either server.
	second := &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 60},
		Contents: &pb.InferTensorContents{Fp32Contents: make([]float32, 60)},
	}}}
	_, err := grpcClient(t, s.grpc).ModelInfer(ctx, second)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a call while a message holds the room it needs: %v, want RESOURCE_EXHAUSTED", err)
	}
	call.conn.Close()
	eventually(t, "room given back once the stalled call's connection closed", func() bool {
		return metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes") == 0
	})
}

// TestGRPCRoomIsTheMessages: on infergate's own gRPC server a call takes
// room for its message's declared length, not for the largest message,
// so that calls with small messages are not refused while a stalled one
// holds room (on grpc-go's server, every call takes MaxBodyBytes).
func TestGRPCRoomIsTheMessages(t *testing.T) {
	held := newHeldRuntime(t)
	s := serve(t, Options{
		Routes:           []Route{{Model: "m", Pool: readyPool(t, "m", held.client(t))}},
		MaxInFlightBytes: 1000,
		MaxBodyBytes:     1000,
		InFlightWait:     10 * time.Millisecond,
	}, nil)
	call := startPartialCall(t, s.grpc, pb.GRPCInferenceService_ModelInfer_FullMethodName, 100, 10)
	defer call.conn.Close()
	eventually(t, "the stalled message holds its declared 100 bytes", func() bool {
		return metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes") == 100
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	small := &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 1},
		Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}},
	}}}
	done := make(chan error, 1)
	go func() { _, err := grpcClient(t, s.grpc).ModelInfer(ctx, small); done <- err }()
	<-held.arrived
	held.release <- struct{}{}
	if err := <-done; err != nil {
		t.Errorf("a small call while a stalled one holds 100 of 1000 bytes: %v, want it answered", err)
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// forEachGRPCServer runs test against each of the gRPC front door's
// servers (Options.GRPCServer).
func forEachGRPCServer(t *testing.T, test func(t *testing.T, server string)) {
	for _, server := range []string{GRPCServerInfergate, GRPCServerGRPCGo} {
		t.Run(server, func(t *testing.T) { test(t, server) })
	}
}
