package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/oip/grpcwire"
)

// fakePeer is a scripted HTTP/2 server: each accepted connection runs
// script in its own goroutine. Failures are reported with t.Error.
type fakePeer struct {
	addr  string
	conns atomic.Int32
}

func startFake(t *testing.T, script func(f *fakeConn)) *fakePeer {
	t.Helper()
	ln := listen(t)
	p := &fakePeer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			mu.Lock()
			open = append(open, nc)
			mu.Unlock()
			wg.Go(func() {
				defer nc.Close()
				f := newFakeConn(t, nc)
				if err := f.readPreface(); err != nil {
					t.Errorf("fake peer: %v", err)
					return
				}
				script(f)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, nc := range open {
			_ = nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

type fakeConn struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	raw  bool // frames are not merged into MetaHeadersFrame
}

func newFakeConn(t *testing.T, nc net.Conn) *fakeConn {
	f := &fakeConn{t: t, nc: nc}
	f.fr = http2.NewFramer(nc, nc)
	f.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	f.henc = hpack.NewEncoder(&f.hbuf)
	return f
}

func (f *fakeConn) readPreface() error {
	buf := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(f.nc, buf); err != nil {
		return err
	}
	if string(buf) != http2.ClientPreface {
		return fmt.Errorf("client preface %q", buf)
	}
	return nil
}

// settings sends the server's SETTINGS.
func (f *fakeConn) settings(s ...http2.Setting) {
	if err := f.fr.WriteSettings(s...); err != nil {
		f.t.Errorf("fake peer: %v", err)
	}
}

// next returns the next frame but SETTINGS, WINDOW_UPDATE and PING acks,
// or nil when the connection ends.
func (f *fakeConn) next() http2.Frame {
	for {
		fr, err := f.fr.ReadFrame()
		if err != nil {
			return nil
		}
		switch fr := fr.(type) {
		case *http2.SettingsFrame, *http2.WindowUpdateFrame:
			continue
		case *http2.GoAwayFrame:
			return nil // the client is closing
		case *http2.PingFrame:
			if fr.IsAck() {
				continue
			}
		}
		return fr
	}
}

// request reads a whole request: its header fields and body message.
func (f *fakeConn) request() (id uint32, hdr map[string]string, msg []byte, ok bool) {
	var body []byte
	for {
		fr := f.next()
		switch fr := fr.(type) {
		case nil:
			return 0, nil, nil, false
		case *http2.MetaHeadersFrame:
			id = fr.StreamID
			hdr = map[string]string{}
			for _, hf := range fr.Fields {
				hdr[hf.Name] = hf.Value
			}
			if fr.StreamEnded() {
				return id, hdr, nil, true
			}
		case *http2.DataFrame:
			body = append(body, fr.Data()...)
			if fr.StreamEnded() {
				if len(body) < grpcwire.PrefixLen {
					f.t.Errorf("fake peer: body of %d bytes", len(body))
					return id, hdr, nil, true
				}
				return id, hdr, body[grpcwire.PrefixLen:], true
			}
		default:
			f.t.Errorf("fake peer: unexpected %v", fr.Header())
			return 0, nil, nil, false
		}
	}
}

func (f *fakeConn) block(kv ...string) []byte {
	f.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		_ = f.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return f.hbuf.Bytes()
}

// headers writes a header block in pieces frames (HEADERS and
// CONTINUATIONs).
func (f *fakeConn) headers(id uint32, end bool, pieces int, kv ...string) {
	b := f.block(kv...)
	size := (len(b) + pieces - 1) / pieces
	first := true
	for first || len(b) > 0 {
		frag := b[:min(size, len(b))]
		b = b[len(frag):]
		var err error
		if first {
			err = f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(b) == 0})
		} else {
			err = f.fr.WriteContinuation(id, len(b) == 0, frag)
		}
		if err != nil {
			return // the client hung up: it says what it got
		}
		first = false
	}
}

func (f *fakeConn) message(id uint32, flag byte, msg []byte) {
	b := append(grpcwire.AppendPrefix(nil, len(msg), flag == 1), msg...)
	for len(b) > 0 {
		frame := b[:min(len(b), 16384)]
		b = b[len(frame):]
		if err := f.fr.WriteData(id, false, frame); err != nil {
			return
		}
	}
}

// reply answers stream id with msg and OK.
func (f *fakeConn) reply(id uint32, msg []byte) {
	f.headers(id, false, 1, ":status", "200", "content-type", "application/grpc")
	f.message(id, 0, msg)
	f.headers(id, true, 1, "grpc-status", "0")
}

func (f *fakeConn) serveEcho() {
	f.settings()
	for {
		id, _, msg, ok := f.request()
		if !ok {
			return
		}
		f.reply(id, msg)
	}
}

func fakeCall(t *testing.T, p *fakePeer, req string) ([]byte, error) {
	t.Helper()
	c := newClient(t, p.addr, Options{})
	return c.Invoke(testCtx(t), inferMethod, []byte(req), nil)
}

// TestAnswers: answers a client must map, from a scripted peer.
func TestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  func(f *fakeConn, id uint32)
		want    codes.Code
		wantMsg string
	}{
		{"trailers-only", func(f *fakeConn, id uint32) {
			f.headers(id, true, 1, ":status", "200", "content-type", "application/grpc", "grpc-status", "5", "grpc-message", "no %25 model%0A")
		}, codes.NotFound, "no % model\n"},
		{"HTTP 503", func(f *fakeConn, id uint32) {
			f.headers(id, true, 1, ":status", "503", "content-type", "text/plain")
		}, codes.Unavailable, "503"},
		{"HTTP 404", func(f *fakeConn, id uint32) { f.headers(id, false, 1, ":status", "404") }, codes.Unimplemented, "404"},
		{"HTTP 400", func(f *fakeConn, id uint32) { f.headers(id, true, 1, ":status", "400") }, codes.Internal, "400"},
		{"HTTP 401", func(f *fakeConn, id uint32) { f.headers(id, true, 1, ":status", "401") }, codes.Unauthenticated, "401"},
		{"HTTP 403", func(f *fakeConn, id uint32) { f.headers(id, true, 1, ":status", "403") }, codes.PermissionDenied, "403"},
		{"HTTP 429", func(f *fakeConn, id uint32) { f.headers(id, true, 1, ":status", "429") }, codes.Unavailable, "429"},
		{"HTTP 418", func(f *fakeConn, id uint32) { f.headers(id, true, 1, ":status", "418") }, codes.Unknown, "418"},
		{"no grpc-status", func(f *fakeConn, id uint32) {
			f.headers(id, false, 1, ":status", "200", "content-type", "application/grpc")
			f.message(id, 0, []byte("m"))
			f.headers(id, true, 1, "x-other", "1")
		}, codes.Internal, "grpc-status"},
		{"compressed", func(f *fakeConn, id uint32) {
			f.headers(id, false, 1, ":status", "200", "content-type", "application/grpc")
			f.message(id, 1, []byte("m"))
			f.headers(id, true, 1, "grpc-status", "0")
		}, codes.Internal, "compressed response without grpc-encoding"},
		{"no message", func(f *fakeConn, id uint32) {
			f.headers(id, false, 1, ":status", "200", "content-type", "application/grpc")
			f.headers(id, true, 1, "grpc-status", "0")
		}, codes.Internal, "no response message"},
		{"two messages", func(f *fakeConn, id uint32) {
			f.headers(id, false, 1, ":status", "200", "content-type", "application/grpc")
			f.message(id, 0, []byte("m"))
			f.message(id, 0, []byte("n"))
			f.headers(id, true, 1, "grpc-status", "0")
		}, codes.Internal, "more than one"},
		{"no trailers", func(f *fakeConn, id uint32) {
			f.headers(id, false, 1, ":status", "200", "content-type", "application/grpc")
			_ = f.fr.WriteData(id, true, grpcwire.AppendPrefix(nil, 0, false))
		}, codes.Internal, "without sending trailers"},
		{"wrong content-type", func(f *fakeConn, id uint32) {
			f.headers(id, true, 1, ":status", "200", "content-type", "text/html", "grpc-status", "0")
		}, codes.Internal, "content-type"},
		{"REFUSED_STREAM", func(f *fakeConn, id uint32) {
			_ = f.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		}, codes.Unavailable, "refused"},
		{"RST_STREAM INTERNAL_ERROR", func(f *fakeConn, id uint32) {
			_ = f.fr.WriteRSTStream(id, http2.ErrCodeInternal)
		}, codes.Internal, "RST_STREAM"},
		{"GOAWAY below the stream", func(f *fakeConn, id uint32) {
			_ = f.fr.WriteGoAway(id-1, http2.ErrCodeNo, nil)
		}, codes.Unavailable, "GOAWAY"},
		{"connection error", func(f *fakeConn, id uint32) {
			_ = f.fr.WriteData(id+100, false, []byte("x")) // DATA on an idle stream
		}, codes.Unavailable, "connection failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startFake(t, func(f *fakeConn) {
				f.settings()
				id, _, _, ok := f.request()
				if ok {
					tc.answer(f, id)
				}
				for f.next() != nil { // until the client closes
				}
			})
			_, err := fakeCall(t, p, "req")
			s, _ := status.FromError(err)
			if s.Code() != tc.want || !strings.Contains(s.Message(), tc.wantMsg) {
				t.Fatalf("got %v %q, want %v with %q", s.Code(), s.Message(), tc.want, tc.wantMsg)
			}
		})
	}
}

