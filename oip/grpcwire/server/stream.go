package server

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/oip/grpcwire"
)

// stream is one call. It is the call's grpc.ServerStream, and its base
// context: the context that the call's deadline and cancellation end,
// which also answers peer.FromContext and grpc.ServerTransportStream
// lookups (see Value), so that a call costs no context layer for them.
type stream struct {
	bctx   context.Context // WithCancel or WithTimeout of Background
	cancel context.CancelFunc

	c            *conn
	h            *handler
	id           uint32
	method       string
	subtype      string
	recvCompress string
	gzip         bool
	ctx          context.Context // the handler's: the tap's, or the metadata's

	// The receive side, written by the connection's reader and read by
	// the handler, under mu.
	mu      sync.Mutex
	rb      *rbuf // received bytes, from roff on not yet consumed
	roff    int
	eof     bool  // END_STREAM received
	rerr    error // the stream ended (reset, connection closed)
	closed  bool  // released: rb is no longer the stream's
	reading bool  // the handler holds a slice of rb
	want    int   // bytes the waiting handler needs buffered
	ready   chan struct{}
	// Flow control: granted is what the client may send in all (the
	// window it was given), received and consumed what it sent and what
	// the handler read.
	granted, received, consumed int64
	remoteDone                  atomic.Bool // eof, for writers

	// The handler's alone.
	recvFirst bool
	sb        mem.SliceBuffer
	bs        [1]mem.Buffer

	// The send side, under c.wmu.
	sendQuota       int64
	headerSent      bool
	done            bool // the status is written, or the stream reset
	inBlocked       bool
	header, trailer metadata.MD
	wwake           chan struct{}
}

var _ grpc.ServerStream = (*stream)(nil)

// Keys of the context values that peer and grpc look up, learnt by asking
// them to look in a context that records the key (spyKey).
var (
	peerKey   = spyKey(func(ctx context.Context) { peer.FromContext(ctx) })
	streamKey = spyKey(func(ctx context.Context) { grpc.ServerTransportStreamFromContext(ctx) })
	// keysKnown is false if the lookups ever stop going through Value
	// with a key that answers them: streams then wrap their context in
	// the packages' own layers.
	keysKnown = peerKey != nil && streamKey != nil && checkKeys()
)

type keySpy struct {
	context.Context
	key any
}

func (k *keySpy) Value(key any) any {
	k.key = key
	return nil
}

func spyKey(lookup func(context.Context)) any {
	s := &keySpy{Context: context.Background()}
	lookup(s)
	return s.key
}

func checkKeys() bool {
	st := &stream{bctx: context.Background(), c: &conn{peer: &peer.Peer{}}}
	p, _ := peer.FromContext(st)
	ts, _ := grpc.ServerTransportStreamFromContext(st).(*transportStream)
	return p == st.c.peer && ts == (*transportStream)(st)
}

// Value answers the peer and the ServerTransportStream.
func (st *stream) Value(key any) any {
	if key != nil {
		switch key {
		case peerKey:
			return st.c.peer
		case streamKey:
			return (*transportStream)(st)
		}
	}
	return st.bctx.Value(key)
}

func (st *stream) Deadline() (time.Time, bool) { return st.bctx.Deadline() }
func (st *stream) Done() <-chan struct{}       { return st.bctx.Done() }
func (st *stream) Err() error                  { return st.bctx.Err() }

// baseContext returns the context the call's metadata is added to.
func (st *stream) baseContext() context.Context {
	if keysKnown {
		return st
	}
	return grpc.NewContextWithServerTransportStream(peer.NewContext(st, st.c.peer), (*transportStream)(st))
}

// transportStream is a stream as grpc.SetHeader, SendHeader, SetTrailer
// and Method find it in a handler's context.
type transportStream stream

func (t *transportStream) Method() string                  { return t.method }
func (t *transportStream) SetHeader(md metadata.MD) error  { return (*stream)(t).setHeader(md, false) }
func (t *transportStream) SendHeader(md metadata.MD) error { return (*stream)(t).setHeader(md, true) }
func (t *transportStream) SetTrailer(md metadata.MD) error { return (*stream)(t).setTrailer(md) }

var errIllegalHeaderWrite = status.Error(codes.Internal, "transport: SendHeader called multiple times")

