package modelserver

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/oip"
)

// held is a scripted model whose runs announce themselves on entered and
// wait for release; Close closes closed.
type held struct {
	doubler
	entered chan struct{}
	release chan struct{}
	closed  chan struct{}
}

func newHeld() *held {
	return &held{entered: make(chan struct{}, 8), release: make(chan struct{}), closed: make(chan struct{})}
}

func (h *held) Run(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	h.entered <- struct{}{}
	<-h.release
	return h.doubler.Run(ctx, in)
}

func (h *held) Close() error { close(h.closed); return nil }

const doubleBody = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`

// TestUnloadLetsRequestsFinish unloads a model while a request runs on it:
// new requests are unavailable at once, the running one completes, and the
// model is closed after it.
func TestUnloadLetsRequestsFinish(t *testing.T) {
	h := newHeld()
	s, err := New(Options{
		Models: []ModelSource{{Name: "m", Versions: []VersionSource{{Version: "1"}}}},
		Load:   func(ModelSource, VersionSource) (Model, error) { return h, nil },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		ctx := do(s, "POST", "/v2/models/m/infer", doubleBody)
		done <- result{ctx.Response.StatusCode(), string(ctx.Response.Body())}
	}()
	receive(t, "the request to start running", h.entered)

	if err := s.UnloadModel(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	check(t, s,
		expect{"POST", "/v2/models/m/infer", doubleBody, 503, `model \"m\" is unloaded`},
		ready("/v2/models/m/ready", 503),
	)
	select {
	case <-h.closed:
		t.Fatal("the model was closed under a running request")
	default:
	}
	close(h.release)
	if r := receive(t, "the running request to finish", done); r.code != 200 || !strings.Contains(r.body, `"data":[2,4]`) {
		t.Errorf("running request: %d %s, want it answered", r.code, r.body)
	}
	receive(t, "the model to be closed", h.closed)
	s.Close()
}

// TestLoadingState holds the first load of a model: requests get 503 and
// UNAVAILABLE saying it is loading instead of waiting; a second load of
// the same model waits for the first instead of loading beside it, then
// finds the version loaded and does nothing.
func TestLoadingState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		entered := make(chan struct{}, 4)
		var calls, active, maxActive atomic.Int32
		load := func(ModelSource, VersionSource) (Model, error) {
			calls.Add(1)
			n := active.Add(1)
			if n > maxActive.Load() {
				maxActive.Store(n)
			}
			entered <- struct{}{}
			<-release
			active.Add(-1)
			return doubler{}, nil
		}
		s, err := New(Options{
			Models:        []ModelSource{{Name: "m", Versions: []VersionSource{{Version: "1"}}}},
			StartupModels: []string{},
			Load:          load,
			Logger:        slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.LoadAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		go func() { errs <- s.LoadModel(context.Background(), "m") }()
		<-entered
		go func() { errs <- s.LoadModel(context.Background(), "m") }()
		synctest.Wait() // the second load is blocked behind the first

		if n := calls.Load(); n != 1 {
			t.Errorf("%d loads ran at once, want 1", n)
		}
		check(t, s,
			expect{"POST", "/v2/models/m/infer", doubleBody, 503, `model \"m\" is loading (version 1); retry when it is ready`},
			expect{"GET", "/v2/models/m", "", 503, "is loading"},
			ready("/v2/models/m/ready", 503),
		)
		_, err = s.GRPCService().ModelInfer(context.Background(), oip.RequestToProto(&oip.InferRequest{ModelName: "m"}))
		if got := oip.KindOf(err); got != oip.KindUnavailable || !strings.Contains(oip.Message(err), "is loading") {
			t.Errorf("gRPC infer while loading = %v (%v), want UNAVAILABLE saying it is loading", err, got)
		}
		if diff := cmp.Diff([]ModelIndex{{Name: "m", Version: "1", State: StateLoading}}, s.Index(false)); diff != "" {
			t.Errorf("index while loading (-want +got):\n%s", diff)
		}

		// A load whose caller gives up while waiting its turn returns.
		ctx, cancel := context.WithCancel(context.Background())
		waited := make(chan error, 1)
		go func() { waited <- s.LoadModel(ctx, "m") }()
		synctest.Wait()
		cancel()
		if err := <-waited; !errors.Is(err, context.Canceled) {
			t.Errorf("a canceled waiting load = %v, want context.Canceled", err)
		}

		close(release)
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("load: %v", err)
			}
		}
		if calls.Load() != 1 || maxActive.Load() != 1 {
			t.Errorf("loads = %d, at most %d at once; want 1, the second finding the version loaded", calls.Load(), maxActive.Load())
		}
		check(t, s, expect{"POST", "/v2/models/m/infer", doubleBody, 200, `"model_version":"1"`})
		s.Close()
	})
}

// TestFailedReloadKeepsServing fails the load of a new version: the old
// one keeps serving and the index gives the reason.
func TestFailedReloadKeepsServing(t *testing.T) {
	src := ModelSource{Name: "m", Versions: []VersionSource{{Version: "1"}}}
	s, err := New(Options{
		Models: []ModelSource{src},
		Load: func(_ ModelSource, v VersionSource) (Model, error) {
			if v.Version == "2" {
				return nil, errors.New("bad weights")
			}
			return doubler{}, nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := s.entry("m")
	src.Versions = append(src.Versions, VersionSource{Version: "2"})
	if err := e.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = s.loadLocked(context.Background(), e, src)
	e.unlock()
	if oip.KindOf(err) != oip.KindInvalidArgument || !strings.Contains(err.Error(), "bad weights") {
		t.Errorf("load = %v, want invalid argument with the cause", err)
	}
	want := []ModelIndex{
		{Name: "m", Version: "1", State: StateReady},
		{Name: "m", Version: "2", State: StateUnavailable, Reason: "bad weights"},
	}
	if diff := cmp.Diff(want, s.Index(false)); diff != "" {
		t.Errorf("index (-want +got):\n%s", diff)
	}
	check(t, s,
		expect{"POST", "/v2/models/m/infer", doubleBody, 200, `"model_version":"1"`},
		expect{"POST", "/v2/models/m/versions/2/infer", doubleBody, 503, `model \"m\" version 2 failed to load: bad weights`},
		ready("/v2/health/ready", 200),
	)
}
