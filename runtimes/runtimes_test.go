package runtimes

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
)

// okRuntime serves model readiness and a fixed infer answer on loopback.
func okRuntime(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch {
		case strings.HasSuffix(string(ctx.Path()), "/ready"):
		case strings.HasSuffix(string(ctx.Path()), "/infer"):
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"model_name":"m","id":"x","outputs":[{"name":"y","datatype":"INT32","shape":[2],"data":[7,8]}]}`)
		default:
			ctx.SetStatusCode(404)
			ctx.SetBodyString(`{"error":"model \"nope\" not found"}`)
		}
	}}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func restTo(t *testing.T, addr string) *RESTClient {
	t.Helper()
	c, err := NewRESTClient(RESTOptions{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var quiet = slog.New(slog.DiscardHandler)

func TestPoolSkipsUnreachableReplica(t *testing.T) {
	good := restTo(t, okRuntime(t))
	down := restTo(t, closedAddr(t))
	p, err := NewPool(PoolOptions{Model: "m", Logger: quiet}, []Client{down, good})
	if err != nil {
		t.Fatal(err)
	}
	// Both start ready, as if the down one had just crashed.
	for _, r := range p.Replicas() {
		r.ready.Store(true)
	}
	for i := 0; i < 4; i++ {
		var resp *oip.InferResponse
		err := p.Do(context.Background(), func(c Client) error {
			var err error
			resp, err = c.Infer(context.Background(), &oip.InferRequest{ModelName: "m"})
			return err
		})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.ID != "x" || len(resp.Outputs) != 1 {
			t.Fatalf("call %d: response %+v", i, resp)
		}
	}
	if p.Replicas()[0].Ready() {
		t.Error("unreachable replica still marked ready")
	}
}

func TestPoolWithNoReadyReplica(t *testing.T) {
	p, err := NewPool(PoolOptions{Model: "m", Logger: quiet}, []Client{restTo(t, closedAddr(t))})
	if err != nil {
		t.Fatal(err)
	}
	p.Probe(context.Background())
	err = p.Do(context.Background(), func(Client) error { t.Fatal("called with no ready replica"); return nil })
	if oip.KindOf(err) != oip.KindUnavailable || !strings.Contains(err.Error(), `model "m"`) {
		t.Errorf("Do = %v, want unavailable naming the model", err)
	}
}

func TestRESTClientErrors(t *testing.T) {
	c := restTo(t, okRuntime(t))
	_, err := c.ModelMetadata(context.Background(), "nope", "")
	if oip.KindOf(err) != oip.KindNotFound || !strings.Contains(err.Error(), `model "nope" not found`) {
		t.Errorf("metadata of unknown model: %v, want the runtime's not-found message", err)
	}
	_, err = restTo(t, closedAddr(t)).Infer(context.Background(), &oip.InferRequest{ModelName: "m"})
	if !errors.Is(err, ErrUnreachable) || oip.KindOf(err) != oip.KindUnavailable {
		t.Errorf("refused connection: %v, want unavailable and unreachable", err)
	}
}

// TestPoolRemoveDrains removes a replica with a call in flight: no new call
// goes to it, and Remove returns only after the call finished.
func TestPoolRemoveDrains(t *testing.T) {
	a, b := restTo(t, okRuntime(t)), restTo(t, okRuntime(t))
	p, err := NewPool(PoolOptions{Model: "m", Logger: quiet}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ra, rb := p.Add(a), p.Add(b)
	ra.SetReady(true)
	rb.SetReady(true)

	entered, release := make(chan Client), make(chan struct{})
	go p.Do(context.Background(), func(c Client) error { entered <- c; <-release; return nil })
	busy := <-entered
	busyReplica := ra
	if busy == Client(b) {
		busyReplica = rb
	}
	removed := make(chan error)
	go func() { removed <- p.Remove(context.Background(), busyReplica) }()
	for !busyReplica.draining.Load() {
		runtime.Gosched()
	}
	for i := 0; i < 10; i++ {
		_ = p.Do(context.Background(), func(c Client) error {
			if c == busy {
				t.Error("a draining replica got a new call")
			}
			return nil
		})
	}
	select {
	case <-removed:
		t.Fatal("Remove returned with a call in flight")
	default:
	}
	close(release)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if got := len(p.Replicas()); got != 1 {
		t.Errorf("%d replicas after Remove, want 1", got)
	}
}

func TestPipelinedRESTClient(t *testing.T) {
	c, err := NewRESTClient(RESTOptions{Addr: okRuntime(t), Pipeline: true})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	for range 64 {
		go func() {
			resp, err := c.Infer(context.Background(), &oip.InferRequest{ModelName: "m"})
			if err == nil && resp.ID != "x" {
				err = errors.New("wrong response " + resp.ID)
			}
			errs <- err
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	down, err := NewRESTClient(RESTOptions{Addr: closedAddr(t), Pipeline: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = down.Infer(ctx, &oip.InferRequest{ModelName: "m"})
	// fasthttp's pipeline keeps redialing until the deadline; the pool's
	// prober is what takes such a replica out of rotation.
	if k := oip.KindOf(err); (k != oip.KindUnavailable && k != oip.KindDeadlineExceeded) || errors.Is(err, ErrUnreachable) {
		t.Errorf("pipelined call to a closed port: %v, want unavailable or deadline, and not retryable", err)
	}
}
