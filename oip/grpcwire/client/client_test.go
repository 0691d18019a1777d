package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// wantCode fails the test unless err is a status error with code want.
func wantCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	s, ok := status.FromError(err)
	if !ok || s.Code() != want {
		t.Fatalf("error %v: want a status with code %v", err, want)
	}
}

func payload(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i + j*31)
	}
	return b
}

func TestConcurrentCalls(t *testing.T) {
	addr, _ := startGRPC(t, newTestService())
	c := newClient(t, addr, Options{})
	ctx := testCtx(t)
	const workers, calls = 64, 30
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				id := fmt.Sprintf("w%d-%d", w, i)
				raw := payload(w*calls+i, 1+(w*97+i*13)%3000)
				resp, err := infer(ctx, t, c, modelEcho, id, raw)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				if resp.Id != id || len(resp.RawOutputContents) != 1 || !bytes.Equal(resp.RawOutputContents[0], raw) {
					errs <- fmt.Errorf("%s: got the answer to another call (id %q)", id, resp.Id)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLargeMessages moves 4 MiB each way, which takes WINDOW_UPDATEs both
// ways, with the default windows and with the smallest.
func TestLargeMessages(t *testing.T) {
	addr, _ := startGRPC(t, newTestService())
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"default windows", Options{MaxMessageSize: 8 << 20}},
		{"64 KiB windows", Options{MaxMessageSize: 8 << 20, StreamWindow: 65535, ConnWindow: 65535}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, addr, tc.opts)
			ctx := testCtx(t)
			var wg sync.WaitGroup
			for i := range 3 { // at once, so that they share the connection's windows
				wg.Go(func() {
					raw := payload(i, 4<<20)
					resp, err := infer(ctx, t, c, modelEcho, "big", raw)
					if err != nil {
						t.Errorf("call %d: %v", i, err)
						return
					}
					if !bytes.Equal(resp.RawOutputContents[0], raw) {
						t.Errorf("call %d: the 4 MiB answer differs", i)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestMaxConcurrentStreams: with the runtime allowing 2 streams per
// connection, 32 calls at once all succeed, on more connections or by
// waiting for a stream.
func TestMaxConcurrentStreams(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxConns int
		atOnce   int // calls the runtime holds at once before release
	}{
		{"a connection per 2 calls", 16, 32},
		{"4 connections, calls wait", 4, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newTestService()
			addr, _ := startGRPC(t, svc, grpc.MaxConcurrentStreams(2))
			c := newClient(t, addr, Options{MaxConns: tc.maxConns})
			ctx := testCtx(t)
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Go(func() {
					if _, err := infer(ctx, t, c, modelHold, strconv.Itoa(i), nil); err != nil {
						t.Errorf("call %d: %v", i, err)
					}
				})
			}
			for range tc.atOnce {
				recv(ctx, t, svc.started, "a held call")
			}
			close(svc.release)
			wg.Wait()
			if svc.maxActive > 2*tc.maxConns {
				t.Errorf("%d calls were under way at once on %d connections of 2 streams", svc.maxActive, tc.maxConns)
			}
		})
	}
}

func TestDeadlineExceeded(t *testing.T) {
	svc := newTestService()
	addr, _ := startGRPC(t, svc)
	c := newClient(t, addr, Options{})
	ctx := testCtx(t)
	callCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := infer(callCtx, t, c, modelBlock, "slow", nil)
	wantCode(t, err, codes.DeadlineExceeded)
	if err := recv(ctx, t, svc.ended, "the runtime's context to end"); err == nil {
		t.Fatal("the runtime's context ended without an error")
	}
	// The connection still serves.
	if _, err := infer(ctx, t, c, modelEcho, "after", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestCancel: cancelling a call resets its stream, so that the runtime's
// context is cancelled (not timed out: no deadline was sent).
func TestCancel(t *testing.T) {
	svc := newTestService()
	addr, _ := startGRPC(t, svc)
	c := newClient(t, addr, Options{})
	ctx := testCtx(t)
	callCtx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := infer(callCtx, t, c, modelBlock, "cancelled", nil)
		errc <- err
	}()
	recv(ctx, t, svc.started, "the call to start")
	cancel()
	wantCode(t, recv(ctx, t, errc, "the call to end"), codes.Canceled)
	if err := recv(ctx, t, svc.ended, "the runtime's context to end"); !errors.Is(err, context.Canceled) {
		t.Fatalf("the runtime's context ended with %v, want Canceled (RST_STREAM CANCEL)", err)
	}
	if _, err := infer(ctx, t, c, modelEcho, "after", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestErrorStatus(t *testing.T) {
	addr, _ := startGRPC(t, newTestService())
	c := newClient(t, addr, Options{})
	ctx := testCtx(t)
	msg := "100% not ready\nnaïve café ✓ 日本語 %41"
	for _, model := range []string{modelError, modelErrorAfter} {
		t.Run(model, func(t *testing.T) {
			_, err := infer(ctx, t, c, model, msg, nil)
			s, _ := status.FromError(err)
			if s.Code() != codes.FailedPrecondition || s.Message() != msg {
				t.Fatalf("got %v %q, want FailedPrecondition %q", s.Code(), s.Message(), msg)
			}
		})
	}
	_, err := infer(ctx, t, c, "nope", "", nil)
	wantCode(t, err, codes.NotFound)
}

func TestOversizeResponse(t *testing.T) {
	addr, _ := startGRPC(t, newTestService())
	c := newClient(t, addr, Options{MaxMessageSize: 1 << 10})
	ctx := testCtx(t)
	_, err := infer(ctx, t, c, modelBig, strconv.Itoa(64<<10), nil)
	wantCode(t, err, codes.ResourceExhausted)
	// The stream was reset and the connection goes on.
	for range 3 {
		if _, err := infer(ctx, t, c, modelBig, "10", nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.Invoke(ctx, inferMethod, make([]byte, 2<<10), nil)
	wantCode(t, err, codes.ResourceExhausted)
}

// TestGracefulStop: a runtime stopping gracefully during traffic fails no
// call but with UNAVAILABLE; a new runtime on the address then serves,
// and with none every call is UNAVAILABLE.
func TestGracefulStop(t *testing.T) {
	svc := newTestService()
	ln := listen(t)
	addr := ln.Addr().String()
	srv := serveGRPC(t, ln, svc)
	c := newClient(t, addr, Options{})
	ctx := testCtx(t)

	var ok, unavailable atomic.Int64
	enough := make(chan struct{})
	stopped := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				select {
				case <-stopped:
					return
				default:
				}
				_, err := infer(ctx, t, c, modelEcho, "x", payload(w, 100))
				switch status.Code(err) {
				case codes.OK:
					if ok.Add(1) == 200 {
						once.Do(func() { close(enough) })
					}
				case codes.Unavailable:
					unavailable.Add(1)
				default:
					t.Errorf("call during GracefulStop: %v", err)
					return
				}
			}
		})
	}
	recv(ctx, t, enough, "200 calls")
	srv.GracefulStop()
	close(stopped)
	wg.Wait()
	t.Logf("%d calls answered, %d unavailable", ok.Load(), unavailable.Load())

	// Nothing listens: UNAVAILABLE.
	for range 3 {
		_, err := infer(ctx, t, c, modelEcho, "none", nil)
		wantCode(t, err, codes.Unavailable)
	}

	// A new runtime on the same address serves the next calls.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	serveGRPC(t, ln2, svc)
	if _, err := infer(ctx, t, c, modelEcho, "again", []byte("y")); err != nil {
		t.Fatalf("call to the new runtime: %v", err)
	}
}

// TestServerGone: calls under way when the runtime goes fail UNAVAILABLE
// without waiting for their deadline, and so do calls after.
func TestServerGone(t *testing.T) {
	svc := newTestService()
	addr, srv := startGRPC(t, svc)
	c := newClient(t, addr, Options{})
	ctx := testCtx(t)
	errc := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := infer(context.Background(), t, c, modelBlock, strconv.Itoa(i), nil)
			errc <- err
		}()
	}
	for range 4 {
		recv(ctx, t, svc.started, "the calls to start")
	}
	srv.Stop()
	for range 4 {
		wantCode(t, recv(ctx, t, errc, "a call under way"), codes.Unavailable)
	}
	_, err := infer(context.Background(), t, c, modelEcho, "later", nil)
	wantCode(t, err, codes.Unavailable)
	if s, _ := status.FromError(err); !strings.Contains(s.Message(), addr) {
		t.Errorf("UNAVAILABLE message %q does not name %s", s.Message(), addr)
	}
}

// TestGRPCTimeoutSent: the call's deadline reaches the runtime.
func TestGRPCTimeoutSent(t *testing.T) {
	svc := &deadlineService{got: make(chan time.Duration, 1)}
	addr, _ := startGRPC(t, svc)
	c := newClient(t, addr, Options{})
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	if _, err := infer(ctx, t, c, modelEcho, "x", nil); err != nil {
		t.Fatal(err)
	}
	if d := <-svc.got; d <= 0 || d > 20*time.Second {
		t.Fatalf("the runtime saw a deadline %v away, want within 20s", d)
	}
}

func TestClosed(t *testing.T) {
	addr, _ := startGRPC(t, newTestService())
	c := newClient(t, addr, Options{})
	ctx := testCtx(t)
	if _, err := infer(ctx, t, c, modelEcho, "x", nil); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	_, err := infer(ctx, t, c, modelEcho, "x", nil)
	wantCode(t, err, codes.Canceled)
}

func TestBadMetadata(t *testing.T) {
	c, err := New("127.0.0.1:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, md := range [][]string{{"k"}, {"Upper", "v"}, {":path", "/x"}, {"te", "x"}, {"k", "a\nb"}} {
		_, err := c.Invoke(context.Background(), inferMethod, nil, md)
		wantCode(t, err, codes.Internal)
	}
	if _, err := New("no-port", Options{}); err == nil {
		t.Error("New accepted an address without a port")
	}
}

func TestMetadataSent(t *testing.T) {
	svc := &deadlineService{md: make(chan metadata.MD, 1)}
	addr, _ := startGRPC(t, svc)
	c := newClient(t, addr, Options{UserAgent: "test-agent"})
	ctx := testCtx(t)
	req := marshal(t, &pb.ModelInferRequest{ModelName: "m", Id: "md"})
	if _, err := c.Invoke(ctx, inferMethod, req, []string{"x-request-id", "abc", "x-trace", "t1"}); err != nil {
		t.Fatal(err)
	}
	md := <-svc.md
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "abc" {
		t.Errorf("x-request-id = %q", got)
	}
	if got := md.Get("x-trace"); len(got) != 1 || got[0] != "t1" {
		t.Errorf("x-trace = %q", got)
	}
	if got := md.Get("user-agent"); len(got) != 1 || !strings.HasPrefix(got[0], "test-agent") {
		t.Errorf("user-agent = %q", got)
	}
}
