package runtimes

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/oip"
)

// fakeClient is a replica that is never dialed: the tests' fn decides what
// a call to it returns.
type fakeClient struct{ name string }

func (f *fakeClient) Addr() string { return f.name }
func (f *fakeClient) Close() error { return nil }
func (f *fakeClient) ModelReady(context.Context, string, string) (bool, error) {
	return true, nil
}
func (f *fakeClient) ModelMetadata(context.Context, string, string) (*oip.ModelMetadata, error) {
	return &oip.ModelMetadata{Name: "m"}, nil
}
func (f *fakeClient) Infer(context.Context, *oip.InferRequest) (*oip.InferResponse, error) {
	return &oip.InferResponse{}, nil
}

// fakeClock is PoolOptions.Now under the test's control.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newFakePool returns a pool of n ready fake replicas, named r0, r1, ...
func newFakePool(t testing.TB, n int, opts PoolOptions) *Pool {
	t.Helper()
	opts.Model = "m"
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	cs := make([]Client, n)
	for i := range cs {
		cs[i] = &fakeClient{name: fmt.Sprintf("r%d", i)}
	}
	p, err := NewPool(opts, cs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Replicas() {
		r.SetReady(true)
	}
	return p
}

// The errors a runtime's answers turn into.
var (
	err503      = responseError(503, []byte(`{"error":"model is loading"}`))
	err500      = responseError(500, []byte(`{"error":"boom"}`))
	err400      = responseError(400, []byte(`{"error":"bad input"}`))
	err404      = responseError(404, []byte(`{"error":"no such model"}`))
	errRefused  = unavailable("r?", fmt.Errorf("dial tcp: connection refused"))
	errCanceled = context.Canceled
)

func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// TestPoolDoAllocs guards the choice's hot path: a call to a healthy pool
// allocates nothing.
func TestPoolDoAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector allocates")
	}
	for _, n := range []int{1, 2, 8, 200} {
		t.Run(fmt.Sprintf("replicas=%d", n), func(t *testing.T) {
			p := newFakePool(t, n, PoolOptions{})
			ctx := context.Background()
			fn := func(Client) error { return nil }
			if a := testing.AllocsPerRun(1000, func() { _ = p.Do(ctx, fn) }); a != 0 {
				t.Errorf("Do allocates %v times per call, want 0", a)
			}
		})
	}
}

func BenchmarkPoolDo(b *testing.B) {
	for _, n := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			p := newFakePool(b, n, PoolOptions{})
			ctx := context.Background()
			fn := func(Client) error { return nil }
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.Do(ctx, fn); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkPoolDoSerial(b *testing.B) {
	p := newFakePool(b, 4, PoolOptions{})
	ctx := context.Background()
	fn := func(Client) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Do(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPoolStats checks the counters' zero state and that they follow the
// events the other tests provoke one by one.
func TestPoolStatsZero(t *testing.T) {
	p := newFakePool(t, 3, PoolOptions{})
	if got := p.Stats(); got != (PoolStats{}) {
		t.Errorf("Stats of a new pool = %+v, want zero", got)
	}
}

// TestPoolDefaults pins the documented defaults.
func TestPoolDefaults(t *testing.T) {
	p := newFakePool(t, 1, PoolOptions{})
	o := p.opts
	got := []any{o.BreakerFailures, o.BreakerOpenTimeout, o.BreakerHalfOpenRequests, o.EjectFailures,
		o.BaseEjectionTime, o.MaxEjectionTime, o.MaxEjectionPercent, o.RetryBudgetPercent, o.MinRetryConcurrency}
	want := []any{5, 5 * time.Second, 1, 5, 30 * time.Second, 300 * time.Second, 50, 20.0, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("default %d = %v, want %v", i, got[i], want[i])
		}
	}
	if p.Replicas()[0].brk == nil {
		t.Error("no breaker by default")
	}
	off := newFakePool(t, 1, PoolOptions{BreakerFailures: -1, RetryBudgetPercent: -1, MinRetryConcurrency: -1})
	if off.Replicas()[0].brk != nil || off.opts.RetryBudgetPercent != 0 || off.opts.MinRetryConcurrency != 0 {
		t.Errorf("negative options did not turn features off: %+v", off.opts)
	}
}

// TestCachedMetadata: the cache is empty until a runtime answered, and
// reading it asks no runtime.
func TestCachedMetadata(t *testing.T) {
	p := newFakePool(t, 1, PoolOptions{})
	if md := p.CachedMetadata(); md != nil {
		t.Fatalf("CachedMetadata before any answer = %+v, want nil", md)
	}
	md, err := p.Metadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.CachedMetadata(); got != md {
		t.Errorf("CachedMetadata = %p, want the answer %p", got, md)
	}
}

func TestMayRetry(t *testing.T) {
	broke := &oip.Error{Kind: oip.KindUnavailable, Msg: "connection closed before an answer"}
	for _, tc := range []struct {
		name          string
		err           error
		nonIdempotent bool
		want          bool
	}{
		{"no replica", &oip.Error{Kind: oip.KindUnavailable, Msg: "none", Err: ErrNoReplica}, true, true},
		{"unreachable", fmt.Errorf("dial: %w", ErrUnreachable), true, true},
		{"broke before an answer, idempotent", broke, false, true},
		{"broke before an answer, not idempotent", broke, true, false},
		{"internal", oip.Errorf(oip.KindInternal, "boom"), false, false},
		{"deadline", oip.Errorf(oip.KindDeadlineExceeded, "late"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPool(PoolOptions{Model: "m", NonIdempotent: tc.nonIdempotent}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if got := p.MayRetry(tc.err); got != tc.want {
				t.Errorf("MayRetry(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	p, err := NewPool(PoolOptions{Model: "m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Do(context.Background(), func(Client) error { return nil }); !errors.Is(err, ErrNoReplica) || !p.MayRetry(err) {
		t.Errorf("Do on an empty pool: %v, want ErrNoReplica", err)
	}
}
