package server

import (
	"net"
	"runtime"
	"sync"

	"golang.org/x/net/http2/hpack"
)

// Write-buffer bounds: a writer that finds more than maxPendingWrite
// queued while another goroutine writes waits for it; a buffer larger than
// maxKeptWriteBuffer is not kept once written.
const (
	maxPendingWrite    = 256 << 10
	maxKeptWriteBuffer = 64 << 10
)

// writer is a connection's send side: a buffer that frames are appended to
// under wmu, and the state that writing frames needs (HPACK encoder,
// flow-control windows, the peer's settings).
//
// Flushes combine: the goroutine that flushes writes the buffer outside
// the lock, with a spare buffer taking new frames meanwhile, and writes
// again while frames were queued during its write; a goroutine that finds
// a flush in progress leaves its frames to it. So an answer costs one
// write syscall when the connection is quiet, and concurrent answers share
// syscalls when it is busy, with no writer goroutine to wake.
type writer struct {
	mode     flushMode
	wnc      net.Conn
	wmu      sync.Mutex
	wcond    sync.Cond // signalled when a flush ends
	wbuf     []byte
	wspare   []byte
	flushing bool
	werr     error // the first write error, or errConnClosed

	henc  *hpack.Encoder
	hsink hpackSink
	// hfields is scratch for the fields of one header block.
	hfields []hpack.HeaderField

	// Flow control and the peer's settings.
	sendQuota         int64 // the connection's send window
	peerInitialWindow int64
	peerMaxFrame      int
	peerMaxHeaderList uint32 // 0: no limit
	blocked           []*stream
}

// flushMode is how a flush goes (measured by BenchmarkRawClient).
type flushMode int

const (
	// flushYield yields once before a small write.
	flushYield flushMode = iota
	// flushAtOnce writes at once.
	flushAtOnce
)

// yieldBelow is the buffered size below which a flush yields first.
const yieldBelow = 32 << 10

// hpackSink collects an encoded header block.
type hpackSink struct{ b []byte }

func (s *hpackSink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

func (w *writer) init(nc net.Conn) {
	w.wnc = nc
	w.wcond.L = &w.wmu
	w.wbuf = make([]byte, 0, 4096)
	w.henc = hpack.NewEncoder(&w.hsink)
	w.sendQuota = defaultWindow
	w.peerInitialWindow = defaultWindow
	w.peerMaxFrame = defaultMaxFrameSize
}

// flushLocked writes the buffer unless another goroutine is writing, in
// which case that one writes it. wmu is held on entry and on return; it is
// released during writes.
func (w *writer) flushLocked() {
	if w.flushing || len(w.wbuf) == 0 {
		return
	}
	w.flushing = true
	if w.mode != flushAtOnce && len(w.wbuf) < yieldBelow {
		// Let the handlers that are runnable now (the reader hands calls
		// out in batches) add their answers to this write: one yield,
		// as grpc-go's loopy writer does before a small write.
		w.wmu.Unlock()
		runtime.Gosched()
		w.wmu.Lock()
	}
	for len(w.wbuf) > 0 && w.werr == nil {
		b := w.wbuf
		w.wbuf = w.wspare[:0]
		w.wmu.Unlock()
		_, err := w.wnc.Write(b)
		w.wmu.Lock()
		if cap(b) <= maxKeptWriteBuffer {
			w.wspare = b[:0]
		} else {
			w.wspare = nil
		}
		if err != nil && w.werr == nil {
			w.werr = err
		}
	}
	if w.werr != nil {
		w.wbuf = w.wbuf[:0]
	}
	w.flushing = false
	w.wcond.Broadcast()
}

// flushAllLocked writes the buffer and waits until it is written, by this
// goroutine or another.
func (w *writer) flushAllLocked() {
	for w.werr == nil && (w.flushing || len(w.wbuf) > 0) {
		if w.flushing {
			w.wcond.Wait()
			continue
		}
		w.flushLocked()
	}
}

// makeRoomLocked flushes a buffer grown past maxPendingWrite, waiting for
// a flush in progress first, so that a large answer does not pile up in
// memory ahead of the socket.
func (w *writer) makeRoomLocked() {
	if len(w.wbuf) < maxPendingWrite {
		return
	}
	for w.flushing && w.werr == nil {
		w.wcond.Wait()
	}
	w.flushLocked()
}

// fail makes every later write fail with err, and wakes waiters.
func (w *writer) fail(err error) {
	w.wmu.Lock()
	if w.werr == nil {
		w.werr = err
	}
	w.wcond.Broadcast()
	for _, st := range w.blocked {
		st.wakeLocked()
	}
	clear(w.blocked)
	w.blocked = w.blocked[:0]
	w.wmu.Unlock()
}

// wakeBlockedLocked wakes the streams waiting for send window.
func (w *writer) wakeBlockedLocked() {
	for _, st := range w.blocked {
		st.wakeLocked()
	}
	clear(w.blocked)
	w.blocked = w.blocked[:0]
}

// writeHeaderBlockLocked encodes w.hfields as one header block on stream
// id. It reports false, writing nothing, when the block exceeds the
// peer's SETTINGS_MAX_HEADER_LIST_SIZE.
func (w *writer) writeHeaderBlockLocked(id uint32, endStream bool) bool {
	if w.peerMaxHeaderList != 0 {
		var size uint32
		for _, f := range w.hfields {
			size += f.Size()
		}
		if size > w.peerMaxHeaderList {
			clear(w.hfields)
			w.hfields = w.hfields[:0]
			return false
		}
	}
	w.hsink.b = w.hsink.b[:0]
	for _, f := range w.hfields {
		_ = w.henc.WriteField(f)
	}
	clear(w.hfields)
	w.hfields = w.hfields[:0]
	w.wbuf = appendHeaderBlock(w.wbuf, id, w.hsink.b, endStream, w.peerMaxFrame)
	return true
}

func (w *writer) field(name, value string) {
	w.hfields = append(w.hfields, hpack.HeaderField{Name: name, Value: value})
}
