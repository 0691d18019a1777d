package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/runtimes"
)

// Pool is the replica membership a Supervisor keeps: *runtimes.Pool.
type Pool interface {
	// Add puts a replica for c in the pool, not ready, and returns it.
	Add(c runtimes.Client) *runtimes.Replica
	// Remove stops new calls to r at once, waits for its calls in flight
	// until ctx is done, and takes it out of the pool.
	Remove(ctx context.Context, r *runtimes.Replica) error
}

// Options configures a Supervisor. Zero fields take the documented
// defaults.
type Options struct {
	// Model is the model's name, at the runtime and in logs. Required.
	Model string
	// Version is the model version whose readiness is probed ("": the
	// runtime's choice).
	Version string
	// ModelPath is the model's file or directory. Required with the
	// default command, which serves it; a command template sees it as
	// .ModelPath and .ModelDir.
	ModelPath string
	// Command is the runtime's command line, one word per element, each a
	// text/template over Vars expanded at every start (the form of
	// config.Model.Command): the executable first, looked up in PATH when
	// it holds no slash. No shell runs unless the command is one. The
	// process must listen on {{.Host}}:{{.HTTPPort}} for OIP REST or
	// {{.Host}}:{{.GRPCPort}} for OIP gRPC, whichever Protocol says.
	//
	// Empty means the built-in runtime: Executable run as
	// `modelserver -host HOST -http-port 0 -grpc-port 0 -model MODEL=PATH`,
	// which binds free ports itself and announces them on stdout
	// (AnnouncePrefix), so it has no port race.
	Command []string
	// Executable runs the default command (default: this process's own
	// executable, os.Executable).
	Executable string
	// Env is added to each replica's environment, as "KEY=value".
	Env []string
	// Protocol is how the gateway talks to the replicas and how they are
	// probed: runtimes.REST (the default) or runtimes.GRPC.
	Protocol runtimes.Protocol
	// Pool receives the replicas. Required.
	Pool Pool
	// DataDir holds the replicas' logs under logs/ (default "data").
	DataDir string
	// Host is the loopback address replicas listen on (default
	// 127.0.0.1).
	Host string
	// MaxReplicas bounds SetReplicas; 0 means no bound.
	MaxReplicas int
	// ProbeInterval is how often each ready replica's readiness is probed
	// (default 500ms). One not ready yet since its start is probed more
	// often: after a twentieth of the time since its start, at least 1ms
	// and at most 50ms apart (and never further apart than ProbeInterval),
	// so that a runtime ready in 10ms is seen within a millisecond or so,
	// one that takes seconds within 50ms, and a start costs about twenty
	// probes per doubling of its length until then.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe (default 1s).
	ProbeTimeout time.Duration
	// StartTimeout bounds the time from a replica's start to its first
	// ready probe (default 2m); a replica not ready by then is stopped and
	// counts as a failed start.
	StartTimeout time.Duration
	// UnreadyRestart bounds the time a replica that has been ready may
	// stay not ready: its probes answer not ready (the model was unloaded
	// through the runtime's repository API, say), fail, or time out (a
	// process that hangs). It is withdrawn from the pool at the first such
	// probe, as before; once it has been not ready this long it is
	// stopped and restarted, as if it had exited after being ready (the
	// normal backoff, which a stay of BackoffReset in the ready state
	// resets). Default 30s; negative: never, so that such a replica waits
	// out of the pool until its probes pass again.
	UnreadyRestart time.Duration
	// BackoffInitial is the wait before the first restart of a replica
	// that exited (default 1s); it doubles with each further exit, up to
	// BackoffMax (default 30s), and starts over once a replica stayed
	// ready for BackoffReset (default 1m).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	BackoffReset   time.Duration
	// MaxStartFailures is how many times in a row a replica may exit
	// before it became ready before the model is marked failed (default
	// 5). A command that cannot be executed fails the model at once.
	MaxStartFailures int
	// DrainTimeout bounds how long a replica being scaled down may finish
	// its calls in flight before it is stopped anyway (default 30s).
	DrainTimeout time.Duration
	// StopGrace is how long a replica may take to exit after SIGTERM
	// before its process group gets SIGKILL (default 10s).
	StopGrace time.Duration
	// Logger receives starts, readiness changes, exits and failures
	// (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the metrics (default: a private registry, so
	// nothing is registered globally). Supervisors of several models may
	// share one: they share the metrics, labelled by model.
	Registerer prometheus.Registerer
}

