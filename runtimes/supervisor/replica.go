package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/infergate/infergate/runtimes"
)

// replica is one slot of a Supervisor: a goroutine (runReplica) that starts
// its process, probes it, and restarts it, until it is asked to stop.
type replica struct {
	index int
	// down is done when the replica is to stop: scaled down (stop) or
	// Run's context ended.
	down context.Context
	stop context.CancelFunc

	// Under Supervisor.mu.
	stopping bool
	status   ReplicaStatus

	// Only the replica's goroutine touches hist.
	hist history
}

// Bounds of the probe interval of a replica not ready since its start.
const (
	startProbeMin = time.Millisecond
	startProbeMax = 50 * time.Millisecond
)

// startProbeWait is the wait before the next probe of a replica that has
// not been ready since it started, elapsed ago: a twentieth of elapsed,
// within [startProbeMin, startProbeMax] and never more than interval. The
// time a ready runtime goes unseen is then about 5% of its start time, at
// least 1ms and at most 50ms, for about twenty probes per doubling.
func startProbeWait(elapsed, interval time.Duration) time.Duration {
	return min(max(elapsed/20, startProbeMin), startProbeMax, interval)
}

// errExpand marks a command template that did not expand: restarting
// cannot help.
var errExpand = errors.New("command template")

// ending is how one start of a replica ended, said twice: cause in words a
// client of the gateway may read (no log line, path or address: "exited
// with exit status 1 before it was ready"), detail in full for logs and
// the admin API (the same with the log's last lines, or the error that
// names the path).
type ending struct {
	cause, detail string
}

// startEnding is the ending of a start that failed with err, before the
// process was watched.
func startEnding(err error) ending {
	var pe *ProcessError
	switch {
	case errors.As(err, &pe):
		return ending{cause: pe.Summary, detail: err.Error()}
	case errors.Is(err, errExpand):
		return ending{cause: "its command template does not expand", detail: err.Error()}
	}
	return ending{cause: "could not be started", detail: err.Error()}
}

