package modelserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes/onnx"
)

// Model is a loaded model. Run receives inputs already validated against
// Metadata and returns every output in metadata order; it must be safe for
// concurrent use.
type Model interface {
	Metadata() oip.ModelMetadata
	Run(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error)
	Close() error
}

// LoadFunc loads one version of a model.
type LoadFunc func(src ModelSource, v VersionSource) (Model, error)

// LoadONNX is the default LoadFunc: the pure-Go ONNX engine.
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

// Options configures a Server. Zero fields take the documented defaults.
type Options struct {
	// Models are the models to serve; each serves its highest version.
	Models []ModelSource
	// Load loads a model version (default LoadONNX).
	Load LoadFunc
	// Name and Version are reported by server metadata (default
	// "infergate-modelserver" and "dev").
	Name, Version string
	// Logger receives load results (default slog.Default()).
	Logger *slog.Logger
}

// Server serves a fixed set of models. Its methods are safe for concurrent
// use; models become ready as LoadAll loads them.
type Server struct {
	opts   Options
	models map[string]*entry
	names  []string
	loaded atomic.Bool
}

type entry struct {
	src     ModelSource
	version VersionSource
	state   atomic.Pointer[modelState]
}

// modelState is immutable once stored.
type modelState struct {
	model Model
	md    oip.ModelMetadata
	err   error // why the model is not ready; nil while loading
}

// New returns a server for opts.Models. It loads nothing: call LoadAll.
func New(opts Options) (*Server, error) {
	if opts.Load == nil {
		opts.Load = LoadONNX
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
	s := &Server{opts: opts, models: make(map[string]*entry)}
	for _, src := range opts.Models {
		if _, dup := s.models[src.Name]; dup {
			return nil, fmt.Errorf("modelserver: model %q is declared twice", src.Name)
		}
		if len(src.Versions) == 0 {
			return nil, fmt.Errorf("modelserver: model %q has no version", src.Name)
		}
		s.models[src.Name] = &entry{src: src, version: src.Versions[len(src.Versions)-1]}
		s.names = append(s.names, src.Name)
	}
	if len(s.names) == 0 {
		return nil, errors.New("modelserver: no model to serve")
	}
	sort.Strings(s.names)
	return s, nil
}

// LoadAll loads every model, one at a time, and returns once all have
// loaded or failed. A failure leaves that model not ready with the reason;
// LoadAll returns the failures joined, for the caller to log or report.
func (s *Server) LoadAll(ctx context.Context) error {
	var errs []error
	for _, name := range s.names {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := s.models[name]
		start := time.Now()
		m, err := s.load(e)
		if err != nil {
			err = fmt.Errorf("model %q version %s: %w", name, e.version.Version, err)
			e.state.Store(&modelState{err: err})
			s.opts.Logger.Error("model failed to load", "model", name, "version", e.version.Version, "err", err)
			errs = append(errs, err)
			continue
		}
		md := m.Metadata()
		md.Name = name
		md.Versions = []string{e.version.Version}
		e.state.Store(&modelState{model: m, md: md})
		s.opts.Logger.Info("model ready", "model", name, "version", e.version.Version, "took", time.Since(start).Round(time.Millisecond))
	}
	s.loaded.Store(true)
	return errors.Join(errs...)
}

// load calls the LoadFunc, turning a panic in a model library into an error
// so that one bad model file cannot take the server down.
func (s *Server) load(e *entry) (m Model, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("loading %s panicked: %v", e.version.Path, r)
		}
	}()
	return s.opts.Load(e.src, e.version)
}

// Ready reports whether loading has finished and every model is ready, as
// Triton's strict readiness does.
func (s *Server) Ready() bool {
	if !s.loaded.Load() {
		return false
	}
	for _, e := range s.models {
		if st := e.state.Load(); st == nil || st.model == nil {
			return false
		}
	}
	return true
}

// Metadata returns the server metadata.
func (s *Server) Metadata() oip.ServerMetadata {
	return oip.ServerMetadata{Name: s.opts.Name, Version: s.opts.Version, Extensions: []string{"binary_tensor_data"}}
}

// lookup finds a model and, when version is set, checks that it is the one
// served.
func (s *Server) lookup(name, version string) (*entry, error) {
	e, ok := s.models[name]
	if !ok {
		return nil, oip.Errorf(oip.KindNotFound, "model %q not found; this server has %s", name, quoteList(s.names))
	}
	if version != "" && version != e.version.Version {
		return nil, oip.Errorf(oip.KindNotFound, "model %q has no version %q; served: %q", name, version, e.version.Version)
	}
	return e, nil
}

// ready returns the loaded state of a model or an unavailable error saying
// why it is not ready.
func (s *Server) ready(name, version string) (*modelState, error) {
	e, err := s.lookup(name, version)
	if err != nil {
		return nil, err
	}
	st := e.state.Load()
	switch {
	case st == nil:
		return nil, oip.Errorf(oip.KindUnavailable, "model %q is loading", name)
	case st.model == nil:
		return nil, &oip.Error{Kind: oip.KindUnavailable, Msg: "model is not ready", Err: st.err}
	}
	return st, nil
}

// ModelReady reports whether a model is ready; an unknown model is an error.
func (s *Server) ModelReady(name, version string) (bool, error) {
	if _, err := s.lookup(name, version); err != nil {
		return false, err
	}
	_, err := s.ready(name, version)
	return err == nil, nil
}

// ModelMetadata returns a ready model's metadata.
func (s *Server) ModelMetadata(name, version string) (*oip.ModelMetadata, error) {
	st, err := s.ready(name, version)
	if err != nil {
		return nil, err
	}
	return &st.md, nil
}

// Infer validates req against the model's metadata, runs it, and returns the
// requested outputs (all when none is named) with req's id echoed. Inputs in
// req may alias a request buffer; the response does not alias req.
func (s *Server) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	st, err := s.ready(req.ModelName, req.ModelVersion)
	if err != nil {
		return nil, err
	}
	if err := oip.ValidateRequest(req, &st.md); err != nil {
		return nil, err
	}
	if max := s.models[req.ModelName].src.Config.MaxBatchSize; max > 0 {
		if n, err := oip.BatchSize(req, &st.md); err == nil && n > int64(max) {
			return nil, oip.Errorf(oip.KindInvalidArgument, "model %q: batch size %d exceeds max_batch_size %d", req.ModelName, n, max)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	outs, err := s.run(ctx, st.model, req.Inputs)
	if err != nil {
		if oip.KindOf(err) == oip.KindInternal && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	resp := &oip.InferResponse{ModelName: req.ModelName, ModelVersion: st.md.Versions[0], ID: req.ID}
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

// Close releases every loaded model.
func (s *Server) Close() error {
	var errs []error
	for _, e := range s.models {
		if st := e.state.Load(); st != nil && st.model != nil {
			errs = append(errs, st.model.Close())
		}
	}
	return errors.Join(errs...)
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