// ReplicaState is where a replica is in its life.
type ReplicaState string

// The states of a replica.
const (
	StateStarting ReplicaState = "starting" // started, not ready yet
	StateReady    ReplicaState = "ready"    // its last probe passed
	StateUnready  ReplicaState = "unready"  // was ready, its last probe failed
	StateBackoff  ReplicaState = "backoff"  // exited, waiting to restart
	StateStopping ReplicaState = "stopping" // draining and stopping
)

// Status is a snapshot of a Supervisor.
type Status struct {
	Model string
	// Desired is the count SetReplicas asked for last.
	Desired int
	// Running counts replica processes that run (in any state but
	// backoff); Ready those whose last probe passed.
	Running, Ready int
	// Failed says the model's replicas kept exiting before they became
	// ready (or its command cannot run) and are not restarted.
	Failed bool
	// Reason says why the model failed in full, with the runtime's
	// executable or log path and the last lines of its log: for logs and
	// the admin API, never for a client of the gateway. "" unless Failed.
	Reason string
	// Cause says why the model failed in a short sentence with no log
	// line, path or address ("runtime failed: 5 starts in a row did not
	// become ready; the last exited with exit status 1 before it was
	// ready"): the text for error bodies sent to clients. "" unless
	// Failed.
	Cause string
	// Restarts counts starts that followed an exit.
	Restarts int
	// Replicas are the replicas, by index.
	Replicas []ReplicaStatus
}

// ReplicaStatus is one replica in a Status.
type ReplicaStatus struct {
	// Index numbers the replica; its log is DATADIR/logs/MODEL-Index.log.
	Index int
	State ReplicaState
	// Pid is the process's id, 0 when none runs.
	Pid int
	// Addr is the host:port the gateway talks to, "" when none.
	Addr string
	// Started is when the current (or last) process started.
	Started time.Time
	// StartToReady is how long the current (or last) process took from
	// its start to its first ready answer; 0 until it was ready once.
	StartToReady time.Duration
	// LastExit says how the previous process ended, with the last lines
	// of its log (or the error naming the executable, when it could not
	// start): for logs and the admin API. "" if none ended.
	LastExit string
	// LastExitCause says how the previous process ended in a few words
	// with no log line, path or address ("exited with exit status 1
	// before it was ready", "was not ready for 30s after it was ready"):
	// the text for error bodies sent to clients. "" if none ended.
	LastExitCause string
}

// ErrStopped is returned by SetReplicas after Run has returned.
var ErrStopped = errors.New("supervisor: stopped")

type runState uint8

const (
	notRun runState = iota
	running
	stopped
)

// Supervisor runs one model's runtime replicas; see the package doc. Its
// methods are safe for concurrent use.
type Supervisor struct {
	opts    Options
	cmd     *command // nil: the built-in runtime
	policy  policy
	log     *slog.Logger
	metrics modelMetrics
	logDir  string
	wake    chan struct{}
	// changed is signalled (without blocking; capacity 1) when a replica
	// turns ready or not ready, exits, or the model fails or recovers.
	changed chan struct{}

	mu       sync.Mutex
	state    runState
	desired  int
	failed   bool
	failedAt int    // desired when the model failed
	reason   string // Status.Reason
	cause    string // Status.Cause
	restarts int
	replicas []*replica
}

