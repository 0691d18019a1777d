package netlimit

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeListener hands out what a test queues: connections (one end of a
// net.Pipe) and errors. It is the narrowest seam for Accept's error
// handling, and runs inside a synctest bubble, where the backoff's timers
// fire as soon as every goroutine waits.
type fakeListener struct {
	next   chan acceptResult
	closed chan struct{}
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newFakeListener() *fakeListener {
	return &fakeListener{next: make(chan acceptResult, 16), closed: make(chan struct{})}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	select {
	case r := <-f.next:
		return r.c, r.err
	case <-f.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
	}
}

func (f *fakeListener) Close() error {
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	return nil
}

func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// queueConn queues a connection and returns its peer's end.
func (f *fakeListener) queueConn(t *testing.T) net.Conn {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	f.next <- acceptResult{c: server}
	return client
}

// acceptErr is an accept error as package net returns it.
func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

func newTestListener(t *testing.T, ln net.Listener, maxConns int) (*Listener, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(ln, Options{MaxConns: maxConns, Name: "test", Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l, m
}

// accepted runs Accept on its own goroutine and delivers its result.
func accepted(l *Listener) <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

func TestAcceptRetriesErrorsThatPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		l, m := newTestListener(t, f, 4)
		passing := []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ECONNABORTED, syscall.EMFILE, syscall.EMFILE, syscall.EMFILE, syscall.EMFILE, syscall.EMFILE, syscall.EMFILE, syscall.EMFILE, syscall.EMFILE}
		for _, e := range passing {
			f.next <- acceptResult{err: acceptErr(e)}
		}
		f.queueConn(t)
		c, err := l.Accept()
		if err != nil {
			t.Fatalf("Accept = %v, want the connection after the errors", err)
		}
		if got := value(t, m.acceptErrors.WithLabelValues("test")); got != float64(len(passing)) {
			t.Errorf("accept errors counted = %v, want %d", got, len(passing))
		}
		if got := value(t, m.open.WithLabelValues("test")); got != 1 {
			t.Errorf("open connections = %v, want 1", got)
		}
		c.Close()
		if got := value(t, m.open.WithLabelValues("test")); got != 0 {
			t.Errorf("open connections after close = %v, want 0", got)
		}
	})
}

func TestAcceptReturnsOtherErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		l, _ := newTestListener(t, f, 1)
		f.next <- acceptResult{err: acceptErr(syscall.EINVAL)}
		if _, err := l.Accept(); !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("Accept = %v, want EINVAL returned", err)
		}
		// The failed Accept gave its place back: with a cap of one, the
		// next connection is still taken.
		f.queueConn(t)
		if _, err := l.Accept(); err != nil {
			t.Fatalf("Accept after an error = %v", err)
		}
	})
}

func TestCapWaitsForAClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		l, m := newTestListener(t, f, 2)
		var conns []net.Conn
		for range 2 {
			f.queueConn(t)
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		f.queueConn(t)
		third := accepted(l)
		synctest.Wait()
		select {
		case r := <-third:
			t.Fatalf("Accept at the cap returned (%v, %v), want it to wait", r.c, r.err)
		default:
		}
		if got := value(t, m.fullWaits.WithLabelValues("test")); got != 1 {
			t.Errorf("full waits = %v, want 1", got)
		}
		if l.Open() != 2 {
			t.Errorf("Open = %d, want 2", l.Open())
		}
		conns[0].Close()
		conns[0].Close() // a second close gives nothing back twice
		synctest.Wait()
		select {
		case r := <-third:
			if r.err != nil {
				t.Fatalf("Accept after a close = %v", r.err)
			}
		default:
			t.Fatal("Accept still waits after a connection closed")
		}
		if l.Open() != 2 {
			t.Errorf("Open = %d, want 2", l.Open())
		}
	})
}

func TestCloseEndsWaits(t *testing.T) {
	t.Run("at the cap", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeListener()
			l, _ := newTestListener(t, f, 1)
			f.queueConn(t)
			if _, err := l.Accept(); err != nil {
				t.Fatal(err)
			}
			waiting := accepted(l)
			synctest.Wait()
			l.Close()
			if r := <-waiting; !errors.Is(r.err, net.ErrClosed) {
				t.Fatalf("Accept = %v, want net.ErrClosed", r.err)
			}
		})
	})
	t.Run("in a backoff", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeListener()
			l, _ := newTestListener(t, f, 1)
			f.next <- acceptResult{err: acceptErr(syscall.EMFILE)}
			waiting := accepted(l)
			synctest.Wait() // Accept sleeps in its backoff
			l.Close()
			if r := <-waiting; !errors.Is(r.err, net.ErrClosed) {
				t.Fatalf("Accept = %v, want net.ErrClosed", r.err)
			}
		})
	})
}

func TestCloseConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		l, _ := newTestListener(t, f, 4)
		var peers []net.Conn
		for range 3 {
			peers = append(peers, f.queueConn(t))
			if _, err := l.Accept(); err != nil {
				t.Fatal(err)
			}
		}
		if n := l.CloseConns(); n != 3 {
			t.Errorf("CloseConns = %d, want 3", n)
		}
		for i, p := range peers {
			if _, err := p.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("peer %d read %v, want EOF", i, err)
			}
		}
		if l.Open() != 0 {
			t.Errorf("Open = %d after CloseConns, want 0", l.Open())
		}
	})
}

func TestNewMetricsSharesRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second NewMetrics on one registerer: %v", err)
	}
	a.forListener("x").open.Inc()
	if got := value(t, b.open.WithLabelValues("x")); got != 1 {
		t.Errorf("second Metrics sees %v open, want the first's 1", got)
	}
}

func TestMaxConnsFor(t *testing.T) {
	tests := []struct {
		name  string
		limit uint64
		known bool
		want  int
	}{
		{"unknown", 0, false, 16384},
		{"ulimit 4096", 4096, true, 1024},
		{"ulimit 1024", 1024, true, 256},
		{"tiny", 100, true, 64},
		{"container default", 1 << 20, true, 16384},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := maxConnsFor(tc.limit, tc.known); got != tc.want {
				t.Errorf("maxConnsFor(%d, %v) = %d, want %d", tc.limit, tc.known, got, tc.want)
			}
		})
	}
}

func TestNewRejectsNegativeCap(t *testing.T) {
	if _, err := New(newFakeListener(), Options{MaxConns: -1}); err == nil {
		t.Error("New accepted MaxConns -1")
	}
}

// value reads a gauge's or counter's current value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}
