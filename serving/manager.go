package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/gateway/quota"
	"github.com/infergate/infergate/router"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/supervisor"
)

// Dispatcher is what the Manager needs of the gateway: batchers dispatch
// their merged requests through it (so that they are counted as the
// gateway's upstream calls), and a retired revision's metrics go.
// *gateway.Gateway is one.
type Dispatcher interface {
	Dispatcher(model, revision string, pool *runtimes.Pool) batcher.DispatchFunc
	Forget(model, revision string)
	// QuotaMetrics are the metrics the revisions' fair queues report.
	QuotaMetrics() *quota.Metrics
}

// Defaults of ManagerOptions.
const (
	DefaultDataDir      = "data"
	DefaultDrainTimeout = 30 * time.Second
)

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// Gateway routes the revisions. Required.
	Gateway Dispatcher
	// Activator holds the requests of revisions infergate runs itself
	// while they have no ready replica with room. Required with
	// LocalRuntimes.
	Activator *activator.Activator
	// Status hears when a revision first has a ready replica, or fails:
	// the Deployments. Required.
	Status controlplane.StatusReporter
	// LocalRuntimes runs the revisions that name no endpoint as local
	// processes under a supervisor (`infergate serve`); without it such a
	// revision is refused (`infergate gateway`).
	LocalRuntimes bool
	// RuntimeTLS verifies the runtimes at https:// and grpcs:// endpoints
	// (and carries a client certificate for those that ask for one); nil
	// verifies with the system's roots.
	RuntimeTLS *tls.Config
	// DataDir holds the local runtimes' logs, under
	// DATADIR/revisions/REVISION/logs/ (default DefaultDataDir).
	DataDir string
	// DrainTimeout bounds how long a retired revision's requests in
	// flight may take before its runtime stops (default
	// DefaultDrainTimeout).
	DrainTimeout time.Duration
	// Registerer receives the supervisors' and batchers' metrics
	// (default: a private registry).
	Registerer prometheus.Registerer
	// Logger receives revisions' lifecycle (default slog.Default()).
	Logger *slog.Logger
}

// Manager starts and retires revisions' runtimes as the deployed state
// changes (Reconciler drives it). It is the autoscaler's Scaler and
// ReadyCounter over the revisions' supervisors, by revision name, and
// controlplane's Runtimes. Its methods are safe for concurrent use.
//
// A revision's goroutines (supervisor or prober, status watcher,
// batcher) run until it is retired or the Manager is closed; Close ends
// them all and waits, and is for after the gateway has drained, so that
// requests in flight finish on their replicas.
type Manager struct {
	opts ManagerOptions
	log  *slog.Logger
	// ctx ends every revision's goroutines (Close).
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	revs map[string]*revisionRuntime // by revision name
	wg   sync.WaitGroup
}

// revisionRuntime is one revision's runtime side: its replica pool, what
// fills the pool (a supervisor of local processes, or the prober of the
// runtimes at its endpoints), and its batcher. Its goroutines run until
// the revision is retired or the Manager closes.
type revisionRuntime struct {
	model, name string
	spec        config.Model
	pool        *runtimes.Pool
	sup         *supervisor.Supervisor // nil for runtimes at endpoints
	batch       *batcher.Batcher       // nil without batching
	route       gateway.Route
	// stats is the revision's in every routing table, so that retiring
	// it can wait for the requests that chose it from any of them.
	stats *router.Stats

	cancel context.CancelFunc
	done   chan struct{} // closed once its goroutines ended and its pool closed
}

// NewManager returns a Manager with no revision; it starts no goroutine.
func NewManager(opts ManagerOptions) (*Manager, error) {
	switch {
	case opts.Gateway == nil:
		return nil, errors.New("serving: ManagerOptions.Gateway is required")
	case opts.Status == nil:
		return nil, errors.New("serving: ManagerOptions.Status is required")
	case opts.LocalRuntimes && opts.Activator == nil:
		return nil, errors.New("serving: ManagerOptions.Activator is required with LocalRuntimes")
	case opts.DrainTimeout < 0:
		return nil, fmt.Errorf("serving: ManagerOptions.DrainTimeout %v is negative", opts.DrainTimeout)
	}
	if opts.DataDir == "" {
		opts.DataDir = DefaultDataDir
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel, revs: make(map[string]*revisionRuntime)}, nil
}

// get returns a revision's runtime, nil if it has none.
func (m *Manager) get(name string) *revisionRuntime {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revs[name]
}

// ErrNotSupervised is SetReplicas's error for a revision infergate does
// not run itself (runtimes at URLs), or no longer runs.
var ErrNotSupervised = errors.New("revision not supervised")