// TestContinuation: header blocks split over HEADERS and CONTINUATION
// frames both ways (a long grpc-message and long metadata).
func TestContinuation(t *testing.T) {
	long := strings.Repeat("a long message ", 3000) // > 16 KiB
	got := make(chan string, 1)
	p := startFake(t, func(f *fakeConn) {
		f.settings()
		for {
			id, hdr, msg, ok := f.request()
			if !ok {
				return
			}
			got <- hdr["x-long"]
			if string(msg) == "fail" {
				f.headers(id, false, 3, ":status", "200", "content-type", "application/grpc", "x-pad", strings.Repeat("p", 100))
				f.headers(id, true, 4, "grpc-status", "9", "grpc-message", long)
				continue
			}
			f.headers(id, false, 3, ":status", "200", "content-type", "application/grpc", "x-pad", strings.Repeat("p", 100))
			f.message(id, 0, msg)
			f.headers(id, true, 2, "grpc-status", "0", "x-pad", strings.Repeat("q", 100))
		}
	})
	c := newClient(t, p.addr, Options{})
	ctx := testCtx(t)
	md := []string{"x-long", long}
	resp, err := c.Invoke(ctx, inferMethod, []byte("ok"), md)
	if err != nil || string(resp) != "ok" {
		t.Fatalf("got %q, %v", resp, err)
	}
	if v := <-got; v != long {
		t.Errorf("the server got x-long of %d bytes, want %d", len(v), len(long))
	}
	_, err = c.Invoke(ctx, inferMethod, []byte("fail"), md)
	<-got
	if s, _ := status.FromError(err); s.Code() != codes.FailedPrecondition || s.Message() != long {
		t.Fatalf("got %v with a message of %d bytes, want FailedPrecondition and %d", s.Code(), len(s.Message()), len(long))
	}
}

