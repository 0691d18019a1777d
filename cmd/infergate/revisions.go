package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/router"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/supervisor"
)

// revisionRuntime is one revision's runtime side: its replica pool, what
// fills the pool (a supervisor of local processes, or the prober of the
// runtimes at its endpoints), and its batcher. Its goroutines run until
// the revision is retired or infergate stops.
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
	done   chan struct{}
}

// runtimeManager starts and retires revisions' runtimes as the deployed
// state changes. It is the autoscaler's Scaler: it scales a revision's
// supervisor by revision name.
type runtimeManager struct {
	log          *slog.Logger
	dataDir      string
	withRuntimes bool
	act          *activator.Activator
	reg          prometheus.Registerer
	// ctx ends every revision's goroutines; cancelled after the gateway
	// drained, so that requests in flight finish on their replicas.
	ctx context.Context
	gw  *gateway.Gateway // batchers dispatch through it; retired revisions' metrics go

	mu   sync.Mutex
	revs map[string]*revisionRuntime // by revision name
	wg   sync.WaitGroup
}

func newRuntimeManager(ctx context.Context, log *slog.Logger, dataDir string, withRuntimes bool, act *activator.Activator, gw *gateway.Gateway, reg prometheus.Registerer) *runtimeManager {
	return &runtimeManager{
		log: log, dataDir: dataDir, withRuntimes: withRuntimes, act: act, gw: gw, reg: reg, ctx: ctx,
		revs: make(map[string]*revisionRuntime),
	}
}

// get returns a revision's runtime, nil if it has none.
func (m *runtimeManager) get(name string) *revisionRuntime {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revs[name]
}

// errNotSupervised is SetReplicas's error for a revision infergate does
// not run itself.
var errNotSupervised = errors.New("revision not supervised")

// SetReplicas implements autoscaler.Scaler over the revisions' supervisors.
func (m *runtimeManager) SetReplicas(ctx context.Context, name string, n int) error {
	rr := m.get(name)
	if rr == nil || rr.sup == nil {
		return fmt.Errorf("revision %q: %w", name, errNotSupervised)
	}
	return rr.sup.SetReplicas(ctx, n)
}

// ready returns how many of a revision's replicas are ready.
func (m *runtimeManager) ready(name string) int {
	if rr := m.get(name); rr != nil {
		if rr.sup != nil {
			return rr.sup.Status().Ready
		}
		return rr.pool.ReadyCount()
	}
	return 0
}

// build makes a revision's runtime without starting anything: errors here
// (a bad endpoint, a bad batcher setting) reject the new state before any
// route changes.
func (m *runtimeManager) build(model, name string, spec config.Model, replicas int) (*revisionRuntime, error) {
	clients, err := checkRevision(spec, m.withRuntimes)
	if err != nil {
		return nil, err
	}
	pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: model, NonIdempotent: !spec.Idempotent, Logger: m.log.With("revision", name)}, clients)
	if err != nil {
		return nil, err
	}
	rr := &revisionRuntime{model: model, name: name, spec: spec, pool: pool, stats: new(router.Stats), done: make(chan struct{})}
	rr.route = gateway.Route{Model: model, Pool: pool, Timeout: spec.Timeout, StickyReplicas: spec.StickyReplicas}
	if len(clients) == 0 {
		sup, err := m.supervisor(name, spec, pool, replicas)
		if err != nil {
			return nil, err
		}
		rr.sup = sup
		rr.route.Activator = m.act
		// Ready once a wanted replica is ready, or none is wanted, or the
		// revision failed: not before its first replica is up.
		rr.route.Serving = func() bool {
			st := sup.Status()
			return st.Desired == 0 || st.Failed || st.Ready > 0
		}
	}
	if spec.Batcher != nil {
		opts := batcherOptions(name, spec, pool, m.gw.Dispatcher(model, name, pool))
		opts.Registerer, opts.Logger = m.reg, m.log
		b, err := batcher.New(opts)
		if err != nil {
			return nil, fmt.Errorf("%s: batcher: %w", spec.Source, err)
		}
		rr.batch = b
		rr.route.Batcher = b
	}
	return rr, nil
}

