package modelserver

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
)

// TestWatch plays sequences of looks (one a second) at a server and its
// heap, and checks when memory is returned.
func TestWatch(t *testing.T) {
	const mb = 1 << 20
	type look struct {
		kept     uint64 // MiB
		started  uint64
		inFlight int64
		large    uint64 // MiB
		want     bool
	}
	quiet := func(n int, kept, started, large uint64) []look {
		ls := make([]look, n)
		for i := range ls {
			ls[i] = look{kept: kept, started: started, large: large}
		}
		return ls
	}
	cat := func(parts ...[]look) []look {
		var ls []look
		for _, p := range parts {
			ls = append(ls, p...)
		}
		return ls
	}
	tests := []struct {
		name  string
		looks []look
	}{
		{
			name: "a burst, then quiet for the idle time",
			looks: cat(
				[]look{{kept: 100, started: 8, inFlight: 8}, {kept: 900, started: 8, large: 800}},
				quiet(4, 900, 8, 800),
				[]look{{kept: 900, started: 8, large: 800, want: true}},
			),
		},
		{
			name:  "quiet after small requests only",
			looks: cat([]look{{kept: 150, started: 1000}}, quiet(10, 150, 1000, 0)),
		},
		{
			name:  "quiet after large requests under the minimum",
			looks: cat([]look{{kept: 150, started: 3}}, quiet(10, 150, 3, 63)),
		},
		{
			name: "requests keep coming",
			looks: []look{
				{kept: 900, started: 1, large: 800}, {kept: 900, started: 2, large: 800}, {kept: 900, started: 3, large: 800},
				{kept: 900, started: 4, large: 800}, {kept: 900, started: 5, large: 800}, {kept: 900, started: 6, large: 800},
				{kept: 900, started: 7, large: 800},
			},
		},
		{
			name: "one long request in flight",
			looks: []look{
				{kept: 900, started: 1, inFlight: 1, large: 800}, {kept: 900, started: 1, inFlight: 1, large: 800},
				{kept: 900, started: 1, inFlight: 1, large: 800}, {kept: 900, started: 1, inFlight: 1, large: 800},
				{kept: 900, started: 1, inFlight: 1, large: 800}, {kept: 900, started: 1, inFlight: 1, large: 800},
			},
		},
		{
			name: "bodies being read grow the heap before any handler runs",
			looks: cat(
				[]look{{kept: 100, started: 1, large: 100}}, quiet(4, 100, 1, 100),
				[]look{{kept: 300, started: 1, large: 100}, {kept: 500, started: 1, large: 100}, {kept: 700, started: 1, large: 100}},
				[]look{{kept: 900, started: 65, inFlight: 64, large: 100}},
				quiet(4, 900, 65, 800),
				[]look{{kept: 900, started: 65, large: 800, want: true}},
			),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			w := newWatch(5*time.Second, 64*mb, 100*mb, 0, t0)
			for i, l := range tc.looks {
				got := w.look(t0.Add(time.Duration(i+1)*time.Second), l.kept*mb, l.started, l.inFlight, l.large*mb)
				if got != l.want {
					t.Fatalf("look %d (%+v): return = %v, want %v", i, l, got, l.want)
				}
			}
		})
	}
}

// burstServer serves a simulated model over REST on loopback, as
// `infergate modelserver` does: input x is FP32 [-1, 1024] (4 KiB a row),
// output y one number a row.
func burstServer(tb testing.TB, opts Options) (*Server, string) {
	tb.Helper()
	dir := tb.TempDir()
	cfg := `{"simulate": {"latency_ms": 0, "per_item_ms": 0, "slots": 256,
		"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1024]}],
		"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]}}`
	if err := os.MkdirAll(filepath.Join(dir, "sim"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sim", "config.json"), []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	src, err := ScanModel("sim", filepath.Join(dir, "sim"))
	if err != nil {
		tb.Fatal(err)
	}
	opts.Models = []ModelSource{src}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.LoadAll(context.Background()); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := &fasthttp.Server{Handler: s.HandleREST, MaxRequestBodySize: 64 << 20}
	go hs.Serve(ln) //nolint:errcheck
	tb.Cleanup(func() {
		_ = hs.Shutdown()
		_ = s.Close()
	})
	return s, ln.Addr().String()
}

// burstBody returns an infer request body for burstServer's model of about
// size bytes, with its tensor in the binary extension, and the length of
// its JSON header.
func burstBody(size int) ([]byte, int) {
	rows := max(size/4096, 1)
	hdr := fmt.Sprintf(`{"inputs":[{"name":"x","datatype":"FP32","shape":[%d,1024],"parameters":{"binary_data_size":%d}}]}`, rows, rows*4096)
	return append([]byte(hdr), make([]byte, rows*4096)...), len(hdr)
}

// burst sends n requests with body at once to addr and waits for their
// answers.
func burst(tb testing.TB, addr string, n int, body []byte, hdrLen int) {
	tb.Helper()
	c := &fasthttp.HostClient{Addr: addr, MaxConns: n, MaxResponseBodySize: 1 << 20}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetRequestURI("/v2/models/sim/infer")
			req.SetHost("modelserver")
			req.Header.Set(rest.HeaderInferenceHeaderContentLength, strconv.Itoa(hdrLen))
			req.SetBodyRaw(body)
			if err := c.DoTimeout(req, resp, 5*time.Minute); err != nil || resp.StatusCode() != fasthttp.StatusOK {
				tb.Errorf("burst request: %v, HTTP %d %.200s", err, resp.StatusCode(), resp.Body())
			}
		})
	}
	wg.Wait()
}

