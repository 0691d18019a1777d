package supervisor_test

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testbin"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/supervisor"
)

// binPath is the infergate binary, built once by TestMain, whose
// `modelserver` the supervisor runs as the real replicas users get.
var binPath string

// fakeRuntimeEnv makes the test binary a scripted runtime (see fakeRuntime)
// instead of running the tests.
const fakeRuntimeEnv = "SUPERVISOR_TEST_FAKE_RUNTIME"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeRuntimeEnv); mode != "" {
		os.Exit(fakeRuntime(mode, os.Args[1:]))
	}
	testbin.Main(&binPath, m.Run)
}

// fakeRuntime serves OIP readiness on 127.0.0.1:-port as mode says:
// "ready" (both 200), "server-unready" (/v2/health/ready 503) or
// "model-unready" (the model's ready endpoint 503). The test moves a ready
// one with POST /test/unready (the model's ready endpoint answers 503, as
// after an unload), /test/hang (readiness answers never come, as from a
// hung process) and /test/ready (back to ready); GET /test/unready-probes
// says how many readiness probes found it not ready or hung.
func fakeRuntime(mode string, args []string) int {
	fs := flag.NewFlagSet("fake", flag.ContinueOnError)
	port := fs.Int("port", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var (
		state    atomic.Value // "", "unready" or "hang"
		unready  atomic.Int64
		hangHere = make(chan struct{}) // never closed
	)
	state.Store("")
	status := func(bad bool) int {
		switch {
		case state.Load() == "hang":
			unready.Add(1)
			<-hangHere
		case bad || state.Load() == "unready":
			unready.Add(1)
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/health/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status(mode == "server-unready"))
	})
	mux.HandleFunc("/v2/models/{model}/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status(mode == "model-unready"))
	})
	mux.HandleFunc("POST /test/{state}", func(w http.ResponseWriter, r *http.Request) {
		switch st := r.PathValue("state"); st {
		case "unready", "hang":
			state.Store(st)
		case "ready":
			state.Store("")
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	})
	mux.HandleFunc("GET /test/unready-probes", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, unready.Load())
	})
	fmt.Fprintln(os.Stderr, "fake runtime", mode, "on port", *port)
	if err := http.ListenAndServe(net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)), mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

const irisPath = "../../examples/models/iris"

var quiet = slog.New(slog.DiscardHandler)

// testLogger logs to the test, so that a failure shows what the supervisor
// did.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func newPool(t *testing.T, model string) *runtimes.Pool {
	t.Helper()
	p, err := runtimes.NewPool(runtimes.PoolOptions{Model: model, Logger: quiet}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// running is a Supervisor whose Run runs until the test ends.
type running struct {
	*supervisor.Supervisor
	pool    *runtimes.Pool
	dataDir string
	cancel  context.CancelFunc
	done    chan error
}

// start runs a Supervisor for opts (iris on the built-in runtime unless
// opts say otherwise) with fast probes and backoff, with n replicas asked
// for before Run.
func start(t *testing.T, opts supervisor.Options, n int) *running {
	t.Helper()
	if opts.Model == "" {
		opts.Model = "iris"
	}
	if opts.ModelPath == "" && len(opts.Command) == 0 {
		opts.ModelPath = irisPath
	}
	if opts.Executable == "" {
		opts.Executable = binPath
	}
	pool := newPool(t, opts.Model)
	opts.Pool = pool
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = 50 * time.Millisecond
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.BackoffInitial == 0 {
		opts.BackoffInitial = 100 * time.Millisecond
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 5 * time.Second
	}
	opts.Logger = testLogger(t)
	s, err := supervisor.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReplicas(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Supervisor: s, pool: pool, dataDir: opts.DataDir, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and waits for it.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
		r.done <- err // for a second call
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *running) waitReady(t *testing.T, n int) supervisor.Status {
	t.Helper()
	var st supervisor.Status
	waitFor(t, 60*time.Second, fmt.Sprintf("%d ready replicas", n), func() bool {
		st = r.Status()
		return st.Ready == n && st.Running == n && readyInPool(r.pool) == n
	})
	return st
}

func readyInPool(p *runtimes.Pool) int {
	n := 0
	for _, r := range p.Replicas() {
		if r.Ready() {
			n++
		}
	}
	return n
}

func addrOf(c runtimes.Client) string {
	if a, ok := c.(interface{ Addr() string }); ok {
		return a.Addr()
	}
	return "?"
}

func inPool(p *runtimes.Pool, addr string) bool {
	for _, r := range p.Replicas() {
		if addrOf(r.Client) == addr {
			return true
		}
	}
	return false
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	state := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])[0]
	return state != "Z" && state != "X"
}

