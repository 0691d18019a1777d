package server

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// connError is an HTTP/2 connection error: the connection ends with a
// GOAWAY carrying code.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string {
	return "server: connection error " + e.code.String() + ": " + e.reason
}

func protocolError(reason string) error { return connError{http2.ErrCodeProtocol, reason} }

var (
	errConnClosed = errors.New("server: connection closed")
	// errTransportClosing is what a call's reads and writes fail with once
	// its connection is gone, as grpc-go's do.
	errTransportClosing = status.Error(codes.Unavailable, "transport is closing")
	errStreamReset      = status.Error(codes.Canceled, "stream reset by the client")
)

// goAwayPing is the PING a graceful GOAWAY sends (grpc-go's data).
var goAwayPing = [8]byte{1, 6, 1, 8, 0, 3, 3, 9}

// drainPingWait bounds the wait for the answer to goAwayPing.
const drainPingWait = 5 * time.Second

// closeWait bounds a connection's end once its work is done: the last
// writes, and the wait for the client to close its side.
const closeWait = time.Second

// maxPendingDispatch bounds the calls the reader holds back while it
// reads the frames already buffered (see readLoop).
const maxPendingDispatch = 64

// conn is one HTTP/2 connection. Its serve goroutine reads and handles
// every frame; handlers write through the connection's buffered writer
// (see writer.go).
type conn struct {
	s    *Server
	nc   net.Conn
	br   *bufio.Reader
	peer *peer.Peer
	done chan struct{} // closed by close

	// Owned by the serve goroutine.
	hdec        *hpack.Decoder
	hdr         headerBlock
	contID      uint32 // the stream whose CONTINUATION frames must come next
	pending     []*stream
	recvQuota   int64  // what the client may still send on the connection
	unacked     uint32 // received since the last connection WINDOW_UPDATE
	lastPing    time.Time
	pingStrikes int
	tapInfo     tap.Info
	opening     bool // a stream's HEADERS are being handled (see idleLocked)

	mu           sync.Mutex
	streams      map[uint32]*stream
	maxStreamID  uint32 // the largest stream ID the client opened
	idleSince    time.Time
	closed       bool
	handshaken   bool
	drainStarted bool
	goAwaySent   bool // the final GOAWAY: no stream is accepted any more
	idleTimer    *time.Timer
	drainTimer   *time.Timer

	// resetStrikes is set as the server sends HEADERS or DATA: a client
	// PING that follows is no strike (see onPing).
	resetStrikes atomic.Bool

	writer
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s:         s,
		nc:        nc,
		br:        bufio.NewReaderSize(nc, s.opts.ReadBufferSize),
		peer:      &peer.Peer{Addr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr()},
		done:      make(chan struct{}),
		streams:   make(map[uint32]*stream),
		recvQuota: int64(s.opts.InitialConnWindowSize),
		idleSince: time.Now(),
	}
	c.hdec = hpack.NewDecoder(4096, c.emit)
	c.hdec.SetMaxStringLength(int(s.maxHeaderList()))
	c.writer.init(nc)
	c.writer.mode = s.flushMode
	return c
}

// serve runs the connection to its end.
func (c *conn) serve() {
	err := c.handshake()
	if err == nil {
		if d := c.s.opts.MaxConnectionIdle; d > 0 {
			c.mu.Lock()
			if !c.closed {
				c.idleTimer = time.AfterFunc(d, c.checkIdle)
			}
			c.mu.Unlock()
		}
		err = c.readLoop()
	}
	var ce connError
	if errors.As(err, &ce) {
		c.goAwayAndClose(ce)
	}
	// Calls accepted but not dispatched yet end with the connection.
	for _, st := range c.pending {
		st.abort(errTransportClosing)
		st.release()
		c.s.handlersWG.Done()
	}
	c.pending = nil
	c.close(err)
	c.s.removeConn(c)
}