// runReplica is the life of one replica: start, serve, and after an exit
// back off and start again, until the replica is asked to stop or the
// model fails.
func (s *Supervisor) runReplica(run context.Context, r *replica) {
	defer s.forget(r)
	for {
		e, end, retired := s.once(run, r)
		if retired {
			return
		}
		s.mu.Lock()
		h, delay, failed := s.policy.next(r.hist, e)
		r.hist = h
		r.status.Pid, r.status.Addr = 0, ""
		r.status.LastExit, r.status.LastExitCause = end.detail, end.cause
		switch {
		case s.failed:
			// Another replica failed the model: this one stops too.
			failed = true
		case failed:
			s.failed, s.failedAt = true, s.desired
			if e.permanent {
				s.reason = fmt.Sprintf("replica %d cannot start: %s", r.index, end.detail)
				s.cause = "runtime cannot start: " + end.cause
			} else {
				s.reason = fmt.Sprintf("replica %d did not become ready in %d starts in a row; the last: %s", r.index, h.unready, end.detail)
				s.cause = fmt.Sprintf("runtime failed: %d starts in a row did not become ready; the last %s", h.unready, end.cause)
			}
			s.log.Error("model failed; its replicas are not restarted until SetReplicas changes their count", "reason", s.reason)
		default:
			r.status.State = StateBackoff
		}
		s.mu.Unlock()
		s.notify()
		if failed {
			return
		}
		s.log.Warn("replica ended; restarting after backoff", "replica", r.index, "backoff", delay, "reason", end.detail)
		t := time.NewTimer(delay)
		select {
		case <-r.down.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.mu.Lock()
		failed = s.failed
		if !failed {
			s.restarts++
		}
		s.mu.Unlock()
		if failed {
			return
		}
	}
}

// once starts the replica's process and serves it until it exits, is
// restarted, or the replica is asked to stop. It returns how the start
// ended and why, or retired when the replica stopped as asked.
func (s *Supervisor) once(run context.Context, r *replica) (e exit, end ending, retired bool) {
	e.started = time.Now()
	s.update(r, func(st *ReplicaStatus) { st.State, st.Started, st.StartToReady = StateStarting, e.started, 0 })
	p, addr, err := s.start(r)
	if err != nil {
		if r.down.Err() != nil {
			return e, ending{}, true
		}
		e.at = time.Now()
		e.permanent = errors.Is(err, ErrExec) || errors.Is(err, errExpand)
		return e, startEnding(err), false
	}
	s.update(r, func(st *ReplicaStatus) { st.Pid, st.Addr = p.Pid(), addr })
	s.log.Info("replica started", "replica", r.index, "pid", p.Pid(), "addr", addr, "log", p.LogPath())
	e.readyAt, end, retired = s.serve(run, r, p, addr, e.started)
	e.at = time.Now()
	return e, end, retired
}

// start starts the replica's process: the built-in runtime, which announces
// its address, or the command template on ports chosen here.
func (s *Supervisor) start(r *replica) (*Process, string, error) {
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return nil, "", fmt.Errorf("supervisor: log directory: %w", err)
	}
	logPath := filepath.Join(s.logDir, s.opts.Model+"-"+strconv.Itoa(r.index)+".log")
	if err := os.Rename(logPath, logPath+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("keeping the previous log", "replica", r.index, "err", err)
	}
	po := ProcessOptions{LogPath: logPath, StartTimeout: s.opts.StartTimeout, Env: s.opts.Env}
	var addr string
	if s.cmd == nil {
		po.Path = s.opts.Executable
		po.Args = []string{"modelserver", "-host", s.opts.Host, "-http-port", "0", "-grpc-port", "0",
			"-model", s.opts.Model + "=" + s.opts.ModelPath}
	} else {
		ports, err := freePorts(s.opts.Host, 2)
		if err != nil {
			return nil, "", err
		}
		path, args, err := s.cmd.expand(Vars{
			Model:     s.opts.Model,
			ModelPath: s.opts.ModelPath,
			ModelDir:  modelDir(s.opts.ModelPath),
			HTTPPort:  ports[0],
			GRPCPort:  ports[1],
			Host:      s.opts.Host,
			DataDir:   s.opts.DataDir,
		})
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", errExpand, err)
		}
		po.Path, po.Args, po.NoAnnounce = path, args, true
		port := ports[0]
		if s.opts.Protocol == runtimes.GRPC {
			port = ports[1]
		}
		addr = net.JoinHostPort(s.opts.Host, strconv.Itoa(port))
	}
	p, err := StartProcess(r.down, po)
	if err != nil {
		return nil, "", err
	}
	if s.cmd == nil {
		addr = p.RESTAddr
		if s.opts.Protocol == runtimes.GRPC {
			addr = p.GRPCAddr
		}
	}
	return p, addr, nil
}