// SetReplicas implements autoscaler.Scaler over the revisions'
// supervisors.
func (m *Manager) SetReplicas(ctx context.Context, revision string, n int) error {
	rr := m.get(revision)
	if rr == nil || rr.sup == nil {
		return fmt.Errorf("revision %q: %w", revision, ErrNotSupervised)
	}
	return rr.sup.SetReplicas(ctx, n)
}

// ReadyReplicas implements autoscaler.ReadyCounter: how many of a
// revision's replicas are ready, 0 for one with no runtime.
func (m *Manager) ReadyReplicas(revision string) int {
	if rr := m.get(revision); rr != nil {
		if rr.sup != nil {
			return rr.sup.Status().Ready
		}
		return rr.pool.ReadyCount()
	}
	return 0
}

// RuntimeStatus implements controlplane.Runtimes.
func (m *Manager) RuntimeStatus(revision string) (controlplane.RuntimeStatus, bool) {
	rr := m.get(revision)
	if rr == nil {
		return controlplane.RuntimeStatus{}, false
	}
	if rr.sup != nil {
		st := rr.sup.Status()
		return controlplane.RuntimeStatus{Desired: st.Desired, Running: st.Running, Ready: st.Ready, Restarts: st.Restarts, Failed: st.Failed, Reason: st.Reason}, true
	}
	running := len(rr.pool.Replicas())
	return controlplane.RuntimeStatus{Desired: running, Running: running, Ready: rr.pool.ReadyCount()}, true
}

// Names returns the revisions that have a runtime, sorted.
func (m *Manager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.revs))
	for n := range m.revs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// build makes a revision's runtime without starting anything: errors here
// (a bad endpoint, a bad batcher setting) reject the new state before any
// route changes.
func (m *Manager) build(model, name string, spec config.Model, replicas int) (*revisionRuntime, error) {
	clients, err := checkRevision(spec, m.opts.LocalRuntimes, m.opts.RuntimeTLS)
	if err != nil {
		return nil, err
	}
	pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: model, NonIdempotent: !spec.Idempotent, Logger: m.log.With("revision", name)}, clients)
	if err != nil {
		return nil, err
	}
	rr := &revisionRuntime{model: model, name: name, spec: spec, pool: pool, stats: new(router.Stats), done: make(chan struct{})}
	rr.route = gateway.Route{Model: model, Pool: pool, Timeout: spec.Timeout, StickyReplicas: spec.StickyReplicas,
		Labels: spec.Labels, Limit: quota.Limit{RatePerSecond: spec.RatePerSecond, Burst: spec.Burst, MaxInFlight: spec.MaxInFlight}}
	if len(clients) == 0 {
		sup, err := m.supervisor(name, spec, pool, replicas)
		if err != nil {
			return nil, err
		}
		rr.sup = sup
		rr.route.Activator = m.opts.Activator
		// A revision that bounds the requests of each replica
		// (containerConcurrency) is saturated when they are all taken:
		// tenants then share it by weighted fair queuing.
		if cc := int(spec.ContainerConcurrency); cc > 0 {
			fq, err := quota.NewFairQueue(quota.FairQueueOptions{Model: model, Capacity: cc, Metrics: m.opts.Gateway.QuotaMetrics()})
			if err != nil {
				return nil, err
			}
			rr.route.Fair = fq
		}
		// Ready once a wanted replica is ready, or none is wanted, or the
		// revision failed: not before its first replica is up.
		rr.route.Serving = func() bool {
			st := sup.Status()
			return st.Desired == 0 || st.Failed || st.Ready > 0
		}
	}
	if spec.Batcher != nil {
		opts := batcherOptions(name, spec, pool, m.opts.Gateway.Dispatcher(model, name, pool))
		opts.Registerer, opts.Logger = m.opts.Registerer, m.log
		b, err := batcher.New(opts)
		if err != nil {
			return nil, fmt.Errorf("%s: batcher: %w", spec.Source, err)
		}
		rr.batch = b
		rr.route.Batcher = b
	}
	return rr, nil
}

