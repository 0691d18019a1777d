package server

import (
	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/oip/grpcwire"
)

// The send side of a call: its messages, headers and status, written
// through the connection's writer under wmu.

// SendMsg sends m. The message of a method that answers once is flushed
// with the call's status; a streaming method's messages are flushed as
// they are sent. As grpc-go's, a failure answers the call with its status.
func (st *stream) SendMsg(m any) error {
	data, err := st.marshal(m)
	if err == nil {
		c := st.c
		c.wmu.Lock()
		err = st.writeMessageLocked(data)
		if err == nil && st.h.serverStreams {
			c.flushLocked()
		}
		c.wmu.Unlock()
		data.Free()
	}
	if err != nil {
		st.writeStatus(convert(err))
	}
	return err
}

func (st *stream) marshal(m any) (mem.BufferSlice, error) {
	data, err := st.c.s.opts.Codec.Marshal(m)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err.Error())
	}
	if n, max := data.Len(), st.c.s.opts.MaxSendMsgSize; n > max {
		data.Free()
		return nil, status.Errorf(codes.ResourceExhausted, "trying to send message larger than max (%d vs. %d)", n, max)
	}
	return data, nil
}

// sendReply answers a unary call: headers, message and status in one
// flush.
func (st *stream) sendReply(reply any) {
	data, err := st.marshal(reply)
	if err != nil {
		st.writeStatus(convert(err))
		return
	}
	c := st.c
	c.wmu.Lock()
	s := okStatus
	if err := st.writeMessageLocked(data); err != nil {
		s = convert(err)
	}
	wrote := st.writeStatusLocked(s)
	c.flushLocked()
	c.wmu.Unlock()
	data.Free()
	if wrote {
		c.removeStream(st)
		st.cancel()
	}
}

// writeStatus ends the call with s, unless it has ended already.
func (st *stream) writeStatus(s *status.Status) {
	c := st.c
	c.wmu.Lock()
	wrote := st.writeStatusLocked(s)
	if wrote {
		c.flushLocked()
	}
	c.wmu.Unlock()
	if wrote {
		// As grpc-go's: the status ends the call, and its context.
		c.removeStream(st)
		st.cancel()
	}
}

// writeStatusLocked queues the call's trailers (headers and trailers in
// one block if no header was sent), and RST_STREAM NO_ERROR if the client
// is still sending. It reports whether it queued anything.
func (st *stream) writeStatusLocked(s *status.Status) bool {
	c := st.c
	if st.done || c.werr != nil {
		st.done = true
		return false
	}
	if !st.headerSent {
		if st.header.Len() > 0 {
			if st.writeHeaderLocked() != nil {
				return true
			}
		} else {
			st.headerSent = true
			c.field(":status", "200")
			c.field("content-type", contentType(st.subtype))
		}
	}
	st.done = true
	c.statusFields(s, st.trailer)
	if !c.writeHeaderBlockLocked(st.id, true) {
		c.wbuf = appendRSTStream(c.wbuf, st.id, http2.ErrCodeInternal)
		return true
	}
	if !st.remoteDone.Load() {
		c.wbuf = appendRSTStream(c.wbuf, st.id, http2.ErrCodeNo)
	}
	c.resetStrikes.Store(true)
	return true
}

var errHeaderListSize = status.Error(codes.Internal, "header list size to send violates the maximum size the client allows")

// writeHeaderLocked queues the response headers.
func (st *stream) writeHeaderLocked() error {
	c := st.c
	st.headerSent = true
	c.field(":status", "200")
	c.field("content-type", contentType(st.subtype))
	for k, vv := range st.header {
		if reservedHeader(k) {
			continue
		}
		for _, v := range vv {
			c.metadataField(k, v)
		}
	}
	if !c.writeHeaderBlockLocked(st.id, false) {
		st.done = true
		c.wbuf = appendRSTStream(c.wbuf, st.id, http2.ErrCodeInternal)
		return errHeaderListSize
	}
	c.resetStrikes.Store(true)
	return nil
}

// writeMessageLocked queues a message's DATA frames, within the peer's
// windows and frame size, waiting for window as needed.
func (st *stream) writeMessageLocked(data mem.BufferSlice) error {
	c := st.c
	if st.done || c.werr != nil {
		return st.doneErr()
	}
	if !st.headerSent {
		if err := st.writeHeaderLocked(); err != nil {
			return err
		}
	}
	var prefix [grpcwire.PrefixLen]byte
	cur := cursor{prefix: grpcwire.AppendPrefix(prefix[:0], data.Len(), false), data: data}
	total := int64(grpcwire.PrefixLen + data.Len())
	for total > 0 {
		if st.done || c.werr != nil {
			return st.doneErr()
		}
		n := min(total, c.sendQuota, st.sendQuota, int64(c.peerMaxFrame))
		if n <= 0 {
			if err := st.waitWindowLocked(); err != nil {
				return err
			}
			continue
		}
		c.wbuf = appendFrameHeader(c.wbuf, int(n), frameData, 0, st.id)
		c.wbuf = cur.appendTo(c.wbuf, int(n))
		c.sendQuota -= n
		st.sendQuota -= n
		total -= n
		// A client's PING that follows DATA is no strike (grpc-go's
		// clients ping to estimate bandwidth as data comes).
		c.resetStrikes.Store(true)
		c.makeRoomLocked()
	}
	return nil
}

// waitWindowLocked flushes and waits, with wmu released, for the peer to
// open a window.
func (st *stream) waitWindowLocked() error {
	c := st.c
	c.flushLocked()
	// flushLocked may have released wmu: the window may have opened
	// meanwhile, with no one to wake this stream yet.
	if c.sendQuota > 0 && st.sendQuota > 0 || st.done || c.werr != nil {
		return nil
	}
	if st.wwake == nil {
		st.wwake = make(chan struct{}, 1)
	}
	if !st.inBlocked {
		st.inBlocked = true
		c.blocked = append(c.blocked, st)
	}
	c.wmu.Unlock()
	var err error
	select {
	case <-st.wwake:
	case <-st.ctx.Done():
		err = status.FromContextError(st.ctx.Err()).Err()
	case <-c.done:
		err = errTransportClosing
	}
	c.wmu.Lock()
	return err
}

// wakeLocked wakes the stream's wait for window (c.wmu held).
func (st *stream) wakeLocked() {
	st.inBlocked = false
	if st.wwake != nil {
		select {
		case st.wwake <- struct{}{}:
		default:
		}
	}
}

// cursor walks a message's prefix and bytes.
type cursor struct {
	prefix []byte
	data   mem.BufferSlice
	i, off int
}

func (c *cursor) appendTo(b []byte, n int) []byte {
	for n > 0 {
		if len(c.prefix) > 0 {
			k := min(n, len(c.prefix))
			b = append(b, c.prefix[:k]...)
			c.prefix = c.prefix[k:]
			n -= k
			continue
		}
		buf := c.data[c.i].ReadOnlyData()
		k := min(n, len(buf)-c.off)
		b = append(b, buf[c.off:c.off+k]...)
		n -= k
		if c.off += k; c.off == len(buf) {
			c.i++
			c.off = 0
		}
	}
	return b
}

// sendWindowUpdate sends a stream WINDOW_UPDATE at once.
func (c *conn) sendWindowUpdate(id uint32, incr int64) {
	c.wmu.Lock()
	if c.werr == nil {
		c.wbuf = appendWindowUpdate(c.wbuf, id, uint32(incr))
		c.flushLocked()
	}
	c.wmu.Unlock()
}
