package modelserver

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/infergate/infergate/oip"
)

// LoadModel loads or reloads the model named name, as the repository
// extension's load request does, and returns once the versions its policy
// selects serve or the load failed.
//
// The model is read again from its directory first, so a changed config or
// a new version directory takes effect; a model the server does not know is
// looked for in the repository (a directory added after start). Versions
// already serving whose file and config are unchanged stay as they are; the
// others load beside the serving ones, which keep answering (the index says
// LOADING) until every new version is ready, and then the set is swapped at
// once. Versions the policy no longer selects are unloaded after their
// requests in flight finish. If any version fails, nothing is swapped: the
// old versions keep serving and the failure is reported by the index and in
// the returned error.
//
// Errors: invalid argument for a bad name, config or model file; not found
// for a model that is in neither the server nor its repository;
// unavailable once the server is closed. Concurrent loads and unloads of
// one model run one after the other.
func (s *Server) LoadModel(ctx context.Context, name string) error {
	if err := checkModelName(name); err != nil {
		return oip.Errorf(oip.KindInvalidArgument, "load: %w", err)
	}
	if s.closed.Load() {
		return oip.Errorf(oip.KindUnavailable, "load %q: the server is closed", name)
	}
	e := s.entry(name)
	if e == nil {
		src, err := s.findInRepository(name)
		if err != nil {
			return err
		}
		e = s.addEntry(src)
	}
	if err := e.lock(ctx); err != nil {
		return err
	}
	defer e.unlock()
	src := e.state.Load().src
	if src.Path != "" {
		fresh, err := ScanModel(name, src.Path)
		if err == nil && fresh.Name != name {
			err = fmt.Errorf("%s now names the model %q: unload %q and load %q", src.Path, fresh.Name, name, fresh.Name)
		}
		if err != nil {
			s.fail(e, failure{err: err})
			return oip.Errorf(oip.KindInvalidArgument, "load %q: %w", name, err)
		}
		src = fresh
	}
	return s.loadLocked(ctx, e, src)
}

// UnloadModel unloads every version of a model, as the repository
// extension's unload request does. New requests for the model are
// unavailable with a message saying it is unloaded, its readiness is false,
// and the index reports its versions UNAVAILABLE "unloaded"; requests in
// flight finish, and each version is closed after its last one. Unloading
// an unloaded model, or one in the repository that was never loaded, does
// nothing; a model in neither the server nor its repository is not found.
func (s *Server) UnloadModel(ctx context.Context, name string) error {
	if err := checkModelName(name); err != nil {
		return oip.Errorf(oip.KindInvalidArgument, "unload: %w", err)
	}
	e := s.entry(name)
	if e == nil {
		_, err := s.findInRepository(name)
		return err
	}
	if err := e.lock(ctx); err != nil {
		return err
	}
	defer e.unlock()
	cur := e.state.Load()
	if cur.unloaded {
		return nil
	}
	e.state.Store(&modelState{
		src:      cur.src,
		retired:  without(append(slices.Clone(cur.retired), cur.servingNames()...)),
		unloaded: true,
	})
	s.retire(name, cur.serving)
	s.opts.Logger.Info("model unloaded", "model", name, "versions", cur.servingList())
	return nil
}

// loadLocked loads src's selected versions into e, whose lock is held.
func (s *Server) loadLocked(ctx context.Context, e *entry, src ModelSource) error {
	cur := e.state.Load()
	want, err := src.Config.VersionPolicy.Select(src.Versions)
	if err != nil {
		s.fail(e, failure{err: err})
		return oip.Errorf(oip.KindInvalidArgument, "load %q: %w", e.name, err)
	}
	var keep []*version
	var need []VersionSource
	for _, w := range want {
		if v := cur.find(w.Version); v != nil && v.unchanged(w, src.Config) {
			keep = append(keep, v)
		} else {
			need = append(need, w)
		}
	}
	if len(need) > 0 {
		loading := make([]string, len(need))
		for i, w := range need {
			loading[i] = w.Version
		}
		e.state.Store(&modelState{src: src, serving: cur.serving, loading: loading, retired: without(cur.retired, loading)})
	}

	start := time.Now()
	loaded := make([]*version, 0, len(need))
	for _, w := range need {
		v, err := s.loadVersion(ctx, e.name, src, w)
		if err != nil {
			for _, l := range loaded {
				s.retire(e.name, []*version{l})
			}
			e.state.Store(&modelState{src: src, serving: cur.serving, failed: []failure{{version: w.Version, err: err}}, retired: without(cur.retired, []string{w.Version})})
			s.opts.Logger.Error("model failed to load", "model", e.name, "version", w.Version, "err", err)
			kind := oip.KindInvalidArgument
			switch {
			case ctx.Err() != nil:
				kind = oip.KindOf(ctx.Err())
			case s.closed.Load():
				kind = oip.KindUnavailable
			}
			return &oip.Error{Kind: kind, Msg: fmt.Sprintf("load %q version %s", e.name, w.Version), Err: err}
		}
		loaded = append(loaded, v)
	}

	next := append(keep, loaded...)
	slices.SortFunc(next, func(a, b *version) int { return cmpUint(a.num, b.num) })
	var gone []*version
	for _, v := range cur.serving {
		if !slices.Contains(next, v) {
			gone = append(gone, v)
		}
	}
	st := &modelState{src: src, serving: next}
	st.retired = without(append(slices.Clone(cur.retired), versionNames(gone)...), st.servingNames())
	e.state.Store(st)
	s.retire(e.name, gone)
	if len(need) > 0 || len(gone) > 0 {
		s.opts.Logger.Info("model ready", "model", e.name, "versions", st.servingList(),
			"loaded", strings.Join(versionNames(loaded), ","), "unloaded", strings.Join(versionNames(gone), ","),
			"took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// loadVersion loads one version, turning a panic in a model library into an
// error so that one bad model file cannot take the server down.
func (s *Server) loadVersion(ctx context.Context, name string, src ModelSource, w VersionSource) (v *version, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("the server is closed")
	}
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("loading %s panicked: %v", w.Path, r)
		}
	}()
	stamp := stampOf(w.Path)
	m, err := s.opts.Load(src, w)
	if err != nil {
		return nil, err
	}
	return newVersion(name, w, src.Config, m, stamp), nil
}