func waitDead(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s (pid %d) outlived its supervisor", what, pid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func irisRequest() *oip.InferRequest {
	data := make([]byte, 16)
	for i, v := range []float32{5.1, 3.5, 1.4, 0.2} {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return &oip.InferRequest{ModelName: "iris", Inputs: []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 4}, Data: data}}}
}

// infer sends one iris request through the pool and returns the address of
// the replica that answered (or last failed).
func infer(ctx context.Context, p *runtimes.Pool) (string, error) {
	var addr string
	err := p.Do(ctx, func(c runtimes.Client) error {
		addr = addrOf(c)
		resp, err := c.Infer(ctx, irisRequest())
		if err == nil && (len(resp.Outputs) != 1 || resp.Outputs[0].Name != "probabilities") {
			err = fmt.Errorf("unexpected response %+v", resp)
		}
		return err
	})
	return addr, err
}

// loadGen keeps workers sending requests through a pool, each one at a time.
type loadGen struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     atomic.Int64

	mu    sync.Mutex
	byOK  map[string]int
	fails []failure
}

type failure struct {
	addr string
	err  error
}

func startLoad(p *runtimes.Pool, workers int) *loadGen {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loadGen{cancel: cancel, byOK: make(map[string]int)}
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				addr, err := infer(rctx, p)
				cancel()
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				if err != nil {
					l.fails = append(l.fails, failure{addr, err})
				} else {
					l.byOK[addr]++
				}
				l.mu.Unlock()
				if err == nil {
					l.ok.Add(1)
				}
			}
		})
	}
	return l
}

// waitOK waits for n more successful requests.
func (l *loadGen) waitOK(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	waitFor(t, 30*time.Second, fmt.Sprintf("%d more successful requests", n), func() bool { return l.ok.Load() >= want })
}

func (l *loadGen) stop() ([]failure, map[string]int) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fails, l.byOK
}

// TestReplicasStartAndBecomeReady starts two replicas of the built-in
// runtime: both become ready in the pool, answer, log to their files, and
// are gone when Run ends.
func TestReplicasStartAndBecomeReady(t *testing.T) {
	r := start(t, supervisor.Options{}, 2)
	st := r.waitReady(t, 2)
	if st.Desired != 2 || st.Failed || st.Restarts != 0 || len(st.Replicas) != 2 {
		t.Errorf("status = %+v", st)
	}
	answered := map[string]bool{}
	for range 6 {
		addr, err := infer(context.Background(), r.pool)
		if err != nil {
			t.Fatal(err)
		}
		answered[addr] = true
	}
	if len(answered) != 2 {
		t.Errorf("requests reached %d replicas, want 2", len(answered))
	}
	for i, rs := range st.Replicas {
		if rs.Index != i || rs.State != supervisor.StateReady || rs.Pid == 0 || !strings.HasPrefix(rs.Addr, "127.0.0.1:") {
			t.Errorf("replica %d status = %+v", i, rs)
		}
	}

	r.stop(t)
	for _, rs := range st.Replicas {
		waitDead(t, rs.Pid, "replica")
	}
	if n := len(r.pool.Replicas()); n != 0 {
		t.Errorf("%d replicas left in the pool after Run", n)
	}
	if err := r.SetReplicas(context.Background(), 1); !errors.Is(err, supervisor.ErrStopped) {
		t.Errorf("SetReplicas after Run = %v, want ErrStopped", err)
	}
	for i := range 2 {
		b, err := os.ReadFile(filepath.Join(r.logDir(t), fmt.Sprintf("iris-%d.log", i)))
		if err != nil || !strings.Contains(string(b), "model ready") {
			t.Errorf("replica %d log: %v\n%s", i, err, b)
		}
		// The runtime's stdout, which follows its announce line into the
		// log, carries nothing of the engine's.
		if strings.Contains(string(b), "SimpleGo") {
			t.Errorf("replica %d printed the engine's configuration:\n%s", i, b)
		}
	}
}

func (r *running) logDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(r.dataDir, "logs")
}

