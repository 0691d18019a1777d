package modelserver

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Returning memory after a burst. A burst of large requests (64 bodies of
// 60 MB at once, say) grows the heap by gigabytes. Once the requests are
// done that memory is garbage or sits in pools (fasthttp's, the engine's
// buffers), and the Go runtime gives it back to the operating system only
// after a collection has freed it and then slowly: an idle process
// collects only every two minutes (the runtime's forced collection), and
// the pools need two collections to empty. So a model server that served
// one burst keeps its peak resident size for minutes, which on a machine
// running several replicas is memory the others cannot have.
//
// Run watches for the end of a burst: once large requests (a body or
// message over largeBodyBytes) totalling Options.MemoryReturnMin or more
// have been served since the last return, and the server has then been
// quiet (no inference in flight or started, the heap not growing) for
// Options.MemoryReturnIdle, it calls debug.FreeOSMemory twice: each
// collects and returns every free span at once, and the second empties
// the pools the first moved to their victim caches. It costs two
// collections of an idle heap once per burst, never while requests run.
// The signal is the requests' own size rather than the heap's: a heap
// measured in the middle of a burst (bodies still being read) would look
// like the size the server keeps at rest.
//
// The request path helps: a REST request body larger than
// largeBodyBytes is dropped after its answer instead of being kept for
// the connection's next request, and the pooled request structures drop
// their references to the tensors they held.

// largeBodyBytes is the request size past which a request counts towards
// a burst, and past which the REST handler drops the body's buffer once
// the request is answered: a keep-alive connection would otherwise hold
// it until it closes.
const largeBodyBytes = 1 << 20

// activity counts the inference requests the server runs, for Run.
type activity struct {
	inFlight atomic.Int64
	started  atomic.Uint64
	large    atomic.Uint64 // bytes of large requests ended since the last return
}

// begin counts a request in; the caller defers end.
func (a *activity) begin() {
	a.started.Add(1)
	a.inFlight.Add(1)
}

// end counts out a request of size bytes (its body, or its tensors).
func (a *activity) end(size int) {
	if size > largeBodyBytes {
		a.large.Add(uint64(size))
	}
	a.inFlight.Add(-1)
}

// heapKept returns the bytes of heap the process keeps from the operating
// system: spans holding objects (live, or dead and not swept yet), their
// unused part, and free spans not returned yet.
func heapKept() uint64 {
	s := [...]metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s[:])
	var n uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			n += x.Value.Uint64()
		}
	}
	return n
}

// watch is Run's state between looks at the server and the heap.
type watch struct {
	idle          time.Duration // Options.MemoryReturnIdle
	atLeast, grew uint64        // Options.MemoryReturnMin, and the heap growth that means busy
	last          uint64        // the heap kept at the last look
	seen          uint64        // requests started at the last look
	quietSince    time.Time
}

func newWatch(idle time.Duration, atLeast, kept, started uint64, now time.Time) *watch {
	return &watch{idle: idle, atLeast: atLeast, grew: atLeast / 4, last: kept, seen: started, quietSince: now}
}

// look takes in a look at now, which found the heap keeping kept bytes,
// started requests started so far, inFlight in flight and large bytes of
// large requests served since the last return, and reports whether to
// return memory now. The server is busy when a request is in flight or
// started since the last look, or when the heap kept grew by grew or more
// since then (request bodies being read, before any handler runs); a
// return is due once it has been quiet for idle after large requests of
// atLeast bytes or more.
func (w *watch) look(now time.Time, kept, started uint64, inFlight int64, large uint64) bool {
	busy := started != w.seen || inFlight > 0 || kept >= w.last+w.grew
	w.seen, w.last = started, kept
	if busy {
		w.quietSince = now
		return false
	}
	return now.Sub(w.quietSince) >= w.idle && large >= w.atLeast
}

// Run returns the heap memory a burst of large requests left behind to the
// operating system once the server has been quiet for
// Options.MemoryReturnIdle (see memory.go and watch.look), until ctx is
// done; it then returns nil. It acts on the whole process's heap, so a
// process runs it once, for its one Server. With MemoryReturnIdle
// negative, Run returns nil at once. Run is optional: without it the Go
// runtime returns the memory in its own time.
func (s *Server) Run(ctx context.Context) error {
	idle := s.opts.MemoryReturnIdle
	if idle < 0 {
		return nil
	}
	// Look a few times per idle period, so that a return comes at most a
	// quarter of it late; each look reads a few runtime counters.
	t := time.NewTicker(max(idle/4, 10*time.Millisecond))
	defer t.Stop()
	a := &s.activity
	w := newWatch(idle, uint64(s.opts.MemoryReturnMin), heapKept(), a.started.Load(), time.Now())
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			kept := heapKept()
			if w.look(now, kept, a.started.Load(), a.inFlight.Load(), a.large.Load()) {
				a.large.Store(0)
				w.last = s.returnMemory(kept)
			}
		}
	}
}

// returnMemory collects and returns the process's free heap to the
// operating system twice (the first collection moves the pools' contents
// to their victim caches, the second frees them), and returns the heap
// kept after.
func (s *Server) returnMemory(before uint64) uint64 {
	start := time.Now()
	debug.FreeOSMemory()
	debug.FreeOSMemory()
	after := heapKept()
	s.opts.Logger.Info("returned memory to the OS after a burst",
		"heap_before_mb", before>>20, "heap_after_mb", after>>20, "took", time.Since(start).Round(time.Millisecond))
	return after
}
