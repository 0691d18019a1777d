package netlimit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configures a Listener. Zero fields take the documented defaults.
type Options struct {
	// MaxConns bounds the connections the Listener has handed out and not
	// yet seen closed (default DefaultMaxConns()).
	MaxConns int
	// Name labels the Listener's metrics and logs ("rest", "grpc",
	// "admin"); default "tcp".
	Name string
	// Metrics, when set, receives the Listener's metrics under Name.
	Metrics *Metrics
	// Logger receives accept errors, at most about one line a second
	// while they last (default slog.Default()).
	Logger *slog.Logger
	// EvictSilentAfter is how long a connection must have been open
	// without sending a byte before a Listener at its cap may close it to
	// accept a waiting one (default DefaultEvictSilentAfter). A client
	// sends its request as soon as it connects: this grace spares those
	// that just connected. Negative: never evict.
	EvictSilentAfter time.Duration
	// UntilServed keeps a connection evictable until its server calls
	// MarkServed for it (a request of it reached a handler), rather than
	// until it sends its first byte: a server that tells makes
	// connections that send part of a request and stop (slowloris)
	// evictable too.
	UntilServed bool
}

// DefaultEvictSilentAfter is the EvictSilentAfter of Options that leave it
// zero.
//
// At the cap, a flood is accepted at most MaxConns per grace (each
// connection accepted must age this long before it can make room for the
// next): 250 ms clears 4,000 connections queued ahead of a client of a
// port capped at 256 in about 4 s, and still spares a client whose request
// takes a slow network's round trip to arrive.
const DefaultEvictSilentAfter = 250 * time.Millisecond

// The backoff after an accept error that passes, as net/http's Server
// does it: 5ms, doubled on each error in a row, at most 1s.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Listener is a net.Listener with a cap on open connections and a backoff
// on accept errors that pass; see the package doc. Its methods are safe
// for concurrent use. The connections it returns release their place
// under the cap when closed; a server must close every connection it
// accepts, as servers do.
type Listener struct {
	ln     net.Listener
	name   string
	log    *slog.Logger
	m      listenerMetrics
	evict  time.Duration // EvictSilentAfter; negative: never
	served bool          // UntilServed
	slots  chan struct{} // one token per open connection
	done   chan struct{} // closed by Close
	closed sync.Once

	mu    sync.Mutex
	conns map[*conn]struct{}
	// silent lists, oldest first, the open connections that have not
	// sent a byte yet: the ones a Listener at its cap may evict.
	silent silentList
}

// New wraps ln. It starts no goroutine; closing the Listener closes ln.
func New(ln net.Listener, opts Options) (*Listener, error) {
	if ln == nil {
		return nil, errors.New("netlimit: nil listener")
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("netlimit: MaxConns %d: must not be negative", opts.MaxConns)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns()
	}
	if opts.Name == "" {
		opts.Name = "tcp"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.EvictSilentAfter == 0 {
		opts.EvictSilentAfter = DefaultEvictSilentAfter
	}
	l := &Listener{
		ln:     ln,
		name:   opts.Name,
		log:    opts.Logger,
		m:      opts.Metrics.forListener(opts.Name),
		evict:  opts.EvictSilentAfter,
		served: opts.UntilServed,
		slots:  make(chan struct{}, opts.MaxConns),
		done:   make(chan struct{}),
		conns:  make(map[*conn]struct{}),
	}
	l.m.limit.Set(float64(opts.MaxConns))
	return l, nil
}

// Accept returns the next connection, once there is a place for it under
// the cap. At the cap it takes the next connection from the kernel all the
// same (it holds at most this one beyond the cap), and makes room for it
// by closing the oldest silent connection, one that has sent nothing for
// EvictSilentAfter, or else waits for a connection to close: a flood of
// connections that never send a request cannot keep a real client queued
// behind it until the servers' header timeouts. Connections that have
// sent a byte are never evicted.
//
// An accept error that passes (see retryable) is logged, counted and
// retried after a backoff; any other error is returned, as is
// net.ErrClosed once Close was called.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
		c, err := l.accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		return l.track(c), nil
	default:
	}
	l.m.fullWaits.Inc()
	c, err := l.accept()
	if err != nil {
		return nil, err
	}
	if err := l.makeRoom(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return l.track(c), nil
}

