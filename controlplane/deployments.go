package controlplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
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
	// Store, when set, keeps the state across restarts: every change is
	// written to it before it takes effect (a change it cannot write is
	// refused with ErrStore), and Load reads it back.
	Store Store
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
	store        Store

	mu     sync.Mutex
	models map[string]*model
	// numbers holds the last revision number given per model name. It
	// outlives a model's removal, so a revision name never comes back
	// with another spec.
	numbers map[string]int
	gen     uint64
	// restored is set by Load until the next Apply with prune.
	restored bool
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
		store:        opts.Store,
		models:       make(map[string]*model),
		numbers:      make(map[string]int),
		changed:      make(chan struct{}),
	}, nil
}

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
//     of a model is stable at 100% whatever canaryTrafficPercent says,
//     and starts no rollout: there is nothing to compare it with. A
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
//     as SetCanaryPercent would: unset or 100 promotes and 0 rolls back,
//     ending a running rollout; another percent pauses it.
//   - the infergate.io/rollout annotation (see Rollout) of the latest
//     declaration is the policy of the next revision's rollout; a change
//     to it leaves a running rollout alone.
//
// The mirror annotations (see config.AnnotationMirrorPercent) of the
// latest declaration configure the model's mirror.
func (d *Deployments) Apply(models []config.Model, prune bool) (Changes, error) {
	return d.ApplyAs("", models, prune)
}

// ApplyAs is Apply on behalf of actor (a user name or a client address),
// whom the change's events name; "" names the kind of change: "config
// file" with prune, else "apply".
func (d *Deployments) ApplyAs(actor string, models []config.Model, prune bool) (Changes, error) {
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
			nm = &model{name: name, maxDecisions: d.maxDecisions}
		} else {
			nm = cur.clone()
		}
		nm.policy = dc.rollout
		ch := ModelChange{Model: name}
		fp := declFingerprint(dc.m)
		switch {
		case prune && cur != nil && cur.fileDecl == fp:
			// The config file declares what it declared when last
			// read: whatever apply or a rollout did since stays.
			staged[name] = cur
			ch.Action, ch.Traffic = ActionUnchanged, cur.traffic()
			changes.Models = append(changes.Models, ch)
			continue
		case nm.latest == 0 || nm.find(dc.digest) == 0:
			n := d.numbers[name] + 1
			numbers[name] = n
			nm.newRevision(Revision{Model: name, Name: revisionName(name, n), Number: n, Spec: dc.m, Digest: dc.digest, Created: now}, now)
			ch.Revision = revisionName(name, n)
			ch.Action = ActionRevised
			if cur == nil {
				ch.Action = ActionCreated
			}
		case dc.digest == nm.rev(nm.target()).Digest:
			// The revision deployed, or waiting to be: only traffic may
			// change. A pending revision takes the declaration's traffic
			// once ready.
			if nm.pending == 0 && !samePercent(nm.applied.CanaryTrafficPercent, dc.m.CanaryTrafficPercent) {
				nm.setCanary(dc.m.CanaryTrafficPercent, dc.m.Source, now)
			}
			nm.applied = dc.m
		default:
			// The spec of a revision still kept (a revert, or a retry of
			// one that failed): deploy it again.
			n := nm.find(dc.digest)
			if r := nm.rev(n); r.Status == RevisionFailed {
				r.Status, r.Reason = RevisionPending, ""
			}
			nm.applied = dc.m
			nm.deploy(n, now)
			ch.Revision, ch.Action = revisionName(name, n), ActionReused
		}
		if prune {
			nm.fileDecl, nm.fileSource, nm.overridden = fp, dc.m.Source, false
		}
		nm.mirror = dc.mirror
		nm.trim(d.maxRevisions)
		if ch.Action == "" {
			ch.Action = ActionUnchanged
			if cur.summary().serving() != nm.summary().serving() {
				ch.Action = ActionConfigured
			}
		}
		// A declaration applied again as written (a registry alias it
		// names moved) overrides nothing.
		if ch.Action != ActionUnchanged && !prune && (cur == nil || !sameWritten(cur.applied, dc.m)) {
			nm.overridden = true
		}
		// A change of source alone shows in State: a new generation,
		// though nothing serves differently.
		changed = changed || cur.summary() != nm.summary()
		ch.Traffic = nm.traffic()
		ch.Pending = nm.pending != 0
		staged[name] = nm
		changes.Models = append(changes.Models, ch)
	}

	// A mirror that names a revision by name or number must name one
	// this batch leaves in place.
	var errs []error
	for _, dc := range decls {
		nm := staged[dc.m.Name]
		if nm == d.models[dc.m.Name] {
			continue // not applied: the file's declaration was read before
		}
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
		for name, m := range d.models {
			// The first read of the config after Load keeps the models
			// that apply alone made: a restart is no change of the
			// config.
			if _, ok := staged[name]; !ok && (!d.restored || m.fileDecl != "") {
				gone = append(gone, name)
			}
		}
		sort.Strings(gone)
		for _, name := range gone {
			staged[name] = nil
			changes.Models = append(changes.Models, ModelChange{Model: name, Action: ActionRemoved})
			changed = true
		}
	}
	// The numbers given go with the records written; a failed write
	// gives them back.
	was := make(map[string]int, len(numbers))
	for name, n := range numbers {
		was[name] = d.numbers[name]
		d.numbers[name] = n
	}
	if actor == "" {
		actor = "apply"
		if prune {
			actor = "config file"
		}
	}
	if err := d.commit(staged, actor); err != nil {
		maps.Copy(d.numbers, was)
		return Changes{}, err
	}
	if prune {
		d.restored = false
	}
	if changed {
		d.bump()
	}
	changes.Generation = d.gen
	return changes, nil
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
// ActAs runs a rollout action by hand (promote, rollback, pause or
// resume, as the methods of those names do) on behalf of actor (a user
// name or a client address), whom the change's events name. An unknown
// action wraps ErrInvalid.
func (d *Deployments) ActAs(actor, action, name string) error {
	if actor == "" {
		actor = "user"
	}
	switch action {
	case "promote":
		return d.promote(actor, name)
	case "rollback":
		return d.rollback(actor, name)
	case "pause":
		return d.pause(actor, name)
	case "resume":
		return d.resume(actor, name)
	}
	return fmt.Errorf("controlplane: no rollout action %q; use promote, rollback, pause or resume: %w", action, ErrInvalid)
}

