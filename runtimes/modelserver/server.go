package modelserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes/onnx"
	"github.com/infergate/infergate/runtimes/sim"
)

// Model is a loaded model. Run receives inputs already validated against
// Metadata and returns every output in metadata order; it must be safe for
// concurrent use. The server calls Close once, after the runs in flight on
// the version have returned.
type Model interface {
	Metadata() oip.ModelMetadata
	Run(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error)
	Close() error
}

// LoadFunc loads one version of a model. It may block for as long as the
// load takes; the version it loads is not served until it returns.
type LoadFunc func(src ModelSource, v VersionSource) (Model, error)

// LoadONNX loads a version with the pure-Go ONNX engine.
func LoadONNX(src ModelSource, v VersionSource) (Model, error) {
	m, err := onnx.Load(v.Path, onnx.Options{
		Name:         src.Name,
		Version:      v.Version,
		Platform:     src.Config.Platform,
		MaxBatchSize: src.Config.MaxBatchSize,
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// LoadSimulated loads a simulated model (package sim) from the "simulate"
// object of the model's config.
func LoadSimulated(src ModelSource, v VersionSource) (Model, error) {
	if src.Config.Simulate == nil {
		return nil, fmt.Errorf("model %q has no \"simulate\" config", src.Name)
	}
	m, err := sim.New(*src.Config.Simulate, sim.Options{Name: src.Name, Version: v.Version, Platform: src.Config.Platform})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// LoadDefault is the default LoadFunc: LoadSimulated for a model whose
// config has "simulate", LoadONNX otherwise.
func LoadDefault(src ModelSource, v VersionSource) (Model, error) {
	if src.Config.Simulate != nil {
		return LoadSimulated(src, v)
	}
	return LoadONNX(src, v)
}

// Options configures a Server. Zero fields take the documented defaults.
type Options struct {
	// Models are the models the server starts with; each serves the
	// versions its config's version policy selects (default: the highest).
	Models []ModelSource
	// Repository is the directory the models were scanned from, if any. A
	// load request for a model the server does not know looks for it there,
	// so a model directory added after start can be loaded; the index lists
	// its models that are not loaded. Empty: only Models can be loaded.
	Repository string
	// StartupModels names the models LoadAll loads; the others are listed
	// but stay unloaded until a load request. Nil loads them all; an empty
	// non-nil slice loads none.
	StartupModels []string
	// DisableRepositoryAPI makes the repository extension (index, load,
	// unload over REST and gRPC) answer "unimplemented", for a server whose
	// models must not change at run time.
	DisableRepositoryAPI bool
	// Load loads a model version (default LoadDefault).
	Load LoadFunc
	// Name and Version are reported by server metadata (default
	// "infergate-modelserver" and "dev").
	Name, Version string
	// Logger receives load results (default slog.Default()).
	Logger *slog.Logger

	// MemoryReturnIdle is how long the server must be quiet (no
	// inference request in flight or started, the heap not growing)
	// before Run returns to the operating system the heap memory a burst
	// left behind (default 5s; negative: Run does nothing, and the Go
	// runtime returns it in its own time, minutes later). See memory.go.
	MemoryReturnIdle time.Duration
	// MemoryReturnMin is how much more heap than after its last return
	// the process must keep for Run to return memory (default 64 MiB):
	// below it, the two forced collections a return costs buy little.
	MemoryReturnMin int64
}

// Server serves the models of a repository, each as a set of loaded
// versions that load and unload requests change while requests run. Its
// methods are safe for concurrent use.
//
// A model's loaded versions are an immutable snapshot swapped atomically: a
// load builds the new versions beside the serving ones and swaps only when
// all are ready, so the old versions answer until then; versions that leave
// the snapshot are closed once the requests running on them have returned.
// Loads and unloads of one model are serialized; different models load in
// parallel.
type Server struct {
	opts Options

	mu       sync.Mutex                        // serializes additions to models
	models   atomic.Pointer[map[string]*entry] // copy on write
	startup  map[string]bool                   // nil: every model
	loaded   atomic.Bool                       // LoadAll has returned
	closed   atomic.Bool
	retiring sync.WaitGroup // versions waiting for their requests to finish
	activity activity       // inference requests, for Run
}

// New returns a server for opts.Models, each reported as loading (or not
// loaded, when StartupModels leaves it out). It loads nothing: call LoadAll.
func New(opts Options) (*Server, error) {
	if opts.Load == nil {
		opts.Load = LoadDefault
	}
	if opts.Name == "" {
		opts.Name = "infergate-modelserver"
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MemoryReturnIdle == 0 {
		opts.MemoryReturnIdle = 5 * time.Second
	}
	if opts.MemoryReturnMin <= 0 {
		opts.MemoryReturnMin = 64 << 20
	}
	s := &Server{opts: opts}
	if opts.StartupModels != nil {
		s.startup = make(map[string]bool, len(opts.StartupModels))
		for _, n := range opts.StartupModels {
			s.startup[n] = true
		}
	}
	models := make(map[string]*entry, len(opts.Models))
	for _, src := range opts.Models {
		if _, dup := models[src.Name]; dup {
			return nil, fmt.Errorf("modelserver: model %q is declared twice", src.Name)
		}
		if len(src.Versions) == 0 {
			return nil, fmt.Errorf("modelserver: model %q has no version", src.Name)
		}
		e := newEntry(src.Name)
		st := &modelState{src: src}
		if s.startup == nil || s.startup[src.Name] {
			if want, err := src.Config.VersionPolicy.Select(src.Versions); err == nil {
				for _, v := range want {
					st.loading = append(st.loading, v.Version)
				}
			}
		}
		e.state.Store(st)
		models[src.Name] = e
	}
	for n := range s.startup {
		if _, ok := models[n]; !ok {
			return nil, fmt.Errorf("modelserver: startup model %q is not among the models", n)
		}
	}
	if len(models) == 0 && opts.Repository == "" {
		return nil, errors.New("modelserver: no model to serve")
	}
	s.models.Store(&models)
	return s, nil
}

// LoadAll loads the startup models, one at a time, and returns once all
// have loaded or failed. A failure leaves that model not ready with the
// reason; LoadAll returns the failures joined, for the caller to log.
func (s *Server) LoadAll(ctx context.Context) error {
	defer s.loaded.Store(true)
	var errs []error
	for _, name := range s.names() {
		if s.startup != nil && !s.startup[name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		e := s.entry(name)
		err := e.lock(ctx)
		if err == nil {
			err = s.loadLocked(ctx, e, e.state.Load().src)
			e.unlock()
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// entry returns the model named name, or nil.
func (s *Server) entry(name string) *entry { return (*s.models.Load())[name] }

// names returns the names of the models, sorted.
func (s *Server) names() []string {
	m := *s.models.Load()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Ready reports whether LoadAll has returned and no model has failed to
// load with nothing left to serve, as Triton's strict readiness does.
// Models that are unloaded, never loaded, or reloading while an older
// version serves do not make the server unready.
func (s *Server) Ready() bool {
	if !s.loaded.Load() || s.closed.Load() {
		return false
	}
	for _, e := range *s.models.Load() {
		if !e.state.Load().healthy() {
			return false
		}
	}
	return true
}

// Metadata returns the server metadata.
func (s *Server) Metadata() oip.ServerMetadata {
	ext := []string{"binary_tensor_data"}
	if !s.opts.DisableRepositoryAPI {
		ext = append(ext, "model_repository")
	}
	return oip.ServerMetadata{Name: s.opts.Name, Version: s.opts.Version, Extensions: ext}
}

// lookup finds a model's current snapshot; an unknown model is not found.
func (s *Server) lookup(name string) (*modelState, error) {
	e := s.entry(name)
	if e == nil {
		return nil, oip.Errorf(oip.KindNotFound, "model %q not found; this server has %s", name, quoteList(s.names()))
	}
	return e.state.Load(), nil
}

// acquire returns the version a request for name and ver runs on, holding a
// reference that the caller releases when the request is done.
func (s *Server) acquire(name, ver string) (*version, error) {
	e := s.entry(name)
	if e == nil {
		return nil, oip.Errorf(oip.KindNotFound, "model %q not found; this server has %s", name, quoteList(s.names()))
	}
	// A version that fails to acquire was retired after we read the
	// snapshot, and a newer snapshot is already published: read again.
	for range 8 {
		v, err := e.state.Load().pick(name, ver)
		if err != nil {
			return nil, err
		}
		if v.acquire() {
			return v, nil
		}
	}
	return nil, oip.Errorf(oip.KindUnavailable, "model %q is being reloaded; retry", name)
}

// ModelReady reports whether a model (a given version, or any when version
// is empty) is ready; an unknown model or version is an error.
func (s *Server) ModelReady(name, version string) (bool, error) {
	st, err := s.lookup(name)
	if err != nil {
		return false, err
	}
	if _, err := st.pick(name, version); err != nil {
		if oip.KindOf(err) == oip.KindNotFound {
			return false, err
		}
		return false, nil
	}
	return true, nil
}

// ModelMetadata returns the metadata of a ready version of a model (the
// highest when version is empty), listing every version served.
func (s *Server) ModelMetadata(name, version string) (*oip.ModelMetadata, error) {
	st, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	v, err := st.pick(name, version)
	if err != nil {
		return nil, err
	}
	md := v.md
	md.Versions = st.servingNames()
	return &md, nil
}

// Infer validates req against the model's metadata, runs it, and returns the
// requested outputs (all when none is named) with req's id echoed. Inputs in
// req may alias a request buffer; the response does not alias req. A model
// that is loading, unloaded or failed answers unavailable at once, saying
// which.
func (s *Server) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	v, err := s.acquire(req.ModelName, req.ModelVersion)
	if err != nil {
		return nil, err
	}
	defer v.release()
	if err := oip.ValidateRequest(req, &v.md); err != nil {
		return nil, err
	}
	if v.maxBatch > 0 {
		if n, err := oip.BatchSize(req, &v.md); err == nil && n > int64(v.maxBatch) {
			return nil, oip.Errorf(oip.KindInvalidArgument, "model %q: batch size %d exceeds max_batch_size %d", req.ModelName, n, v.maxBatch)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	outs, err := s.run(ctx, v.model, req.Inputs)
	if err != nil {
		if oip.KindOf(err) == oip.KindInternal && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	resp := &oip.InferResponse{ModelName: req.ModelName, ModelVersion: v.name, ID: req.ID}
	if len(req.Outputs) == 0 {
		resp.Outputs = outs
		return resp, nil
	}
	resp.Outputs = make([]oip.Tensor, 0, len(req.Outputs))
	for _, ro := range req.Outputs {
		for i := range outs {
			if outs[i].Name == ro.Name {
				resp.Outputs = append(resp.Outputs, outs[i])
				break
			}
		}
	}
	return resp, nil
}

// run calls the model, turning a panic into an internal error.
func (s *Server) run(ctx context.Context, m Model, in []oip.Tensor) (out []oip.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, oip.Errorf(oip.KindInternal, "model panicked: %v", r)
		}
	}()
	return m.Run(ctx, in)
}

// Close unloads every model and returns once the requests running on them
// have returned and each model has been closed (errors closing a model are
// logged). Loads after Close fail with unavailable.
func (s *Server) Close() error {
	s.closed.Store(true)
	for _, e := range *s.models.Load() {
		_ = e.lock(context.Background())
		cur := e.state.Load()
		e.state.Store(&modelState{src: cur.src, retired: without(append(slices.Clone(cur.retired), cur.servingNames()...)), unloaded: true})
		s.retire(e.name, cur.serving)
		e.unlock()
	}
	s.retiring.Wait()
	return nil
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "no model"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