// TestSIGKILLReplicaUnderLoad kills one of two replicas in the middle of
// requests: its endpoint leaves the pool at once, the replica is restarted,
// and the only requests that fail are those it was running.
func TestSIGKILLReplicaUnderLoad(t *testing.T) {
	r := start(t, supervisor.Options{}, 2)
	st := r.waitReady(t, 2)
	victim := st.Replicas[0]

	const workers = 4
	load := startLoad(r.pool, workers)
	defer load.stop()
	load.waitOK(t, 100)

	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, 5*time.Second, "the killed replica's endpoint to leave the pool", func() bool { return !inPool(r.pool, victim.Addr) })
	if took := time.Since(killed); took > time.Second {
		t.Errorf("the killed replica left the pool after %s, want at once", took)
	}
	waitFor(t, 30*time.Second, "the replica's restart", func() bool {
		st = r.Status()
		return st.Restarts == 1 && st.Ready == 2 && readyInPool(r.pool) == 2
	})
	if rs := st.Replicas[0]; rs.Pid == victim.Pid || !strings.Contains(rs.LastExit, "signal: killed") {
		t.Errorf("replica 0 after the kill: %+v", rs)
	}
	load.waitOK(t, 100)
	fails, byAddr := load.stop()
	if len(fails) > 2*workers {
		t.Errorf("%d requests failed, want at most %d (those in flight on the killed replica)", len(fails), 2*workers)
	}
	for _, f := range fails {
		if f.addr != victim.Addr {
			t.Errorf("a request failed on %s, not the killed replica %s: %v", f.addr, victim.Addr, f.err)
		}
	}
	t.Logf("%d requests failed with the kill; successes by replica: %v", len(fails), byAddr)
}

// TestSetReplicasUnderLoad scales 1 -> 3 -> 1 -> 0 while requests flow: the
// new replicas take traffic once ready, the removed ones drain, and no
// request fails.
func TestSetReplicasUnderLoad(t *testing.T) {
	r := start(t, supervisor.Options{DrainTimeout: 20 * time.Second}, 1)
	first := r.waitReady(t, 1).Replicas[0]

	load := startLoad(r.pool, 4)
	defer load.stop()
	load.waitOK(t, 50)

	if err := r.SetReplicas(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	up := r.waitReady(t, 3)
	load.waitOK(t, 150)

	if err := r.SetReplicas(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "scale-down to 1", func() bool {
		st := r.Status()
		return st.Running == 1 && st.Ready == 1 && len(r.pool.Replicas()) == 1
	})
	load.waitOK(t, 50)
	fails, byAddr := load.stop()
	for _, f := range fails {
		t.Errorf("request failed on %s: %v", f.addr, f.err)
	}
	for _, rs := range up.Replicas {
		if byAddr[rs.Addr] == 0 {
			t.Errorf("replica %d (%s) got no request; successes by replica: %v", rs.Index, rs.Addr, byAddr)
		}
	}
	// The one kept is the oldest: replicas go newest first.
	if kept := r.Status().Replicas[0]; kept.Pid != first.Pid {
		t.Errorf("kept replica %+v, want the first one (pid %d)", kept, first.Pid)
	}
	for _, rs := range up.Replicas[1:] {
		waitDead(t, rs.Pid, "scaled-down replica")
	}

	if err := r.SetReplicas(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "scale to zero", func() bool {
		return r.Status().Running == 0 && len(r.pool.Replicas()) == 0
	})
	waitDead(t, first.Pid, "replica scaled to zero")
	if _, err := infer(context.Background(), r.pool); oip.KindOf(err) != oip.KindUnavailable {
		t.Errorf("infer with zero replicas = %v, want unavailable", err)
	}
}

// TestCrashAtStart runs a command that fails at once: it is restarted with
// growing waits, then the model is failed with the exit status and the
// log's last lines, and nothing restarts it until the count changes.
func TestCrashAtStart(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	r := start(t, supervisor.Options{
		Model: "broken",
		Command: []string{"/bin/sh", "-c", `date +%s%N >> "$0"; echo "loading $1"; echo "fatal: model file is corrupt" >&2; exit 3`,
			"{{.DataDir}}/starts", "{{.Model}}"},
		DataDir:          dir,
		BackoffInitial:   100 * time.Millisecond,
		BackoffMax:       300 * time.Millisecond,
		MaxStartFailures: 4,
	}, 1)
	var st supervisor.Status
	waitFor(t, 20*time.Second, "the model to fail", func() bool { st = r.Status(); return st.Failed })
	for _, want := range []string{"replica 0 did not become ready in 4 starts in a row", "exit status 3", "broken-0.log", "loading broken\nfatal: model file is corrupt"} {
		if !strings.Contains(st.Reason, want) {
			t.Errorf("reason %q lacks %q", st.Reason, want)
		}
	}
	if st.Restarts != 3 || st.Running != 0 || len(st.Replicas) != 0 || len(r.pool.Replicas()) != 0 {
		t.Errorf("status = %+v, pool %d replicas; want 3 restarts and nothing left", st, len(r.pool.Replicas()))
	}
	// Backoff observed: 100ms, 200ms, then the cap of 300ms between starts.
	times := startTimes(t, starts)
	if len(times) != 4 {
		t.Fatalf("%d starts, want 4", len(times))
	}
	for i, min := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		if gap := times[i+1].Sub(times[i]); gap < min {
			t.Errorf("start %d came %s after the previous, want at least %s", i+2, gap, min)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "logs", "broken-0.log.1")); err != nil {
		t.Errorf("the previous start's log was not kept: %v", err)
	}

	// The same count does not restart a failed model; another does.
	if err := r.SetReplicas(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); !st.Failed || len(startTimes(t, starts)) != 4 {
		t.Errorf("SetReplicas with the same count restarted the failed model: %+v", st)
	}
	if err := r.SetReplicas(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the model to fail again", func() bool {
		st = r.Status()
		return st.Failed && len(startTimes(t, starts)) > 4
	})
}