// TestSendFlowControl: the client sends no DATA beyond the peer's windows:
// none while SETTINGS_INITIAL_WINDOW_SIZE is 0, then the rest once it
// grows mid-connection and the connection window is given back.
func TestSendFlowControl(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 20000) // 200 KB, beyond the 64 KiB connection window
	p := startFake(t, func(f *fakeConn) {
		f.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		var id uint32
		for id == 0 {
			switch fr := f.next().(type) {
			case nil:
				return
			case *http2.MetaHeadersFrame:
				id = fr.StreamID
			case *http2.DataFrame:
				if len(fr.Data()) > 0 {
					f.t.Error("DATA sent on a window of 0")
				}
			}
		}
		f.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		var got []byte
		sinceUpdate := 0
		for {
			fr, ok := f.next().(*http2.DataFrame)
			if !ok {
				f.t.Error("the request ended early")
				return
			}
			got = append(got, fr.Data()...)
			sinceUpdate += len(fr.Data())
			if sinceUpdate > 65535 {
				f.t.Errorf("%d bytes sent beyond a 65535-byte connection window", sinceUpdate)
				return
			}
			if sinceUpdate > 30000 {
				_ = f.fr.WriteWindowUpdate(0, uint32(sinceUpdate))
				sinceUpdate = 0
			}
			if fr.StreamEnded() {
				break
			}
		}
		f.reply(id, got[grpcwire.PrefixLen:])
		for f.next() != nil {
		}
	})
	c := newClient(t, p.addr, Options{MaxMessageSize: 1 << 20})
	resp, err := c.Invoke(testCtx(t), inferMethod, body, nil)
	if err != nil || !bytes.Equal(resp, body) {
		t.Fatalf("got %d bytes, %v; want the body back", len(resp), err)
	}
}