// serve watches a started process: it puts the replica in the pool once its
// port accepts connections, probes its readiness, and takes it out when the
// process exits (at once), when it has been not ready for
// Options.UnreadyRestart after it was ready (at once, then stops it), or
// when the replica is asked to stop (after a drain). It returns when the
// replica first became ready (zero if never) and how the process ended, or
// retired when the replica stopped as asked.
func (s *Supervisor) serve(run context.Context, r *replica, p *Process, addr string, started time.Time) (readyAt time.Time, end ending, retired bool) {
	// pctx ends with the process, so that a probe in flight does not hold
	// up the withdrawal of a replica that died.
	pctx, cancel := context.WithCancel(r.down)
	defer cancel()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-pctx.Done():
		}
	}()

	var (
		client runtimes.Client
		rep    *runtimes.Replica
		ready  bool
		// unreadySince is when the first probe that found the replica
		// not ready after it had been ready began; zero while it is ready
		// or before its first ready answer.
		unreadySince time.Time
		probeErr     error // the last probe's failure
	)
	withdraw := func() {
		if rep == nil {
			return
		}
		rep.SetReady(false)
		now, c := context.WithCancel(context.Background())
		c()
		_ = s.opts.Pool.Remove(now, rep)
		_ = client.Close()
		s.notify()
	}
	deadline := started.Add(s.opts.StartTimeout)
	// lastNotReady is when the last look that did not find the replica
	// ready began: the runtime became ready after it.
	lastNotReady := started
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		lookedAt := time.Now()
		if rep == nil && s.listening(pctx, addr) {
			c, err := s.newClient(r, addr)
			if err != nil {
				_ = p.Stop(s.opts.StopGrace)
				return readyAt, ending{cause: "could not be served", detail: err.Error()}, false
			}
			client, rep = c, s.opts.Pool.Add(c)
		}
		if rep != nil {
			ok, err := s.probe(pctx, client)
			probeErr = err
			rep.SetReady(ok)
			switch {
			case ok && !ready && readyAt.IsZero():
				readyAt = time.Now()
				took, gap := readyAt.Sub(started), readyAt.Sub(lastNotReady)
				s.metrics.startToReady.Observe(took.Seconds())
				s.metrics.probeGap.Observe(gap.Seconds())
				s.log.Info("replica ready", "replica", r.index, "addr", addr,
					"after", took.Round(time.Microsecond), "probe_gap", gap.Round(time.Microsecond))
			case ok && !ready:
				s.log.Info("replica ready again", "replica", r.index, "addr", addr,
					"after", time.Since(unreadySince).Round(time.Millisecond))
			case !ok && ready && pctx.Err() == nil:
				unreadySince = lookedAt
				s.log.Warn("replica not ready", "replica", r.index, "addr", addr, "err", runtimes.Detail(err))
			}
			if ok {
				unreadySince = time.Time{}
			}
			if ok != ready {
				ready = ok
				s.update(r, func(st *ReplicaStatus) {
					if ok && st.StartToReady == 0 {
						st.StartToReady = readyAt.Sub(started)
					}
					if st.State == StateStopping {
						return
					}
					st.State = StateUnready
					if ok {
						st.State = StateReady
					}
				})
				s.notify()
			}
		}
		if readyAt.IsZero() {
			lastNotReady = lookedAt
		}
		if readyAt.IsZero() && time.Now().After(deadline) && pctx.Err() == nil {
			withdraw()
			_ = p.Stop(s.opts.StopGrace)
			cause := fmt.Sprintf("was not ready within %s", s.opts.StartTimeout)
			return readyAt, ending{cause: cause, detail: "not ready within " + s.opts.StartTimeout.String() + p.Tail()}, false
		}
		if !unreadySince.IsZero() && unreadyTooLong(unreadySince, time.Now(), s.opts.UnreadyRestart) && pctx.Err() == nil {
			// Alive but no longer serving (the model was unloaded, or
			// the process hangs): a restart is the one remedy the
			// supervisor has, and a replica left out of the pool would
			// hold the model's requests until their deadlines.
			s.metrics.unreadyRestarts.Inc()
			s.log.Warn("replica not ready too long after it was ready; restarting it", "replica", r.index, "addr", addr,
				"unready_for", time.Since(unreadySince).Round(time.Millisecond), "err", runtimes.Detail(probeErr))
			withdraw()
			_ = p.Stop(s.opts.StopGrace)
			cause := fmt.Sprintf("was not ready for %s after it was ready", s.opts.UnreadyRestart)
			detail := cause + "; the last probe: " + runtimes.Detail(probeErr) + p.Tail()
			return readyAt, ending{cause: cause, detail: detail}, false
		}
		// Until the first ready probe, probe often, and the more often the
		// younger the replica: one that loads fast should not wait a whole
		// interval to take traffic, and what it waits is the gateway's
		// share of a cold start.
		wait := s.opts.ProbeInterval
		if readyAt.IsZero() {
			wait = startProbeWait(time.Since(started), wait)
		}
		tick.Reset(wait)
		select {
		case <-p.Done():
			withdraw()
			_ = p.Stop(0) // what the process left of its group
			how := "exited with exit status 0"
			if err := p.Err(); err != nil {
				how = "exited with " + err.Error()
			}
			if readyAt.IsZero() {
				how += " before it was ready"
			}
			return readyAt, ending{cause: how, detail: how + p.Tail()}, false
		case <-r.down.Done():
			s.retire(run, r, p, client, rep)
			return readyAt, ending{}, true
		case <-tick.C:
		}
	}
}

