package bench

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

func TestRESTTargetCyclesBodiesAndCountsBytes(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	headers := map[string]int{}
	rt := newMemRESTTargetOpts(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		seen[string(ctx.Request.Body())]++
		headers[string(ctx.Request.Header.Peek("X-Which"))+"/"+string(ctx.Request.Header.Peek("X-All"))]++
		mu.Unlock()
		ctx.Response.SetBodyRaw(IrisResponseJSON("iris"))
	}, RESTOptions{
		Header: [][2]string{{"X-All", "yes"}},
		Requests: []RESTRequest{
			{Body: []byte(`{"a":1}`), Header: [][2]string{{"X-Which", "a"}}},
			{Body: []byte(`{"b":2}`), Header: [][2]string{{"X-Which", "b"}}},
			{Body: []byte(`{"c":3}`), Header: [][2]string{{"X-Which", "c"}}},
		},
	})
	res, err := RunClosedLoop(context.Background(), rt, LoopOptions{Concurrency: 1, Requests: 300, Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatal(res.FirstError)
	}
	// One worker cycles the bodies in turn; the pool may drop a call (the
	// race detector drops some on purpose), which restarts the cycle
	// elsewhere, so the shares are even only roughly.
	for _, w := range []struct{ body, header string }{{`{"a":1}`, "a/yes"}, {`{"b":2}`, "b/yes"}, {`{"c":3}`, "c/yes"}} {
		if seen[w.body] < 50 || headers[w.header] != seen[w.body] {
			t.Errorf("body %s sent %d times of 300 with its headers %d times: %v %v", w.body, seen[w.body], headers[w.header], seen, headers)
		}
	}
	// Each request is at least its body, each answer at least its body.
	minSent, minRecv := int64(300*7), int64(300*len(IrisResponseJSON("iris")))
	if res.BytesSent < minSent || res.BytesReceived < minRecv || res.BytesSent > 300*1000 {
		t.Errorf("bytes sent %d received %d; want at least %d and %d", res.BytesSent, res.BytesReceived, minSent, minRecv)
	}
}

func TestRESTTargetErrorsByKind(t *testing.T) {
	n := 0
	var mu sync.Mutex
	rt := newMemRESTTarget(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		switch {
		case k%4 == 0:
			ctx.SetStatusCode(503)
			ctx.SetBodyString(`{"error":"no ready runtime replica"}`)
		case k%10 == 1:
			ctx.SetStatusCode(404)
			ctx.SetBodyString(`{"error":"model \"x\" not found"}`)
		default:
			ctx.Response.SetBodyRaw(IrisResponseJSON("iris"))
		}
	})
	res, err := RunClosedLoop(context.Background(), rt, LoopOptions{Concurrency: 2, Requests: 400, Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []ErrorCount{{Kind: "HTTP 503: no ready runtime replica", Count: 100}, {Kind: `HTTP 404: model "x" not found`, Count: 40}}
	if len(res.ErrorKinds) != 2 || res.ErrorKinds[0] != want[0] || res.ErrorKinds[1] != want[1] || res.Errors != 140 {
		t.Errorf("errors %d by kind %+v, want %+v", res.Errors, res.ErrorKinds, want)
	}
}

func TestRESTTargetProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"valid answer", 200, string(IrisResponseJSON("iris")), ""},
		{"error status", 400, `{"error":"input \"input\": shape [1,3]"}`, `HTTP 400: input "input": shape [1,3]`},
		{"not OIP", 200, `{"hello":"world"}`, "not an OIP inference response"},
		{"not JSON", 200, `<html>`, "not an OIP inference response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newMemRESTTarget(t, func(ctx *fasthttp.RequestCtx) {
				ctx.SetStatusCode(tc.status)
				ctx.SetBodyString(tc.body)
			})
			err := rt.Probe(context.Background())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(ErrorKind(err), tc.wantErr) {
				t.Errorf("Probe = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestGRPCTargetRequestsBytesAndProbe(t *testing.T) {
	_, grpcAddr := startUpstream(t, "iris")
	a, b := IrisRequestProto("iris"), IrisRequestProto("iris")
	b.Id = "second"
	gt, err := NewGRPCTarget(GRPCOptions{Addr: grpcAddr, Requests: []*pb.ModelInferRequest{a, b}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer gt.Close()
	if err := gt.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := RunClosedLoop(context.Background(), gt, LoopOptions{Concurrency: 4, Requests: 200, Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Requests != 200 {
		t.Fatalf("requests %d errors %d: %s", res.Requests, res.Errors, res.FirstError)
	}
	if res.BytesSent < 200*40 || res.BytesReceived < 200*40 {
		t.Errorf("bytes sent %d received %d: want the messages counted", res.BytesSent, res.BytesReceived)
	}

	bad, err := NewGRPCTarget(GRPCOptions{Addr: grpcAddr, Request: IrisRequestProto("nope"), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Probe(context.Background()); status.Code(err) != codes.NotFound {
		t.Errorf("Probe of an unknown model = %v, want NotFound", err)
	}
	res, _ = RunClosedLoop(context.Background(), bad, LoopOptions{Requests: 5, Duration: 10 * time.Second})
	if len(res.ErrorKinds) != 1 || !strings.HasPrefix(res.ErrorKinds[0].Kind, "gRPC NotFound: ") || res.ErrorKinds[0].Count != 5 {
		t.Errorf("errors by kind %+v", res.ErrorKinds)
	}
}

func TestClosedLoopProgress(t *testing.T) {
	var mu sync.Mutex
	var got []Progress
	tgt := TargetFunc(func(context.Context) error { time.Sleep(time.Millisecond); return nil })
	_, err := RunClosedLoop(context.Background(), tgt, LoopOptions{
		Concurrency: 2, Warmup: 60 * time.Millisecond, Duration: 200 * time.Millisecond, ProgressInterval: 25 * time.Millisecond,
		Progress: func(p Progress) { mu.Lock(); got = append(got, p); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 3 || !got[0].Warmup || got[len(got)-1].Warmup || got[len(got)-1].Requests == 0 {
		t.Errorf("progress reports: %+v", got)
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Warmup && got[i].Requests < got[i-1].Requests {
			t.Errorf("progress went back: %+v then %+v", got[i-1], got[i])
		}
	}
}
