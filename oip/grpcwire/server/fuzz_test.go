package server

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// fuzzConn is a connection that reads a fixed input and discards writes.
type fuzzConn struct {
	r         *bytes.Reader
	mu        sync.Mutex
	closed    bool
	closeOnce sync.Once
	done      chan struct{}
}

func newFuzzConn(b []byte) *fuzzConn {
	return &fuzzConn{r: bytes.NewReader(b), done: make(chan struct{})}
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *fuzzConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fuzzConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// fuzzSeeds are frame sequences a client sends after its preface: a
// whole call, and pieces of HTTP/2 a server must handle.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	frames := func(write func(fr *http2.Framer, block func(string, ...string) []byte)) []byte {
		var out, hb bytes.Buffer
		fr := http2.NewFramer(&out, nil)
		enc := hpack.NewEncoder(&hb)
		block := func(path string, extra ...string) []byte {
			hb.Reset()
			f := []string{":method", "POST", ":scheme", "http", ":path", path, ":authority", "x", "content-type", "application/grpc", "grpc-timeout", "1S"}
			f = append(f, extra...)
			for i := 0; i+1 < len(f); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: f[i], Value: f[i+1]})
			}
			return bytes.Clone(hb.Bytes())
		}
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15})
		write(fr, block)
		return out.Bytes()
	}
	msg := append([]byte{0, 0, 0, 0, 3}, 0x0a, 0x01, 'm')
	seeds = append(seeds, frames(func(fr *http2.Framer, block func(string, ...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(pb.GRPCInferenceService_ModelInfer_FullMethodName), EndHeaders: true})
		fr.WriteData(1, true, msg)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(pb.GRPCInferenceService_ServerLive_FullMethodName, "x-a-bin", "AAEC"), EndHeaders: true})
		fr.WriteDataPadded(3, false, msg[:2], []byte{0, 0})
		fr.WriteData(3, true, msg[2:])
		fr.WritePing(false, [8]byte{1})
		fr.WriteWindowUpdate(0, 1000)
		fr.WriteWindowUpdate(1, 1000)
	}))
	seeds = append(seeds, frames(func(fr *http2.Framer, block func(string, ...string) []byte) {
		b := block(pb.GRPCInferenceService_ModelInfer_FullMethodName, "x-long", "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv")
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:4], Priority: http2.PriorityParam{StreamDep: 0, Weight: 3}})
		fr.WriteContinuation(1, false, b[4:9])
		fr.WriteContinuation(1, true, b[9:])
		fr.WriteData(1, false, msg[:3])
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WritePriority(3, http2.PriorityParam{StreamDep: 1})
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	}))
	seeds = append(seeds, frames(func(fr *http2.Framer, block func(string, ...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("/inference.GRPCInferenceService/ModelInfer", "content-type", "text/plain"), EndHeaders: true, EndStream: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("/x/y", "grpc-encoding", "gzip"), EndHeaders: true})
		fr.WriteData(3, false, []byte{1, 0, 0, 0, 2, 0x1f, 0x8b})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("/x/y"), EndHeaders: true, EndStream: true})
		fr.WriteSettingsAck()
		fr.WriteRawFrame(0xfa, 0, 0, []byte("unknown"))
	}))
	return seeds
}

// FuzzServeConn feeds a connection arbitrary frames after the client
// preface: the server must end it (with a GOAWAY or not) and never panic
// or hang.
func FuzzServeConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := New(Options{Codec: oip.Codec{}, MaxRecvMsgSize: 1 << 16, MaxHeaderListSize: 4096, MaxConcurrentStreams: 8})
		s.RegisterService(serviceDesc(), &inferService{})
		c := newConn(s, newFuzzConn(append([]byte(http2.ClientPreface), in...)))
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		done := make(chan struct{})
		go func() {
			c.serve()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(testWait):
			t.Fatal("the connection did not end with its input")
		}
		// The handlers end with the connection; GracefulStop waits for them.
		stopped := make(chan struct{})
		go func() {
			s.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(testWait):
			t.Fatal("handlers did not end with the connection")
		}
	})
}

var _ = io.EOF