func (d *Deployments) act(actor, verb, name string, f func(m *model, now time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.models[name]
	if m == nil {
		return fmt.Errorf("controlplane: %s %s: %w", verb, name, ErrUnknownModel)
	}
	before := m.summary()
	nm := m.clone()
	if err := f(nm, d.clock.Now()); err != nil {
		return fmt.Errorf("controlplane: %s %s: %w", verb, name, err)
	}
	moved := nm.summary() != before
	if moved {
		nm.overridden = true
	}
	if err := d.commit(map[string]*model{name: nm}, actor); err != nil {
		return fmt.Errorf("controlplane: %s %s: %w", verb, name, err)
	}
	if moved {
		d.bump()
	}
	return nil
}

// MarkReady records that a replica of the named revision has been ready.
// If the latest declaration of its model waits for it, its traffic (or
// rollout) takes effect now. It returns an error wrapping ErrUnknownModel
// when no model keeps such a revision.
func (d *Deployments) MarkReady(revision string) error {
	return d.setStatus(revision, RevisionReady, "")
}

// MarkFailed records that the named revision's runtime failed before any
// replica was ready, with the reason. If the latest declaration of its
// model waits for it, that declaration's traffic never takes effect: the
// model's traffic stays as it was, and the failure is recorded among its
// rollout decisions. A ready revision may fail later too (its replicas
// keep exiting): it is then never tagged prev. It returns an error
// wrapping ErrUnknownModel when no model keeps such a revision.
func (d *Deployments) MarkFailed(revision, reason string) error {
	return d.setStatus(revision, RevisionFailed, reason)
}

func (d *Deployments) setStatus(revision string, st RevisionStatus, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, m := range d.models {
		for _, r := range m.revs {
			if r.Name != revision {
				continue
			}
			nm := m.clone()
			if !nm.setStatus(r.Number, st, reason, d.clock.Now()) {
				return nil
			}
			nm.trim(d.maxRevisions)
			if err := d.commit(map[string]*model{name: nm}, "runtime"); err != nil {
				return fmt.Errorf("controlplane: revision %s: %w", revision, err)
			}
			d.bump()
			return nil
		}
	}
	return fmt.Errorf("controlplane: revision %s: %w", revision, ErrUnknownModel)
}

// Promote makes the model's latest revision stable, with 100% of the
// traffic, and ends its rollout if one runs. It returns an error wrapping
// ErrUnknownModel, or ErrNothingToDo when the latest revision is stable.
func (d *Deployments) Promote(name string) error { return d.promote("user", name) }

func (d *Deployments) promote(actor, name string) error {
	return d.act(actor, "promote", name, func(m *model, now time.Time) error {
		if !m.promoteBy("promoted by hand", now) {
			return fmt.Errorf("latest revision %s is already stable: %w", m.revName(m.latest), ErrNothingToDo)
		}
		return nil
	})
}

// Rollback sends all the model's traffic to its stable revision and ends
// its rollout if one runs; the latest revision is kept and addressable.
// It returns an error wrapping ErrUnknownModel, or ErrNothingToDo when the
// latest revision is stable or already has no traffic.
func (d *Deployments) Rollback(name string) error { return d.rollback("user", name) }

func (d *Deployments) rollback(actor, name string) error {
	return d.act(actor, "roll back", name, func(m *model, now time.Time) error {
		if !m.rollbackBy("rolled back by hand", now) {
			return rolloutNothing(m, 0)
		}
		return nil
	})
}

// SetCanaryPercent gives the model's latest revision pct percent of the
// traffic and its stable revision the rest, as canaryTrafficPercent does:
// 100 promotes and 0 rolls back, ending a running rollout; another
// percent pauses it (Resume goes back to the step's weight). It returns
// an error wrapping ErrUnknownModel, ErrInvalid for a pct outside
// [0, 100], or ErrNothingToDo when the latest revision is stable or
// already has pct.
func (d *Deployments) SetCanaryPercent(name string, pct int64) error {
	if pct < 0 || pct > 100 {
		return fmt.Errorf("controlplane: set canary percent of %s: %d is not between 0 and 100: %w", name, pct, ErrInvalid)
	}
	return d.act("user", "set canary percent of", name, func(m *model, now time.Time) error {
		var ok bool
		switch pct {
		case 100:
			ok = m.promoteBy("weight set to 100% by hand", now)
		case 0:
			ok = m.rollbackBy("weight set to 0% by hand", now)
		default:
			ok = m.setWeight(pct, fmt.Sprintf("weight set to %d%% by hand", pct), now)
		}
		if !ok {
			return rolloutNothing(m, pct)
		}
		return nil
	})
}

// rolloutNothing says why giving the latest revision pct percent changes
// nothing.
func rolloutNothing(m *model, pct int64) error {
	if m.latest == m.stable {
		return fmt.Errorf("latest revision %s is stable: %w", m.revName(m.latest), ErrNothingToDo)
	}
	return fmt.Errorf("latest revision %s has %d%% already: %w", m.revName(m.latest), pct, ErrNothingToDo)
}

// appliedOf returns the declaration last applied to the model.
func (d *Deployments) appliedOf(name string) (config.Model, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.models[name]
	if m == nil {
		return config.Model{}, false
	}
	return m.applied, true
}

// sameWritten reports whether two declarations are the same as written,
// from the same source: what they resolve to (Path) may differ.
func sameWritten(a, b config.Model) bool {
	return a.Source == b.Source && a.RegistryRef == b.RegistryRef && reflect.DeepEqual(a.Spec, b.Spec)
}
