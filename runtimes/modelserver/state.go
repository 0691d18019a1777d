package modelserver

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/oip"
)

// The states a version reports in the repository index, as Triton names
// them.
const (
	StateReady       = "READY"
	StateLoading     = "LOADING"
	StateUnavailable = "UNAVAILABLE"
)

// Reasons the index gives for a model or version that is UNAVAILABLE
// without a load error.
const (
	ReasonUnloaded  = "unloaded"
	ReasonNotLoaded = "not loaded"
)

// ModelIndex is one entry of the repository index: a version of a model,
// or a model with no version to report (never loaded, or failed before any
// version was chosen).
type ModelIndex struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// entry is one model the server knows. Its state is an immutable snapshot
// replaced as a whole: a request reads it once and works on what it read.
type entry struct {
	name  string
	busy  chan struct{} // holds a token while a load or unload of this model runs
	state atomic.Pointer[modelState]
}

func newEntry(name string) *entry { return &entry{name: name, busy: make(chan struct{}, 1)} }

// lock waits for the loads and unloads of the model before this one to
// finish, or for ctx to end.
func (e *entry) lock(ctx context.Context) error {
	select {
	case e.busy <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *entry) unlock() { <-e.busy }

// modelState is immutable once stored.
type modelState struct {
	src      ModelSource // as last scanned
	serving  []*version  // ready versions, ascending by number
	loading  []string    // versions being loaded now
	failed   []failure   // why the last load failed
	retired  []string    // versions that served and were unloaded since
	unloaded bool        // unloaded, and not loaded again since
}

// failure is a load failure; version is empty when the model failed before
// any version was tried (its config or version policy).
type failure struct {
	version string
	err     error
}

// version is one loaded version of a model. refs counts the snapshot that
// publishes it (1) and the requests running on it; when a retired version's
// count reaches zero, drained is closed and the model can be closed.
type version struct {
	name     string
	num      uint64
	model    Model
	md       oip.ModelMetadata // Name set, Versions = [name]
	maxBatch int
	src      VersionSource
	cfg      ModelConfig
	stamp    fileStamp
	refs     atomic.Int64
	drained  chan struct{}
}

func newVersion(name string, src VersionSource, cfg ModelConfig, m Model, stamp fileStamp) *version {
	md := m.Metadata()
	md.Name = name
	md.Versions = []string{src.Version}
	v := &version{
		name: src.Version, num: versionNumber(src.Version), model: m, md: md,
		maxBatch: cfg.MaxBatchSize, src: src, cfg: cfg, stamp: stamp,
		drained: make(chan struct{}),
	}
	v.refs.Store(1)
	return v
}

// acquire takes a reference for a request; it fails once the version has
// been retired and drained.
func (v *version) acquire() bool {
	for {
		n := v.refs.Load()
		if n <= 0 {
			return false
		}
		if v.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference taken by acquire, or the snapshot's own.
func (v *version) release() {
	if v.refs.Add(-1) == 0 {
		close(v.drained)
	}
}

// fileStamp identifies the contents of a version's file well enough to skip
// reloading a version that did not change.
type fileStamp struct {
	size  int64
	mtime time.Time
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime()}
}

// unchanged reports whether v was loaded from the same file and config as
// src and cfg describe now. The version policy is left out: a change of
// policy changes which versions serve, not what each one is.
func (v *version) unchanged(src VersionSource, cfg ModelConfig) bool {
	old := v.cfg
	old.VersionPolicy, cfg.VersionPolicy = nil, nil
	return v.src == src && v.stamp == stampOf(src.Path) && reflect.DeepEqual(old, cfg)
}

// find returns the serving version named ver, or nil.
func (st *modelState) find(ver string) *version {
	for _, v := range st.serving {
		if v.name == ver {
			return v
		}
	}
	return nil
}

// pick returns the version a request for ver (empty: the highest ready
// one) runs on, or an error saying why there is none: unavailable while it
// loads, after an unload or a failed load, not found for a version the
// server has never had.
func (st *modelState) pick(name, ver string) (*version, error) {
	if ver == "" {
		if n := len(st.serving); n > 0 {
			return st.serving[n-1], nil
		}
		return nil, st.notReady(name)
	}
	if v := st.find(ver); v != nil {
		return v, nil
	}
	return nil, st.versionNotReady(name, ver)
}

func (st *modelState) notReady(name string) error {
	switch {
	case len(st.loading) > 0:
		return oip.Errorf(oip.KindUnavailable, "model %q is loading (version %s); retry when it is ready", name, strings.Join(st.loading, ", "))
	case st.unloaded:
		return oip.Errorf(oip.KindUnavailable, "model %q is unloaded", name)
	case len(st.failed) > 0:
		f := st.failed[0]
		if f.version == "" {
			return &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf("model %q is not ready: its load failed", name), Err: f.err}
		}
		return &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf("model %q is not ready: version %s failed to load", name, f.version), Err: f.err}
	}
	return oip.Errorf(oip.KindUnavailable, "model %q is not loaded; load it through the repository API", name)
}

