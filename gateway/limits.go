package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/infergate/infergate/gateway/netlimit"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
)

// byteBudget bounds the request bytes the gateway holds at once (see
// Options.MaxInFlightBytes). Room is taken first come, first served: a
// large request waiting for room is not overtaken by small ones.
type byteBudget struct {
	sem   *semaphore.Weighted
	limit int64
	wait  time.Duration
	// waiting counts the requests waiting for room: while there are any,
	// the gateway is short of room, and new gRPC calls are refused before
	// their messages are read (see grpcTap).
	waiting atomic.Int64
	held    prometheus.Gauge
}

func newByteBudget(limit int64, wait time.Duration, held prometheus.Gauge) *byteBudget {
	return &byteBudget{sem: semaphore.NewWeighted(limit), limit: limit, wait: wait, held: held}
}

// errNoRoom is the byte budget's refusal; each front door answers it in
// its own form (see restReadError and errGRPCNoRoom).
var errNoRoom = errors.New("no room under the in-flight byte bound")

// acquire takes room for n bytes, waiting for it at most the budget's
// wait, or until ctx ends, and returns the room taken, to give back with
// release. A request larger than the whole budget takes all of it, and so
// goes alone. It returns errNoRoom when no room came.
func (b *byteBudget) acquire(ctx context.Context, n int64) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	n = min(n, b.limit)
	if !b.sem.TryAcquire(n) {
		b.waiting.Add(1)
		defer b.waiting.Add(-1)
		wctx, cancel := context.WithTimeout(ctx, b.wait)
		defer cancel()
		if err := b.sem.Acquire(wctx, n); err != nil {
			return 0, errNoRoom
		}
	}
	b.held.Add(float64(n))
	return n, nil
}

func (b *byteBudget) release(n int64) {
	if n > 0 {
		b.held.Sub(float64(n))
		b.sem.Release(n)
	}
}

// short reports whether requests are waiting for room.
func (b *byteBudget) short() bool { return b.waiting.Load() > 0 }

