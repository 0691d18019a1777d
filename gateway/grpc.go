package gateway

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/gateway/quota"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/internal/keyhash"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/router"
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

func (s grpcService) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	r, ticket, err := s.g.grpcModel(ctx, []byte(req.GetName()), []byte(req.GetVersion()))
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	defer ticket.Release()
	return &pb.ModelReadyResponse{Ready: r.Pool.Ready()}, nil
}

func (s grpcService) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	r, ticket, err := s.g.grpcModel(ctx, []byte(req.GetName()), []byte(req.GetVersion()))
	if err != nil {
		return nil, oip.GRPCStatus(err)
	}
	defer ticket.Release()
	ctx, cancel := s.g.callContext(ctx, r.Timeout)
	defer cancel()
	_ = grpc.SetHeader(ctx, r.grpcHeader)
	md, err := r.metadata(ctx)
	if err != nil {
		return nil, oip.GRPCStatus(s.g.drainError(err))
	}
	return oip.MetadataToProto(md), nil
}

// serviceDesc is inference.GRPCInferenceService with ModelInfer taking
// and returning encoded messages (oip.RawFrame): the gateway reads only the
// model name from a request, and decodes it only to translate for a
// runtime that does not speak gRPC.
func serviceDesc() *grpc.ServiceDesc {
	desc := pb.GRPCInferenceService_ServiceDesc
	desc.Methods = slices.DeleteFunc(slices.Clone(desc.Methods), func(m grpc.MethodDesc) bool {
		return m.MethodName == "ModelInfer"
	})
	desc.Streams = append(slices.Clone(desc.Streams), grpc.StreamDesc{StreamName: "ModelInfer", Handler: modelInferStream})
	return &desc
}

// modelInferStream serves ModelInfer, a unary call on the wire, as a
// stream handler. grpc-go reads a unary call's message whole before any
// handler or interceptor runs; a stream handler chooses when the message
// is read, and so reads it under the in-flight byte bound (recvInfer).
func modelInferStream(srv any, ss grpc.ServerStream) error {
	s := srv.(grpcService)
	// Who calls, before the message is read: a caller the gateway does
	// not know takes no room for it.
	principal, err := s.g.authenticateGRPC(ss.Context())
	if err != nil {
		s.g.countUnrouted("grpc", oip.GRPCCode(err).String())
		return oip.GRPCStatus(err)
	}
	in, taken, err := s.g.recvInfer(ss)
	defer s.g.budget.release(taken)
	if err != nil {
		return err
	}
	var tr tracing.Request
	out, err := s.modelInferRaw(ss.Context(), principal, in, &tr)
	if md := serverTimingTrailer(&tr); md != nil {
		ss.SetTrailer(md)
	}
	if err != nil {
		return err
	}
	return ss.SendMsg(out)
}

