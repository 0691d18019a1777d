package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/registry"
)

// ModelRegistry is what the control plane needs of a model registry:
// to give runtimes the files a registry:// storageUri names, and to keep
// deployments on the versions their aliases name. *RegistryResolver is
// one.
type ModelRegistry interface {
	// Resolve returns models with every registry:// reference resolved
	// (see RegistryResolver.Resolve).
	Resolve(ctx context.Context, models []config.Model) ([]config.Model, error)
	// Follow re-applies, through apply, the declarations of d whose
	// reference names an alias when that alias moves, until ctx ends.
	Follow(ctx context.Context, d *Deployments, apply Applier) error
}

// RegistryResolver resolves registry:// storageUris with a registry.
type RegistryResolver struct {
	reg *registry.Registry
	dir string
	log *slog.Logger
}

// NewRegistryResolver returns a resolver that writes versions' files
// under dir (one directory per model and version digest); log gets the
// deployments that follow an alias (nil: slog.Default()).
func NewRegistryResolver(reg *registry.Registry, dir string, log *slog.Logger) *RegistryResolver {
	if log == nil {
		log = slog.Default()
	}
	return &RegistryResolver{reg: reg, dir: dir, log: log}
}

// Resolve returns a copy of models in which each declaration with a
// registry:// reference (config.Model.RegistryRef) has the version it
// names now: registry://NAME the latest READY one, /N that number, @ALIAS
// the alias's, @sha256:HEX the version with that content digest. Path
// becomes a directory holding that version's files, each checked against
// its digest as it is placed there; the directory is named after the
// version's content digest, so another version is another revision
// (Digest covers Path). A reference to a missing, not READY or archived
// version is refused, naming the declaration, the field and the reference
// (errors.Is ErrInvalid); nothing is applied then.
func (r *RegistryResolver) Resolve(ctx context.Context, models []config.Model) ([]config.Model, error) {
	out := make([]config.Model, len(models))
	var errs []error
	for i, m := range models {
		out[i] = m
		if m.RegistryRef == "" {
			continue
		}
		v, err := r.reg.Resolve(ctx, m.RegistryRef)
		if err == nil {
			dir := filepath.Join(r.dir, v.Model, strings.TrimPrefix(v.Digest, "sha256:"))
			if _, err = r.reg.Materialize(ctx, registry.VersionRef{Model: v.Model, Version: v.Version}, dir); err == nil {
				out[i].Path = dir
				continue
			}
		}
		switch registry.CodeOf(err) {
		case registry.CodeInvalidArgument, registry.CodeNotFound, registry.CodeConflict, registry.CodeFailedPrecondition:
		default:
			// The store or the disk failed, not the declaration.
			return nil, fmt.Errorf("%s: %s: %w", m.Source, m.RegistryRef, err)
		}
		errs = append(errs, invalid(m, "spec.predictor.model.storageUri", "%v", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Follow re-applies, whenever an alias moves or is deleted, the latest
// declaration of every model in d whose storageUri names that alias
// (registry://NAME@ALIAS), through apply: the alias's new version becomes
// a new revision, rolled out as the model's policy says; moving the alias
// back deploys the kept revision again (reused). A declaration that no
// longer resolves (the alias deleted) is logged and left serving what it
// serves. Follow reads the alias moves from the registry's event log, so
// that it sees those made by other processes sharing the store too: at
// once for this process's (the registry tells it), every followPoll for
// the others'. It first re-applies every alias-following declaration
// once, for the moves made while infergate was down. It also tells the
// registry which versions the kept revisions serve (see recordUses). It
// returns when ctx ends.
func (r *RegistryResolver) Follow(ctx context.Context, d *Deployments, apply Applier) error {
	events := r.reg.Subscribe(ctx)
	uses := make(chan struct{})
	defer func() { <-uses }()
	go func() {
		defer close(uses)
		r.recordUses(ctx, d)
	}()
	// Events are stamped when their change begins, not when it commits:
	// a move that commits after the re-apply below may carry an earlier
	// time. Reading the last minute's moves again costs a re-apply that
	// changes nothing.
	since := time.Now().Add(-time.Minute)
	var last int64
	r.follow(ctx, d, apply, func(registry.Ref) bool { return true })
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-events:
			if !ok {
				return nil
			}
			if !strings.HasPrefix(e.Kind, "alias.") && e.Kind != registry.EventGap {
				continue
			}
		case <-tick.C:
		}
		moved, next, err := r.aliasMoves(ctx, since, last)
		if err != nil {
			r.log.Warn("the registry's alias moves could not be read", "err", err)
			continue
		}
		last = next
		if len(moved) > 0 {
			r.follow(ctx, d, apply, func(ref registry.Ref) bool { return moved[ref.Model+"@"+ref.Alias] })
		}
	}
}

// followPoll is how often Follow reads the registry's event log for alias
// moves that other processes made.
const followPoll = 2 * time.Second

// aliasMoves reads the alias events after id last (after since while
// last is 0) and returns the aliases they moved, as "model@alias", and
// the last id read.
func (r *RegistryResolver) aliasMoves(ctx context.Context, since time.Time, last int64) (map[string]bool, int64, error) {
	q := registry.EventQuery{SinceID: last, Kind: "alias.*", Limit: 1000}
	if last == 0 {
		q.Since = since
	}
	evs, err := r.reg.QueryEvents(ctx, q)
	if err != nil {
		return nil, last, err
	}
	moved := make(map[string]bool, len(evs))
	for _, e := range evs {
		moved[e.Model+"@"+aliasOf(e)] = true
		last = e.ID
	}
	return moved, last, nil
}

// follow re-applies the declarations whose alias reference match
// selects.
func (r *RegistryResolver) follow(ctx context.Context, d *Deployments, apply Applier, match func(registry.Ref) bool) {
	var todo []config.Model
	for _, ms := range d.State().Models {
		applied, ok := d.appliedOf(ms.Name)
		if !ok || applied.RegistryRef == "" {
			continue
		}
		ref, err := registry.ParseRef(applied.RegistryRef)
		if err != nil || ref.Alias == "" || !match(ref) {
			continue
		}
		todo = append(todo, applied)
	}
	for _, m := range todo {
		var ch Changes
		var err error
		if aa, ok := apply.(ActorApplier); ok {
			ch, err = aa.ApplyAs("registry alias", []config.Model{m}, false)
		} else {
			ch, err = apply.Apply([]config.Model{m}, false)
		}
		if err != nil {
			r.log.Error("a deployment could not follow its alias", "model", m.Name, "ref", m.RegistryRef, "err", err)
			continue
		}
		for _, c := range ch.Models {
			if c.Action == ActionUnchanged {
				continue
			}
			r.log.Info("deployment follows its alias", "model", c.Model, "ref", m.RegistryRef, "action", c.Action, "revision", c.Revision)
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = r.reg.AppendEvent(actx, registry.Event{Kind: "deployment.followed", Model: c.Model, Actor: "registry alias",
				Message: fmt.Sprintf("%s moved: %s %s", m.RegistryRef, c.Action, c.Revision)})
			cancel()
		}
	}
}

// aliasOf reads the alias an alias event is about, from its detail.
func aliasOf(e registry.Event) string {
	var d struct {
		Alias string `json:"alias"`
	}
	_ = json.Unmarshal(e.Detail, &d)
	return d.Alias
}

// recordUses tells the registry, at each new generation of d until ctx
// ends, which versions each model's kept revisions serve
// ("inferenceservice/<model>"), so that it refuses to archive them.
func (r *RegistryResolver) recordUses(ctx context.Context, d *Deployments) {
	last := map[string]string{}
	gen := uint64(0)
	for {
		st := d.State()
		seen := map[string]bool{}
		for _, ms := range st.Models {
			user := "inferenceservice/" + ms.Name
			seen[user] = true
			var refs []registry.VersionRef
			var key strings.Builder
			for _, rev := range ms.Revisions {
				if rev.Spec.RegistryRef == "" || rev.Status == RevisionFailed {
					continue
				}
				// The directory Resolve placed the files in names the
				// model and the version's content digest.
				hex, model := filepath.Base(rev.Spec.Path), filepath.Base(filepath.Dir(rev.Spec.Path))
				v, err := r.reg.Resolve(ctx, registry.Scheme+model+"@sha256:"+hex)
				if err != nil {
					continue
				}
				refs = append(refs, registry.VersionRef{Model: v.Model, Version: v.Version})
				fmt.Fprintf(&key, "%s/%d,", v.Model, v.Version)
			}
			if last[user] == key.String() {
				continue
			}
			if err := r.reg.SetUses(ctx, user, refs); err != nil {
				r.log.Warn("the registry was not told which versions a deployment uses", "user", user, "err", err)
				continue
			}
			last[user] = key.String()
		}
		for user := range last {
			if !seen[user] {
				if err := r.reg.SetUses(ctx, user, nil); err == nil {
					delete(last, user)
				}
			}
		}
		var err error
		if gen, err = d.Wait(ctx, gen); err != nil {
			return
		}
	}
}
