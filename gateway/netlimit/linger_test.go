package netlimit

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestLingerLetsTheClientReadTheAnswer: a server answers a client still
// sending a large body it never reads, and closes. With a lingering close
// the client's writes all go through and it reads the answer and the end;
// closed at once, the connection would be reset under the client's writes.
func TestLingerLetsTheClientReadTheAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(ln, Options{MaxConns: 4, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	const size = 32 << 20 // far above both ends' socket buffers
	served := make(chan bool, 1)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c, err := l.Accept()
		if err != nil {
			served <- false
			return
		}
		// The start of the request, then the answer, without the rest.
		if _, err := io.ReadFull(c, make([]byte, 1024)); err != nil {
			c.Close()
			served <- false
			return
		}
		_, err = io.WriteString(c, "refused\n")
		served <- Linger(c, size, waitLimit) && err == nil
		c.Close()
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(bytes.Repeat([]byte("b"), size))
		wrote <- err
	}()
	if !<-served {
		t.Fatal("the server could not read, answer or arm the lingering close")
	}
	if err := <-wrote; err != nil {
		t.Fatalf("writing the body: %v; want every byte discarded by the lingering close", err)
	}
	answer, err := io.ReadAll(c)
	if err != nil || string(answer) != "refused\n" {
		t.Fatalf("read (%q, %v), want the answer and the end", answer, err)
	}
	// The server discards until the client closes its side (it has not
	// sent all it declared: the server read the first KiB itself).
	c.Close()
	<-closed
	if l.Open() != 0 {
		t.Errorf("Open = %d after the lingering close, want 0", l.Open())
	}
}

func TestLingerRefusals(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Linger(a, 1, time.Second) {
		t.Error("Linger armed a connection no Listener returned")
	}
	f := newFakeListener()
	l, _ := newTestListener(t, f, 1)
	f.queueConn(t)
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if Linger(c, 0, time.Second) || Linger(c, 1, 0) {
		t.Error("Linger armed with nothing to discard or no time")
	}
	c.Close()
	if Linger(c, 1, time.Second) {
		t.Error("Linger armed a closed connection")
	}
}

// TestCloseConnsDoesNotLinger: a drain's hard end closes a connection at
// once even when a lingering close was asked for it.
func TestCloseConnsDoesNotLinger(t *testing.T) {
	f := newFakeListener()
	l, _ := newTestListener(t, f, 1)
	peer := f.queueConn(t) // a pipe: its peer never closes its side
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if !Linger(c, 1<<20, time.Hour) {
		t.Fatal("Linger refused a Listener's connection")
	}
	if n := l.CloseConns(); n != 1 {
		t.Fatalf("CloseConns = %d, want 1", n)
	}
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("peer read %v, want EOF", err)
	}
}
