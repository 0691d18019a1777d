package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/autoscaler/activator"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
)

// hungRuntime is an OIP REST runtime on loopback that is ready but never
// answers an inference, as a frozen replica: each one it receives is
// reported on arrived.
type hungRuntime struct {
	addr    string
	arrived chan struct{}
}

func newHungRuntime(t *testing.T) *hungRuntime {
	t.Helper()
	ln := listenLoopback(t)
	h := &hungRuntime{addr: ln.Addr().String(), arrived: make(chan struct{}, 16)}
	release := make(chan struct{})
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if bytes.HasSuffix(ctx.Path(), []byte("/infer")) {
			h.arrived <- struct{}{}
			<-release
		}
	}}
	go srv.Serve(ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { close(release); _ = srv.Shutdown() })
	return h
}

// TestDrainDeadlineAnswers: requests still waiting at the drain deadline,
// on a runtime that never answers (a REST pass-through, a gRPC call
// translated for it: both blocked in a fasthttp call with no context) or
// in an activator with no replica, are answered before their connections
// close: REST 503 in OIP form with Connection: close, gRPC UNAVAILABLE,
// with the drain's message; and Serve returns.
func TestDrainDeadlineAnswers(t *testing.T) {
	rt := newHungRuntime(t)
	client, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: rt.addr})
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{}, 16)
	act, err := activator.New(activator.Options{
		Registerer: prometheus.NewRegistry(),
		Poke:       func(string) { held <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	act.SetCapacity("cold", 0)
	empty, err := runtimes.NewPool(runtimes.PoolOptions{Model: "cold", Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, Options{
		// Short, to keep the test quick: the requests wait for ever.
		DrainTimeout: 200 * time.Millisecond,
		Routes: []Route{
			{Model: "hung", Pool: readyPool(t, "hung", client), Timeout: time.Hour},
			{Model: "cold", Pool: empty, Activator: act, Timeout: time.Hour},
		},
	}, nil)

	type answer struct {
		name string
		err  error // the REST answer could not be read, or a gRPC error
		resp *http.Response
		body []byte
	}
	answers := make(chan answer, 4)
	restInfer := func(model string) {
		a := answer{name: "REST " + model}
		defer func() { answers <- a }()
		c := dial(t, s.rest)
		body := `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`
		fmt.Fprintf(c, "POST /v2/models/%s/infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", model, len(body), body)
		if a.resp, a.err = http.ReadResponse(bufio.NewReader(c), nil); a.err == nil {
			a.body, a.err = io.ReadAll(a.resp.Body)
		}
	}
	gc := grpcClient(t, s.grpc)
	grpcInfer := func(model string) {
		a := answer{name: "gRPC " + model}
		defer func() { answers <- a }()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, a.err = gc.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: model, Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: []int64{1, 1},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}},
		}}})
	}
	go restInfer("hung")
	go grpcInfer("hung")
	go restInfer("cold")
	go grpcInfer("cold")
	for i := range 4 {
		wait := rt.arrived
		if i >= 2 {
			wait = held
		}
		select {
		case <-wait:
		case a := <-answers:
			t.Fatalf("%s answered before the drain: %v %v %s", a.name, a.err, a.resp, a.body)
		case <-time.After(waitLimit):
			t.Fatal("the requests did not reach the runtime and the activator")
		}
	}

	s.cancel()
	const want = "gateway shutting down: the request did not finish within the drain timeout"
	for range 4 {
		var a answer
		select {
		case a = <-answers:
		case <-time.After(waitLimit):
			t.Fatal("a request had no answer after the drain")
		}
		if a.name[0] == 'g' { // gRPC
			if st := status.Convert(a.err); st.Code() != codes.Unavailable || st.Message() != want {
				t.Errorf("%s: %v, want UNAVAILABLE %q", a.name, a.err, want)
			}
			continue
		}
		if a.err != nil {
			t.Errorf("%s: no answer before the connection closed: %v", a.name, a.err)
			continue
		}
		var e struct{ Error string }
		if a.resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(a.body, &e) != nil || e.Error != want {
			t.Errorf("%s: %d %s, want 503 {\"error\":%q}", a.name, a.resp.StatusCode, a.body, want)
		}
		if !a.resp.Close {
			t.Errorf("%s: the 503 has no Connection: close (header %v)", a.name, a.resp.Header)
		}
	}
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("Serve: %v", s.err)
		}
	case <-time.After(waitLimit):
		t.Error("Serve did not return after the drain")
	}
}

// TestRESTClientCloseConns: CloseConns ends a Forward waiting on a runtime
// that never answers, at once, and the client works again afterwards.
func TestRESTClientCloseConns(t *testing.T) {
	rt := newHungRuntime(t)
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: rt.addr})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod("POST")
		req.SetRequestURI("/v2/models/m/infer")
		done <- c.Forward(req, resp, time.Now().Add(time.Hour))
	}()
	select {
	case <-rt.arrived:
	case <-time.After(waitLimit):
		t.Fatal("the request did not reach the runtime")
	}
	c.CloseConns()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Forward succeeded on a closed connection")
		}
	case <-time.After(waitLimit):
		t.Fatal("Forward still waits after CloseConns")
	}
	ready, err := c.ServerReady(context.Background())
	if !ready || err != nil {
		t.Errorf("after CloseConns: ready %v, %v; want a working client", ready, err)
	}
}

// TestDrainKeepAliveGrace: a client that wrote its next request on a
// kept-alive connection just as the drain began gets it answered, with
// Connection: close, rather than a connection closed under it.
func TestDrainKeepAliveGrace(t *testing.T) {
	rt := newFakeRuntime(t, "fast")
	s := serve(t, Options{
		Routes:       []Route{{Model: "m", Pool: readyPool(t, "m", rt.client(t))}},
		DrainTimeout: 10 * time.Second,
	}, nil)
	conn, err := net.Dial("tcp", s.rest)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	const body = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`
	send := func() (*http.Response, error) {
		req := fmt.Sprintf("POST /v2/models/m/infer HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if _, err := conn.Write([]byte(req)); err != nil {
			return nil, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := send(); err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("first request: %v %v", resp, err)
	}
	s.cancel()
	// The drain has begun once the listener refuses new connections.
	eventually(t, "the listener closed", func() bool {
		c, err := net.Dial("tcp", s.rest)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	resp, err := send()
	if err != nil {
		t.Fatalf("a request on a kept-alive connection as the drain began: %v; want an answer", err)
	}
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("answered %d, Connection: close %v; want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
}
