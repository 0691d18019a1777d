package client

import (
	"context"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/infergate/infergate/oip/grpcwire"
)

// call is the state of one call, pooled by the Client. The caller's
// goroutine owns the send side. The read goroutine owns the receive side
// while the stream is in its connection's streams map, and touches it
// only under the connection's mu; whoever removes the stream from the
// map (the read goroutine ending it, or the caller cancelling it) decides
// its outcome, and the read goroutine signals done exactly once when it is
// that one.
type call struct {
	done chan struct{} // cap 1: the read goroutine ended the stream
	wake chan struct{} // cap 1: send window grew

	id      uint32
	req     []byte
	sendPre [grpcwire.PrefixLen]byte
	tbuf    [16]byte // grpc-timeout's value
	sentEnd bool     // END_STREAM written (caller only)
	dl      time.Time

	// Under the connection's mu.
	sendWin int32
	waiting bool // waits for send window

	// Receive side, under the connection's mu while the stream is open.
	recvWin      int64
	recvUnacked  int64
	gotHeaders   bool // the response's header block ended
	remoteClosed bool // the peer ended the stream (END_STREAM or RST_STREAM)
	peerGone     bool // no RST_STREAM may or need be sent
	hsize        uint32
	httpStatus   int
	ctSeen, ctOK bool
	hasStatus    bool
	badStatus    bool
	grpcStatus   int
	grpcMsg      string
	encoding     string
	pre          [grpcwire.PrefixLen]byte
	npre         int
	msg          []byte
	nmsg         int
	gotMsg       bool

	// The outcome.
	resp []byte
	err  error
}

// reset readies cs for another call, keeping its channels (empty).
func (cs *call) reset() {
	select {
	case <-cs.wake:
	default:
	}
	*cs = call{done: cs.done, wake: cs.wake}
}

// roundTrip makes the call on cc, where the caller has reserved a stream,
// and releases the stream. errNotSent means nothing was written: cc took
// no new stream any more.
func (cc *conn) roundTrip(ctx context.Context, cs *call, method string, req []byte, md []string) ([]byte, error) {
	var timeout []byte
	if dl, ok := ctx.Deadline(); ok {
		cs.dl = dl
		d := time.Until(dl)
		if d <= 0 {
			cc.release()
			return nil, ctxError(context.DeadlineExceeded)
		}
		timeout = grpcwire.AppendTimeout(cs.tbuf[:0], d)
	}
	cs.req = req
	_ = grpcwire.AppendPrefix(cs.sendPre[:0], len(req), false)
	total := grpcwire.PrefixLen + len(req)

	cc.lockWrite()
	cc.mu.Lock()
	if cc.dead || cc.goAway || cc.nextID > maxStreamID {
		cc.mu.Unlock()
		_ = cc.unlockWrite()
		cc.release()
		return nil, errNotSent
	}
	cs.id = cc.nextID
	cc.nextID += 2
	if cc.nextID > maxStreamID {
		cc.closing.Store(true)
	}
	cs.sendWin = cc.peerInitWin
	cs.recvWin = int64(cc.cl.opts.StreamWindow)
	cc.streams[cs.id] = cs
	n := cc.takeWindowLocked(cs, total)
	maxFrame := int(cc.peerMaxFrm)
	cc.mu.Unlock()
	err := cc.writeHeaders(cs.id, method, timeout, md, maxFrame)
	if err == nil && n > 0 {
		cs.sentEnd = n == total
		err = cc.writeData(cs, 0, n, maxFrame)
	}
	if ferr := cc.unlockWrite(); err == nil {
		err = ferr
	}
	if err != nil {
		// The read goroutine fails every stream of cc, this one too.
		cc.fail(err)
	}
	sent := n
	finished := false
	for err == nil && sent < total && !finished {
		n, maxFrame, open := cc.takeWindow(cs, total-sent)
		if !open {
			break // ended by the peer or the connection: done is sent
		}
		if n == 0 {
			select {
			case <-cs.wake:
				continue
			case <-cs.done:
				finished = true
				continue
			case <-ctx.Done():
				return cc.cancel(cs, ctx.Err())
			}
		}
		cc.lockWrite()
		cs.sentEnd = sent+n == total
		err = cc.writeData(cs, sent, n, maxFrame)
		if ferr := cc.unlockWrite(); err == nil {
			err = ferr
		}
		if err != nil {
			cc.fail(err)
		}
		sent += n
	}
	if !finished {
		select {
		case <-cs.done:
		case <-ctx.Done():
			return cc.cancel(cs, ctx.Err())
		}
	}
	if !cs.peerGone && (!cs.sentEnd || !cs.remoteClosed) {
		// The stream ended before both sides did: the peer must learn
		// that this side ends it too (RFC 9113 §8.1).
		cc.writeReset(cs.id)
	}
	cc.release()
	return cs.resp, cs.err
}

