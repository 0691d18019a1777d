package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// The benchmarks serve the inference service as the gateway does, with
// the gateway's options, from this package's server and from grpc-go's,
// behind a listener that counts the servers' read and write calls.

var (
	benchAnswer = func() *oip.RawFrame {
		b, _ := proto.Marshal(&pb.ModelInferResponse{ModelName: "m", Id: "1"})
		return &oip.RawFrame{Bytes: b}
	}()
	benchRequest = func() []byte {
		b, _ := proto.Marshal(&pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{make([]byte, 64)}})
		return b
	}()
)

// benchInfer is a trivial ModelInfer: read the message, send a fixed
// answer.
func benchInfer(ss grpc.ServerStream) error {
	var in oip.RawFrame
	if err := ss.RecvMsg(&in); err != nil {
		return err
	}
	return ss.SendMsg(benchAnswer)
}

type countingListener struct {
	net.Listener
	reads, writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l countingListener
}

func (c *countingConn) Read(p []byte) (int, error)  { c.l.reads.Add(1); return c.Conn.Read(p) }
func (c *countingConn) Write(p []byte) (int, error) { c.l.writes.Add(1); return c.Conn.Write(p) }

// CloseWrite keeps graceful closes graceful.
func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type benchServer struct {
	name  string
	start func(ln net.Listener) (stop func())
}

// infergateMode serves with this package's server and flush mode.
func infergateMode(mode flushMode) func(ln net.Listener) func() {
	return func(ln net.Listener) func() {
		s := New(Options{
			Codec: oip.Codec{}, MaxRecvMsgSize: 64 << 20, MaxSendMsgSize: 64 << 20, NumWorkers: 256,
			MaxConcurrentStreams: 1000, MaxHeaderListSize: 64 << 10,
			InitialWindowSize: 64 << 10, InitialConnWindowSize: 16 << 20,
		})
		s.flushMode = mode
		s.RegisterService(serviceDesc(), &inferService{infer: benchInfer})
		go s.Serve(ln)
		return s.Stop
	}
}

var benchServers = []benchServer{
	{"infergate", infergateMode(flushYield)},
	// The same, writing at once rather than yielding first (see
	// flushMode): about 5x the write calls at 16 and 64 calls in flight.
	{"infergate-atonce", infergateMode(flushAtOnce)},
	{"grpc-go", func(ln net.Listener) func() {
		s := grpc.NewServer(
			grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20), grpc.ForceServerCodecV2(oip.Codec{}),
			grpc.NumStreamWorkers(256), grpc.MaxConcurrentStreams(1000), grpc.MaxHeaderListSize(64<<10),
			grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(16<<20),
		)
		s.RegisterService(serviceDesc(), &inferService{infer: benchInfer})
		go s.Serve(ln)
		return s.Stop
	}},
}

// eachServer runs f against each server, and reports the servers' read
// and write calls per operation.
func eachServer(b *testing.B, f func(b *testing.B, addr string)) {
	for _, srv := range benchServers {
		b.Run(srv.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var reads, writes atomic.Int64
			stop := srv.start(countingListener{Listener: ln, reads: &reads, writes: &writes})
			defer stop()
			f(b, ln.Addr().String())
			b.StopTimer()
			b.ReportMetric(float64(reads.Load())/float64(b.N), "srv-reads/op")
			b.ReportMetric(float64(writes.Load())/float64(b.N), "srv-writes/op")
		})
	}
}

// BenchmarkGRPCClient calls ModelInfer with encoded messages from a
// grpc-go client, one call at a time, and from 16 and 64 goroutines
// sharing a connection: the client's costs are in every figure.
func BenchmarkGRPCClient(b *testing.B) {
	for _, par := range []int{1, 16, 64} {
		b.Run(parName(par), func(b *testing.B) {
			eachServer(b, func(b *testing.B, addr string) {
				cc := dial(b, addr)
				ctx := context.Background()
				req := &oip.RawFrame{Bytes: benchRequest}
				call := func() {
					var out oip.RawFrame
					if err := cc.Invoke(ctx, pb.GRPCInferenceService_ModelInfer_FullMethodName, req, &out, grpc.ForceCodecV2(oip.Codec{})); err != nil {
						b.Fatal(err)
					}
				}
				call()
				b.ReportAllocs()
				b.ResetTimer()
				if par == 1 {
					for range b.N {
						call()
					}
					return
				}
				b.SetParallelism(max(1, par/runtimeProcs()))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						call()
					}
				})
			})
		})
	}
}