// start runs a built revision's goroutines and records it; rep hears when
// it first has a ready replica, or fails.
func (m *runtimeManager) start(rr *revisionRuntime, rep controlplane.StatusReporter) {
	ctx, cancel := context.WithCancel(m.ctx)
	rr.cancel = cancel
	if rr.sup != nil {
		// Each replica takes at most containerConcurrency requests at
		// once (0: no limit); the rest wait in the activator's queue.
		m.act.SetContainerConcurrency(rr.name, int(rr.spec.ContainerConcurrency))
		m.act.Reset(rr.name)
	}
	var wg sync.WaitGroup
	if rr.sup != nil {
		wg.Go(func() { _ = rr.sup.Run(ctx) })
		wg.Go(func() { controlplane.WatchSupervised(ctx, rr.name, rr.sup, m.act, rep, m.log) })
	} else {
		wg.Go(func() { _ = rr.pool.Run(ctx) })
		wg.Go(func() { controlplane.WatchEndpoints(ctx, rr.name, rr.pool, 100*time.Millisecond, rep, m.log) })
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

// retire stops a revision that no route reaches any more. Requests the
// activator holds for it are routed again at once (gateway.
// ErrRevisionRetired); those that chose it and still run finish, up to
// drain; then its goroutines and replicas stop and its metrics go. It
// returns at once.
func (m *runtimeManager) retire(name string, drain time.Duration) {
	m.mu.Lock()
	rr := m.revs[name]
	delete(m.revs, name)
	m.mu.Unlock()
	if rr == nil {
		return
	}
	m.log.Info("retiring revision", "model", rr.model, "revision", name)
	if rr.sup != nil {
		m.act.Fail(name, gateway.ErrRevisionRetired)
	}
	m.wg.Go(func() {
		waitIdle(m.ctx, rr.stats, drain)
		rr.cancel()
		<-rr.done
		if rr.sup != nil {
			m.act.Forget(name, gateway.ErrRevisionRetired)
		}
		m.gw.Forget(rr.model, name)
	})
}

// retry starts a revision whose runtime failed afresh with n replicas,
// as when its declaration is applied again.
func (m *runtimeManager) retry(rr *revisionRuntime, n int) {
	m.log.Info("retrying failed revision", "model", rr.model, "revision", rr.name)
	m.act.Reset(rr.name)
	// A count other than the one it failed at clears the failure.
	_ = rr.sup.SetReplicas(m.ctx, 0)
	_ = rr.sup.SetReplicas(m.ctx, n)
}

// stop stops a revision at once and waits for it: for one that was never
// routed.
func (m *runtimeManager) stop(rr *revisionRuntime) {
	m.mu.Lock()
	if m.revs[rr.name] == rr {
		delete(m.revs, rr.name)
	}
	m.mu.Unlock()
	rr.cancel()
	<-rr.done
}

// waitIdle waits until no request that chose the revision is running, at
// most d or until ctx ends; at least a moment, for requests that chose it
// and have not begun yet. Nothing signals it, so it looks every 20ms.
func waitIdle(ctx context.Context, stats *router.Stats, d time.Duration) {
	deadline := time.Now().Add(d)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for first := true; first || (stats.InFlight() > 0 && time.Now().Before(deadline)); first = false {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// wait blocks until every revision's goroutines have ended; call after
// cancelling the manager's context.
func (m *runtimeManager) wait() { m.wg.Wait() }

// names returns the revisions that have runtimes, sorted.
func (m *runtimeManager) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.revs))
	for n := range m.revs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// supervisor returns the supervisor of a revision infergate runs itself,
// asked for replicas. Its logs are DATADIR/revisions/REVISION/logs/.
func (m *runtimeManager) supervisor(name string, spec config.Model, pool *runtimes.Pool, replicas int) (*supervisor.Supervisor, error) {
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
		DataDir:     filepath.Join(m.dataDir, "revisions", name),
		MaxReplicas: spec.MaxReplicas,
		Registerer:  m.reg,
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

// batcherOptions are the batcher settings of a revision whose
// InferenceService sets spec.predictor.batcher, calling dispatch with
// merged requests (pool and dispatch may be nil to Validate them).
func batcherOptions(name string, spec config.Model, pool *runtimes.Pool, dispatch batcher.DispatchFunc) batcher.Options {
	cfg := spec.Batcher
	callTimeout := cfg.Timeout
	inFlight := gateway.ReadyReplicas(pool)
	if n := cfg.MaxBatchesInFlight; n > 0 {
		inFlight = func() int { return n }
	}
	preferred := make([]int64, len(cfg.PreferredBatchSizes))
	for j, p := range cfg.PreferredBatchSizes {
		preferred[j] = int64(p)
	}
	action := batcher.TimeoutReject
	if cfg.QueuePolicy.TimeoutAction == config.TimeoutDelay {
		action = batcher.TimeoutDelay
	}
	oversize := batcher.OversizeSendAlone
	if cfg.Oversize == config.OversizeReject {
		oversize = batcher.OversizeReject
	}
	return batcher.Options{
		Model:               name,
		MaxBatchSize:        int64(cfg.MaxBatchSize),
		PreferredBatchSizes: preferred,
		MaxQueueDelay:       cfg.MaxLatency,
		MaxQueueSize:        cfg.MaxQueueSize,
		PriorityLevels:      cfg.PriorityLevels,
		DefaultPriority:     cfg.DefaultPriority,
		DefaultQueuePolicy: batcher.QueuePolicy{
			TimeoutAction:        action,
			DefaultTimeout:       cfg.QueuePolicy.DefaultTimeout,
			AllowTimeoutOverride: cfg.QueuePolicy.AllowTimeoutOverride,
		},
		PreserveOrdering:   cfg.PreserveOrdering,
		MaxBatchesInFlight: inFlight,
		OversizePolicy:     oversize,
		Dispatch: func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
			ctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			return dispatch(ctx, req)
		},
	}
}

// scaleSettings returns the KPA settings of a supervised revision from its
// InferenceService: min/max replicas, scale target and metric,
// containerConcurrency, autoscaling.knative.dev annotations. A revision
// kept only for rollback or pinning (idle) may scale to zero whatever its
// minReplicas says.
func scaleSettings(spec config.Model, idle bool) (autoscaler.Settings, error) {
	s := autoscaler.DefaultSettings()
	s.MinReplicas, s.MaxReplicas = spec.MinReplicas, spec.MaxReplicas
	// minReplicas 0 starts nothing until the first request (Knative starts
	// one and waits out the grace period); an annotation can say otherwise.
	s.InitialScale = spec.MinReplicas
	if spec.ScaleMetric == config.MetricRPS {
		s.Metric = autoscaler.MetricRPS
	}
	if spec.ScaleTarget > 0 {
		s.Target = float64(spec.ScaleTarget)
	}
	s.ContainerConcurrency = int(spec.ContainerConcurrency)
	s, err := autoscaler.SettingsFromAnnotations(s, spec.Annotations)
	if err != nil {
		return s, fmt.Errorf("%s: %w", spec.Source, err)
	}
	if idle {
		s.MinReplicas = 0
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%s: %w", spec.Source, err)
	}
	return s, nil
}