// handshake sends the server's preface and reads the client's: its magic
// and first SETTINGS frame, within ConnectionTimeout.
func (c *conn) handshake() error {
	_ = c.nc.SetDeadline(time.Now().Add(c.s.opts.ConnectionTimeout))
	if tc, ok := c.nc.(*tls.Conn); ok {
		// A listener from tls.NewListener: the TLS handshake comes first,
		// within the same ConnectionTimeout, and the peer's AuthInfo is
		// what grpc-go's TLS credentials give handlers.
		if err := tc.Handshake(); err != nil {
			return err
		}
		c.peer.AuthInfo = credentials.TLSInfo{
			State:          tc.ConnectionState(),
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		}
	}
	c.wmu.Lock()
	c.wbuf = append(c.wbuf, c.s.settings...)
	c.flushLocked()
	err := c.werr
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	p, err := c.br.Peek(len(clientPreface))
	if err != nil {
		return err
	}
	if string(p) != clientPreface {
		return errors.New("server: the client did not send the HTTP/2 preface")
	}
	c.br.Discard(len(p))
	hb, err := c.br.Peek(frameHeaderLen)
	if err != nil {
		return err
	}
	fh := parseFrameHeader(hb)
	if fh.typ != frameSettings || fh.has(flagAck) {
		return protocolError("the first frame is not SETTINGS")
	}
	if _, err := c.readFrame(); err != nil {
		return err
	}
	_ = c.nc.SetDeadline(time.Time{})
	c.mu.Lock()
	c.handshaken = true
	c.mu.Unlock()
	return nil
}

// readLoop reads frames until the connection fails or closes.
//
// New calls are handed to workers only once the frames already buffered
// are handled (or maxPendingDispatch are waiting): a call's message
// usually follows its HEADERS in the same read, and so is there when its
// handler first asks for it. The frames the reader queues (SETTINGS and
// PING acknowledgements, WINDOW_UPDATEs) are flushed then too.
func (c *conn) readLoop() error {
	batch := 0 // bytes handled since the last dispatch and flush
	for {
		if batch >= maxBatchBytes || !c.frameBuffered() {
			for i, st := range c.pending {
				c.s.dispatch(st)
				c.pending[i] = nil
			}
			c.pending = c.pending[:0]
			c.flush()
			batch = 0
		} else if len(c.pending) >= maxPendingDispatch {
			for i, st := range c.pending {
				c.s.dispatch(st)
				c.pending[i] = nil
			}
			c.pending = c.pending[:0]
		}
		n, err := c.readFrame()
		if err != nil {
			return err
		}
		batch += n
	}
}

// maxBatchBytes bounds what the reader handles while calls or frames it
// queued wait (see readLoop): a client that keeps the read buffer full
// does not hold them back longer.
const maxBatchBytes = 64 << 10

// frameBuffered reports whether a whole frame is buffered.
func (c *conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < frameHeaderLen {
		return false
	}
	b, _ := c.br.Peek(frameHeaderLen)
	return n >= frameHeaderLen+int(parseFrameHeader(b).length)
}