// New returns a Supervisor for opts with no replica; it starts nothing.
// Call SetReplicas for replicas and Run to start them.
func New(opts Options) (*Supervisor, error) {
	if opts.Model == "" {
		return nil, errors.New("supervisor: Options.Model is empty")
	}
	if opts.Pool == nil {
		return nil, fmt.Errorf("supervisor: model %q: Options.Pool is nil", opts.Model)
	}
	if opts.MaxReplicas < 0 {
		return nil, fmt.Errorf("supervisor: model %q: Options.MaxReplicas %d is negative", opts.Model, opts.MaxReplicas)
	}
	switch opts.Protocol {
	case 0:
		opts.Protocol = runtimes.REST
	case runtimes.REST, runtimes.GRPC:
	default:
		return nil, fmt.Errorf("supervisor: model %q: protocol %s is not rest or grpc", opts.Model, opts.Protocol)
	}
	s := &Supervisor{wake: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
	if len(opts.Command) > 0 {
		c, err := parseCommand(opts.Command)
		if err != nil {
			return nil, fmt.Errorf("model %q: %w", opts.Model, err)
		}
		s.cmd = c
	} else {
		if opts.ModelPath == "" {
			return nil, fmt.Errorf("supervisor: model %q: Options.ModelPath is empty (the built-in runtime needs the model)", opts.Model)
		}
		if opts.Executable == "" {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("supervisor: own executable: %w", err)
			}
			opts.Executable = exe
		}
	}
	if opts.DataDir == "" {
		opts.DataDir = "data"
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("supervisor: data dir: %w", err)
	}
	opts.DataDir = dataDir
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	setDefault(&opts.ProbeInterval, 500*time.Millisecond)
	setDefault(&opts.ProbeTimeout, time.Second)
	setDefault(&opts.StartTimeout, 2*time.Minute)
	if opts.UnreadyRestart == 0 {
		opts.UnreadyRestart = 30 * time.Second
	}
	setDefault(&opts.BackoffInitial, time.Second)
	setDefault(&opts.BackoffMax, 30*time.Second)
	setDefault(&opts.BackoffReset, time.Minute)
	setDefault(&opts.DrainTimeout, 30*time.Second)
	setDefault(&opts.StopGrace, 10*time.Second)
	if opts.BackoffMax < opts.BackoffInitial {
		opts.BackoffMax = opts.BackoffInitial
	}
	if opts.MaxStartFailures <= 0 {
		opts.MaxStartFailures = 5
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(opts.Registerer, opts.Model)
	if err != nil {
		return nil, fmt.Errorf("supervisor: model %q: metrics: %w", opts.Model, err)
	}
	s.metrics = m
	s.opts = opts
	s.log = opts.Logger.With("model", opts.Model)
	s.logDir = filepath.Join(opts.DataDir, "logs")
	s.policy = policy{initial: opts.BackoffInitial, max: opts.BackoffMax, reset: opts.BackoffReset, maxFailures: opts.MaxStartFailures}
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Model returns the model's name.
func (s *Supervisor) Model() string { return s.opts.Model }

// SetReplicas asks for n replicas (0 stops them all) and returns without
// waiting for them to start or drain: Run does that, and Status or the pool
// show the progress. It may be called before Run (Run starts n) and while
// Run runs; after Run returned it returns ErrStopped. A failed model is
// restarted by a call with a count other than the one it failed at (0 then
// n included), not by one that repeats it, so that a scaler re-asserting
// its count does not restart a crash loop. ctx bounds only the call.
func (s *Supervisor) SetReplicas(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("supervisor: model %q: %d replicas is negative", s.opts.Model, n)
	}
	if s.opts.MaxReplicas > 0 && n > s.opts.MaxReplicas {
		return fmt.Errorf("supervisor: model %q: %d replicas is more than maxReplicas (%d)", s.opts.Model, n, s.opts.MaxReplicas)
	}
	s.mu.Lock()
	if s.state == stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	if n != s.desired {
		s.log.Info("replicas", "from", s.desired, "to", n)
	}
	s.desired = n
	if s.failed && n != s.failedAt {
		s.failed, s.reason, s.cause = false, "", ""
		s.log.Info("restarting failed model", "replicas", n)
	}
	s.mu.Unlock()
	s.poke()
	s.notify()
	return nil
}

// Changed is signalled when the model's readiness may have changed: a
// replica turned ready or not ready (scaled down included), exited or
// stopped, or the model failed or was asked for replicas again. Signals coalesce, so a reader calls Status
// after each one; one reader per Supervisor.
func (s *Supervisor) Changed() <-chan struct{} { return s.changed }

func (s *Supervisor) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *Supervisor) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Status returns the supervisor's state now.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		Model:    s.opts.Model,
		Desired:  s.desired,
		Failed:   s.failed,
		Reason:   s.reason,
		Cause:    s.cause,
		Restarts: s.restarts,
	}
	for _, r := range s.replicas {
		rs := r.status
		if rs.Pid != 0 {
			st.Running++
		}
		if rs.State == StateReady {
			st.Ready++
		}
		st.Replicas = append(st.Replicas, rs)
	}
	slices.SortFunc(st.Replicas, func(a, b ReplicaStatus) int { return cmp.Compare(a.Index, b.Index) })
	return st
}