func startTimes(t *testing.T, path string) []time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, l := range strings.Fields(string(b)) {
		ns, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			t.Fatalf("start time %q: %v", l, err)
		}
		out = append(out, time.Unix(0, ns))
	}
	return out
}

// TestCleanExitIsACrash: a runtime that exits with status 0 before it is
// ready has not served either.
func TestCleanExitIsACrash(t *testing.T) {
	r := start(t, supervisor.Options{Command: []string{"/bin/true"}, BackoffInitial: 10 * time.Millisecond, MaxStartFailures: 2}, 1)
	var st supervisor.Status
	waitFor(t, 10*time.Second, "the model to fail", func() bool { st = r.Status(); return st.Failed })
	if !strings.Contains(st.Reason, "exited with exit status 0 before it was ready") || st.Restarts != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestMissingCommand fails the model at once, with the reason, when the
// runtime command does not exist.
func TestMissingCommand(t *testing.T) {
	for _, tc := range []struct{ name, exe, want string }{
		{"absolute path", "/nonexistent/tritonserver", "no such file or directory"},
		{"not in PATH", "infergate-no-such-runtime", "executable file not found in $PATH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := start(t, supervisor.Options{Command: []string{tc.exe, "--http-port={{.HTTPPort}}"}}, 1)
			var st supervisor.Status
			waitFor(t, 10*time.Second, "the model to fail", func() bool { st = r.Status(); return st.Failed })
			if !strings.Contains(st.Reason, "replica 0 cannot start") || !strings.Contains(st.Reason, tc.want) || !strings.Contains(st.Reason, tc.exe) {
				t.Errorf("reason %q, want it to name %s and say %q", st.Reason, tc.exe, tc.want)
			}
			if st.Restarts != 0 {
				t.Errorf("%d restarts of a command that cannot run", st.Restarts)
			}
		})
	}
}

// TestReadinessNeedsServerAndModel runs a scripted runtime: a replica is
// ready only when both the server and the model say so, and one that never
// is gets stopped at the start deadline.
func TestReadinessNeedsServerAndModel(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"ready", "server-unready", "model-unready"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := start(t, supervisor.Options{
				Command:      []string{self, "-port", "{{.HTTPPort}}"},
				Env:          []string{fakeRuntimeEnv + "=" + mode},
				StartTimeout: time.Second,
			}, 1)
			if mode == "ready" {
				r.waitReady(t, 1)
				return
			}
			joined := false
			var st supervisor.Status
			waitFor(t, 10*time.Second, "the start deadline", func() bool {
				joined = joined || len(r.pool.Replicas()) == 1
				if readyInPool(r.pool) != 0 || r.Status().Ready != 0 {
					t.Fatal("a replica was marked ready")
				}
				st = r.Status()
				return len(st.Replicas) == 1 && strings.Contains(st.Replicas[0].LastExit, "not ready within 1s")
			})
			if !joined {
				t.Error("the replica never joined the pool, though it listened")
			}
			if !strings.Contains(st.Replicas[0].LastExit, "fake runtime "+mode) {
				t.Errorf("last exit %q lacks the log's lines", st.Replicas[0].LastExit)
			}
			if got, want := st.Replicas[0].LastExitCause, "was not ready within 1s"; got != want {
				t.Errorf("last exit cause %q, want %q", got, want)
			}
		})
	}
}