// memSnapshot is the process's memory as the OS and the Go runtime see it.
type memSnapshot struct {
	rss, kept, released uint64
}

func snapshot() memSnapshot {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return memSnapshot{rss: rss(), kept: heapKept(), released: s[0].Value.Uint64()}
}

func (m memSnapshot) String() string {
	return fmt.Sprintf("RSS %d MiB, heap kept %d MiB, heap released %d MiB", m.rss>>20, m.kept>>20, m.released>>20)
}

// rss returns the process's resident set size, 0 where /proc has none.
func rss() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestRunReturnsMemoryAfterBurst: after a burst of large requests, Run
// gives the heap the burst grew back to the operating system once the
// server is idle, and the bodies are neither kept by the server's
// connections nor by its pooled requests.
func TestRunReturnsMemoryAfterBurst(t *testing.T) {
	const (
		n    = 8
		size = 16 << 20
	)
	s, addr := burstServer(t, Options{MemoryReturnIdle: 200 * time.Millisecond, MemoryReturnMin: 32 << 20})
	body, hdrLen := burstBody(size)
	before := snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	burst(t, addr, n, body, hdrLen)
	after := snapshot()
	t.Logf("before the burst: %v; after %d requests of %d MiB: %v", before, n, size>>20, after)
	if after.kept < before.kept+n*size/2 {
		t.Fatalf("the burst grew the heap kept by %d MiB only, want %d MiB or more", (after.kept-before.kept)>>20, n*size/2>>20)
	}
	// What the burst left must go back, less than one request's worth.
	limit := before.kept + size
	deadline := time.Now().Add(60 * time.Second)
	for heapKept() > limit {
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the burst: %v, want the heap kept back under %d MiB", snapshot(), limit>>20)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("once idle: %v", snapshot())
}

// BenchmarkBurstMemory measures the memory a burst of 64 concurrent 60 MB
// requests leaves in the process, and how long Run takes to return it
// once the server is idle (MemoryReturnIdle 5s, the default). Run it with
// -benchtime=1x: each iteration is a burst of 3.75 GiB.
func BenchmarkBurstMemory(b *testing.B) {
	const (
		n    = 64
		size = 60 << 20
	)
	s, addr := burstServer(b, Options{})
	body, hdrLen := burstBody(size)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx) //nolint:errcheck
	base := snapshot()
	var peak, idle memSnapshot
	var took time.Duration
	for b.Loop() {
		burst(b, addr, n, body, hdrLen)
		peak = snapshot()
		end := time.Now()
		deadline := end.Add(5 * time.Minute)
		for heapKept() > base.kept+size {
			if time.Now().After(deadline) {
				b.Fatalf("5 minutes after the burst: %v", snapshot())
			}
			time.Sleep(50 * time.Millisecond)
		}
		took = time.Since(end)
		idle = snapshot()
	}
	b.Logf("before: %v; after the burst: %v; %s later: %v", base, peak, took.Round(time.Millisecond), idle)
	b.ReportMetric(float64(peak.rss>>20), "peak-RSS-MiB")
	b.ReportMetric(float64(idle.rss>>20), "idle-RSS-MiB")
	b.ReportMetric(float64(idle.released>>20), "released-MiB")
	b.ReportMetric(took.Seconds(), "s-to-return")
}

// TestLargeRequestsCounted: large requests over REST and gRPC count
// towards a burst, small ones do not, and neither stays in flight.
func TestLargeRequestsCounted(t *testing.T) {
	s, addr := burstServer(t, Options{MemoryReturnIdle: -1})
	small, smallHdr := burstBody(64 << 10)
	large, largeHdr := burstBody(4 << 20)
	burst(t, addr, 1, small, smallHdr)
	if got := s.activity.large.Load(); got != 0 {
		t.Errorf("after a small REST request: %d large bytes, want 0", got)
	}
	burst(t, addr, 2, large, largeHdr)
	if got, want := s.activity.large.Load(), uint64(2*len(large)); got != want {
		t.Errorf("after 2 large REST requests: %d large bytes, want %d", got, want)
	}
	s.activity.large.Store(0)
	rows := (4 << 20) / 4096
	_, err := s.GRPCService().ModelInfer(context.Background(), &pb.ModelInferRequest{
		ModelName:        "sim",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), 1024}}},
		RawInputContents: [][]byte{make([]byte, rows*4096)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.activity.large.Load(), uint64(rows*4096); got != want {
		t.Errorf("after a large gRPC request: %d large bytes, want %d", got, want)
	}
	if n := s.activity.inFlight.Load(); n != 0 {
		t.Errorf("%d requests still in flight", n)
	}
}
