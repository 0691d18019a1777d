package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2's defaults before SETTINGS say otherwise (RFC 9113 §6.5.2).
const (
	initialWindow       = 65535
	initialMaxFrameSize = 16384
	initialTableSize    = 4096
	maxStreamID         = 1<<31 - 1
	readBufferSize      = 32 << 10
	writeBufferSize     = 32 << 10
)

// conn is one HTTP/2 connection. Lock order: wmu before mu.
type conn struct {
	cl *Client
	nc net.Conn
	br *bufio.Reader
	fr *http2.Framer // reads from br in the read goroutine; writes to bw under wmu

	// Stream reservation, without locks: nstreams counts the streams
	// reserved or open, which their callers release.
	nstreams   atomic.Int32
	maxStreams atomic.Uint32 // the peer's SETTINGS_MAX_CONCURRENT_STREAMS
	closing    atomic.Bool   // takes no new streams (GOAWAY, failed, closed, IDs spent)

	// Write side. The hpack encoder's state follows the order of the
	// header blocks on the wire, so it is used under wmu only.
	wmu      sync.Mutex
	wpending atomic.Int32 // writers holding or queued on wmu
	bw       *bufio.Writer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	fhdr     [9]byte // a frame header being written
	// flushOwed: a writer has left frames in bw and will flush them
	// (unlockWrite).
	flushOwed bool
	wdlRenew  time.Time // when to push the write deadline on

	// Under mu.
	mu          sync.Mutex
	streams     map[uint32]*call
	nextID      uint32
	dead        bool   // failed or shut down: fails new streams
	err         error  // why dead
	goAway      bool   // GOAWAY received
	lastID      uint32 // the lowest last-stream-id of the GOAWAYs
	sendWin     int32  // the connection's send window
	peerInitWin int32  // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrm  uint32 // the peer's SETTINGS_MAX_FRAME_SIZE
	nwaiting    int    // streams waiting for send window
	hcur        *call  // the stream whose header block is being decoded, if open

	// Read goroutine only.
	hdec        *hpack.Decoder
	hstream     uint32 // the stream of the header block being read
	hend        bool   // its HEADERS frame had END_STREAM
	recvWin     int64  // the connection's receive window left
	recvUnacked int64  // received and not yet given back
	maxHdrList  uint32
	readerOwes  bool // the read goroutine owes a flush (unlockWriteReader)
}

// dialConn connects to the client's address and does the HTTP/2
// handshake: the client preface and SETTINGS, and the peer's first
// SETTINGS, which say how many streams the connection may carry.
func dialConn(c *Client) (*conn, error) {
	ctx, cancel := context.WithTimeout(c.dialCtx, c.opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		if c.dialCtx.Err() != nil {
			return nil, errClientClosed
		}
		return nil, c.unavailable("dial: %v", err)
	}
	if c.opts.TLSConfig != nil {
		tc := tls.Client(nc, c.opts.TLSConfig)
		err := tc.HandshakeContext(ctx)
		if err == nil && tc.ConnectionState().NegotiatedProtocol != "h2" {
			err = errNoH2
		}
		if err != nil {
			_ = nc.Close()
			if c.dialCtx.Err() != nil {
				return nil, errClientClosed
			}
			return nil, c.unavailable("TLS handshake: %v", err)
		}
		nc = tc
	}
	cc := newConn(c, nc)
	dl, _ := ctx.Deadline()
	if err := cc.handshake(dl); err != nil {
		_ = nc.Close()
		return nil, c.unavailable("HTTP/2 handshake: %v", err)
	}
	return cc, nil
}

func newConn(c *Client, nc net.Conn) *conn {
	cc := &conn{
		cl:          c,
		nc:          nc,
		br:          bufio.NewReaderSize(nc, readBufferSize),
		bw:          bufio.NewWriterSize(nc, writeBufferSize),
		streams:     make(map[uint32]*call),
		nextID:      1,
		sendWin:     initialWindow,
		peerInitWin: initialWindow,
		peerMaxFrm:  initialMaxFrameSize,
		recvWin:     int64(c.opts.ConnWindow),
		maxHdrList:  uint32(c.opts.MaxHeaderListSize),
	}
	cc.maxStreams.Store(1<<32 - 1) // unlimited until the peer's SETTINGS
	cc.fr = http2.NewFramer(cc.bw, cc.br)
	cc.fr.SetMaxReadFrameSize(initialMaxFrameSize) // we advertise no larger
	cc.henc = hpack.NewEncoder(&cc.hbuf)
	cc.hdec = hpack.NewDecoder(initialTableSize, cc.emit)
	cc.hdec.SetMaxStringLength(c.opts.MaxHeaderListSize)
	cc.hbuf.Grow(256)
	return cc
}

var (
	errNoSettings = errors.New("the peer did not start with SETTINGS")
	errNoH2       = errors.New("the peer did not agree to HTTP/2 (ALPN h2)")
)

func (cc *conn) handshake(deadline time.Time) error {
	_ = cc.nc.SetDeadline(deadline)
	o := &cc.cl.opts
	if _, err := cc.bw.WriteString(http2.ClientPreface); err != nil {
		return err
	}
	err := cc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(o.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(o.MaxHeaderListSize)},
	)
	if err == nil && o.ConnWindow > initialWindow {
		err = cc.fr.WriteWindowUpdate(0, uint32(o.ConnWindow-initialWindow))
	}
	if err == nil {
		err = cc.bw.Flush()
	}
	if err != nil {
		return err
	}
	f, err := cc.fr.ReadFrame()
	if err != nil {
		return err
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		return errNoSettings
	}
	if err := cc.onSettings(sf); err != nil {
		return err
	}
	cc.wdlRenew = time.Time{} // armWriteDeadline sets it again
	return cc.nc.SetDeadline(time.Time{})
}