// cancel ends cs because its context ended, resetting the stream, unless
// the read goroutine ended it first: then its outcome stands.
func (cc *conn) cancel(cs *call, cause error) ([]byte, error) {
	cc.lockWrite()
	cc.mu.Lock()
	owned := cc.streams[cs.id] == cs
	if owned {
		delete(cc.streams, cs.id)
		if cs.waiting {
			cs.waiting = false
			cc.nwaiting--
		}
	}
	dead := cc.dead
	cc.mu.Unlock()
	var err error
	if owned && !dead {
		// Under the same hold of wmu as the stream's removal, so that the
		// reset precedes any stream opened in its place.
		err = cc.fr.WriteRSTStream(cs.id, http2.ErrCodeCancel)
	}
	if ferr := cc.unlockWrite(); err == nil {
		err = ferr
	}
	if err != nil {
		cc.fail(err)
	}
	if !owned {
		<-cs.done
		if !cs.peerGone && (!cs.sentEnd || !cs.remoteClosed) {
			cc.writeReset(cs.id)
		}
		cc.release()
		return cs.resp, cs.err
	}
	cc.release()
	return nil, ctxError(cause)
}

func (cc *conn) writeReset(id uint32) {
	cc.lockWrite()
	err := cc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	if ferr := cc.unlockWrite(); err == nil {
		err = ferr
	}
	if err != nil {
		cc.fail(err)
	}
}

// takeWindowLocked takes up to want bytes of send window for cs.
func (cc *conn) takeWindowLocked(cs *call, want int) int {
	n := int32(min(want, maxWindow))
	n = min(n, cs.sendWin, cc.sendWin)
	if n <= 0 {
		return 0
	}
	cs.sendWin -= n
	cc.sendWin -= n
	return int(n)
}

// takeWindow takes send window for more of cs's body, or marks cs as
// waiting for it (n == 0). open is false when cs is no longer open.
func (cc *conn) takeWindow(cs *call, want int) (n, maxFrame int, open bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.streams[cs.id] != cs {
		return 0, 0, false
	}
	n = cc.takeWindowLocked(cs, want)
	if n == 0 && !cs.waiting {
		cs.waiting = true
		cc.nwaiting++
	}
	return n, int(cc.peerMaxFrm), true
}

// wakeLocked tells cs, if it waits, that its send window grew.
func (cc *conn) wakeLocked(cs *call) {
	if !cs.waiting {
		return
	}
	cs.waiting = false
	cc.nwaiting--
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

// Header fields of every request.
var (
	hfMethod      = hpack.HeaderField{Name: ":method", Value: "POST"}
	hfScheme      = hpack.HeaderField{Name: ":scheme", Value: "http"}
	hfContentType = hpack.HeaderField{Name: "content-type", Value: grpcwire.ContentType}
	hfTE          = hpack.HeaderField{Name: "te", Value: "trailers"}
)

// writeHeaders writes the request's header block, under wmu.
func (cc *conn) writeHeaders(id uint32, method string, timeout []byte, md []string, maxFrame int) error {
	cc.hbuf.Reset()
	e := cc.henc
	_ = e.WriteField(hfMethod)
	_ = e.WriteField(hfScheme)
	_ = e.WriteField(hpack.HeaderField{Name: ":path", Value: method})
	_ = e.WriteField(hpack.HeaderField{Name: ":authority", Value: cc.cl.addr})
	_ = e.WriteField(hfContentType)
	_ = e.WriteField(hpack.HeaderField{Name: "user-agent", Value: cc.cl.opts.UserAgent})
	_ = e.WriteField(hfTE)
	if timeout != nil {
		// A literal without indexing (RFC 7541 §6.2.2), written here
		// rather than by the encoder: the value differs per call, so
		// indexing it would only churn the dynamic table, and the
		// encoder wants a string.
		b := cc.hbuf.AvailableBuffer()
		b = append(b, 0, byte(len("grpc-timeout")))
		b = append(b, "grpc-timeout"...)
		b = append(b, byte(len(timeout)))
		b = append(b, timeout...)
		cc.hbuf.Write(b)
	}
	for i := 0; i+1 < len(md); i += 2 {
		_ = e.WriteField(hpack.HeaderField{Name: md[i], Value: md[i+1]})
	}
	block := cc.hbuf.Bytes()
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), maxFrame)]
		block = block[len(frag):]
		var err error
		if first {
			err = cc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = cc.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeData writes bytes [off, off+n) of cs's body (its message prefix
// and request) as DATA frames, under wmu, with END_STREAM on the last if
// cs.sentEnd.
func (cc *conn) writeData(cs *call, off, n, maxFrame int) error {
	for n > 0 {
		k := min(n, maxFrame)
		n -= k
		var flags http2.Flags
		if n == 0 && cs.sentEnd {
			flags = http2.FlagDataEndStream
		}
		h := &cc.fhdr
		h[0], h[1], h[2] = byte(k>>16), byte(k>>8), byte(k)
		h[3], h[4] = byte(http2.FrameData), byte(flags)
		h[5], h[6], h[7], h[8] = byte(cs.id>>24), byte(cs.id>>16), byte(cs.id>>8), byte(cs.id)
		if _, err := cc.bw.Write(h[:]); err != nil {
			return err
		}
		end := off + k
		if off < grpcwire.PrefixLen {
			if _, err := cc.bw.Write(cs.sendPre[off:min(end, grpcwire.PrefixLen)]); err != nil {
				return err
			}
			off = min(end, grpcwire.PrefixLen)
		}
		if off < end {
			if _, err := cc.bw.Write(cs.req[off-grpcwire.PrefixLen : end-grpcwire.PrefixLen]); err != nil {
				return err
			}
			off = end
		}
	}
	return nil
}
