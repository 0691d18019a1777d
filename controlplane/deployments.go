package controlplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infergate/infergate/config"
)

// The sentinels errors wrap; test with errors.Is.
var (
	// ErrInvalid is a declaration Apply refuses, or a bad argument.
	ErrInvalid = errors.New("invalid")
	// ErrUnknownModel names a model that is not deployed.
	ErrUnknownModel = errors.New("unknown model")
	// ErrNothingToDo is an action that would change nothing: promoting a
	// model whose latest revision is already stable, pausing a paused
	// rollout...
	ErrNothingToDo = errors.New("nothing to do")
)

// Tags name revisions by role, as KServe's tag routing does.
const (
	// TagLatest is the latest revision created, whatever traffic it has.
	TagLatest = "latest"
	// TagPrev is the previous rolled-out revision: the stable one while
	// the latest is not (a canary, or rolled back), else the revision that
	// was stable before the current one. Absent when there is none.
	TagPrev = "prev"
)

// Defaults of Options.
const (
	DefaultMaxRevisions = 10
	DefaultMaxDecisions = 100
)

// Clock tells Deployments the time of revisions and of manual actions.
// Tick takes its time as an argument instead.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Options configure a Deployments. The zero value is ready to use.
type Options struct {
	// Clock stamps revisions and manual actions; nil means the system
	// clock.
	Clock Clock
	// MaxRevisions bounds the revisions kept per model, oldest dropped
	// first; 0 means DefaultMaxRevisions. The latest revision, the stable
	// one, the one stable before it (tag prev) and a revision a mirror
	// names by name or number are kept even beyond the bound.
	MaxRevisions int
	// MaxDecisions bounds the rollout decisions kept per model, oldest
	// dropped first; 0 means DefaultMaxDecisions.
	MaxDecisions int
}

// Deployments is the desired state of every deployed model: its immutable
// revisions and how its traffic splits between them, with KServe's canary
// semantics (see Apply). It is in-memory and pure: it starts no goroutine,
// does no I/O and reads the time from its Clock, so a caller drives it
// (Apply, the manual actions, Tick) and reads it (State, Wait). All methods
// are safe for concurrent use.
type Deployments struct {
	clock        Clock
	maxRevisions int
	maxDecisions int

	mu     sync.Mutex
	models map[string]*model
	// numbers holds the last revision number given per model name. It
	// outlives a model's removal, so a revision name never comes back
	// with another spec.
	numbers map[string]int
	gen     uint64
	// changed is closed, and replaced, at each new generation.
	changed chan struct{}
}