// BenchmarkRawClient drives ModelInfer from a lean HTTP/2 client (one
// goroutine, requests pre-encoded, answers framed but not decoded, as
// h2load does) keeping 1, 16 or 64 calls in flight on one connection:
// nearly all of the time and allocations are the server's.
func BenchmarkRawClient(b *testing.B) {
	for _, depth := range []int{1, 16, 64} {
		b.Run(parName(depth), func(b *testing.B) {
			eachServer(b, func(b *testing.B, addr string) {
				c := newBenchClient(b, addr)
				c.run(b, 64) // warm up: HPACK tables, buffers, workers
				b.ReportAllocs()
				b.ResetTimer()
				c.run(b, b.N, depth)
			})
		})
	}
}

func parName(n int) string {
	return "c" + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
}

// benchClient is the lean HTTP/2 client of BenchmarkRawClient.
type benchClient struct {
	nc     net.Conn
	br     *bufio.Reader
	w      []byte
	first  []byte // the first request's header block, which indexes its fields
	block  []byte // later requests' header block: all indexed
	data   []byte // a request's DATA payload
	nextID uint32
	sent   bool
}

func newBenchClient(b *testing.B, addr string) *benchClient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	c := &benchClient{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), nextID: 1}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	encode := func() []byte {
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", pb.GRPCInferenceService_ModelInfer_FullMethodName},
			{":authority", "bench"}, {"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "bench"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	c.first, c.block = encode(), encode()
	c.data = binary.BigEndian.AppendUint32([]byte{0}, uint32(len(benchRequest)))
	c.data = append(c.data, benchRequest...)
	// A receive window the benchmark never exhausts.
	w := []byte(http2.ClientPreface)
	w = appendSettings(w, http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	w = appendWindowUpdate(w, 0, maxWindow-defaultWindow)
	if _, err := nc.Write(w); err != nil {
		b.Fatal(err)
	}
	return c
}

// request appends a request.
func (c *benchClient) request() {
	block := c.block
	if !c.sent {
		block, c.sent = c.first, true
	}
	c.w = appendHeaderBlock(c.w, c.nextID, block, false, defaultMaxFrameSize)
	c.w = appendFrameHeader(c.w, len(c.data), frameData, flagEndStream, c.nextID)
	c.w = append(c.w, c.data...)
	c.nextID += 2
}

func (c *benchClient) flush(b *testing.B) {
	if _, err := c.nc.Write(c.w); err != nil {
		b.Fatal(err)
	}
	c.w = c.w[:0]
}

// run makes n calls, depth at a time (1 if not given).
func (c *benchClient) run(b *testing.B, n int, depth ...int) {
	d := 1
	if len(depth) > 0 {
		d = depth[0]
	}
	sent, done := 0, 0
	for sent < n && sent-done < d {
		c.request()
		sent++
	}
	c.flush(b)
	var hdr [frameHeaderLen]byte
	for done < n {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			b.Fatal(err)
		}
		fh := parseFrameHeader(hdr[:])
		if _, err := c.br.Discard(int(fh.length)); err != nil {
			b.Fatal(err)
		}
		switch fh.typ {
		case frameSettings:
			if !fh.has(flagAck) {
				c.w = appendSettingsAck(c.w)
			}
			continue
		case frameRSTStream, frameGoAway:
			b.Fatalf("unexpected frame type %d", fh.typ)
		case frameHeaders, frameData:
			if !fh.has(flagEndStream) {
				continue
			}
		default:
			continue
		}
		done++
		if sent < n {
			c.request()
			sent++
		}
		// Send when the answers read so far are all handled, as an
		// event-driven client would.
		if c.br.Buffered() == 0 && len(c.w) > 0 {
			c.flush(b)
		}
	}
	if len(c.w) > 0 {
		c.flush(b)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
