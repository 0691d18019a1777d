package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// rawClient is an HTTP/2 client made of golang.org/x/net/http2's Framer,
// free to send what no real client would.
type rawClient struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

// dialRaw connects and sends the client preface; settings, unless nil, is
// sent as the first frame.
func dialRaw(t *testing.T, addr string, settings []http2.Setting) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(testWait))
	c := &rawClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if settings != nil {
		if err := c.fr.WriteSettings(settings...); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// headerBlock encodes a gRPC request's headers for method, with extra
// fields (name, value pairs) after them.
func (c *rawClient) headerBlock(method string, extra ...string) []byte {
	c.hbuf.Reset()
	fields := []string{":method", "POST", ":scheme", "http", ":path", method, ":authority", "test", "content-type", "application/grpc", "te", "trailers"}
	fields = append(fields, extra...)
	for i := 0; i < len(fields); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

func (c *rawClient) headers(id uint32, block []byte, endStream bool) {
	c.t.Helper()
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: endStream, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// goAway reads frames until a GOAWAY and returns its code; it fails the
// test if the connection ends first.
func (c *rawClient) goAway() http2.ErrCode {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("no GOAWAY before %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			return ga.ErrCode
		}
	}
}

// untilRST reads frames until a RST_STREAM on stream id and returns its
// code, answering SETTINGS.
func (c *rawClient) untilRST(id uint32) http2.ErrCode {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("no RST_STREAM on stream %d before %v", id, err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return f.ErrCode
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		}
	}
}

func TestProtocolErrorsGetGoAway(t *testing.T) {
	_, addr := serve(t, Options{}, nil)
	raw := func(typ http2.FrameType, flags http2.Flags, id uint32, payload ...byte) func(c *rawClient) {
		return func(c *rawClient) { c.fr.WriteRawFrame(typ, flags, id, payload) }
	}
	cases := []struct {
		name  string
		first bool // the case sends the first frame itself
		send  func(c *rawClient)
		want  http2.ErrCode
	}{
		{"DATA on stream 0", false, raw(http2.FrameData, 0, 0, 1, 2, 3), http2.ErrCodeProtocol},
		{"DATA on an idle stream", false, raw(http2.FrameData, 0, 5, 1, 2, 3), http2.ErrCodeProtocol},
		{"DATA padding too long", false, raw(http2.FrameData, http2.FlagDataPadded, 1, 9, 1), http2.ErrCodeProtocol},
		{"HEADERS on stream 0", false, raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 0, 0x82), http2.ErrCodeProtocol},
		{"HEADERS on an even stream", false, func(c *rawClient) { c.headers(2, c.headerBlock("/a/b"), true) }, http2.ErrCodeProtocol},
		{"HEADERS with garbage HPACK", false, raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), http2.ErrCodeCompression},
		{"HEADERS with a truncated block", false, raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, 0x40, 0x05, 'a'), http2.ErrCodeCompression},
		{"PING inside a header block", false, func(c *rawClient) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.headerBlock("/a/b")})
			c.fr.WritePing(false, [8]byte{})
		}, http2.ErrCodeProtocol},
		{"CONTINUATION without HEADERS", false, raw(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 1, 0x82), http2.ErrCodeProtocol},
		{"PUSH_PROMISE", false, raw(http2.FramePushPromise, http2.FlagPushPromiseEndHeaders, 1, 0, 0, 0, 2, 0x82), http2.ErrCodeProtocol},
		{"SETTINGS of the wrong size", false, raw(http2.FrameSettings, 0, 0, 0, 1, 0, 0, 0), http2.ErrCodeFrameSize},
		{"SETTINGS on a stream", false, raw(http2.FrameSettings, 0, 1), http2.ErrCodeProtocol},
		{"SETTINGS_MAX_FRAME_SIZE too small", false, raw(http2.FrameSettings, 0, 0, 0, 5, 0, 0, 0, 1), http2.ErrCodeProtocol},
		{"SETTINGS_INITIAL_WINDOW_SIZE too large", false, raw(http2.FrameSettings, 0, 0, 0, 4, 0x80, 0, 0, 0), http2.ErrCodeFlowControl},
		{"PING of the wrong size", false, raw(http2.FramePing, 0, 0, 1, 2, 3), http2.ErrCodeFrameSize},
		{"WINDOW_UPDATE of 0 on the connection", false, raw(http2.FrameWindowUpdate, 0, 0, 0, 0, 0, 0), http2.ErrCodeProtocol},
		{"WINDOW_UPDATE overflowing the connection", false, raw(http2.FrameWindowUpdate, 0, 0, 0x7f, 0xff, 0xff, 0xff), http2.ErrCodeFlowControl},
		{"RST_STREAM on an idle stream", false, raw(http2.FrameRSTStream, 0, 7, 0, 0, 0, 8), http2.ErrCodeProtocol},
		{"frame over SETTINGS_MAX_FRAME_SIZE", false, func(c *rawClient) {
			c.fr.WriteRawFrame(http2.FrameData, 0, 1, make([]byte, 20000))
		}, http2.ErrCodeFrameSize},
		{"first frame not SETTINGS", true, raw(http2.FramePing, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8), http2.ErrCodeProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var settings []http2.Setting
			if !tc.first {
				settings = []http2.Setting{}
			}
			c := dialRaw(t, addr, settings)
			tc.send(c)
			if got := c.goAway(); got != tc.want {
				t.Errorf("GOAWAY %v, want %v", got, tc.want)
			}
		})
	}
	// The server serves on.
	if _, err := pb.NewGRPCInferenceServiceClient(dial(t, addr)).ServerLive(testContext(t), &pb.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestNotHTTP2IsClosed(t *testing.T) {
	_, addr := serve(t, Options{}, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(testWait))
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// The server's SETTINGS, then the end of the connection.
	if _, err := io.ReadAll(nc); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read: %v", err)
	}
}