// modelInferRaw routes an encoded ModelInferRequest of principal (nil
// when the gateway does not authenticate): as bytes to a gRPC replica,
// decoded and translated for any other, answering in the request's form
// (raw or typed contents). tr records the request's time once its
// revision admitted it (see observe.go); it is finished when
// modelInferRaw returns.
func (s grpcService) modelInferRaw(ctx context.Context, principal *auth.Principal, in *oip.RawFrame, tr *tracing.Request) (*oip.RawFrame, error) {
	start := time.Now()
	name, version, err := oip.PeekModel(in.Bytes)
	if err == nil && len(name) == 0 {
		err = oip.Errorf(oip.KindInvalidArgument, "model_name is required")
	}
	if err != nil {
		s.g.countUnrouted("grpc", oip.GRPCCode(err).String())
		return nil, oip.GRPCStatus(err)
	}
	req := grpcRouting(ctx, name, version)
	r, mirror, err := s.g.resolve(req)
	var ticket quota.Ticket
	if err == nil {
		ticket, err = s.g.admit(principal, r, auth.ActionInfer)
		defer ticket.Release()
	}
	received := in
	if err == nil && len(version) > 0 {
		// The version chose the revision; the runtime serves the model
		// under versions of its own.
		var b []byte
		if b, err = oip.WithoutModelVersion(in.Bytes); err == nil {
			in = &oip.RawFrame{Bytes: b}
		}
	}
	if err != nil {
		s.g.countUnrouted("grpc", status.Code(oip.GRPCStatus(err)).String())
		setGRPCRetryAfter(ctx, err)
		return nil, oip.GRPCStatus(err)
	}
	s.g.startGRPC(tr, ctx, start)
	tr.Model = r.name
	defer tr.Finish()
	plog := s.g.beginPayloadGRPC(ctx, r)
	logGRPCRequest(plog, received)
	_, clientDeadline := ctx.Deadline()
	var (
		resp    *oip.RawFrame
		callErr error
	)
	// Every try sends the same trace context: the upstream call's span
	// covers them all.
	upstreamCtx := traceContext(ctx, tr, grpcTraceState(ctx, tr))
	r, mirror, err = s.g.send(req, r, mirror, func(r *route) bool {
		resp, callErr = s.infer(upstreamCtx, principal, r, req, in, tr)
		return errors.Is(callErr, ErrRevisionRetired)
	})
	if err != nil {
		s.g.countUnrouted("grpc", status.Code(oip.GRPCStatus(err)).String())
		err = oip.GRPCStatus(err)
		tr.Status = int(status.Code(err))
		return nil, err
	}
	_ = grpc.SetHeader(ctx, r.grpcHeader)
	err = callErr
	code := codes.OK
	if err != nil {
		setGRPCRetryAfter(ctx, err)
		err = oip.GRPCStatus(s.g.drainError(err))
		code = status.Code(err)
	}
	r.record(r.grpcRequests, r.gatewayGRPC, code.String(), start, grpcOutcome(code, clientDeadline))
	tr.Revision, tr.Status = r.Revision, int(code)
	if err == nil {
		logGRPCResponse(plog, resp)
	}
	if mirror != nil && err == nil {
		s.g.mirror.grpc(r.name, mirror, in, resp)
	}
	return resp, err
}

// grpcTraceState returns a gRPC call's tracestate metadata, for the
// runtime, when tracing is on and the call's trace is continued.
func grpcTraceState(ctx context.Context, tr *tracing.Request) string {
	if !tr.Tracing() || !tr.Continued() {
		return ""
	}
	return firstValue(ctx, tracing.HeaderTraceState)
}

// grpcModel authenticates a gRPC call about a model (metadata,
// readiness), resolves its revision and admits it under the caller's
// grants and quotas; the caller releases the Ticket.
func (g *Gateway) grpcModel(ctx context.Context, name, version []byte) (*route, quota.Ticket, error) {
	p, err := g.authenticateGRPC(ctx)
	if err != nil {
		return nil, quota.Ticket{}, err
	}
	r, _, err := g.resolve(grpcRouting(ctx, name, version))
	if err != nil {
		return nil, quota.Ticket{}, err
	}
	t, err := g.admit(p, r, auth.ActionMetadata)
	return r, t, err
}

// metadataRetryAfter is the trailer that tells a gRPC client refused
// under a quota when to try again, in seconds, as REST's Retry-After.
const metadataRetryAfter = "retry-after"

// setGRPCRetryAfter sets the retry-after trailer of a call refused under a
// quota or by a full queue.
func setGRPCRetryAfter(ctx context.Context, err error) {
	if d, ok := quota.RetryAfter(err); ok {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(metadataRetryAfter, strconv.Itoa(quota.RetryAfterSeconds(d))))
	}
}

// grpcRouting reads the router's inputs from a gRPC request: the model,
// the pin (model_version, else x-model-revision metadata) and the
// x-session-key metadata.
func grpcRouting(ctx context.Context, model, version []byte) router.Request {
	// firstValue looks one key up; FromIncomingContext
	// would copy the whole metadata on every request.
	req := router.Request{Model: model, Pin: version}
	if len(req.Pin) == 0 {
		if v := firstValue(ctx, metadataRevision); v != "" {
			req.Pin = []byte(v)
		}
	}
	if v := firstValue(ctx, metadataSessionKey); v != "" {
		req.Key, req.Sticky = keyhash.Bytes([]byte(v)), true
	}
	return req
}

