package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Scaler sets how many replicas a model runs. `infergate serve` implements
// it over the local process supervisors (one per revision), and so will
// the Kubernetes scaler; the Autoscaler does not know which one runs.
type Scaler interface {
	// SetReplicas asks for n replicas of model (0 stops them all). It
	// should return once the request is recorded, not wait for replicas
	// to start or drain; ctx bounds the call. On error the Autoscaler
	// asks again at its next decision.
	SetReplicas(ctx context.Context, model string, n int) error
}

// Observer reports the traffic the gateway sees per model. The Autoscaler
// calls it once a second for every model (and at once for a poked one),
// from one goroutine, never while holding its own lock.
type Observer interface {
	// Concurrency returns the model's requests in flight now, counting
	// those the activator holds for want of a ready replica; or better,
	// their time-weighted average since the previous call.
	Concurrency(model string) float64
	// Requests returns how many requests for the model have arrived
	// since some fixed origin (a counter that only grows); the
	// Autoscaler turns its increase into requests per second. Read only
	// for models scaled on rps.
	Requests(model string) uint64
}

// ReadyCounter reports how many of a model's replicas are ready to serve.
type ReadyCounter interface {
	ReadyReplicas(model string) int
}

// ReadyFunc adapts a function to ReadyCounter.
type ReadyFunc func(model string) int

// ReadyReplicas returns f(model).
func (f ReadyFunc) ReadyReplicas(model string) int { return f(model) }

// sampleInterval is how often the Autoscaler samples the Observer: the
// Window's bucket size.
const sampleInterval = time.Second

// Options configures an Autoscaler. Scaler, Observer and Ready are
// required; other zero fields take the documented defaults.
type Options struct {
	// Scaler applies decisions.
	Scaler Scaler
	// Observer is sampled for each model once a second.
	Observer Observer
	// Ready reports ready replicas at each decision.
	Ready ReadyCounter
	// Models are the models to scale and their Settings, as SetModels
	// takes them; none by default.
	Models map[string]Settings
	// ScaleTimeout bounds one Scaler call (default 10s).
	ScaleTimeout time.Duration
	// Registerer receives the metrics (default: a private registry, so
	// nothing is registered globally).
	Registerer prometheus.Registerer
	// Logger receives scaling decisions that change a count, panic mode
	// changes and Scaler errors (default slog.Default()).
	Logger *slog.Logger
}

// Status is a model's last decision, for `infergate get models`.
type Status struct {
	Model  string
	Metric Metric
	// Target is the per-replica target of Metric after utilization.
	Target float64
	// Desired is the last decision's count, Ready the ready replicas it
	// saw.
	Desired, Ready int
	// Panic says the model is in panic mode.
	Panic bool
	// StableAverage and PanicAverage are Metric over the two windows.
	StableAverage, PanicAverage float64
	// ExcessBurstCapacity is Decision.ExcessBurstCapacity.
	ExcessBurstCapacity float64
	// Reason is Decision.Reason.
	Reason string
	// DecidedAt is the last decision's time, zero before the first.
	DecidedAt time.Time
	// Applied is the last count the Scaler accepted, -1 before any.
	Applied int
	// ScaleError is the Scaler's last error, "" after a success.
	ScaleError string
}

// Autoscaler decides each model's replica count with Decide every
// Settings.Tick and applies it through the Scaler when it changes. It
// samples the Observer once a second into a Window per model. Its methods
// are safe for concurrent use; Run runs the loop.
type Autoscaler struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	pokes   chan struct{}
	running atomic.Bool

	mu     sync.Mutex
	models map[string]*model
	poked  map[string]bool
}

// model is one model's loop state, guarded by Autoscaler.mu.
type model struct {
	name     string
	settings Settings
	window   *Window
	state    State
	started  bool      // state holds NewState or a later one
	count    uint64    // Requests at lastAt, for rps
	lastAt   time.Time // time of the previous rps sample; zero before it
	next     time.Time // when the next decision is due
	status   Status
}