// readFrame reads one frame and handles it; it returns the frame's size.
func (c *conn) readFrame() (int, error) {
	hb, err := c.br.Peek(frameHeaderLen)
	if err != nil {
		return 0, err
	}
	fh := parseFrameHeader(hb)
	c.br.Discard(frameHeaderLen)
	if fh.length > defaultMaxFrameSize {
		return 0, connError{http2.ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE"}
	}
	p, err := c.br.Peek(int(fh.length))
	if err != nil {
		return 0, err
	}
	err = c.handleFrame(fh, p)
	c.br.Discard(len(p))
	return frameHeaderLen + len(p), err
}

func (c *conn) handleFrame(fh frameHeader, p []byte) error {
	if c.contID != 0 && (fh.typ != frameContinuation || fh.streamID != c.contID) {
		return protocolError("expected CONTINUATION of the header block")
	}
	switch fh.typ {
	case frameData:
		return c.onData(fh, p)
	case frameHeaders:
		return c.onHeaders(fh, p)
	case frameContinuation:
		if c.contID == 0 {
			return protocolError("CONTINUATION without HEADERS")
		}
		return c.onHeaderFragment(p, fh.has(flagEndHeaders))
	case framePriority:
		if fh.streamID == 0 {
			return protocolError("PRIORITY on stream 0")
		}
		if len(p) != 5 {
			c.resetStream(fh.streamID, http2.ErrCodeFrameSize)
			return nil
		}
		if binary.BigEndian.Uint32(p)&maxStreamID == fh.streamID {
			c.resetStream(fh.streamID, http2.ErrCodeProtocol)
		}
		return nil
	case frameRSTStream:
		return c.onRSTStream(fh, p)
	case frameSettings:
		return c.onSettings(fh, p)
	case framePushPromise:
		return protocolError("PUSH_PROMISE from a client")
	case framePing:
		return c.onPing(fh, p)
	case frameGoAway:
		if fh.streamID != 0 {
			return protocolError("GOAWAY on a stream")
		}
		if len(p) < 8 {
			return connError{http2.ErrCodeFrameSize, "short GOAWAY"}
		}
		return nil
	case frameWindowUpdate:
		return c.onWindowUpdate(fh, p)
	}
	return nil // unknown frame types are ignored
}

// stream returns the open stream id, or nil.
func (c *conn) stream(id uint32) *stream {
	c.mu.Lock()
	st := c.streams[id]
	c.mu.Unlock()
	return st
}

// idle reports whether id names a stream the client has not opened yet.
// Only the serve goroutine changes maxStreamID, and may read it unlocked.
func (c *conn) idle(id uint32) bool { return id > c.maxStreamID }

func (c *conn) onData(fh frameHeader, p []byte) error {
	if fh.streamID == 0 {
		return protocolError("DATA on stream 0")
	}
	data := p
	if fh.has(flagPadded) {
		if len(p) == 0 || int(p[0]) >= len(p) {
			return protocolError("DATA padding exceeds the frame")
		}
		data = p[1 : len(p)-int(p[0])]
	}
	n := int64(fh.length)
	if n > c.recvQuota {
		return connError{http2.ErrCodeFlowControl, "DATA beyond the connection's window"}
	}
	// The connection's window is given back as frames arrive, not as they
	// are read: the streams' windows bound what is held.
	c.recvQuota -= n
	c.unacked += uint32(n)
	if c.unacked >= uint32(c.s.opts.InitialConnWindowSize)/4 {
		c.recvQuota += int64(c.unacked)
		c.sendWindowUpdate(0, int64(c.unacked))
		c.unacked = 0
	}
	st := c.stream(fh.streamID)
	if st == nil {
		if c.idle(fh.streamID) {
			return protocolError("DATA on an idle stream")
		}
		return nil // a closed stream: frames in flight are dropped
	}
	if code := st.onData(data, int(n), fh.has(flagEndStream)); code != http2.ErrCodeNo {
		c.resetOpen(st, code)
	}
	return nil
}

func (c *conn) onRSTStream(fh frameHeader, p []byte) error {
	if fh.streamID == 0 {
		return protocolError("RST_STREAM on stream 0")
	}
	if len(p) != 4 {
		return connError{http2.ErrCodeFrameSize, "RST_STREAM of the wrong size"}
	}
	if c.idle(fh.streamID) {
		return protocolError("RST_STREAM on an idle stream")
	}
	if st := c.takeStream(fh.streamID); st != nil {
		st.abort(errStreamReset)
	}
	return nil
}

func (c *conn) onSettings(fh frameHeader, p []byte) error {
	if fh.streamID != 0 {
		return protocolError("SETTINGS on a stream")
	}
	if fh.has(flagAck) {
		if len(p) != 0 {
			return connError{http2.ErrCodeFrameSize, "SETTINGS ACK with a payload"}
		}
		return nil
	}
	if len(p)%6 != 0 {
		return connError{http2.ErrCodeFrameSize, "SETTINGS of the wrong size"}
	}
	for ; len(p) > 0; p = p[6:] {
		id, v := http2.SettingID(binary.BigEndian.Uint16(p)), binary.BigEndian.Uint32(p[2:])
		switch id {
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSizeLimit(v)
			c.wmu.Unlock()
		case http2.SettingEnablePush:
			if v > 1 {
				return protocolError("SETTINGS_ENABLE_PUSH neither 0 nor 1")
			}
		case http2.SettingInitialWindowSize:
			if v > maxWindow {
				return connError{http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE too large"}
			}
			if err := c.setPeerInitialWindow(int64(v)); err != nil {
				return err
			}
		case http2.SettingMaxFrameSize:
			if v < defaultMaxFrameSize || v > maxFrameSizeLimit {
				return protocolError("SETTINGS_MAX_FRAME_SIZE out of range")
			}
			c.wmu.Lock()
			c.peerMaxFrame = int(v)
			c.wmu.Unlock()
		case http2.SettingMaxHeaderListSize:
			c.wmu.Lock()
			c.peerMaxHeaderList = v
			c.wmu.Unlock()
		}
	}
	c.queue(appendSettingsAck)
	return nil
}

// setPeerInitialWindow applies a new SETTINGS_INITIAL_WINDOW_SIZE to every
// open stream's send window.
func (c *conn) setPeerInitialWindow(v int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	delta := v - c.peerInitialWindow
	c.peerInitialWindow = v
	for _, st := range c.streams {
		st.sendQuota += delta
		if st.sendQuota > maxWindow {
			return connError{http2.ErrCodeFlowControl, "a stream's window exceeds 2^31-1"}
		}
	}
	c.wakeBlockedLocked()
	return nil
}

func (c *conn) onPing(fh frameHeader, p []byte) error {
	if fh.streamID != 0 {
		return protocolError("PING on a stream")
	}
	if len(p) != 8 {
		return connError{http2.ErrCodeFrameSize, "PING of the wrong size"}
	}
	data := [8]byte(p)
	if fh.has(flagAck) {
		if data == goAwayPing {
			c.finalGoAway()
		}
		return nil
	}
	c.queue(func(b []byte) []byte { return appendPing(b, true, data) })
	if min := c.s.opts.MinPingInterval; min > 0 {
		now := time.Now()
		switch {
		case c.resetStrikes.Swap(false), now.Sub(c.lastPing) >= min:
			c.pingStrikes = 0
		default:
			c.pingStrikes++
		}
		c.lastPing = now
		if c.pingStrikes > 2 {
			return connError{http2.ErrCodeEnhanceYourCalm, "too_many_pings"}
		}
	}
	return nil
}

func (c *conn) onWindowUpdate(fh frameHeader, p []byte) error {
	if len(p) != 4 {
		return connError{http2.ErrCodeFrameSize, "WINDOW_UPDATE of the wrong size"}
	}
	incr := int64(binary.BigEndian.Uint32(p) & maxWindow)
	if fh.streamID == 0 {
		if incr == 0 {
			return protocolError("WINDOW_UPDATE of 0 on the connection")
		}
		c.wmu.Lock()
		c.sendQuota += incr
		over := c.sendQuota > maxWindow
		c.wakeBlockedLocked()
		c.wmu.Unlock()
		if over {
			return connError{http2.ErrCodeFlowControl, "the connection's window exceeds 2^31-1"}
		}
		return nil
	}
	st := c.stream(fh.streamID)
	if st == nil {
		if c.idle(fh.streamID) {
			return protocolError("WINDOW_UPDATE on an idle stream")
		}
		return nil
	}
	if incr == 0 {
		c.resetOpen(st, http2.ErrCodeProtocol)
		return nil
	}
	c.wmu.Lock()
	st.sendQuota += incr
	over := st.sendQuota > maxWindow
	st.wakeLocked()
	c.wmu.Unlock()
	if over {
		c.resetOpen(st, http2.ErrCodeFlowControl)
	}
	return nil
}

// resetStream answers a stream error on a stream that may be closed or
// unknown: RST_STREAM with code, and the end of the stream if it is open.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	if st := c.takeStream(id); st != nil {
		st.abort(status.Errorf(codes.Internal, "stream error %v", code))
	}
	c.queue(func(b []byte) []byte { return appendRSTStream(b, id, code) })
}