// The gRPC metadata keys of HeaderRevision and HeaderSessionKey.
const (
	metadataRevision   = "x-model-revision"
	metadataSessionKey = "x-session-key"
)

// grpcOutcome judges an answer for the revision's health: codes that say
// the caller erred are not the revision's fault, nor is a deadline the
// client chose (clientDeadline).
func grpcOutcome(c codes.Code, clientDeadline bool) router.Outcome {
	switch c {
	case codes.OK:
		return router.OutcomeOK
	case codes.DeadlineExceeded:
		if clientDeadline {
			return router.OutcomeClientError
		}
		return router.OutcomeServerError
	case codes.InvalidArgument, codes.NotFound, codes.Canceled, codes.FailedPrecondition, codes.OutOfRange,
		codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated:
		return router.OutcomeClientError
	}
	return router.OutcomeServerError
}

func (s grpcService) infer(ctx context.Context, p *auth.Principal, r *route, req router.Request, in *oip.RawFrame, tr *tracing.Request) (*oip.RawFrame, error) {
	ctx, cancel := s.g.callContext(ctx, r.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	slot, err := s.g.fairShare(ctx, p, r, time.Time{}, tr, priorityOf{proto: in.Bytes})
	if err != nil {
		return nil, err
	}
	defer slot.Release()
	for try := 1; ; try++ {
		release, err := r.activateTraced(ctx, tr)
		if err != nil {
			return nil, err
		}
		if r.Batcher != nil {
			defer release()
			return s.batched(ctx, r, in, tr)
		}
		resp, err := s.call(ctx, r, req, in, tr)
		release()
		if err == nil || !r.awaitReplica(err, try, deadline, s.g.drain.Done()) {
			return resp, err
		}
	}
}

// call sends a ModelInferRequest to a replica of r: as bytes to a gRPC
// replica, translated for any other.
func (s grpcService) call(ctx context.Context, r *route, req router.Request, in *oip.RawFrame, tr *tracing.Request) (*oip.RawFrame, error) {
	var (
		resp    *oip.RawFrame
		decoded *decodedFrame
	)
	err := r.do(ctx, req, func(cl runtimes.Client) error {
		t0 := time.Now()
		var err error
		if ri, ok := cl.(runtimes.RawInferer); ok {
			resp, err = ri.ModelInferRaw(ctx, in)
			t1 := time.Now()
			s.g.countUpstream(r, t1.Sub(t0), err, 0)
			markUpstream(tr, cl, t0, t1)
			tr.UpstreamStatus = upstreamStatus(tr, err)
			return err
		}
		if decoded == nil {
			if decoded, err = decodeFrame(in); err != nil {
				return err
			}
		}
		out, err := cl.Infer(ctx, &decoded.req)
		t1 := time.Now()
		s.g.countUpstream(r, t1.Sub(t0), err, 0)
		markUpstream(tr, cl, t0, t1)
		tr.UpstreamStatus = upstreamStatus(tr, err)
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
	d.req.ModelVersion = "" // a version chose the revision
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
func (s grpcService) batched(ctx context.Context, r *route, in *oip.RawFrame, tr *tracing.Request) (*oip.RawFrame, error) {
	d, err := decodeFrame(in)
	if err != nil {
		return nil, err
	}
	var timing batcher.Timing
	resp, err := r.Batcher.SubmitTimed(ctx, &d.req, &timing)
	markBatch(tr, &timing)
	if err != nil {
		return nil, err
	}
	return d.answer(resp)
}

// callContext returns the context of a gRPC call's wait for its runtime:
// ctx, with the route's timeout d when the client sent no grpc-timeout,
// ended at the drain deadline too (see abortInFlight), so that the
// handler answers before Serve stops the server, which would cancel ctx
// only as it closes the connection, with no status for the call.
func (g *Gateway) callContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, d)
	}
	stop := context.AfterFunc(g.drain, cancel)
	return ctx, func() { stop(); cancel() }
}