// New returns an Autoscaler for opts.Models; it starts no goroutine.
func New(opts Options) (*Autoscaler, error) {
	switch {
	case opts.Scaler == nil:
		return nil, errors.New("autoscaler: Options.Scaler is required")
	case opts.Observer == nil:
		return nil, errors.New("autoscaler: Options.Observer is required")
	case opts.Ready == nil:
		return nil, errors.New("autoscaler: Options.Ready is required")
	}
	if opts.ScaleTimeout <= 0 {
		opts.ScaleTimeout = 10 * time.Second
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("autoscaler: metrics: %w", err)
	}
	a := &Autoscaler{
		opts:    opts,
		log:     opts.Logger.With("component", "autoscaler"),
		metrics: m,
		pokes:   make(chan struct{}, 1),
		models:  make(map[string]*model),
		poked:   make(map[string]bool),
	}
	if err := a.SetModels(opts.Models); err != nil {
		return nil, err
	}
	return a, nil
}

// SetModels replaces the set of models and their Settings. A model that
// stays keeps its samples (as many as fit a changed stable window; none
// when its metric changes) and its decider State; a new one starts with
// an empty Window and NewState at its first decision; a removed one is
// no longer scaled and its metrics are deleted. Invalid Settings are an
// error naming the model, and change nothing.
func (a *Autoscaler) SetModels(models map[string]Settings) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(models)) {
		if name == "" {
			errs = append(errs, errors.New("autoscaler: a model has no name"))
			continue
		}
		if err := models[name].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("autoscaler: model %q: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for name := range a.models {
		if _, ok := models[name]; !ok {
			delete(a.models, name)
			delete(a.poked, name)
			a.metrics.forget(name)
		}
	}
	for name, s := range models {
		m, ok := a.models[name]
		if !ok {
			a.models[name] = &model{
				name:     name,
				settings: s,
				window:   NewWindow(s.StableWindow),
				status:   Status{Model: name, Metric: s.Metric, Applied: -1},
			}
			continue
		}
		switch {
		case s.Metric != m.settings.Metric:
			m.window = NewWindow(s.StableWindow)
			m.lastAt = time.Time{}
			a.metrics.forget(name)
		case s.StableWindow != m.settings.StableWindow:
			m.window = m.window.resized(s.StableWindow)
		}
		m.settings = s
		m.status.Metric = s.Metric
	}
	return nil
}

// Poke asks for a decision on model now rather than at its next tick, on
// a fresh sample: the activator calls it when it holds a request for a
// model without a ready replica, so that scaling from zero starts at once.
// It never blocks; an unknown model is ignored.
func (a *Autoscaler) Poke(model string) {
	a.mu.Lock()
	if _, ok := a.models[model]; ok {
		a.poked[model] = true
	}
	a.mu.Unlock()
	select {
	case a.pokes <- struct{}{}:
	default:
	}
}

// Status returns model's last decision; false for an unknown model.
func (a *Autoscaler) Status(model string) (Status, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.models[model]
	if !ok {
		return Status{}, false
	}
	return m.status, true
}

// Statuses returns every model's Status, by name.
func (a *Autoscaler) Statuses() []Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Status, 0, len(a.models))
	for _, name := range slices.Sorted(maps.Keys(a.models)) {
		out = append(out, a.models[name].status)
	}
	return out
}

// Run samples and decides until ctx is done, then returns nil. It decides
// for every model at once when it starts. Run may be called once.
func (a *Autoscaler) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("autoscaler: Run called twice")
	}
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	a.step(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.step(ctx, true)
		case <-a.pokes:
			a.step(ctx, false)
		}
	}
}

// observation is what step reads from the Observer and ReadyCounter for
// one model, outside the lock.
type observation struct {
	m           *model
	metric      Metric
	decide      bool
	concurrency float64
	requests    uint64
	ready       int
}