// resetOpen is resetStream for an open stream.
func (c *conn) resetOpen(st *stream, code http2.ErrCode) { c.resetStream(st.id, code) }

// addStream registers st as open. It returns false once the connection
// is closed.
func (c *conn) addStream(st *stream) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.streams[st.id] = st
	return true
}

// takeStream unregisters the stream id and returns it, or nil if it is not
// open.
func (c *conn) takeStream(id uint32) *stream {
	c.mu.Lock()
	st := c.streams[id]
	if st != nil {
		c.removeLocked(id)
	}
	closeNow := c.idleLocked()
	c.mu.Unlock()
	if closeNow {
		c.closeGracefully()
	}
	return st
}

// removeStream unregisters st if it is still open (its answer is written,
// or it is reset).
func (c *conn) removeStream(st *stream) {
	c.mu.Lock()
	if c.streams[st.id] == st {
		c.removeLocked(st.id)
	}
	closeNow := c.idleLocked()
	c.mu.Unlock()
	if closeNow {
		c.closeGracefully()
	}
}

func (c *conn) removeLocked(id uint32) {
	delete(c.streams, id)
	if len(c.streams) == 0 {
		c.idleSince = time.Now()
	}
}

// idleLocked reports whether the final GOAWAY is sent and no stream is
// left: the connection has nothing more to do.
func (c *conn) idleLocked() bool {
	return c.goAwaySent && !c.closed && len(c.streams) == 0 && !c.opening
}