// serveREST is the REST server's handler. It reads an inference request's
// body under the in-flight byte bound before handing the request to
// HandleREST, and gives the body's room back once it is answered. Other
// requests need no body: fasthttp drains what they sent, or closes the
// connection when that is too much.
func (g *Gateway) serveREST(ctx *fasthttp.RequestCtx) {
	netlimit.MarkServed(ctx.Conn())
	// Set once the answer is made: a forwarded answer brings the
	// runtime's headers.
	defer func() {
		if g.closing.Load() {
			ctx.SetConnectionClose()
		}
	}()
	if !ctx.IsPost() || oip.ParseRESTPath(ctx.Path()).Endpoint != oip.EndpointModelInfer {
		g.HandleREST(ctx)
		return
	}
	// A caller the gateway does not know takes no room: its body is
	// discarded unread.
	if g.opts.Auth != nil {
		p, err := g.authenticate(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
		if err != nil {
			g.restError(ctx, err)
			g.lingerUnread(ctx)
			return
		}
		ctx.SetUserValue(principalKey{}, p)
	}
	taken, err := g.readBody(ctx)
	defer g.budget.release(taken)
	// A large body's buffer is left to the collector rather than to
	// fasthttp's pool, which would keep it (and hand it to small requests)
	// long after the burst that needed it.
	defer ctx.Request.ReleaseBody(maxPooledBody)
	if err != nil {
		g.restReadError(ctx, err)
		return
	}
	g.HandleREST(ctx)
}

// maxPooledBody is the largest request body buffer kept for reuse.
const maxPooledBody = 1 << 20

// errBodyTooLarge is a REST body over MaxBodyBytes found by readBody.
var errBodyTooLarge = errors.New("request body too large")

// readBody reads the streamed body of a REST request into the request,
// and returns the room it took under the in-flight byte bound (even with
// an error: the caller gives it back). A body of known length takes its
// room before it is read, so that a request that finds none is answered
// with its body still on the wire (all but the first 8 KiB, which fasthttp
// reads with the headers); a chunked body takes room as it arrives.
func (g *Gateway) readBody(ctx *fasthttp.RequestCtx) (int64, error) {
	req := &ctx.Request
	stream := req.BodyStream()
	if stream == nil {
		// Read already (no body, or a server without streaming).
		return g.budget.acquire(context.Background(), int64(len(req.Body())))
	}
	n := req.Header.ContentLength()
	if n > g.opts.MaxBodyBytes {
		return 0, errBodyTooLarge
	}
	var taken int64
	if n >= 0 {
		var err error
		if taken, err = g.budget.acquire(context.Background(), int64(n)); err != nil {
			return 0, err
		}
	}
	// The stream is ours to read; fasthttp still owns it (and drains what
	// is left of it after the handler). The body buffer holding its
	// prefetched start becomes the body: reading the stream into it copies
	// the prefetched bytes onto themselves, and the request keeps its
	// pooled buffer, as it does when fasthttp reads the body itself.
	_ = req.CloseBodyStream()
	buf := req.SwapBody(nil)[:0]
	var err error
	if n >= 0 {
		buf = slices.Grow(buf, n)[:n]
		_, err = io.ReadFull(stream, buf)
	} else {
		buf, err = g.readChunked(stream, buf, &taken)
	}
	req.SwapBody(buf)
	return taken, err
}

// readChunked reads a body of unknown length (chunked) into buf, taking
// room under the in-flight byte bound as it grows (*taken holds the room
// taken), up to MaxBodyBytes.
func (g *Gateway) readChunked(stream io.Reader, buf []byte, taken *int64) ([]byte, error) {
	limit := g.opts.MaxBodyBytes
	for {
		if len(buf) == limit {
			// Full: the body must end here.
			var one [1]byte
			if k, err := stream.Read(one[:]); k > 0 {
				return buf, errBodyTooLarge
			} else if err == io.EOF {
				return buf, nil
			} else if err != nil {
				return buf, err
			}
			continue
		}
		if int64(len(buf)) == *taken {
			step := min(max(len(buf), 64<<10), limit-len(buf))
			k, err := g.budget.acquire(context.Background(), int64(step))
			*taken += k
			if err != nil {
				return buf, err
			}
		}
		room := int(*taken) - len(buf)
		buf = slices.Grow(buf, room)
		k, err := stream.Read(buf[len(buf) : len(buf)+room])
		buf = buf[:len(buf)+k]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// restReadError answers a REST request that could not be read whole: from
// fasthttp's ErrorHandler, or readBody's error. It is the one place where
// such failures become HTTP answers. 408 and 431 have no oip kind, since
// nothing below the transport raises them; they are set here. The
// messages never quote the request: fasthttp's errors do, raw header
// lines, Authorization and Cookie included.
func (g *Gateway) restReadError(ctx *fasthttp.RequestCtx, err error) {
	status := 0
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, errNoRoom):
		g.metrics.inFlightRefused.WithLabelValues("rest").Inc()
		rest.WriteError(ctx, &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf(
			"the gateway holds its limit of %d request bytes in flight; retry later", g.opts.MaxInFlightBytes)})
		// A server short of room, not a client over its quota: 503, with
		// the body left on the wire, and discarded by a lingering close.
		ctx.Response.Header.Set("Retry-After", "1")
		g.lingerUnread(ctx)
		g.countUnrouted("rest", statusLabel(ctx.Response.StatusCode()))
		return
	case errors.As(err, &small):
		rest.WriteError(ctx, oip.Errorf(oip.KindInvalidArgument, "request headers exceed the gateway's limit of %d bytes", g.opts.MaxHeaderBytes))
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	case isTimeout(err):
		rest.WriteError(ctx, oip.Errorf(oip.KindDeadlineExceeded,
			"the request did not arrive in time (its headers may take %s, its body %s)", g.opts.HeaderTimeout, g.opts.ReadTimeout))
		status = fasthttp.StatusRequestTimeout
	case errors.Is(err, errBodyTooLarge), errors.Is(err, fasthttp.ErrBodyTooLarge):
		rest.WriteError(ctx, oip.Errorf(oip.KindTooLarge, "request body exceeds the gateway's limit of %d bytes", g.opts.MaxBodyBytes))
		// Refused from its declared length, or part way: the rest of the
		// body is on the wire.
		g.lingerUnread(ctx)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		rest.WriteError(ctx, oip.Errorf(oip.KindInvalidArgument, "the request body ended before its declared length"))
	default:
		rest.WriteError(ctx, oip.Errorf(oip.KindInvalidArgument, "malformed HTTP request"))
	}
	if status != 0 {
		ctx.SetStatusCode(status)
	}
	// What is left of the request on the wire cannot be trusted.
	ctx.SetConnectionClose()
	g.countUnrouted("rest", statusLabel(ctx.Response.StatusCode()))
}

// lingerTime bounds the lingering close of a connection whose request was
// answered before its body was read (see lingerUnread): long enough for a
// client on a fast link to send a large body's rest, short enough that a
// flood of refused requests does not hold connections for long.
const lingerTime = 2 * time.Second

// lingerUnread closes the connection of a REST request answered before its
// body was read whole, once the answer is written (Connection: close), with
// a lingering close (netlimit.Linger): the gateway half-closes it and
// discards what the client still sends, up to the body's declared length
// (MaxBodyBytes when it declares none) or for lingerTime. Closed at once
// with the body's rest unread, the connection would be reset by the
// kernel, and a client still sending the body would lose the answer: Go's
// http.Client, for one, reports the failed write instead. net/http's
// Server and nginx (lingering_close) close so for the same reason.
func (g *Gateway) lingerUnread(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	n := int64(ctx.Request.Header.ContentLength())
	if n < 0 {
		n = int64(g.opts.MaxBodyBytes)
	}
	netlimit.Linger(ctx.Conn(), n, lingerTime)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errGRPCNoRoom is the in-flight byte bound's refusal over gRPC.
// RESOURCE_EXHAUSTED is gRPC's word for a server short of memory (grpc-go
// answers so for its own memory bounds); REST says 503, as its
// RESOURCE_EXHAUSTED, 429, would blame the client.
var errGRPCNoRoom = &oip.Error{Kind: oip.KindResourceExhausted, Msg: "the gateway holds its limit of request bytes in flight; retry later", Err: errNoRoom}

// grpcTap refuses a new ModelInfer call, before its message is read,
// while other requests wait for room under the in-flight byte bound, and
// gives the call a context that recvInfer can end (recvContext): the
// stream's reads follow the context the tap returns.
func (g *Gateway) grpcTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != pb.GRPCInferenceService_ModelInfer_FullMethodName {
		return ctx, nil
	}
	if g.budget.short() {
		return nil, g.grpcNoRoom()
	}
	// The transport cancels the stream's own context, this one's parent,
	// when the call ends: nothing is left behind without a call to cancel.
	c, cancel := context.WithCancelCause(ctx)
	return &recvContext{Context: c, cancel: cancel}, nil
}