// fail records a load that failed before any version was tried; the
// serving versions stay.
func (s *Server) fail(e *entry, f failure) {
	cur := e.state.Load()
	e.state.Store(&modelState{src: cur.src, serving: cur.serving, failed: []failure{f}, retired: cur.retired})
	s.opts.Logger.Error("model failed to load", "model", e.name, "err", f.err)
}

// retire drops the snapshot's reference to each version and closes it once
// its last request has returned: now if none is running, else from a
// goroutine that waits for them (Close waits for those goroutines).
func (s *Server) retire(name string, vs []*version) {
	for _, v := range vs {
		v.release()
		select {
		case <-v.drained:
			s.closeVersion(name, v)
		default:
			s.retiring.Add(1)
			go func() {
				defer s.retiring.Done()
				<-v.drained
				s.closeVersion(name, v)
			}()
		}
	}
}

func (s *Server) closeVersion(name string, v *version) {
	if err := v.model.Close(); err != nil {
		s.opts.Logger.Warn("closing model", "model", name, "version", v.name, "err", err)
	}
}

// addEntry adds a model found in the repository, or returns the entry that
// a concurrent load added first.
func (s *Server) addEntry(src ModelSource) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.models.Load()
	if e, ok := old[src.Name]; ok {
		return e
	}
	e := newEntry(src.Name)
	e.state.Store(&modelState{src: src})
	next := maps.Clone(old)
	if next == nil {
		next = make(map[string]*entry, 1)
	}
	next[src.Name] = e
	s.models.Store(&next)
	return e
}

// findInRepository looks for the model named name in the repository: the
// directory of that name, or one whose config.json gives that name.
func (s *Server) findInRepository(name string) (ModelSource, error) {
	repo := s.opts.Repository
	if repo == "" {
		return ModelSource{}, oip.Errorf(oip.KindNotFound, "model %q not found; this server has %s and no repository to load others from", name, quoteList(s.names()))
	}
	if dir := filepath.Join(repo, name); isDir(dir) {
		src, err := ScanModel(name, dir)
		if err != nil {
			return src, oip.Errorf(oip.KindInvalidArgument, "load %q: %w", name, err)
		}
		if src.Name == name {
			return src, nil
		}
	}
	entries, err := os.ReadDir(repo)
	if err != nil {
		return ModelSource{}, oip.Errorf(oip.KindInternal, "reading the repository: %w", err)
	}
	for _, d := range entries {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") || d.Name() == name {
			continue
		}
		if src, err := ScanModel(d.Name(), filepath.Join(repo, d.Name())); err == nil && src.Name == name {
			return src, nil
		}
	}
	return ModelSource{}, oip.Errorf(oip.KindNotFound, "model %q not found in repository %s", name, repo)
}

// Index lists the repository as Triton's index does: every version of
// every model the server knows with its state (READY, LOADING, or
// UNAVAILABLE with the reason), and the models in the repository directory
// that were never loaded (UNAVAILABLE, "not loaded"), sorted by name and
// version. readyOnly keeps only the READY entries.
func (s *Server) Index(readyOnly bool) []ModelIndex {
	out := []ModelIndex{}
	models := *s.models.Load()
	paths := make(map[string]bool, len(models))
	for _, name := range s.names() {
		st := models[name].state.Load()
		if st.src.Path != "" {
			paths[filepath.Clean(st.src.Path)] = true
		}
		out = append(out, st.index(name)...)
	}
	if s.opts.Repository != "" {
		entries, _ := os.ReadDir(s.opts.Repository)
		for _, d := range entries {
			path := filepath.Join(s.opts.Repository, d.Name())
			if !d.IsDir() || strings.HasPrefix(d.Name(), ".") || paths[filepath.Clean(path)] {
				continue
			}
			src, err := ScanModel(d.Name(), path)
			switch {
			case err != nil:
				out = append(out, ModelIndex{Name: d.Name(), State: StateUnavailable, Reason: err.Error()})
			case models[src.Name] == nil:
				out = append(out, ModelIndex{Name: src.Name, State: StateUnavailable, Reason: ReasonNotLoaded})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b ModelIndex) int { return strings.Compare(a.Name, b.Name) })
	if readyOnly {
		out = slices.DeleteFunc(out, func(m ModelIndex) bool { return m.State != StateReady })
	}
	return out
}

func versionNames(vs []*version) []string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.name
	}
	return names
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