func TestStreamErrors(t *testing.T) {
	release := make(chan struct{})
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		<-release
		return nil
	}}
	defer close(release)
	_, addr := serve(t, Options{MaxConcurrentStreams: 2, MaxHeaderListSize: 1024}, svc)
	c := dialRaw(t, addr, []http2.Setting{})
	infer := c.headerBlock(pb.GRPCInferenceService_ModelInfer_FullMethodName)
	c.headers(1, infer, false)
	c.headers(3, infer, false)
	c.headers(5, infer, false)
	if got := c.untilRST(5); got != http2.ErrCodeRefusedStream {
		t.Errorf("stream over MaxConcurrentStreams: RST_STREAM %v", got)
	}
	// A header with an uppercase name, and a connection header.
	c.headers(7, c.headerBlock("/a/b", "X-Upper", "1"), true)
	if got := c.untilRST(7); got != http2.ErrCodeProtocol {
		t.Errorf("uppercase header name: RST_STREAM %v", got)
	}
	c.headers(9, c.headerBlock("/a/b", "connection", "close"), true)
	if got := c.untilRST(9); got != http2.ErrCodeProtocol {
		t.Errorf("connection header: RST_STREAM %v", got)
	}
	// Over MaxHeaderListSize: answered, not read.
	c.headers(11, c.headerBlock("/a/b", "x-big", strings.Repeat("v", 900)), true)
	if got := c.untilHeaders(11)["grpc-status"]; got != "8" {
		t.Errorf("header list over the limit: grpc-status %q, want 8 (RESOURCE_EXHAUSTED)", got)
	}
}

// untilHeaders reads frames until HEADERS on stream id and returns its
// fields.
func (c *rawClient) untilHeaders(id uint32) map[string]string {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("no HEADERS on stream %d before %v", id, err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
			m := make(map[string]string)
			for _, f := range h.Fields {
				m[f.Name] = f.Value
			}
			return m
		}
	}
}

// h2c returns an HTTP/2 client over cleartext TCP.
func h2c() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}, Timeout: testWait}
}

func TestNonGRPCRequests(t *testing.T) {
	_, addr := serve(t, Options{}, nil)
	cases := []struct {
		name, method, contentType string
		wantHTTP                  int
		wantGRPC                  string
	}{
		{"text/plain", http.MethodPost, "text/plain", http.StatusUnsupportedMediaType, "3"},
		{"no content-type", http.MethodPost, "", http.StatusUnsupportedMediaType, "3"},
		{"application/grpc-web", http.MethodPost, "application/grpc-web", http.StatusUnsupportedMediaType, "3"},
		{"GET", http.MethodGet, "application/grpc", http.StatusMethodNotAllowed, "13"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+addr+pb.GRPCInferenceService_ServerLive_FullMethodName, strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := h2c().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantHTTP || resp.Header.Get("Grpc-Status") != tc.wantGRPC {
				t.Errorf("HTTP %d, grpc-status %q; want %d, %q", resp.StatusCode, resp.Header.Get("Grpc-Status"), tc.wantHTTP, tc.wantGRPC)
			}
		})
	}
}