// Run starts and stops replicas to match SetReplicas, restarts those that
// exit, and probes their readiness, until ctx is done. Then it withdraws
// every replica from the pool at once (the gateway drains before it cancels
// ctx), stops their process groups, waits for them to exit and returns nil.
// Run may be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.state != notRun {
		s.mu.Unlock()
		return fmt.Errorf("supervisor: model %q: Run called twice", s.opts.Model)
	}
	s.state = running
	s.mu.Unlock()

	var wg sync.WaitGroup
	for {
		s.reconcile(ctx, &wg)
		select {
		case <-ctx.Done():
			wg.Wait()
			s.mu.Lock()
			s.state = stopped
			s.mu.Unlock()
			return nil
		case <-s.wake:
		}
	}
}

// reconcile starts replicas up to the desired count, unless the model
// failed, and asks the surplus to stop: first those not ready, then the
// newest.
func (s *Supervisor) reconcile(ctx context.Context, wg *sync.WaitGroup) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var live []*replica
	for _, r := range s.replicas {
		if !r.stopping {
			live = append(live, r)
		}
	}
	for len(live) < s.desired && !s.failed {
		r := s.newReplica(ctx)
		live = append(live, r)
		wg.Go(func() { s.runReplica(ctx, r) })
	}
	if len(live) <= s.desired {
		return
	}
	slices.SortFunc(live, func(a, b *replica) int {
		ar, br := a.status.State == StateReady, b.status.State == StateReady
		if ar != br {
			if ar {
				return 1
			}
			return -1
		}
		return cmp.Compare(b.index, a.index)
	})
	for _, r := range live[:len(live)-s.desired] {
		r.stopping = true
		r.stop()
	}
}

// newReplica adds a replica with the lowest free index. s.mu is held.
func (s *Supervisor) newReplica(ctx context.Context) *replica {
	idx := 0
	for slices.ContainsFunc(s.replicas, func(r *replica) bool { return r.index == idx }) {
		idx++
	}
	down, stop := context.WithCancel(ctx)
	r := &replica{index: idx, down: down, stop: stop, status: ReplicaStatus{Index: idx, State: StateStarting}}
	s.replicas = append(s.replicas, r)
	return r
}

// forget removes r once its goroutine is done, lets Run reconcile, and
// signals Changed (one replica fewer runs).
func (s *Supervisor) forget(r *replica) {
	r.stop()
	s.mu.Lock()
	s.replicas = slices.DeleteFunc(s.replicas, func(x *replica) bool { return x == r })
	s.mu.Unlock()
	s.poke()
	s.notify()
}
