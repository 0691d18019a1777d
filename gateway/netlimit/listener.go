package netlimit

import (
	"errors"
	"fmt"
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
}

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
	slots  chan struct{} // one token per open connection
	done   chan struct{} // closed by Close
	closed sync.Once

	mu    sync.Mutex
	conns map[*conn]struct{}
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
	l := &Listener{
		ln:    ln,
		name:  opts.Name,
		log:   opts.Logger,
		m:     opts.Metrics.forListener(opts.Name),
		slots: make(chan struct{}, opts.MaxConns),
		done:  make(chan struct{}),
		conns: make(map[*conn]struct{}),
	}
	l.m.limit.Set(float64(opts.MaxConns))
	return l, nil
}

// Accept waits for a place under the cap, then for the next connection.
// An accept error that passes (see retryable) is logged, counted and
// retried after a backoff; any other error is returned, as is
// net.ErrClosed once Close was called.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.m.fullWaits.Inc()
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err == nil {
			if delay > 0 {
				l.log.Info("accepting connections again", "listener", l.name)
			}
			return l.track(c), nil
		}
		if !retryable(err) {
			<-l.slots
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
			<-l.slots
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
// server holds it in, keeps the drain going.
func (l *Listener) CloseConns() int {
	l.mu.Lock()
	open := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
	return len(open)
}

func (l *Listener) track(c net.Conn) *conn {
	tc := &conn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	l.m.open.Inc()
	return tc
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.m.open.Dec()
	<-l.slots
}

// conn is an accepted connection that gives its place under the cap back
// when it is first closed.
type conn struct {
	net.Conn
	l      *Listener
	closed atomic.Bool
}

func (c *conn) Close() error {
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