// makeRoom takes a place under the cap for a connection accepted beyond
// it: the next place to come free, or one it frees by evicting the oldest
// silent connection once that has been silent for the Listener's grace.
func (l *Listener) makeRoom() error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var wake <-chan time.Time
		if l.evict >= 0 {
			victim, wait := l.evictable(time.Now())
			if victim != nil {
				l.m.evicted.Inc()
				_ = victim.closeNow()
			} else if wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				wake = timer.C
			}
		}
		select {
		case l.slots <- struct{}{}:
			return nil
		case <-l.done:
			return net.ErrClosed
		case <-wake:
		}
	}
}

// evictable takes the oldest silent connection off the silent list and
// returns it when it has been open for the grace at now; otherwise it
// returns how long until the oldest one will have been (0: there is no
// silent connection to wait for).
func (l *Listener) evictable(now time.Time) (*conn, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.silent.head
	if c == nil {
		return nil, 0
	}
	if wait := c.opened.Add(l.evict).Sub(now); wait > 0 {
		return nil, wait
	}
	// Taken off the list here, under the lock, so that no other Accept
	// evicts it too; a Read that returns its first bytes now finds it
	// off the list already.
	l.silent.remove(c)
	return c, 0
}

// accept takes the next connection from the wrapped listener, backing
// off from and retrying the errors that pass.
func (l *Listener) accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err == nil {
			if delay > 0 {
				l.log.Info("accepting connections again", "listener", l.name)
			}
			return c, nil
		}
		if !retryable(err) {
			return nil, err
		}
		l.m.acceptErrors.Inc()
		if delay == 0 {
			delay = minBackoff
		} else {
			delay = min(2*delay, maxBackoff)
		}
		if delay == minBackoff || delay == maxBackoff {
			l.log.Warn("accept failed; retrying", "listener", l.name, "err", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// retryable reports whether an accept error passes: the process or the
// system is short of descriptors or buffers for now (EMFILE, ENFILE,
// ENOBUFS, ENOMEM), or a client gave up before it was accepted
// (ECONNABORTED, ECONNRESET), or the call was interrupted or timed out.
// It is net/http's notion of a temporary accept error (Errno.Temporary:
// EINTR, EMFILE, ENFILE, EAGAIN, ETIMEDOUT), plus the shortages of memory
// and the aborted connections that it leaves out.
func retryable(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET:
			return true
		}
		return errno.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close stops the Listener: it closes the wrapped listener and makes a
// waiting Accept return net.ErrClosed. Connections already accepted stay
// open (see CloseConns). Close may be called more than once; later calls
// return what the wrapped listener's Close returns.
func (l *Listener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return l.ln.Close()
}

// Addr returns the wrapped listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Open returns the number of connections handed out and not yet closed.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// CloseConns closes every connection the Listener handed out that is
// still open, and returns how many it closed. A server's drain calls it
// once the drain's time is up, so that no connection, whatever state its
// server holds it in, keeps the drain going; it closes at once, without
// the wait a Linger asked for.
func (l *Listener) CloseConns() int {
	l.mu.Lock()
	open := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	for _, c := range open {
		_ = c.closeNow()
	}
	return len(open)
}

func (l *Listener) track(c net.Conn) *conn {
	tc := &conn{Conn: c, l: l, opened: time.Now()}
	tc.silent.Store(true)
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.silent.pushBack(tc)
	l.mu.Unlock()
	l.m.open.Inc()
	return tc
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.silent.remove(c)
	l.mu.Unlock()
	l.m.open.Dec()
	<-l.slots
}

// spoke takes c off the silent list: it has sent its first bytes.
func (l *Listener) spoke(c *conn) {
	l.mu.Lock()
	l.silent.remove(c)
	l.mu.Unlock()
}

// silentList is a doubly linked list of connections through their own
// links, in the order they were accepted: adding and removing take no
// allocation and no search.
type silentList struct{ head, tail *conn }

func (s *silentList) pushBack(c *conn) {
	c.prev, c.next, c.listed = s.tail, nil, true
	if s.tail != nil {
		s.tail.next = c
	} else {
		s.head = c
	}
	s.tail = c
}

// remove takes c off the list; it does nothing when c is not on it.
func (s *silentList) remove(c *conn) {
	if !c.listed {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		s.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		s.tail = c.prev
	}
	c.prev, c.next, c.listed = nil, nil, false
}

// conn is an accepted connection that gives its place under the cap back
// when it is first closed, and leaves its Listener's silent list when it
// first reads data.
type conn struct {
	net.Conn
	l      *Listener
	opened time.Time
	// silent is true until a Read returns data: Read checks it without
	// the Listener's lock, which only the first data takes.
	silent atomic.Bool
	closed atomic.Bool
	// The Listener's silent list, under its mu.
	prev, next *conn
	listed     bool
	// linger is set by Linger: what Close waits for before it closes.
	linger atomic.Pointer[lingering]
}

// lingering is what a lingering close discards at most, and for how long.
type lingering struct {
	bytes int64
	time  time.Duration
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.l.served {
		c.speak()
	}
	return n, err
}

// speak takes c off its Listener's silent list, once.
func (c *conn) speak() {
	if c.silent.Load() && c.silent.CompareAndSwap(true, false) {
		c.l.spoke(c)
	}
}

// MarkServed tells c's Listener, if c is one of its connections, that a
// request of c reached a handler, so that c is never evicted (see
// Options.UntilServed). It costs an atomic load once done, and nothing for
// another connection.
func MarkServed(c net.Conn) {
	if tc, ok := own(c); ok {
		tc.speak()
	}
}

// own returns c as a connection of a Listener, looking through the
// wrappers that expose the connection they carry (*tls.Conn's NetConn).
func own(c net.Conn) (*conn, bool) {
	for range 4 {
		switch w := c.(type) {
		case *conn:
			return w, true
		case interface{ NetConn() net.Conn }:
			c = w.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}

// Close closes the connection, after the lingering close a Linger asked
// for, if any.
func (c *conn) Close() error {
	if lg := c.linger.Swap(nil); lg != nil && !c.closed.Load() {
		c.lingerClose(lg)
	}
	return c.closeNow()
}

// lingerClose half-closes the connection, so that the client reads what
// was written to it and then the end, and discards what the client still
// sends (the rest of a request body nobody read) until it stops, or
// lg.bytes are discarded, or lg.time is up. Closing a TCP connection with
// bytes unread makes the kernel answer with a reset, and a client still
// sending its body may then lose the answer waiting in its receive
// buffer; net/http and nginx (lingering_close) close so for this reason.
func (c *conn) lingerClose(lg *lingering) {
	if c.CloseWrite() != nil {
		return
	}
	if c.Conn.SetReadDeadline(time.Now().Add(lg.time)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, c.Conn, lg.bytes)
}

// closeNow closes the connection without lingering.
func (c *conn) closeNow() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c)
	}
	return err
}

// CloseWrite half-closes the connection when the wrapped one can (TCP):
// net/http does so to let a client read an error answer before the
// connection closes.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Linger makes the Close of c, a connection a Listener returned, a
// lingering close: Close half-closes c, discards what the peer still
// sends until it closes its side, maxBytes are discarded or d has passed,
// and only then closes c. A server that answers a request without reading
// its body (a refusal decided from the headers) and then closes the
// connection calls it, so that the peer, still sending the body, reads the
// answer instead of a reset. The last call before Close wins; CloseConns
// does not linger. Linger reports false, and does nothing, when c is not
// a Listener's connection, maxBytes or d is not positive, or c is closed.
func Linger(c net.Conn, maxBytes int64, d time.Duration) bool {
	tc, ok := own(c)
	if !ok || maxBytes <= 0 || d <= 0 || tc.closed.Load() {
		return false
	}
	tc.linger.Store(&lingering{bytes: maxBytes, time: d})
	return true
}

// DefaultMaxConns is the cap of a Listener whose Options leave MaxConns
// zero: a quarter of the process's open-file limit (see FileLimit),
// between 64 and 16384, so that three listeners at their caps still leave
// the process descriptors for its runtimes, files and outgoing
// connections; 16384 where the limit cannot be read.
func DefaultMaxConns() int {
	n, ok := FileLimit()
	return maxConnsFor(n, ok)
}

func maxConnsFor(fileLimit uint64, known bool) int {
	const lo, hi = 64, 16384
	if !known {
		return hi
	}
	return int(min(max(fileLimit/4, lo), hi))
}