// recvContext is a ModelInfer call's context as the tap returns it: the
// stream reads its message under it, and recvInfer ends a reception that
// takes too long with expire. The stream then reports
// DEADLINE_EXCEEDED, as it does for any deadline: Err says
// context.DeadlineExceeded once expired.
type recvContext struct {
	context.Context
	cancel context.CancelCauseFunc
}

// The gRPC front door's flow-control windows. A stream's window bounds
// what a call sends before its message is read: the server opens it to the
// message's length once the message is being read, so a small window
// does not slow large messages. The connection's window is topped up as
// frames arrive, not as they are read: it bounds nothing held, and is
// large for throughput on links with a long round trip.
const (
	grpcStreamWindow = 64 << 10
	grpcConnWindow   = 16 << 20
)

// grpcStreamWorkers is the number of goroutines that serve gRPC calls and
// are kept between them, with their grown stacks (see grpcServer): as
// many as calls commonly in flight, not one per core; an idle one is a
// parked goroutine.
const grpcStreamWorkers = 256

// recvContextKey finds a call's recvContext (see Value).
type recvContextKey struct{}

func (c *recvContext) Value(key any) any {
	if key == (recvContextKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *recvContext) Err() error {
	err := c.Context.Err()
	if err != nil && context.Cause(c.Context) == errSlowMessage {
		return context.DeadlineExceeded
	}
	return err
}

func (c *recvContext) expire() { c.cancel(errSlowMessage) }

// errSlowMessage is the cause recvContext.expire gives.
var errSlowMessage = errors.New("request message not received in time")

// recvInfer reads a ModelInfer call's message under the in-flight byte
// bound and returns it with the room it holds (even with an error: the
// caller gives it back). On infergate's own gRPC server the message's
// prefix declares its length before the message is read
// (messageSizer), and room for that length is taken, as a REST body's
// from its Content-Length. grpc-go's streams cannot say, so there room
// for the largest message (MaxBodyBytes) is taken first, and what the
// message does not use is given back once it is in. Room is waited for
// up to InFlightWait; until it is taken the call holds no more than its
// stream's flow-control window (see grpcServer). A message that takes
// longer than ReadTimeout to arrive ends the call with DEADLINE_EXCEEDED,
// as a slow REST body gets 408, so that a slow sender cannot keep its
// room.
func (g *Gateway) recvInfer(ss grpc.ServerStream) (*oip.RawFrame, int64, error) {
	ctx := ss.Context()
	var timer *time.Timer
	if rc, ok := ctx.Value(recvContextKey{}).(*recvContext); ok {
		timer = time.AfterFunc(g.opts.ReadTimeout, rc.expire)
		defer timer.Stop()
	}
	want := int64(g.opts.MaxBodyBytes)
	if ms, ok := ss.(messageSizer); ok {
		// An error (no message, a stalled prefix) is RecvMsg's to answer.
		if n, compressed, err := ms.NextMessageSize(); err == nil && !compressed {
			want = min(want, int64(n))
		}
	}
	taken, err := g.budget.acquire(ctx, want)
	if err != nil {
		return nil, 0, g.grpcNoRoom()
	}
	in := new(oip.RawFrame)
	err = ss.RecvMsg(in)
	if timer != nil && !timer.Stop() && err == nil {
		// Expired as the message came in: the call's context is over.
		err = status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	if err != nil {
		// A failed RecvMsg has answered the call already (an expired
		// reception with DEADLINE_EXCEEDED); the error is returned for
		// the count and the stream handler's return.
		g.countUnrouted("grpc", status.Code(err).String())
		return nil, taken, err
	}
	used := min(int64(len(in.Bytes)), taken)
	g.budget.release(taken - used)
	return in, used, nil
}

// messageSizer is a gRPC server stream that can tell the length of its
// next message before reading it (infergate's own server's can).
type messageSizer interface {
	NextMessageSize() (n int, compressed bool, err error)
}

func (g *Gateway) grpcNoRoom() error {
	g.metrics.inFlightRefused.WithLabelValues("grpc").Inc()
	err := oip.GRPCStatus(errGRPCNoRoom)
	g.countUnrouted("grpc", oip.GRPCCode(errGRPCNoRoom).String())
	return err
}