// unreadyTooLong reports whether a replica not ready since since, after it
// had been ready, is due for a restart at now under limit (0 or negative:
// never).
func unreadyTooLong(since, now time.Time, limit time.Duration) bool {
	return limit > 0 && now.Sub(since) >= limit
}

// retire takes a replica asked to stop out of the pool, draining its calls
// in flight unless Run is ending (the gateway drained already), then stops
// its process group.
func (s *Supervisor) retire(run context.Context, r *replica, p *Process, client runtimes.Client, rep *runtimes.Replica) {
	s.update(r, func(st *ReplicaStatus) { st.State = StateStopping })
	// It no longer counts as ready: say so before the pool stops sending
	// it calls, so that a reader holding requests for the model (the
	// activator) learns it at once rather than admitting them to a pool
	// with no ready replica.
	s.notify()
	if rep != nil {
		dctx, cancel := context.WithTimeout(run, s.opts.DrainTimeout)
		if err := s.opts.Pool.Remove(dctx, rep); err != nil && run.Err() == nil {
			s.log.Warn("replica drain cut short", "replica", r.index, "after", s.opts.DrainTimeout, "in_flight", rep.InFlight())
		}
		cancel()
	}
	if err := p.Stop(s.opts.StopGrace); err != nil {
		s.log.Warn("stopping replica", "replica", r.index, "pid", p.Pid(), "err", err)
	}
	if client != nil {
		_ = client.Close()
	}
	s.log.Info("replica stopped", "replica", r.index, "pid", p.Pid())
}

// listening reports whether addr accepts a TCP connection now. Waiting for
// it before the first probe keeps a gRPC client from starting its life in
// connection backoff.
func (s *Supervisor) listening(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: s.opts.ProbeTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// newClient returns a client for r's process at addr. Its errors, which
// reach the gateway's clients, name the model and the replica's index,
// never addr.
func (s *Supervisor) newClient(r *replica, addr string) (runtimes.Client, error) {
	name := fmt.Sprintf("model %q replica %d", s.opts.Model, r.index)
	if s.opts.Protocol == runtimes.GRPC {
		return runtimes.NewGRPCClient(runtimes.GRPCOptions{Addr: addr, Name: name})
	}
	return runtimes.NewRESTClient(runtimes.RESTOptions{Addr: addr, Name: name})
}

// serverReadier is the runtime-wide readiness both runtimes' clients offer.
type serverReadier interface {
	ServerReady(ctx context.Context) (bool, error)
}

// errNotReady is a probe's answer "not ready" (as against no answer).
var errNotReady = errors.New("not ready")

// probe reports whether the runtime is ready and the model ready there.
func (s *Supervisor) probe(ctx context.Context, c runtimes.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
	defer cancel()
	if sr, ok := c.(serverReadier); ok {
		ok, err := sr.ServerReady(ctx)
		if err != nil {
			return false, fmt.Errorf("server readiness: %w", err)
		}
		if !ok {
			return false, fmt.Errorf("server readiness: %w", errNotReady)
		}
	}
	ok, err := c.ModelReady(ctx, s.opts.Model, s.opts.Version)
	switch {
	case err != nil:
		return false, fmt.Errorf("model readiness: %w", err)
	case !ok:
		return false, fmt.Errorf("model readiness: %w", errNotReady)
	}
	return true, nil
}

// update changes r's status under the lock.
func (s *Supervisor) update(r *replica, f func(*ReplicaStatus)) {
	s.mu.Lock()
	f(&r.status)
	s.mu.Unlock()
}