// start runs the read goroutine.
func (cc *conn) start() {
	go cc.readLoop()
}

// reserve takes a stream on cc if the peer's limit allows.
func (cc *conn) reserve() bool {
	for {
		if cc.closing.Load() {
			return false
		}
		n := cc.nstreams.Load()
		if uint32(n) >= cc.maxStreams.Load() {
			return false
		}
		if cc.nstreams.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives back a stream reserve took, once the call is done with it
// (any RST_STREAM written), so that the peer never sees more streams open
// than it allows.
func (cc *conn) release() {
	if cc.nstreams.Add(-1) == 0 && cc.closing.Load() {
		cc.shutdownIfIdle()
	}
	cc.cl.slotFreed()
}

// shutdownIfIdle closes a connection that takes no new streams once it
// has none. A call reserving a stream at the same time finds it dead and
// goes to another connection.
func (cc *conn) shutdownIfIdle() {
	cc.mu.Lock()
	idle := !cc.dead && cc.nstreams.Load() == 0
	if idle {
		cc.dead = true
		cc.err = errDrained
	}
	cc.mu.Unlock()
	if idle {
		cc.cl.removeConn(cc)
		// A GOAWAY tells the peer no more streams come; errors do not
		// matter, the connection is going.
		cc.writeGoAway(http2.ErrCodeNo)
		_ = cc.nc.Close()
	}
}

// shutdown closes a connection that never carried a stream.
func (cc *conn) shutdown() {
	cc.mu.Lock()
	cc.dead = true
	cc.err = errDrained
	cc.mu.Unlock()
	_ = cc.nc.Close()
}

var errDrained = errors.New("connection closed")

// fail ends cc after an I/O or protocol error: every open stream fails
// with UNAVAILABLE.
func (cc *conn) fail(err error) {
	cc.mu.Lock()
	if cc.dead {
		cc.mu.Unlock()
		return
	}
	cc.dead = true
	cc.err = err
	cc.closing.Store(true)
	if len(cc.streams) > 0 {
		serr := cc.cl.unavailable("connection failed: %v", err)
		for _, cs := range cc.streams {
			cs.peerGone = true
			cc.finishLocked(cs, nil, serr)
		}
	}
	cc.mu.Unlock()
	_ = cc.nc.Close()
	cc.cl.removeConn(cc)
}

// writeGoAway writes and flushes a GOAWAY before the connection closes.
func (cc *conn) writeGoAway(code http2.ErrCode) {
	cc.lockWrite()
	_ = cc.fr.WriteGoAway(0, code, nil)
	_ = cc.bw.Flush()
	cc.flushOwed = false
	cc.wpending.Add(-1)
	cc.wmu.Unlock()
}

// lockWrite takes the write lock.
func (cc *conn) lockWrite() {
	cc.wpending.Add(1)
	cc.wmu.Lock()
	cc.armWriteDeadline()
}

// armWriteDeadline keeps the connection's write deadline between
// WriteTimeout/2 and WriteTimeout ahead, under wmu, so that a write the
// peer does not take fails the connection rather than holding the write
// lock, and every call, forever.
func (cc *conn) armWriteDeadline() {
	t := cc.cl.opts.WriteTimeout
	if t <= 0 {
		return
	}
	if now := time.Now(); now.After(cc.wdlRenew) {
		_ = cc.nc.SetWriteDeadline(now.Add(t))
		cc.wdlRenew = now.Add(t / 2)
	}
}

// minBatch is the buffered size from which a writer flushes at once
// rather than yielding first for others to add to the batch (grpc-go's
// loopy writer yields the same way).
const minBatch = 4 << 10

// unlockWrite releases the write lock and sees that what is buffered is
// flushed, batching the frames of calls made at about the same time into
// one write: a writer that finds another queued on the lock, or a flush
// owed by another, leaves the flush to it; otherwise, unless the buffer is
// already large, it owes the flush, yields once so that the goroutines
// ready to run (often calls the read goroutine has just answered) add
// their frames, and then flushes for all. Only the one who flushes sees a
// write error, and fails the connection.
func (cc *conn) unlockWrite() error {
	if cc.wpending.Add(-1) > 0 || cc.flushOwed {
		cc.wmu.Unlock()
		return nil
	}
	if cc.bw.Buffered() >= minBatch {
		err := cc.bw.Flush()
		cc.wmu.Unlock()
		return err
	}
	cc.flushOwed = true
	cc.wmu.Unlock()
	runtime.Gosched()
	return cc.flushOwedNow()
}

// unlockWriteReader is unlockWrite for the read goroutine, which owes the
// flush until it would block reading (beforeRead): frames it reads in
// the meantime may make the calls they answer write.
func (cc *conn) unlockWriteReader() {
	if cc.wpending.Add(-1) > 0 || cc.flushOwed {
		cc.wmu.Unlock()
		return
	}
	cc.flushOwed = true
	cc.readerOwes = true
	cc.wmu.Unlock()
}

// beforeRead flushes what the read goroutine owes before a read of n
// buffered bytes that may block.
func (cc *conn) beforeRead(n int) error {
	if !cc.readerOwes || cc.br.Buffered() >= n {
		return nil
	}
	cc.readerOwes = false
	runtime.Gosched()
	return cc.flushOwedNow()
}

// flushOwedNow makes the flush a writer owes, unless another did it.
func (cc *conn) flushOwedNow() error {
	cc.wmu.Lock()
	cc.armWriteDeadline()
	var err error
	if cc.flushOwed {
		cc.flushOwed = false
		err = cc.bw.Flush()
	}
	cc.wmu.Unlock()
	return err
}