// Context returns the handler's context: the tap's, when there is one.
func (st *stream) Context() context.Context { return st.ctx }

func (st *stream) SetHeader(md metadata.MD) error  { return st.setHeader(md, false) }
func (st *stream) SendHeader(md metadata.MD) error { return st.setHeader(md, true) }
func (st *stream) SetTrailer(md metadata.MD)       { _ = st.setTrailer(md) }

// setHeader adds md to the response headers, and sends them if send.
// The headers keep md itself: callers must not change it afterwards.
func (st *stream) setHeader(md metadata.MD, send bool) error {
	if md.Len() == 0 && !send {
		return nil
	}
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.done {
		if send {
			return st.doneErr()
		}
		return errIllegalHeaderWrite
	}
	if st.headerSent {
		return errIllegalHeaderWrite
	}
	if md.Len() > 0 {
		if st.header.Len() == 0 {
			st.header = md
		} else {
			st.header = metadata.Join(st.header, md)
		}
	}
	if !send {
		return nil
	}
	if err := st.writeHeaderLocked(); err != nil {
		return err
	}
	c.flushLocked()
	return nil
}

func (st *stream) setTrailer(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.done {
		return errIllegalHeaderWrite
	}
	if st.trailer.Len() == 0 {
		st.trailer = md
	} else {
		st.trailer = metadata.Join(st.trailer, md)
	}
	return nil
}

// doneErr is what writes on a finished stream fail with.
func (st *stream) doneErr() error {
	if st.c.werr != nil && st.c.werr != errConnClosed {
		return errTransportClosing
	}
	if err := st.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Canceled, context.Canceled.Error())
}

// run runs the call's handler and writes its status.
func (st *stream) run() {
	h := st.h
	if h.unary != nil {
		reply, err := h.unary(h.impl, st.ctx, st.RecvMsg, nil)
		if err != nil {
			st.writeStatus(convert(err))
		} else {
			st.sendReply(reply)
		}
	} else {
		st.writeStatus(convert(h.stream(h.impl, st)))
	}
	st.c.removeStream(st)
	st.cancel()
	st.release()
	st.c.s.handlersWG.Done()
}

var okStatus = status.New(codes.OK, "")

