package server

import (
	"io"
	"math"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// nextFrame reads the next frame that is not SETTINGS or WINDOW_UPDATE.
func (c *rawClient) nextFrame() http2.Frame {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.(type) {
		case *http2.SettingsFrame, *http2.WindowUpdateFrame:
			continue
		}
		return f
	}
}

// untilEOF reads until the server closes the connection, and returns the
// streams that got END_STREAM on the way.
func (c *rawClient) untilEOF() map[uint32]bool {
	c.t.Helper()
	ended := map[uint32]bool{}
	for {
		f, err := c.fr.ReadFrame()
		if err == io.EOF {
			return ended
		}
		if err != nil {
			c.t.Fatalf("read: %v (the connection should end with EOF)", err)
		}
		if f.Header().Flags.Has(http2.FlagHeadersEndStream) && (f.Header().Type == http2.FrameHeaders || f.Header().Type == http2.FrameData) {
			ended[f.Header().StreamID] = true
		}
	}
}

// TestGracefulStopTwoGoAways follows grpc-go's graceful close: a GOAWAY
// with the largest stream ID and a PING; streams opened before the PING's
// answer are still served; then a GOAWAY with the last stream; the
// connection closes once its calls are answered.
func TestGracefulStopTwoGoAways(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	svc := &inferService{infer: func(ss grpc.ServerStream) error {
		close(entered)
		<-release
		return nil
	}}
	s, addr := serve(t, Options{}, svc)
	c := dialRaw(t, addr, []http2.Setting{})
	c.headers(1, c.headerBlock(pb.GRPCInferenceService_ModelInfer_FullMethodName), false)
	<-entered
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()

	ga, ok := c.nextFrame().(*http2.GoAwayFrame)
	if !ok || ga.LastStreamID != math.MaxInt32 || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("first frame of the drain: %v, want GOAWAY with the largest stream ID", ga)
	}
	ping, ok := c.nextFrame().(*http2.PingFrame)
	if !ok || ping.IsAck() {
		t.Fatalf("second frame of the drain: %v, want PING", ping)
	}
	// A call the client started before it saw the GOAWAY.
	c.headers(3, c.headerBlock(pb.GRPCInferenceService_ServerLive_FullMethodName), false)
	c.fr.WriteData(3, true, []byte{0, 0, 0, 0, 0})
	c.fr.WritePing(true, ping.Data)
	for {
		f := c.nextFrame()
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.LastStreamID != 3 || ga.ErrCode != http2.ErrCodeNo {
				t.Fatalf("final GOAWAY: last stream %d, code %v; want 3, NO_ERROR", ga.LastStreamID, ga.ErrCode)
			}
			break
		}
	}
	// Streams after the final GOAWAY are ignored.
	c.headers(5, c.headerBlock(pb.GRPCInferenceService_ServerLive_FullMethodName), false)
	c.fr.WriteData(5, true, []byte{0, 0, 0, 0, 0})
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned with a call in flight")
	default:
	}
	close(release)
	ended := c.untilEOF()
	if !ended[1] || ended[5] {
		t.Errorf("streams answered: %v; want 1 (and 3, maybe before), not 5", ended)
	}
	<-stopped
}

func TestMaxConnectionIdle(t *testing.T) {
	_, addr := serve(t, Options{MaxConnectionIdle: 20 * time.Millisecond}, nil)
	c := dialRaw(t, addr, []http2.Setting{})
	ga, ok := c.nextFrame().(*http2.GoAwayFrame)
	if !ok || ga.ErrCode != http2.ErrCodeNo || string(ga.DebugData()) != "max_idle" {
		t.Fatalf("got %v, want GOAWAY max_idle", ga)
	}
	if ping, ok := c.nextFrame().(*http2.PingFrame); !ok {
		t.Fatalf("got %v, want the drain's PING", ping)
	} else {
		c.fr.WritePing(true, ping.Data)
	}
	if ga, ok := c.nextFrame().(*http2.GoAwayFrame); !ok || ga.LastStreamID != 0 {
		t.Fatalf("got %v, want the final GOAWAY", ga)
	}
	c.untilEOF()
}

func TestPingAbuse(t *testing.T) {
	_, addr := serve(t, Options{}, nil)
	c := dialRaw(t, addr, []http2.Setting{})
	for i := range 4 {
		c.fr.WritePing(false, [8]byte{byte(i)})
	}
	if got := c.goAway(); got != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", got)
	}

	// Pings that follow the server's answers are no abuse.
	_, addr = serve(t, Options{}, nil)
	c = dialRaw(t, addr, []http2.Setting{})
	for i := range 6 {
		id := uint32(2*i + 1)
		c.headers(id, c.headerBlock(pb.GRPCInferenceService_ServerLive_FullMethodName), false)
		c.fr.WriteData(id, true, []byte{0, 0, 0, 0, 0})
		if _, ok := c.untilHeaders(id)[":status"]; !ok {
			t.Fatal("no answer")
		}
		c.fr.WritePing(false, [8]byte{byte(i)})
	}
	c.headers(13, c.headerBlock(pb.GRPCInferenceService_ServerLive_FullMethodName), false)
	c.fr.WriteData(13, true, []byte{0, 0, 0, 0, 0})
	if got := c.untilHeaders(13)["grpc-status"]; got != "" && got != "0" {
		t.Fatalf("grpc-status %q", got)
	}
}

func TestConnectionTimeout(t *testing.T) {
	_, addr := serve(t, Options{ConnectionTimeout: 20 * time.Millisecond}, nil)
	c := dialRaw(t, addr, nil) // the preface, and no SETTINGS
	if _, err := io.ReadAll(c.nc); err != nil {
		t.Fatalf("the connection ended with %v, want EOF", err)
	}
}