func (st *modelState) versionNotReady(name, ver string) error {
	if slices.Contains(st.loading, ver) {
		return oip.Errorf(oip.KindUnavailable, "model %q version %s is loading; retry when it is ready", name, ver)
	}
	for _, f := range st.failed {
		if f.version == ver {
			return &oip.Error{Kind: oip.KindUnavailable, Msg: fmt.Sprintf("model %q version %s failed to load", name, ver), Err: f.err}
		}
	}
	if slices.Contains(st.retired, ver) {
		return oip.Errorf(oip.KindUnavailable, "model %q version %s is unloaded", name, ver)
	}
	return oip.Errorf(oip.KindNotFound, "model %q has no version %q; serving: %s", name, ver, st.servingList())
}

func (st *modelState) servingList() string {
	if len(st.serving) == 0 {
		return "none"
	}
	return strings.Join(st.servingNames(), ", ")
}

func (st *modelState) servingNames() []string {
	names := make([]string, len(st.serving))
	for i, v := range st.serving {
		names[i] = v.name
	}
	return names
}

// healthy reports whether the model counts as ready for the server's
// readiness: it serves a version, or nothing has gone wrong with it (it is
// loading, unloaded, or was never loaded).
func (st *modelState) healthy() bool { return len(st.serving) > 0 || len(st.failed) == 0 }

// index lists the model's versions in the repository index: each serving
// version READY, each loading one LOADING, each failed or retired one
// UNAVAILABLE with the reason, ascending by version; a model with none of
// these has one entry without a version.
func (st *modelState) index(name string) []ModelIndex {
	var out []ModelIndex
	seen := map[string]bool{}
	add := func(ver, state, reason string) {
		if ver == "" || seen[ver] {
			return
		}
		seen[ver] = true
		out = append(out, ModelIndex{Name: name, Version: ver, State: state, Reason: reason})
	}
	for _, v := range st.serving {
		add(v.name, StateReady, "")
	}
	for _, v := range st.loading {
		add(v, StateLoading, "")
	}
	for _, f := range st.failed {
		add(f.version, StateUnavailable, f.err.Error())
	}
	for _, v := range st.retired {
		add(v, StateUnavailable, ReasonUnloaded)
	}
	slices.SortStableFunc(out, func(a, b ModelIndex) int {
		return cmpUint(versionNumber(a.Version), versionNumber(b.Version))
	})
	if len(out) > 0 {
		return out
	}
	reason := ReasonNotLoaded
	switch {
	case st.unloaded:
		reason = ReasonUnloaded
	case len(st.failed) > 0:
		reason = st.failed[0].err.Error()
	}
	return []ModelIndex{{Name: name, State: StateUnavailable, Reason: reason}}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// without returns names minus those in drop, as a new slice.
func without(names []string, drop ...[]string) []string {
	var out []string
	for _, n := range names {
		gone := false
		for _, d := range drop {
			if slices.Contains(d, n) {
				gone = true
				break
			}
		}
		if !gone && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
