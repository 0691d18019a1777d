package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/gateway/payloadlog"
	"github.com/infergate/infergate/router"
)

// Router is what the Reconciler needs of the gateway: a routing table to
// swap in. *gateway.Gateway is one.
type Router interface {
	SetModels(models []router.Model[gateway.Route]) error
	SetPayloadLogs(configs map[string]payloadlog.ModelConfig) error
}

// Scaling is what the Reconciler needs of the autoscaler: the settings of
// the revisions it scales. *autoscaler.Autoscaler is one.
type Scaling interface {
	SetModels(models map[string]autoscaler.Settings) error
}

// DefaultRetryInterval is how soon, by default, the Reconciler tries
// again to make the routes of a state it could not make them for.
const DefaultRetryInterval = 5 * time.Second

// ReconcilerOptions configure a Reconciler. Deployments, Manager,
// Gateway and Autoscaler are required.
type ReconcilerOptions struct {
	Deployments *controlplane.Deployments
	Manager     *Manager
	Gateway     Router
	Autoscaler  Scaling
	// Registry resolves registry:// storageUris before the declarations
	// are checked and applied; nil: such a declaration is refused.
	Registry controlplane.ModelRegistry
	// RetryInterval is how soon Run tries again to make the routes of a
	// state it could not (default DefaultRetryInterval).
	RetryInterval time.Duration
	// Logger receives revisions created and routes not made (default
	// slog.Default()).
	Logger *slog.Logger
}

// Reconciler keeps the gateway's routing table, the revisions' runtimes
// and the autoscaler in step with the deployed state: each new generation
// of controlplane.Deployments becomes one atomic swap of the routing
// table, after the runtimes of new revisions exist and before those of
// dropped revisions are retired. It is controlplane's Applier and Syncer
// for the admin API. Its methods are safe for concurrent use.
type Reconciler struct {
	opts ReconcilerOptions
	log  *slog.Logger

	mu  sync.Mutex // serialises Sync
	gen uint64     // the generation routed; 0 before the first Sync
}

// NewReconciler returns a Reconciler; it starts no goroutine and changes
// nothing until Apply, Sync or Run.
func NewReconciler(opts ReconcilerOptions) (*Reconciler, error) {
	switch {
	case opts.Deployments == nil:
		return nil, errors.New("serving: ReconcilerOptions.Deployments is required")
	case opts.Manager == nil:
		return nil, errors.New("serving: ReconcilerOptions.Manager is required")
	case opts.Gateway == nil:
		return nil, errors.New("serving: ReconcilerOptions.Gateway is required")
	case opts.Autoscaler == nil:
		return nil, errors.New("serving: ReconcilerOptions.Autoscaler is required")
	case opts.RetryInterval < 0:
		return nil, fmt.Errorf("serving: ReconcilerOptions.RetryInterval %v is negative", opts.RetryInterval)
	}
	if opts.RetryInterval == 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Reconciler{opts: opts, log: opts.Logger}, nil
}

// Apply checks models whole (declarations, runtimes' settings: see
// CheckRuntimes) and makes them the desired state; see
// controlplane.Deployments.Apply for prune. Nothing changes when anything
// is wrong. Once the state is accepted the routes follow before Apply
// returns: if making them fails (rare: what could fail was checked
// first), it is logged and Run tries again.
func (r *Reconciler) Apply(models []config.Model, prune bool) (controlplane.Changes, error) {
	return r.ApplyAs("", models, prune)
}

// ApplyAs is Apply on behalf of actor, whom the change's events name (see
// controlplane.Deployments.ApplyAs).
func (r *Reconciler) ApplyAs(actor string, models []config.Model, prune bool) (controlplane.Changes, error) {
	models, err := r.resolve(models)
	if err != nil {
		return controlplane.Changes{}, err
	}
	if err := CheckRuntimes(models, r.opts.Manager.opts.LocalRuntimes); err != nil {
		return controlplane.Changes{}, err
	}
	ch, err := r.opts.Deployments.ApplyAs(actor, models, prune)
	if err != nil {
		return ch, err
	}
	if err := r.Sync(); err != nil {
		r.log.Error(fmt.Sprintf("state applied, routes not changed yet; trying again in %v", r.opts.RetryInterval), "err", err)
	}
	return ch, nil
}

// resolveTimeout bounds the resolution of a batch's registry references,
// their files' placing and checking included.
const resolveTimeout = 5 * time.Minute

// resolve gives the declarations that name a registry version the files
// of the version it names now (see controlplane.RegistryResolver).
func (r *Reconciler) resolve(models []config.Model) ([]config.Model, error) {
	var refs []error
	for _, m := range models {
		if m.RegistryRef != "" && r.opts.Registry == nil {
			refs = append(refs, fmt.Errorf("%s: spec.predictor.model.storageUri: %q: this infergate has no model registry: %w", m.Source, m.RegistryRef, controlplane.ErrInvalid))
		}
	}
	if len(refs) > 0 {
		return nil, errors.Join(refs...)
	}
	if r.opts.Registry == nil {
		return models, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	return r.opts.Registry.Resolve(ctx, models)
}

// Run keeps routes in step with the deployed state until ctx ends, then
// returns nil. A state whose routes could not be made is tried again
// every RetryInterval.
func (r *Reconciler) Run(ctx context.Context) error {
	gen := uint64(0)
	for {
		wctx, cancel := context.WithTimeout(ctx, r.opts.RetryInterval)
		next, err := r.opts.Deployments.Wait(wctx, gen)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			gen = next
		}
		if err := r.Sync(); err != nil {
			r.log.Error(fmt.Sprintf("routes not changed; trying again in %v", r.opts.RetryInterval), "err", err)
		}
	}
}

// Sync makes the routes, runtimes and autoscaler settings match the
// current state, once per generation. On error nothing changed: the
// runtimes it built for new revisions are stopped again.
func (r *Reconciler) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.opts.Deployments.State()
	if st.Generation == r.gen && r.gen != 0 {
		return nil
	}
	m := r.opts.Manager
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
		rm := router.Model[gateway.Route]{Name: ms.Name, Tags: ms.Tags}
		for _, rev := range ms.Revisions {
			wanted[rev.Name] = true
			rr := m.get(rev.Name)
			if rr == nil {
				var err error
				if rr, err = m.build(ms.Name, rev.Name, rev.Spec, ms.StartReplicas(rev)); err != nil {
					discard()
					return fmt.Errorf("revision %s: %w", rev.Name, err)
				}
				fresh = append(fresh, rr)
			}
			if rr.sup != nil {
				s, err := ms.Scale(rev)
				if err != nil {
					discard()
					return fmt.Errorf("revision %s: %w", rev.Name, err)
				}
				if rev.Name == ms.Pending && rr.sup.Status().Failed {
					m.retry(rr, s.MinReplicas)
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
		m.start(rr)
	}
	if err := r.opts.Gateway.SetModels(models); err != nil {
		for _, rr := range fresh {
			m.stop(rr)
		}
		return err
	}
	if err := r.opts.Gateway.SetPayloadLogs(payloadLogs(st)); err != nil {
		r.log.Error("payload logs not changed", "err", err)
	}
	if err := r.opts.Autoscaler.SetModels(settings); err != nil {
		r.log.Error("autoscaler settings not changed", "err", err)
	}
	for _, name := range m.Names() {
		if !wanted[name] {
			m.retire(name)
		}
	}
	r.gen = st.Generation
	for _, rr := range fresh {
		r.log.Info("revision created", "model", rr.model, "revision", rr.name)
	}
	return nil
}