// TestStopKillsProcessGroup runs a user command that leaves a child of its
// own behind a shell that execs the runtime, over gRPC: when Run ends, the
// runtime and its child are gone.
func TestStopKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	r := start(t, supervisor.Options{
		Command: []string{"/bin/sh", "-c",
			`sleep 300 & echo $! > "$0"; exec "$1" modelserver -host "$2" -http-port "$3" -grpc-port "$4" -model "$5"`,
			"{{.DataDir}}/grandchild.pid", binPath, "{{.Host}}", "{{.HTTPPort}}", "{{.GRPCPort}}", "{{.Model}}={{.ModelPath}}"},
		ModelPath: irisPath,
		Protocol:  runtimes.GRPC,
		DataDir:   dir,
	}, 1)
	st := r.waitReady(t, 1)
	if _, ok := r.pool.Replicas()[0].Client.(*runtimes.GRPCClient); !ok {
		t.Errorf("replica client is %T, want gRPC", r.pool.Replicas()[0].Client)
	}
	if _, err := infer(context.Background(), r.pool); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "grandchild.pid"))
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(grandchild) {
		t.Fatalf("grandchild pid %q: %v", b, err)
	}
	r.stop(t)
	waitDead(t, st.Replicas[0].Pid, "runtime")
	waitDead(t, grandchild, "the runtime's child")
}

func TestSetReplicasBounds(t *testing.T) {
	a, err := supervisor.New(supervisor.Options{Model: "a", ModelPath: "/m", Executable: "/bin/false", Pool: newPool(t, "a"), Logger: quiet, MaxReplicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetReplicas(context.Background(), 2); err != nil || a.Status().Desired != 2 {
		t.Fatalf("SetReplicas(2) = %v, desired %d", err, a.Status().Desired)
	}
	if err := a.SetReplicas(context.Background(), 3); err == nil || !strings.Contains(err.Error(), "more than maxReplicas (2)") {
		t.Errorf("SetReplicas over the maximum = %v", err)
	}
	if err := a.SetReplicas(context.Background(), -1); err == nil {
		t.Error("SetReplicas(-1) succeeded")
	}
}

func TestNewErrors(t *testing.T) {
	pool := newPool(t, "m")
	for _, tc := range []struct {
		name string
		opts supervisor.Options
		want string
	}{
		{"no model", supervisor.Options{Pool: pool}, "Options.Model is empty"},
		{"no pool", supervisor.Options{Model: "m"}, "Options.Pool is nil"},
		{"no model path", supervisor.Options{Model: "m", Pool: pool}, "Options.ModelPath is empty"},
		{"bad template", supervisor.Options{Model: "m", Pool: pool, Command: []string{"srv", "{{.Port}}"}}, `model "m": supervisor: command word 1 "{{.Port}}"`},
		{"bad protocol", supervisor.Options{Model: "m", Pool: pool, ModelPath: "/m", Protocol: runtimes.KServeV1}, "protocol kserve-v1 is not rest or grpc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := supervisor.New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestChangedSignalsReadiness: a reader that waits only on Changed sees
// the replica become ready, with no polling.
func TestChangedSignalsReadiness(t *testing.T) {
	r := start(t, supervisor.Options{}, 1)
	deadline := time.After(30 * time.Second)
	for r.Status().Ready != 1 {
		select {
		case <-r.Changed():
		case <-deadline:
			t.Fatalf("no change signal brought the replica to ready: %+v", r.Status())
		}
	}
	r.stop(t)
}

// TestChangedSignalsScaleDown: a reader that waits only on Changed sees a
// ready replica that is scaled down stop counting as ready, and then stop
// running. (A gateway that missed it would keep admitting requests for a
// model at zero replicas.)
func TestChangedSignalsScaleDown(t *testing.T) {
	r := start(t, supervisor.Options{}, 1)
	r.waitReady(t, 1)
	if err := r.SetReplicas(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for st := r.Status(); st.Ready != 0 || st.Running != 0; st = r.Status() {
		select {
		case <-r.Changed():
		case <-deadline:
			t.Fatalf("no change signal brought the model to zero: %+v", r.Status())
		}
	}
}