// convert is a handler's error as the status the client gets (grpc-go's
// rules: a status error's own, a context error's code, else UNKNOWN).
func convert(err error) *status.Status {
	if err == nil {
		return okStatus
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	return status.FromContextError(err)
}

// release gives the receive buffer back.
func (st *stream) release() {
	st.mu.Lock()
	st.closed = true
	rb, reading := st.rb, st.reading
	st.rb = nil
	st.mu.Unlock()
	if rb != nil && !reading {
		putRbuf(rb)
	}
}

// abort ends the stream without a status: the client reset it, or the
// connection closed. The call's context is cancelled.
func (st *stream) abort(err error) {
	c := st.c
	c.wmu.Lock()
	st.done = true
	st.wakeLocked()
	c.wmu.Unlock()
	st.mu.Lock()
	if st.rerr == nil {
		st.rerr = err
	}
	st.signalLocked()
	st.mu.Unlock()
	st.cancel()
}

// The receive side.

// testHookData, when set, is called after the reader buffers DATA for a
// stream, with the bytes buffered and not yet read.
var testHookData func(st *stream, buffered int)

// onData buffers a DATA frame's data (n bytes on the wire, padding
// included), on the reader. It returns the stream error to answer, or
// ErrCodeNo.
func (st *stream) onData(data []byte, n int, end bool) http2.ErrCode {
	st.mu.Lock()
	if st.closed || st.rerr != nil {
		st.mu.Unlock()
		return http2.ErrCodeNo
	}
	if st.eof {
		st.mu.Unlock()
		return http2.ErrCodeStreamClosed
	}
	st.received += int64(n)
	if st.received > st.granted {
		st.mu.Unlock()
		return http2.ErrCodeFlowControl
	}
	var incr int64
	if pad := n - len(data); pad > 0 {
		incr = st.consumeLocked(pad)
	}
	if len(data) > 0 {
		if st.rb == nil {
			st.rb = getRbuf(len(data))
		} else if cap(st.rb.b)-len(st.rb.b) < len(data) {
			st.growLocked(max(len(st.rb.b)-st.roff+len(data), 2*cap(st.rb.b)))
		}
		st.rb.b = append(st.rb.b, data...)
	}
	if end {
		st.eof = true
		st.remoteDone.Store(true)
	}
	if st.want > 0 && (st.availLocked() >= st.want || st.eof) {
		st.signalLocked()
	}
	buffered := st.availLocked()
	st.mu.Unlock()
	if incr > 0 {
		st.c.queue(func(b []byte) []byte { return appendWindowUpdate(b, st.id, uint32(incr)) })
	}
	if testHookData != nil {
		testHookData(st, buffered)
	}
	return http2.ErrCodeNo
}

func (st *stream) availLocked() int {
	if st.rb == nil {
		return 0
	}
	return len(st.rb.b) - st.roff
}

func (st *stream) signalLocked() {
	if st.ready != nil {
		select {
		case st.ready <- struct{}{}:
		default:
		}
	}
}

// growLocked moves the unread bytes to a buffer of at least n bytes.
func (st *stream) growLocked(n int) {
	old := st.rb
	st.rb = getRbuf(n)
	if old == nil {
		return
	}
	st.rb.b = append(st.rb.b, old.b[st.roff:]...)
	st.roff = 0
	if !st.reading {
		putRbuf(old)
	}
}

// consumeLocked counts k bytes read by the handler and returns the
// WINDOW_UPDATE increment that gives the client its window back, or 0
// while less than a quarter of it is owed.
func (st *stream) consumeLocked(k int) int64 {
	st.consumed += int64(k)
	if st.eof {
		return 0
	}
	limit := int64(st.c.s.opts.InitialWindowSize)
	if d := st.consumed + limit - st.granted; d >= limit/4 {
		st.granted += d
		return d
	}
	return 0
}

// openWindowLocked returns the WINDOW_UPDATE increment that lets the
// client send the remaining bytes of the message being read, or 0 if its
// window holds them.
func (st *stream) openWindowLocked(remaining int) int64 {
	want := st.received + min(int64(remaining), maxWindow)
	if st.eof || want <= st.granted {
		return 0
	}
	d := want - st.granted
	st.granted = want
	return d
}

// waitLocked waits, with mu released, until need bytes are buffered, the
// stream ends, or the handler's context ends.
func (st *stream) waitLocked(need int) error {
	if st.ready == nil {
		st.ready = make(chan struct{}, 1)
	}
	st.want = need
	ready := st.ready
	st.mu.Unlock()
	var err error
	select {
	case <-ready:
	case <-st.ctx.Done():
		err = status.FromContextError(st.ctx.Err()).Err()
	}
	st.mu.Lock()
	st.want = 0
	return err
}

var errUnexpectedEOF = status.Error(codes.Internal, io.ErrUnexpectedEOF.Error())

// readMessage returns the next message's bytes (valid until consume) and
// whether they are compressed; io.EOF once the client has sent them all.
// It opens the stream's window to the message's length once its prefix
// is in, and never before.
func (st *stream) readMessage() (bool, []byte, error) {
	st.mu.Lock()
	if err := st.waitPrefixLocked(); err != nil {
		st.mu.Unlock()
		return false, nil, err
	}
	hdr := st.rb.b[st.roff:]
	compressed, n, err := grpcwire.ParsePrefix(hdr)
	if err != nil {
		st.mu.Unlock()
		return false, nil, status.Errorf(codes.Internal, "grpc: received unexpected payload format %d", hdr[0])
	}
	if max := st.c.s.maxRecv; int64(n) > int64(max) {
		st.mu.Unlock()
		return false, nil, status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, max)
	}
	need := grpcwire.PrefixLen + int(n)
	if st.availLocked() < need && cap(st.rb.b)-st.roff < need {
		st.growLocked(need)
	}
	for {
		avail := st.availLocked()
		if avail >= need {
			break
		}
		if st.rerr != nil {
			st.mu.Unlock()
			return false, nil, st.rerr
		}
		if st.eof {
			st.mu.Unlock()
			return false, nil, errUnexpectedEOF
		}
		if incr := st.openWindowLocked(need - avail); incr > 0 {
			st.mu.Unlock()
			st.c.sendWindowUpdate(st.id, incr)
			st.mu.Lock()
			continue
		}
		if err := st.waitLocked(need); err != nil {
			st.mu.Unlock()
			return false, nil, err
		}
	}
	st.reading = true
	data := st.rb.b[st.roff+grpcwire.PrefixLen : st.roff+need]
	st.mu.Unlock()
	return compressed, data, nil
}

