package netlimit

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// speak has the peer of server send a byte, and server read it, as a
// server reads a client's request.
func speak(t *testing.T, server, peer net.Conn) {
	t.Helper()
	go peer.Write([]byte{'x'})
	if _, err := server.Read(make([]byte, 1)); err != nil {
		t.Fatalf("reading the peer's byte: %v", err)
	}
}

// peerClosed reports whether peer sees its connection closed by the
// Listener's side, without waiting for it.
func peerClosed(peer net.Conn) bool {
	_ = peer.SetReadDeadline(time.Now())
	_, err := peer.Read(make([]byte, 1))
	_ = peer.SetReadDeadline(time.Time{})
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}

// TestEvictsOldestSilentForAWaitingConnection: at the cap, with another
// connection waiting, the Listener closes the oldest connection that has
// sent nothing for EvictSilentAfter, and only once it has been silent that
// long; connections that sent a byte are passed over.
func TestEvictsOldestSilentForAWaitingConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		l, m := newTestListener(t, f, 3)
		var servers, peers []net.Conn
		for range 3 {
			peers = append(peers, f.queueConn(t))
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			servers = append(servers, c)
			time.Sleep(DefaultEvictSilentAfter / 10) // accepted in turn
		}
		// The oldest connection has sent its request: it is never evicted.
		speak(t, servers[0], peers[0])

		newcomer := f.queueConn(t)
		waiting := accepted(l)
		time.Sleep(DefaultEvictSilentAfter / 2)
		synctest.Wait()
		select {
		case r := <-waiting:
			t.Fatalf("Accept returned (%v, %v) while no connection had been silent for %s", r.c, r.err, DefaultEvictSilentAfter)
		default:
		}
		if peerClosed(peers[1]) {
			t.Fatal("a connection silent for less than the grace was evicted")
		}

		time.Sleep(DefaultEvictSilentAfter)
		synctest.Wait()
		var r acceptResult
		select {
		case r = <-waiting:
		default:
			t.Fatal("Accept still waits at the cap with connections silent past the grace")
		}
		if r.err != nil {
			t.Fatalf("Accept = %v", r.err)
		}
		if !peerClosed(peers[1]) {
			t.Error("the oldest silent connection was not the one evicted")
		}
		if peerClosed(peers[0]) || peerClosed(peers[2]) {
			t.Error("a connection other than the oldest silent one was closed")
		}
		if got := value(t, m.evicted.WithLabelValues("test")); got != 1 {
			t.Errorf("evictions counted = %v, want 1", got)
		}
		if l.Open() != 3 {
			t.Errorf("Open = %d, want 3", l.Open())
		}
		// The newcomer is the one handed out.
		go newcomer.Write([]byte{'n'})
		b := make([]byte, 1)
		if _, err := r.c.Read(b); err != nil || b[0] != 'n' {
			t.Errorf("the connection handed out read (%q, %v), want the newcomer's byte", b, err)
		}
	})
}

// TestNeverEvictsConnectionsThatSpoke: connections that have sent a byte
// (requests in flight, kept-alive clients) keep their places however long
// another waits; a waiting connection gets the first place that frees.
func TestNeverEvictsConnectionsThatSpoke(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		l, m := newTestListener(t, f, 2)
		var servers, peers []net.Conn
		for range 2 {
			peers = append(peers, f.queueConn(t))
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			servers = append(servers, c)
			speak(t, c, peers[len(peers)-1])
		}
		f.queueConn(t)
		waiting := accepted(l)
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case r := <-waiting:
			t.Fatalf("Accept returned (%v, %v), want it to wait: no connection is silent", r.c, r.err)
		default:
		}
		for i, p := range peers {
			if peerClosed(p) {
				t.Errorf("connection %d, which sent a byte, was closed", i)
			}
		}
		if got := value(t, m.evicted.WithLabelValues("test")); got != 0 {
			t.Errorf("evictions counted = %v, want 0", got)
		}
		servers[1].Close()
		if r := <-waiting; r.err != nil {
			t.Fatalf("Accept after a close = %v", r.err)
		}
	})
}