// TestPeerSettings: the peer's SETTINGS_HEADER_TABLE_SIZE 0 makes the
// client's encoder say so at the start of its next header block; the
// peer's SETTINGS_MAX_FRAME_SIZE bounds the client's DATA frames; a PING
// is answered with its data.
func TestPeerSettings(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 40000)
	pinged := make(chan [8]byte, 1)
	acked := make(chan struct{}, 1)
	p := startFake(t, func(f *fakeConn) {
		f.fr.ReadMetaHeaders = nil
		f.settings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000})
		_ = f.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
		for {
			fr, err := f.fr.ReadFrame()
			if err != nil {
				return
			}
			switch fr := fr.(type) {
			case *http2.SettingsFrame:
				if fr.IsAck() {
					acked <- struct{}{}
				}
			case *http2.PingFrame:
				if fr.IsAck() {
					pinged <- fr.Data
				}
			case *http2.HeadersFrame:
				b := fr.HeaderBlockFragment()
				if len(b) == 0 || b[0] != 0x20 {
					f.t.Errorf("header block starts %x, want a dynamic table size update to 0 (20)", b[:min(len(b), 1)])
				}
			case *http2.DataFrame:
				if len(fr.Data()) > 20000 {
					f.t.Errorf("DATA frame of %d bytes, over SETTINGS_MAX_FRAME_SIZE", len(fr.Data()))
				}
				if fr.StreamEnded() {
					f.headers(fr.StreamID, true, 1, ":status", "200", "content-type", "application/grpc", "grpc-status", "7")
				}
			}
		}
	})
	c := newClient(t, p.addr, Options{})
	ctx := testCtx(t)
	_, err := c.Invoke(ctx, inferMethod, body, nil)
	wantCode(t, err, codes.PermissionDenied)
	if d := recv(ctx, t, pinged, "the PING ack"); d != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
		t.Errorf("PING ack carries %v", d)
	}
	recv(ctx, t, acked, "the SETTINGS ack")
}

// TestGoAwayInFlight: after GOAWAY, the stream at or below its last
// stream finishes, the one above fails UNAVAILABLE, and new calls go to a
// new connection.
func TestGoAwayInFlight(t *testing.T) {
	var n atomic.Int32
	p := startFake(t, func(f *fakeConn) {
		if n.Add(1) > 1 {
			f.serveEcho()
			return
		}
		f.settings()
		id1, _, msg1, ok := f.request()
		if !ok {
			return
		}
		if _, _, _, ok := f.request(); !ok {
			return
		}
		_ = f.fr.WriteGoAway(id1, http2.ErrCodeNo, nil)
		f.reply(id1, msg1)
		for f.next() != nil {
		}
	})
	c := newClient(t, p.addr, Options{})
	ctx := testCtx(t)
	errs := make(chan error, 2)
	for _, req := range []string{"a", "b"} {
		go func() {
			resp, err := c.Invoke(ctx, inferMethod, []byte(req), nil)
			if err == nil && string(resp) != req {
				err = fmt.Errorf("call %s got %q", req, resp)
			}
			errs <- err
		}()
	}
	var ok, refused int
	for range 2 {
		err := recv(ctx, t, errs, "a call")
		switch s, _ := status.FromError(err); {
		case err == nil:
			ok++
		case s.Code() == codes.Unavailable && strings.Contains(s.Message(), "GOAWAY"):
			refused++
		default:
			t.Errorf("call: %v", err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("%d calls answered and %d refused, want 1 and 1", ok, refused)
	}
	if resp, err := c.Invoke(ctx, inferMethod, []byte("c"), nil); err != nil || string(resp) != "c" {
		t.Fatalf("call after GOAWAY: %q, %v", resp, err)
	}
	if got := p.conns.Load(); got != 2 {
		t.Fatalf("%d connections, want a second after GOAWAY", got)
	}
}

// TestStuckPeer: a peer that grants window but reads nothing fails the
// call with UNAVAILABLE once a write has waited WriteTimeout, rather than
// holding the connection's writers forever.
func TestStuckPeer(t *testing.T) {
	stop := make(chan struct{})
	p := startFake(t, func(f *fakeConn) {
		f.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
		_ = f.fr.WriteWindowUpdate(0, 1<<31-1-65535)
		<-stop // and read nothing
	})
	defer close(stop)
	c := newClient(t, p.addr, Options{MaxMessageSize: 256 << 20, WriteTimeout: 200 * time.Millisecond})
	_, err := c.Invoke(context.Background(), inferMethod, make([]byte, 128<<20), nil)
	wantCode(t, err, codes.Unavailable)
}