// waitPrefixLocked waits, with mu released meanwhile, until the next
// message's prefix is buffered; it returns endedLocked's error when the
// stream ends first, or the handler context's.
func (st *stream) waitPrefixLocked() error {
	for st.availLocked() < grpcwire.PrefixLen {
		if err := st.endedLocked(); err != nil {
			return err
		}
		if err := st.waitLocked(grpcwire.PrefixLen); err != nil {
			return err
		}
	}
	return nil
}

// endedLocked returns the error that ends reading when no whole message
// prefix is buffered: the stream's, io.EOF after the client's last
// message, or an unexpected EOF within a prefix.
func (st *stream) endedLocked() error {
	if st.rerr != nil {
		return st.rerr
	}
	if st.eof {
		if st.availLocked() == 0 {
			return io.EOF
		}
		return errUnexpectedEOF
	}
	return nil
}

// consume ends the read of a message of n bytes (prefix included).
func (st *stream) consume(n int) {
	st.mu.Lock()
	st.reading = false
	if st.rb != nil {
		st.roff += n
		if st.roff == len(st.rb.b) {
			st.rb.b = st.rb.b[:0]
			st.roff = 0
		}
	}
	incr := st.consumeLocked(n)
	st.mu.Unlock()
	if incr > 0 {
		st.c.sendWindowUpdate(st.id, incr)
	}
}

// NextMessageSize waits until the prefix of the next message is in, and
// returns the length it declares and whether the message is compressed,
// without reading the message or opening the stream's window for it: a
// handler can take room for exactly what RecvMsg will hold (grpc-go's
// streams cannot say). Errors are RecvMsg's (io.EOF once the client has
// sent every message) but answer nothing: the call's RecvMsg answers
// them. Waits end with the handler's context (the tap's).
func (st *stream) NextMessageSize() (int, bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.waitPrefixLocked(); err != nil {
		return 0, false, err
	}
	compressed, n, err := grpcwire.ParsePrefix(st.rb.b[st.roff:])
	if err != nil {
		return 0, false, status.Error(codes.Internal, err.Error())
	}
	return int(n), compressed, nil
}

// RecvMsg reads the next message into m. As grpc-go's, it returns io.EOF
// once the client has sent every message; for a method that takes one
// request message it reads on to the client's end and fails if there is
// another; and a failure other than io.EOF answers the call at once with
// its status. Waits end with the handler's context (the tap's).
func (st *stream) RecvMsg(m any) error {
	err := st.recvMsg(m)
	if err != nil && err != io.EOF {
		st.writeStatus(convert(err))
	}
	return err
}

func (st *stream) recvMsg(m any) error {
	if err := st.recvOne(m); err != nil {
		if err == io.EOF && !st.h.clientStreams && !st.recvFirst {
			return status.Error(codes.Internal, "cardinality violation: received no request message from non-client-streaming RPC")
		}
		return err
	}
	st.recvFirst = true
	if st.h.clientStreams {
		return nil
	}
	st.mu.Lock()
	for st.availLocked() == 0 && !st.eof && st.rerr == nil {
		if err := st.waitLocked(1); err != nil {
			st.mu.Unlock()
			return err
		}
	}
	err := st.endedLocked()
	st.mu.Unlock()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return err
	}
	return status.Error(codes.Internal, "cardinality violation: received multiple request messages for non-client-streaming RPC")
}

func (st *stream) recvOne(m any) error {
	compressed, data, err := st.readMessage()
	if err != nil {
		return err
	}
	n := grpcwire.PrefixLen + len(data)
	if compressed {
		if !st.gzip {
			st.consume(n)
			return status.Error(codes.Internal, "grpc: compressed flag set with identity or empty encoding")
		}
		data, err = gunzip(data, st.c.s.maxRecv)
		st.consume(n)
		if err != nil {
			return err
		}
		n = 0
	}
	st.sb = mem.SliceBuffer(data)
	st.bs[0] = &st.sb
	err = st.c.s.opts.Codec.Unmarshal(st.bs[:], m)
	st.bs[0], st.sb = nil, nil
	if n > 0 {
		st.consume(n)
	}
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}