// step samples every model (all) or the poked ones, decides for those due
// or poked, and applies changed counts.
func (a *Autoscaler) step(ctx context.Context, all bool) {
	now := time.Now()
	a.mu.Lock()
	obs := make([]observation, 0, len(a.models))
	for _, name := range slices.Sorted(maps.Keys(a.models)) {
		m, poked := a.models[name], a.poked[name]
		if !all && !poked {
			continue
		}
		obs = append(obs, observation{m: m, metric: m.settings.Metric, decide: poked || !now.Before(m.next)})
	}
	clear(a.poked)
	a.mu.Unlock()

	for i := range obs {
		o := &obs[i]
		if o.metric == MetricRPS {
			o.requests = a.opts.Observer.Requests(o.m.name)
		} else {
			o.concurrency = a.opts.Observer.Concurrency(o.m.name)
		}
		if o.decide {
			o.ready = a.opts.Ready.ReadyReplicas(o.m.name)
		}
	}

	type action struct {
		m *model
		n int
	}
	var actions []action
	a.mu.Lock()
	for _, o := range obs {
		m := o.m
		if a.models[m.name] != m {
			continue // removed meanwhile
		}
		a.sample(m, now, o)
		if !o.decide {
			continue
		}
		d := a.decide(m, now, o.ready)
		if d.Desired != m.status.Applied {
			actions = append(actions, action{m, d.Desired})
		}
	}
	a.mu.Unlock()

	for _, act := range actions {
		cctx, cancel := context.WithTimeout(ctx, a.opts.ScaleTimeout)
		err := a.opts.Scaler.SetReplicas(cctx, act.m.name, act.n)
		cancel()
		a.mu.Lock()
		switch {
		case a.models[act.m.name] != act.m:
		case err != nil:
			a.metrics.scaleErrors.WithLabelValues(act.m.name).Inc()
			if msg := err.Error(); msg != act.m.status.ScaleError {
				a.log.Warn("scaler failed; retrying at the next decision", "model", act.m.name, "replicas", act.n, "err", err)
				act.m.status.ScaleError = msg
			}
		default:
			act.m.status.Applied, act.m.status.ScaleError = act.n, ""
		}
		a.mu.Unlock()
	}
}

// sample records one observation into m's window. Called with a.mu held.
func (a *Autoscaler) sample(m *model, now time.Time, o observation) {
	if o.metric != m.settings.Metric {
		return // SetModels changed the metric since the reading
	}
	if m.settings.Metric != MetricRPS {
		m.window.Record(now, o.concurrency)
		return
	}
	if m.lastAt.IsZero() {
		m.count, m.lastAt = o.requests, now
		return // a rate needs two readings
	}
	delta := o.requests - m.count
	if o.requests < m.count {
		delta = o.requests // the counter restarted
	}
	elapsed := max(now.Sub(m.lastAt), sampleInterval)
	m.window.Record(now, float64(delta)/elapsed.Seconds())
	m.count, m.lastAt = o.requests, now
}

// decide runs Decide for m and records the outcome. Called with a.mu held.
func (a *Autoscaler) decide(m *model, now time.Time, ready int) Decision {
	s := m.settings
	if !m.started {
		m.state, m.started = NewState(now, ready), true
	}
	prev := m.status
	d := Decide(now, Inputs{
		Settings: s,
		Stable:   m.window.Average(now, s.StableWindow),
		Panic:    m.window.Average(now, s.PanicWindow()),
		Ready:    ready,
		State:    m.state,
	})
	m.state = d.State
	m.next = now.Add(s.Tick)
	target, _ := s.Targets()
	m.status = Status{
		Model:               m.name,
		Metric:              s.Metric,
		Target:              target,
		Desired:             d.Desired,
		Ready:               ready,
		Panic:               d.Panic,
		StableAverage:       d.StableAverage,
		PanicAverage:        d.PanicAverage,
		ExcessBurstCapacity: d.ExcessBurstCapacity,
		Reason:              d.Reason,
		DecidedAt:           now,
		Applied:             prev.Applied,
		ScaleError:          prev.ScaleError,
	}
	a.metrics.record(m.name, s, ready, d)
	if d.Panic != prev.Panic {
		if d.Panic {
			a.log.Info("panic mode on", "model", m.name, "panic_average", d.PanicAverage, "ready", ready, "desired", d.Desired)
		} else {
			a.log.Info("panic mode off", "model", m.name, "stable_average", d.StableAverage, "desired", d.Desired)
		}
	}
	if prev.DecidedAt.IsZero() || d.Desired != prev.Desired {
		a.log.Info("replicas", "model", m.name, "from", prev.Desired, "to", d.Desired, "reason", d.Reason,
			"stable_average", d.StableAverage, "panic_average", d.PanicAverage, "ready", ready)
	}
	return d
}
