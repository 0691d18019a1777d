package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/router"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/modelserver"
)

// reconciler keeps the gateway's routing table, the revisions' runtimes
// and the autoscaler in step with the deployed state: each new generation
// of controlplane.Deployments becomes one atomic swap of the routing
// table, after the runtimes of new revisions exist and before those of
// dropped revisions are retired.
type reconciler struct {
	dep    *controlplane.Deployments
	rt     *runtimeManager
	gw     *gateway.Gateway
	scaler *autoscaler.Autoscaler
	drain  time.Duration
	log    *slog.Logger

	mu  sync.Mutex
	gen uint64
}

// apply checks models whole (declarations, runtimes' settings) and makes
// them the desired state; see controlplane.Deployments.Apply for prune.
// Nothing changes when anything is wrong. Once the state is accepted the
// routes follow: if making them fails (rare: what could fail was checked
// first), it is logged and run tries again.
func (r *reconciler) apply(models []config.Model, prune bool) (controlplane.Changes, error) {
	if err := checkRuntimes(models, r.rt.withRuntimes); err != nil {
		return controlplane.Changes{}, err
	}
	ch, err := r.dep.Apply(models, prune)
	if err != nil {
		return ch, err
	}
	if err := r.sync(); err != nil {
		r.log.Error("state applied, routes not changed yet; trying again in 5s", "err", err)
	}
	return ch, nil
}

// run keeps routes in step with the deployed state until ctx ends. A
// state whose routes could not be made is tried again every few seconds.
func (r *reconciler) run(ctx context.Context) {
	gen := uint64(0)
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		next, err := r.dep.Wait(wctx, gen)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			gen = next
		}
		if err := r.sync(); err != nil {
			r.log.Error("routes not changed; trying again in 5s", "err", err)
		}
	}
}

// sync makes the routes match the current state, once per generation.
func (r *reconciler) sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.dep.State()
	if st.Generation == r.gen && r.gen != 0 {
		return nil
	}
	// Runtimes for revisions that have none, built but not started: an
	// error leaves everything as it was.
	var fresh []*revisionRuntime
	discard := func() {
		for _, rr := range fresh {
			rr.pool.Close()
		}
	}
	wanted := make(map[string]bool)
	models := make([]router.Model[gateway.Route], 0, len(st.Models))
	settings := make(map[string]autoscaler.Settings)
	for _, ms := range st.Models {
		active := activeRevisions(ms)
		rm := router.Model[gateway.Route]{Name: ms.Name, Tags: ms.Tags}
		for _, rev := range ms.Revisions {
			wanted[rev.Name] = true
			rr := r.rt.get(rev.Name)
			if rr == nil {
				replicas := rev.Spec.MinReplicas
				if !active[rev.Name] {
					replicas = 0
				}
				if rev.Name == ms.Pending {
					// It must show it can come up before it takes
					// traffic, even if it may scale to zero later.
					replicas = max(replicas, 1)
				}
				var err error
				if rr, err = r.rt.build(ms.Name, rev.Name, rev.Spec, replicas); err != nil {
					discard()
					return fmt.Errorf("revision %s: %w", rev.Name, err)
				}
				fresh = append(fresh, rr)
			}
			if rr.sup != nil {
				s, err := scaleSettings(rev.Spec, !active[rev.Name])
				if err != nil {
					discard()
					return fmt.Errorf("revision %s: %w", rev.Name, err)
				}
				if rev.Name == ms.Pending {
					s.MinReplicas = max(s.MinReplicas, 1)
					if rr.sup.Status().Failed {
						r.rt.retry(rr, s.MinReplicas)
					}
				}
				settings[rev.Name] = s
			}
			rm.Revisions = append(rm.Revisions, &router.Revision[gateway.Route]{Name: rev.Name, Number: rev.Number, Backend: rr.route, Stats: rr.stats})
		}
		for _, name := range slices.Sorted(maps.Keys(ms.Traffic)) {
			rm.Traffic = append(rm.Traffic, router.Weight{Revision: name, Percent: float64(ms.Traffic[name])})
		}
		if ms.Mirror != nil {
			rm.Mirror = &router.Mirror{Revision: ms.Mirror.Revision, Percent: ms.Mirror.Percent}
		}
		models = append(models, rm)
	}
	// Start the new revisions first: the table may send them requests as
	// soon as it is swapped in (the activator holds those that come before
	// a replica is ready).
	for _, rr := range fresh {
		r.rt.start(rr, r.dep)
	}
	if err := r.gw.SetModels(models); err != nil {
		for _, rr := range fresh {
			r.rt.stop(rr)
		}
		return err
	}
	if err := r.scaler.SetModels(settings); err != nil {
		r.log.Error("autoscaler settings not changed", "err", err)
	}
	for _, name := range r.rt.names() {
		if !wanted[name] {
			r.rt.retire(name, r.drain)
		}
	}
	r.gen = st.Generation
	for _, rr := range fresh {
		r.log.Info("revision created", "model", rr.model, "revision", rr.name)
	}
	return nil
}