// start runs a built revision's goroutines and records it; Status hears
// when it first has a ready replica, or fails.
func (m *Manager) start(rr *revisionRuntime) {
	ctx, cancel := context.WithCancel(m.ctx)
	rr.cancel = cancel
	act := m.opts.Activator
	if rr.sup != nil {
		// Each replica takes at most containerConcurrency requests at
		// once (0: no limit); the rest wait in the activator's queue.
		act.SetContainerConcurrency(rr.name, int(rr.spec.ContainerConcurrency))
		act.Reset(rr.name)
	}
	var wg sync.WaitGroup
	if rr.sup != nil {
		wg.Go(func() { _ = rr.sup.Run(ctx) })
		var capacity controlplane.Capacity = act
		if rr.route.Fair != nil {
			capacity = fairCapacity{Capacity: act, q: rr.route.Fair, perReplica: int(rr.spec.ContainerConcurrency)}
		}
		wg.Go(func() { controlplane.WatchSupervised(ctx, rr.name, rr.sup, capacity, m.opts.Status, m.log) })
	} else {
		wg.Go(func() { _ = rr.pool.Run(ctx) })
		wg.Go(func() { controlplane.WatchEndpoints(ctx, rr.name, rr.pool, 100*time.Millisecond, m.opts.Status, m.log) })
	}
	if rr.batch != nil {
		wg.Go(func() { _ = rr.batch.Run(ctx) }) // answers what is queued when ctx ends
	}
	m.wg.Go(func() {
		wg.Wait()
		rr.pool.Close()
		close(rr.done)
	})
	m.mu.Lock()
	m.revs[rr.name] = rr
	m.mu.Unlock()
}

// fairCapacity tells a revision's fair queue, as well as its activator,
// how many replicas are ready: the queue lets through what they take at
// once, and one replica's worth while none is (the activator holds those
// and wakes the revision).
type fairCapacity struct {
	controlplane.Capacity
	q          *quota.FairQueue
	perReplica int
}

func (c fairCapacity) SetCapacity(revision string, ready int) {
	c.Capacity.SetCapacity(revision, ready)
	c.q.SetCapacity(max(ready, 1) * c.perReplica)
}

// retire stops a revision that no route reaches any more. Requests the
// activator holds for it are routed again at once (gateway.
// ErrRevisionRetired); those that chose it and still run finish, up to
// DrainTimeout; then its goroutines and replicas stop and its metrics go.
// It returns at once.
func (m *Manager) retire(name string) {
	m.mu.Lock()
	rr := m.revs[name]
	delete(m.revs, name)
	m.mu.Unlock()
	if rr == nil {
		return
	}
	m.log.Info("retiring revision", "model", rr.model, "revision", name)
	if rr.sup != nil {
		m.opts.Activator.Fail(name, gateway.ErrRevisionRetired)
	}
	m.wg.Go(func() {
		waitIdle(m.ctx, rr.stats, m.opts.DrainTimeout)
		rr.cancel()
		<-rr.done
		if rr.sup != nil {
			m.opts.Activator.Forget(name, gateway.ErrRevisionRetired)
		}
		m.opts.Gateway.Forget(rr.model, name)
	})
}

// retry starts a revision whose runtime failed afresh with n replicas,
// as when its declaration is applied again.
func (m *Manager) retry(rr *revisionRuntime, n int) {
	m.log.Info("retrying failed revision", "model", rr.model, "revision", rr.name)
	m.opts.Activator.Reset(rr.name)
	// A count other than the one it failed at clears the failure.
	_ = rr.sup.SetReplicas(m.ctx, 0)
	_ = rr.sup.SetReplicas(m.ctx, n)
}

// stop stops a revision at once and waits for it: for one that was never
// routed.
func (m *Manager) stop(rr *revisionRuntime) {
	m.mu.Lock()
	if m.revs[rr.name] == rr {
		delete(m.revs, rr.name)
	}
	m.mu.Unlock()
	rr.cancel()
	<-rr.done
}

// Close stops every revision's runtime at once, retiring ones included,
// and waits until their goroutines and processes have ended. Call it once
// the gateway has drained and nothing calls the Manager any more; calling
// it again waits again and does nothing else.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// supervisor returns the supervisor of a revision infergate runs itself,
// asked for replicas. Its logs are DATADIR/revisions/REVISION/logs/.
func (m *Manager) supervisor(name string, spec config.Model, pool *runtimes.Pool, replicas int) (*supervisor.Supervisor, error) {
	proto := runtimes.REST
	if spec.Protocol == config.ProtocolGRPC {
		proto = runtimes.GRPC
	}
	var env []string
	if ms := spec.Spec.Spec.Predictor.Model; ms != nil {
		for _, e := range ms.Env {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	sup, err := supervisor.New(supervisor.Options{
		Model:       spec.Name,
		ModelPath:   spec.Path,
		Command:     spec.Command,
		Env:         env,
		Protocol:    proto,
		Pool:        pool,
		DataDir:     filepath.Join(m.opts.DataDir, "revisions", name),
		MaxReplicas: spec.MaxReplicas,
		Registerer:  m.opts.Registerer,
		Logger:      m.log.With("revision", name),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Source, err)
	}
	if err := sup.SetReplicas(context.Background(), replicas); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Source, err)
	}
	return sup, nil
}