// checkIdle runs on the idle timer.
func (c *conn) checkIdle() {
	d := c.s.opts.MaxConnectionIdle
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.streams) > 0 {
		c.idleTimer.Reset(d)
		c.mu.Unlock()
		return
	}
	if left := d - time.Since(c.idleSince); left > 0 {
		c.idleTimer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.drain("max_idle")
}

// drain begins a graceful close: a GOAWAY with the largest stream ID and a
// PING; the final GOAWAY follows the PING's answer (finalGoAway).
func (c *conn) drain(reason string) {
	c.mu.Lock()
	if c.drainStarted || c.closed {
		c.mu.Unlock()
		return
	}
	c.drainStarted = true
	if !c.handshaken {
		c.mu.Unlock()
		c.close(errServerStopping)
		return
	}
	c.drainTimer = time.AfterFunc(drainPingWait, c.finalGoAway)
	c.mu.Unlock()
	c.wmu.Lock()
	c.wbuf = appendGoAway(c.wbuf, maxStreamID, http2.ErrCodeNo, reason)
	c.wbuf = appendPing(c.wbuf, false, goAwayPing)
	c.flushLocked()
	c.wmu.Unlock()
}

// finalGoAway sends the GOAWAY naming the last stream the server accepted;
// streams the client opens after it are ignored, and the connection
// closes once the open ones are answered.
func (c *conn) finalGoAway() {
	c.mu.Lock()
	if !c.drainStarted || c.goAwaySent || c.closed {
		c.mu.Unlock()
		return
	}
	c.goAwaySent = true
	if c.drainTimer != nil {
		c.drainTimer.Stop()
	}
	last := c.maxStreamID
	closeNow := c.idleLocked()
	c.mu.Unlock()
	c.wmu.Lock()
	c.wbuf = appendGoAway(c.wbuf, last, http2.ErrCodeNo, "")
	c.flushLocked()
	c.wmu.Unlock()
	if closeNow {
		c.closeGracefully()
	}
}

// goAwayAndClose ends the connection on a connection error.
func (c *conn) goAwayAndClose(e connError) {
	c.mu.Lock()
	last := c.maxStreamID
	c.mu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.wmu.Lock()
	c.wbuf = appendGoAway(c.wbuf, last, e.code, e.reason)
	c.flushAllLocked()
	c.wmu.Unlock()
}

// closeGracefully closes a connection whose work is done: it sends what is
// buffered, half-closes the socket, and lets the serve goroutine read on
// until the client closes its side (or closeWait passes), so that the last
// answers are not lost to a reset.
func (c *conn) closeGracefully() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeWait))
	c.wmu.Lock()
	c.flushAllLocked()
	c.wmu.Unlock()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = c.nc.SetReadDeadline(time.Now().Add(closeWait))
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.close(errConnClosed)
}

// close closes the connection and ends its open streams.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	streams := c.streams
	c.streams = nil
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.drainTimer != nil {
		c.drainTimer.Stop()
	}
	c.mu.Unlock()
	close(c.done)
	c.writer.fail(errConnClosed)
	_ = c.nc.Close()
	for _, st := range streams {
		st.abort(errTransportClosing)
	}
}

// flush writes what is queued.
func (c *conn) flush() {
	c.wmu.Lock()
	c.flushLocked()
	c.wmu.Unlock()
}

// queue appends a frame written by f to the write buffer, without
// flushing it.
func (c *conn) queue(f func([]byte) []byte) {
	c.wmu.Lock()
	if c.werr == nil {
		c.wbuf = f(c.wbuf)
	}
	c.wmu.Unlock()
}