// activeRevisions are a model's revisions that keep their minReplicas:
// those with traffic, the tagged ones (latest, and prev for an instant
// rollback) and the mirror's. Others may scale to zero.
func activeRevisions(ms controlplane.ModelState) map[string]bool {
	active := make(map[string]bool)
	for name := range ms.Traffic {
		active[name] = true
	}
	if ms.Pending != "" {
		active[ms.Pending] = true
	}
	for _, name := range ms.Tags {
		active[name] = true
	}
	if ms.Mirror != nil {
		if rev, ok := ms.Revision(ms.Mirror.Revision); ok {
			active[rev.Name] = true
		}
	}
	return active
}

// checkRuntimes checks what only building a model's runtime reveals (see
// checkRevision) for every model. It starts nothing and registers no
// metric.
func checkRuntimes(models []config.Model, withRuntimes bool) error {
	var errs []error
	for _, m := range models {
		clients, err := checkRevision(m, withRuntimes)
		for _, c := range clients {
			c.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkModelFiles checks that the files a revision infergate runs itself
// will load are there: storageUri's path exists and, for the built-in
// runtime, holds a model it can serve (the versions its version policy
// selects, each with its model file). What a file holds is only known
// once a runtime loads it: a revision that fails then never takes traffic.
func checkModelFiles(spec config.Model) error {
	if spec.Path == "" {
		return nil // a command that reads no storageUri
	}
	uri := ""
	if ms := spec.Spec.Spec.Predictor.Model; ms != nil {
		uri = ms.StorageURI
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: spec.predictor.model.storageUri: %q: %s", spec.Source, uri, fmt.Sprintf(format, args...))
	}
	if _, err := os.Stat(spec.Path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return bad("%s does not exist", spec.Path)
		}
		return bad("%v", err)
	}
	if len(spec.Command) > 0 {
		return nil // the user's runtime reads what it reads
	}
	src, err := modelserver.ScanModel(spec.Name, spec.Path)
	if err != nil {
		return bad("%v", err)
	}
	versions, err := src.Config.VersionPolicy.Select(src.Versions)
	if err != nil {
		return bad("%v", err)
	}
	if src.Config.Simulate != nil {
		return nil
	}
	for _, v := range versions {
		if fi, err := os.Stat(v.Path); err != nil || fi.IsDir() {
			return bad("version %s has no model file %s", v.Version, v.Path)
		}
	}
	return nil
}

// checkRevision checks a revision's runtime settings: its endpoints (and
// returns clients for them), that `infergate gateway` has endpoints to
// use, its scaling settings when infergate runs it, and its batcher
// settings.
func checkRevision(spec config.Model, withRuntimes bool) ([]runtimes.Client, error) {
	clients, err := endpointClients(spec)
	if err != nil {
		return nil, err
	}
	err = nil
	switch {
	case len(clients) == 0 && !withRuntimes:
		err = fmt.Errorf("%s: model %q names no runtime URL (annotation infergate.io/endpoints); `infergate gateway` starts no runtime, use `infergate serve`", spec.Source, spec.Name)
	case len(clients) == 0:
		if _, err = scaleSettings(spec, false); err == nil {
			err = checkModelFiles(spec)
		}
	}
	if err == nil && spec.Batcher != nil {
		if err = batcherOptions(spec.Name, spec, nil, nil).Validate(); err != nil {
			err = fmt.Errorf("%s: batcher: %w", spec.Source, err)
		}
	}
	if err != nil {
		for _, c := range clients {
			c.Close()
		}
		return nil, err
	}
	return clients, nil
}