// New returns an empty Deployments.
func New(opts Options) (*Deployments, error) {
	switch {
	case opts.MaxRevisions < 0:
		return nil, fmt.Errorf("controlplane: Options.MaxRevisions %d is negative", opts.MaxRevisions)
	case opts.MaxDecisions < 0:
		return nil, fmt.Errorf("controlplane: Options.MaxDecisions %d is negative", opts.MaxDecisions)
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.MaxRevisions == 0 {
		opts.MaxRevisions = DefaultMaxRevisions
	}
	if opts.MaxDecisions == 0 {
		opts.MaxDecisions = DefaultMaxDecisions
	}
	return &Deployments{
		clock:        opts.Clock,
		maxRevisions: opts.MaxRevisions,
		maxDecisions: opts.MaxDecisions,
		models:       make(map[string]*model),
		numbers:      make(map[string]int),
		changed:      make(chan struct{}),
	}, nil
}

// Revision is one immutable version of a model's declaration. Spec shares
// its maps and slices with every State that holds the Revision: treat them
// as read-only, as config.Model says.
type Revision struct {
	// Model is the model's name.
	Model string `json:"model"`
	// Name is "<model>-<number>", the number on at least 5 digits
	// ("iris-00001"), as Knative names revisions.
	Name string `json:"name"`
	// Number counts the model's revisions from 1.
	Number int `json:"number"`
	// Spec is the declaration that created the revision. Its
	// canaryTrafficPercent and traffic-only annotations are those of that
	// apply; later applies may change them without a new revision.
	Spec config.Model `json:"spec"`
	// Digest is Digest(Spec).
	Digest string `json:"digest"`
	// Created is when Apply created it.
	Created time.Time `json:"created"`
}

// revisionName returns the name of a model's revision number n.
func revisionName(model string, n int) string { return fmt.Sprintf("%s-%05d", model, n) }

// Action says what Apply did to one model.
type Action string

// The actions, in kubectl's words where it has one.
const (
	// ActionCreated: a new model, with its first revision.
	ActionCreated Action = "created"
	// ActionRevised: a new revision of a known model.
	ActionRevised Action = "revised"
	// ActionConfigured: same revision; traffic, mirror or rollout changed.
	ActionConfigured Action = "configured"
	// ActionUnchanged: nothing that State shows changed.
	ActionUnchanged Action = "unchanged"
	// ActionRemoved: pruned, absent from a whole-state batch.
	ActionRemoved Action = "removed"
)

// ModelChange is what Apply did to one model.
type ModelChange struct {
	Model  string `json:"model"`
	Action Action `json:"action"`
	// Revision is the revision created; "" when none was.
	Revision string `json:"revision,omitempty"`
	// Traffic is the model's split after Apply; nil when removed.
	Traffic map[string]int64 `json:"traffic,omitempty"`
}

// Changes is what one Apply did: the batch's models in batch order, then
// the removed ones by name.
type Changes struct {
	Models []ModelChange `json:"models"`
	// Generation is State's generation after Apply.
	Generation uint64 `json:"generation"`
}

// State is a snapshot of every model's revisions and traffic, for the
// gateway's router. It shares nothing mutable with Deployments but the
// revisions' Specs (see Revision): a caller may keep it.
type State struct {
	// Generation grows with every change; equal generations are equal
	// States, so a caller can skip one it has seen. 0 is the empty state
	// before the first change.
	Generation uint64 `json:"generation"`
	// Models are sorted by name.
	Models []ModelState `json:"models"`
}

// Model returns the named model's state.
func (s State) Model(name string) (ModelState, bool) {
	i, ok := slices.BinarySearchFunc(s.Models, name, func(m ModelState, n string) int { return strings.Compare(m.Name, n) })
	if !ok {
		return ModelState{}, false
	}
	return s.Models[i], true
}

// ModelState is one model in a State.
type ModelState struct {
	Name string `json:"name"`
	// Revisions are the kept revisions, oldest first. Every one is
	// addressable (by name, number or tag) whether or not it has traffic.
	Revisions []Revision `json:"revisions"`
	// Stable is the last revision rolled out; Latest the last created.
	// They differ while a canary runs and after a rollback.
	Stable string `json:"stable"`
	Latest string `json:"latest"`
	// Traffic maps revision names to percents: they sum to 100 and none
	// is 0.
	Traffic map[string]int64 `json:"traffic"`
	// Tags maps TagLatest, and TagPrev when there is one, to revision
	// names.
	Tags map[string]string `json:"tags"`
	// Mirror is nil when the model's requests are not mirrored.
	Mirror *Mirror `json:"mirror,omitempty"`
}

// Revision returns the revision ref names: a revision name
// ("iris-00002"), its number ("2") or a tag (TagLatest, TagPrev).
func (ms ModelState) Revision(ref string) (Revision, bool) {
	name := ref
	if t, ok := ms.Tags[ref]; ok {
		name = t
	} else if n, err := strconv.Atoi(ref); err == nil && n > 0 {
		name = revisionName(ms.Name, n)
	}
	for _, r := range ms.Revisions {
		if r.Name == name {
			return r, true
		}
	}
	return Revision{}, false
}

// Mirror copies a share of a model's requests to one revision; the
// copies' answers are discarded.
type Mirror struct {
	Revision string  `json:"revision"`
	Percent  float64 `json:"percent"`
}

// model is the state of one model. Apply works on copies (clone), so
// nothing here is shared between two models' values but Revisions, which
// are immutable.
type model struct {
	name string
	// applied is the last declaration applied; its annotations configure
	// the mirror and rollouts, its canaryTrafficPercent is compared with
	// the next one's.
	applied config.Model
	revs    []Revision // kept, oldest first
	// latest, stable and prev are revision numbers; prev is the revision
	// stable before stable, 0 when none.
	latest, stable, prev int
	// canary is latest's percent while latest != stable.
	canary int64
	mirror mirrorSpec
}

func (m *model) clone() *model {
	c := *m
	c.revs = slices.Clone(m.revs)
	return &c
}

func (m *model) revName(n int) string {
	if n == 0 {
		return ""
	}
	return revisionName(m.name, n)
}

func (m *model) has(name string) bool {
	return slices.ContainsFunc(m.revs, func(r Revision) bool { return r.Name == name })
}

// prevTag returns the revision TagPrev names, 0 when none.
func (m *model) prevTag() int {
	if m.latest != m.stable {
		return m.stable
	}
	return m.prev
}

// traffic returns the split: revision name to percent, no zero entry.
func (m *model) traffic() map[string]int64 {
	switch {
	case m.latest == m.stable || m.canary <= 0:
		return map[string]int64{m.revName(m.stable): 100}
	case m.canary >= 100:
		return map[string]int64{m.revName(m.latest): 100}
	}
	return map[string]int64{m.revName(m.latest): m.canary, m.revName(m.stable): 100 - m.canary}
}

func (m *model) tags() map[string]string {
	t := map[string]string{TagLatest: m.revName(m.latest)}
	if p := m.prevTag(); p != 0 {
		t[TagPrev] = m.revName(p)
	}
	return t
}

// resolve returns the name of the revision a mirror reference names, ""
// when it names none kept.
func (m *model) resolve(ref string) string {
	name := ref
	switch ref {
	case TagLatest:
		name = m.revName(m.latest)
	case TagPrev:
		name = m.revName(m.prevTag())
	}
	if name == "" || !m.has(name) {
		return ""
	}
	return name
}

// mirrorState returns the mirror State shows: nil when the percent is 0,
// the target is gone, or it already has all the traffic.
func (m *model) mirrorState() *Mirror {
	if m.mirror.percent <= 0 {
		return nil
	}
	name := m.resolve(m.mirror.ref)
	if name == "" || m.traffic()[name] == 100 {
		return nil
	}
	return &Mirror{Revision: name, Percent: m.mirror.percent}
}

func (m *model) state() ModelState {
	return ModelState{
		Name:      m.name,
		Revisions: slices.Clone(m.revs),
		Stable:    m.revName(m.stable),
		Latest:    m.revName(m.latest),
		Traffic:   m.traffic(),
		Tags:      m.tags(),
		Mirror:    m.mirrorState(),
	}
}

// summary is what State shows of a model, comparable, to tell whether an
// action changed it.
type summary struct {
	revs                 string
	latest, stable, prev int
	canary               int64
	mirror               mirrorSpec
}

func (m *model) summary() summary {
	if m == nil {
		return summary{}
	}
	var b strings.Builder
	for _, r := range m.revs {
		b.WriteString(strconv.Itoa(r.Number))
		b.WriteByte(',')
	}
	canary := m.canary
	if m.latest == m.stable {
		canary = 0
	}
	return summary{b.String(), m.latest, m.stable, m.prev, canary, m.mirror}
}

// promote makes the latest revision stable; false when it is already.
func (m *model) promote() bool {
	if m.latest == m.stable {
		return false
	}
	m.prev, m.stable, m.canary = m.stable, m.latest, 0
	return true
}

// setCanary applies a canaryTrafficPercent to a model whose latest
// revision may not be stable: nil or 100 promotes, 0 rolls back (all to
// stable, latest kept), anything else is latest's share. It does nothing
// when latest is stable.
func (m *model) setCanary(pct *int64) {
	switch {
	case m.latest == m.stable:
	case pct == nil || *pct >= 100:
		m.promote()
	default:
		m.canary = *pct
	}
}

// trim drops the oldest revisions beyond max, sparing the ones with a role.
func (m *model) trim(max int) {
	keep := map[string]bool{
		m.revName(m.latest): true,
		m.revName(m.stable): true,
		m.revName(m.prev):   true,
	}
	if !isTag(m.mirror.ref) {
		keep[m.mirror.ref] = true
	}
	for len(m.revs) > max {
		i := slices.IndexFunc(m.revs, func(r Revision) bool { return !keep[r.Name] })
		if i < 0 {
			return
		}
		m.revs = slices.Delete(m.revs, i, i+1)
	}
}

func isTag(ref string) bool { return ref == TagLatest || ref == TagPrev }

// declaration is one declaration of an Apply batch, checked.
type declaration struct {
	m      config.Model
	digest string
	mirror mirrorSpec
}

// invalidError is one problem with one declaration of a batch.
type invalidError struct{ source, field, msg string }

func (e *invalidError) Error() string {
	var b strings.Builder
	if e.source != "" {
		b.WriteString(e.source + ": ")
	}
	if e.field != "" {
		b.WriteString(e.field + ": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(m config.Model, field, format string, args ...any) error {
	return &invalidError{m.Source, field, fmt.Sprintf(format, args...)}
}

func annotationField(key string) string { return "metadata.annotations[" + key + "]" }

// Apply makes models the desired state of the models they name, all or
// nothing: it checks the whole batch first and changes nothing when any
// declaration is wrong, returning every problem found, each naming the
// declaration's Source, the field and the value (errors.Is ErrInvalid).
//
// With prune, models is the whole desired state (a config directory) and
// every model absent from it is removed; without, only the models given
// are touched (`infergate apply -f`).
//
// Per model, with KServe's semantics:
//   - a declaration whose Digest differs from the latest revision's
//     creates revision N+1, which becomes the latest. The first revision
//     of a model is stable at 100% whatever canaryTrafficPercent says. A
//     new revision made while a canary runs replaces that canary; the
//     stable one keeps its traffic.
//   - canaryTrafficPercent then splits traffic between the latest and
//     the stable revisions: unset or 100 promotes (the latest becomes
//     stable with 100%), 0 rolls back (100% to stable; the latest is
//     kept and addressable by its tag), 1 to 99 is the latest's share.
//     With an infergate.io/rollout annotation the new revision starts a
//     rollout instead, at its first step's weight.
//   - re-applying a declaration with the latest revision's digest changes
//     traffic only if its canaryTrafficPercent differs from the one
//     applied before, so re-reading an unchanged config directory never
//     undoes a Promote, Rollback or rollout decision. Such a change acts
//     as the manual action would, and ends a running rollout.
//
// The mirror annotations (see config.AnnotationMirrorPercent) of the
// latest declaration configure the model's mirror.
func (d *Deployments) Apply(models []config.Model, prune bool) (Changes, error) {
	decls, err := checkBatch(models)
	if err != nil {
		return Changes{}, err
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	staged := make(map[string]*model, len(decls))
	numbers := make(map[string]int, len(decls))
	changes := Changes{Models: make([]ModelChange, 0, len(decls))}
	changed := false
	for _, dc := range decls {
		name := dc.m.Name
		cur := d.models[name]
		var nm *model
		if cur == nil {
			nm = &model{name: name}
		} else {
			nm = cur.clone()
		}
		ch := ModelChange{Model: name}
		if nm.latest == 0 || dc.digest != nm.revs[len(nm.revs)-1].Digest {
			n := d.numbers[name] + 1
			numbers[name] = n
			nm.newRevision(Revision{Model: name, Name: revisionName(name, n), Number: n, Spec: dc.m, Digest: dc.digest, Created: now})
			ch.Revision = revisionName(name, n)
			ch.Action = ActionRevised
			if cur == nil {
				ch.Action = ActionCreated
			}
		} else {
			if !samePercent(nm.applied.CanaryTrafficPercent, dc.m.CanaryTrafficPercent) {
				nm.setCanary(dc.m.CanaryTrafficPercent)
			}
			nm.applied = dc.m
		}
		nm.mirror = dc.mirror
		nm.trim(d.maxRevisions)
		if ch.Action == "" {
			ch.Action = ActionUnchanged
			if cur.summary() != nm.summary() {
				ch.Action = ActionConfigured
			}
		}
		if ch.Action != ActionUnchanged {
			changed = true
		}
		ch.Traffic = nm.traffic()
		staged[name] = nm
		changes.Models = append(changes.Models, ch)
	}

	// A mirror that names a revision by name or number must name one
	// this batch leaves in place.
	var errs []error
	for _, dc := range decls {
		nm := staged[dc.m.Name]
		if ref := dc.mirror.ref; !isTag(ref) && !nm.has(ref) {
			kept := make([]string, len(nm.revs))
			for i, r := range nm.revs {
				kept[i] = r.Name
			}
			errs = append(errs, invalid(dc.m, annotationField(config.AnnotationMirrorRevision),
				"%s is not a revision of %s (kept: %s)", strconv.Quote(dc.m.Annotations[config.AnnotationMirrorRevision]), nm.name, strings.Join(kept, ", ")))
		}
	}
	if len(errs) > 0 {
		return Changes{}, errors.Join(errs...)
	}

	if prune {
		var gone []string
		for name := range d.models {
			if _, ok := staged[name]; !ok {
				gone = append(gone, name)
			}
		}
		sort.Strings(gone)
		for _, name := range gone {
			delete(d.models, name)
			changes.Models = append(changes.Models, ModelChange{Model: name, Action: ActionRemoved})
			changed = true
		}
	}
	maps.Copy(d.models, staged)
	maps.Copy(d.numbers, numbers)
	if changed {
		d.bump()
	}
	changes.Generation = d.gen
	return changes, nil
}

// newRevision adds r as the model's latest revision and applies its
// declaration's traffic.
func (m *model) newRevision(r Revision) {
	first := m.latest == 0
	m.revs = append(m.revs, r)
	m.latest = r.Number
	m.applied = r.Spec
	if first {
		m.stable = r.Number
		return
	}
	// A canary in progress is replaced: the stable revision keeps the
	// rest, and the new one starts from what the declaration says.
	m.canary = 0
	m.setCanary(r.Spec.CanaryTrafficPercent)
}

func samePercent(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// checkBatch validates a batch and returns its declarations, deep copies
// with their digests and annotations read.
func checkBatch(models []config.Model) ([]declaration, error) {
	var errs []error
	first := make(map[string]string, len(models))
	decls := make([]declaration, 0, len(models))
	for _, in := range models {
		if in.Name == "" {
			errs = append(errs, invalid(in, "metadata.name", "required"))
			continue
		}
		if where, dup := first[in.Name]; dup {
			errs = append(errs, invalid(in, "metadata.name", "%s is also declared at %s", strconv.Quote(in.Name), where))
			continue
		}
		first[in.Name] = in.Source
		if p := in.CanaryTrafficPercent; p != nil && (*p < 0 || *p > 100) {
			errs = append(errs, invalid(in, "spec.predictor.canaryTrafficPercent", "%d is not between 0 and 100", *p))
		}
		mirror, mirrorErrs := parseMirror(in)
		errs = append(errs, mirrorErrs...)
		m, err := cloneModel(in)
		if err != nil {
			errs = append(errs, invalid(in, "", "cannot copy the declaration: %v", err))
			continue
		}
		decls = append(decls, declaration{m: m, digest: Digest(m), mirror: mirror})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return decls, nil
}

// mirrorSpec is a model's mirror annotations, read. ref is a tag or a
// revision name.
type mirrorSpec struct {
	percent float64
	ref     string
}

// parseMirror reads the mirror annotations of a declaration.
func parseMirror(m config.Model) (mirrorSpec, []error) {
	var errs []error
	ms := mirrorSpec{ref: TagLatest}
	for k := range m.Annotations {
		if strings.HasPrefix(k, mirrorAnnotationPrefix) && k != config.AnnotationMirrorPercent && k != config.AnnotationMirrorRevision {
			errs = append(errs, invalid(m, annotationField(k), "unknown mirror annotation (known: %s, %s)", config.AnnotationMirrorPercent, config.AnnotationMirrorRevision))
		}
	}
	raw, hasPercent := m.Annotations[config.AnnotationMirrorPercent]
	if hasPercent {
		v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		switch {
		case err != nil || math.IsNaN(v):
			errs = append(errs, invalid(m, annotationField(config.AnnotationMirrorPercent), "%s is not a number", strconv.Quote(raw)))
		case v < 0 || v > 100:
			errs = append(errs, invalid(m, annotationField(config.AnnotationMirrorPercent), "%s is not between 0 and 100", strconv.Quote(raw)))
		default:
			ms.percent = v
		}
	}
	raw, hasRev := m.Annotations[config.AnnotationMirrorRevision]
	if !hasRev {
		return ms, errs
	}
	field := annotationField(config.AnnotationMirrorRevision)
	ref := strings.TrimSpace(raw)
	if !hasPercent {
		errs = append(errs, invalid(m, field, "%s has no effect without %s", strconv.Quote(raw), config.AnnotationMirrorPercent))
	}
	if n, err := strconv.Atoi(ref); err == nil {
		if n <= 0 {
			errs = append(errs, invalid(m, field, "%s is not a revision number (1, 2...)", strconv.Quote(raw)))
		}
		ref = revisionName(m.Name, n)
	} else if !isTag(ref) && !isRevisionName(m.Name, ref) {
		errs = append(errs, invalid(m, field, "%s is not %s, %s, a revision number or a revision name like %s",
			strconv.Quote(raw), TagLatest, TagPrev, revisionName(m.Name, 1)))
	}
	ms.ref = ref
	return ms, errs
}

// isRevisionName reports whether s has the form of a revision name of model.
func isRevisionName(model, s string) bool {
	num, ok := strings.CutPrefix(s, model+"-")
	if !ok || len(num) < 5 {
		return false
	}
	n, err := strconv.Atoi(num)
	return err == nil && n > 0 && revisionName(model, n) == s
}

// bump starts a new generation and wakes the waiters. d.mu is held.
func (d *Deployments) bump() {
	d.gen++
	close(d.changed)
	d.changed = make(chan struct{})
}

// State returns a snapshot of every model. See State for what a caller
// may keep.
func (d *Deployments) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := State{Generation: d.gen, Models: make([]ModelState, 0, len(d.models))}
	for _, name := range slices.Sorted(maps.Keys(d.models)) {
		s.Models = append(s.Models, d.models[name].state())
	}
	return s
}

// Generation returns the current generation (see State.Generation).
func (d *Deployments) Generation() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// Wait blocks until the generation is past after, and returns it; or
// until ctx is done, returning the generation and ctx's error. A caller
// that keeps the router in step loops on Wait and State.
func (d *Deployments) Wait(ctx context.Context, after uint64) (uint64, error) {
	for {
		d.mu.Lock()
		gen, ch := d.gen, d.changed
		d.mu.Unlock()
		if gen > after {
			return gen, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return gen, ctx.Err()
		}
	}
}

// act runs f on the named model under the lock and starts a new
// generation if it changed what State shows. f returns an error wrapping
// ErrNothingToDo when there is nothing to do.
func (d *Deployments) act(verb, name string, f func(m *model, now time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.models[name]
	if m == nil {
		return fmt.Errorf("controlplane: %s %s: %w", verb, name, ErrUnknownModel)
	}
	before := m.summary()
	if err := f(m, d.clock.Now()); err != nil {
		return fmt.Errorf("controlplane: %s %s: %w", verb, name, err)
	}
	if m.summary() != before {
		d.bump()
	}
	return nil
}

// Promote makes the model's latest revision stable, with 100% of the
// traffic, and ends its rollout if one runs. It returns an error wrapping
// ErrUnknownModel, or ErrNothingToDo when the latest revision is stable.
func (d *Deployments) Promote(name string) error {
	return d.act("promote", name, func(m *model, now time.Time) error {
		if !m.promote() {
			return fmt.Errorf("latest revision %s is already stable: %w", m.revName(m.latest), ErrNothingToDo)
		}
		return nil
	})
}

// Rollback sends all the model's traffic to its stable revision and ends
// its rollout if one runs; the latest revision is kept and addressable.
// It returns an error wrapping ErrUnknownModel, or ErrNothingToDo when the
// latest revision is stable or already has no traffic.
func (d *Deployments) Rollback(name string) error {
	return d.act("roll back", name, func(m *model, now time.Time) error {
		switch {
		case m.latest == m.stable:
			return fmt.Errorf("latest revision %s is stable: %w", m.revName(m.latest), ErrNothingToDo)
		case m.canary == 0:
			return fmt.Errorf("latest revision %s has no traffic already: %w", m.revName(m.latest), ErrNothingToDo)
		}
		m.canary = 0
		return nil
	})
}

// SetCanaryPercent gives the model's latest revision pct percent of the
// traffic and its stable revision the rest, as canaryTrafficPercent does:
// 100 promotes, 0 rolls back. It returns an error wrapping
// ErrUnknownModel, ErrInvalid for a pct outside [0, 100], or
// ErrNothingToDo when the latest revision is stable or already has pct.
func (d *Deployments) SetCanaryPercent(name string, pct int64) error {
	if pct < 0 || pct > 100 {
		return fmt.Errorf("controlplane: set canary percent of %s: %d is not between 0 and 100: %w", name, pct, ErrInvalid)
	}
	return d.act("set canary percent of", name, func(m *model, now time.Time) error {
		switch {
		case m.latest == m.stable:
			return fmt.Errorf("latest revision %s is stable: %w", m.revName(m.latest), ErrNothingToDo)
		case m.canary == pct:
			return fmt.Errorf("latest revision %s has %d%% already: %w", m.revName(m.latest), pct, ErrNothingToDo)
		}
		m.setCanary(&pct)
		return nil
	})
}