// TestNoEvictionWithoutAWaitingConnection: silent connections are left to
// the servers' timeouts while no other connection waits to be accepted.
func TestNoEvictionWithoutAWaitingConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		l, m := newTestListener(t, f, 1)
		peer := f.queueConn(t)
		if _, err := l.Accept(); err != nil {
			t.Fatal(err)
		}
		waiting := accepted(l) // at the cap, with nobody in the backlog
		time.Sleep(time.Hour)
		synctest.Wait()
		if peerClosed(peer) {
			t.Error("a silent connection was evicted while no other waited")
		}
		if got := value(t, m.evicted.WithLabelValues("test")); got != 0 {
			t.Errorf("evictions counted = %v, want 0", got)
		}
		l.Close()
		if r := <-waiting; !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Accept = %v, want net.ErrClosed", r.err)
		}
	})
}

// TestRealClientServedPastSilentFlood runs a line server on a real
// loopback listener whose cap is filled with silent connections and one
// client between requests: a client that arrives then is served, and the
// kept-alive client still is afterwards.
func TestRealClientServedPastSilentFlood(t *testing.T) {
	const capacity = 8
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(ln, Options{MaxConns: capacity, Name: "test", Metrics: m, Logger: slog.New(slog.DiscardHandler),
		EvictSilentAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		l.CloseConns()
		wg.Wait()
	})
	// The server answers each line "ok <line>" on the same connection.
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, "ok "+line); err != nil {
						return
					}
				}
			})
		}
	})
	addr := ln.Addr().String()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetDeadline(time.Now().Add(waitLimit)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ask := func(c net.Conn, r *bufio.Reader, q string) {
		t.Helper()
		if _, err := io.WriteString(c, q+"\n"); err != nil {
			t.Fatalf("asking %q: %v", q, err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != "ok "+q+"\n" {
			t.Fatalf("asked %q, got (%q, %v)", q, got, err)
		}
	}
	kept := dial()
	keptR := bufio.NewReader(kept)
	ask(kept, keptR, "first")
	// The rest of the cap, and as many in the backlog, never send a byte.
	for range 2*capacity - 1 {
		dial()
	}
	client := dial()
	ask(client, bufio.NewReader(client), "newcomer")
	ask(kept, keptR, "second")
	if got := value(t, m.evicted.WithLabelValues("test")); got < capacity {
		t.Errorf("evictions counted = %v, want at least the %d silent connections ahead of the newcomer", got, capacity)
	}
}

// waitLimit bounds the waits of the tests on real sockets, far above
// anything they wait for.
const waitLimit = 20 * time.Second

// TestUntilServedEvictsHalfRequests: with UntilServed, a connection that
// sent part of a request and stopped is evicted for a waiting one like a
// silent one; a connection its server marked served never is.
func TestUntilServedEvictsHalfRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeListener()
		m, err := NewMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		l, err := New(f, Options{MaxConns: 2, Name: "test", Metrics: m, Logger: slog.New(slog.DiscardHandler), UntilServed: true})
		if err != nil {
			t.Fatal(err)
		}
		var servers, peers []net.Conn
		for range 2 {
			peers = append(peers, f.queueConn(t))
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			servers = append(servers, c)
			// Both send bytes: the first the start of a request only,
			// the second a request its server serves.
			speak(t, c, peers[len(peers)-1])
			time.Sleep(DefaultEvictSilentAfter / 10)
		}
		MarkServed(servers[1])
		MarkServed(&net.TCPConn{}) // not the Listener's: nothing happens

		f.queueConn(t)
		waiting := accepted(l)
		time.Sleep(2 * DefaultEvictSilentAfter)
		synctest.Wait()
		select {
		case r := <-waiting:
			if r.err != nil {
				t.Fatalf("Accept = %v", r.err)
			}
		default:
			t.Fatal("Accept still waits: the half request was not evicted")
		}
		if !peerClosed(peers[0]) {
			t.Error("the connection that sent half a request was not the one evicted")
		}
		if peerClosed(peers[1]) {
			t.Error("the served connection was evicted")
		}
		if got := value(t, m.evicted.WithLabelValues("test")); got != 1 {
			t.Errorf("evictions counted = %v, want 1", got)
		}
	})
}
