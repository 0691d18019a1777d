//go:build long

package long

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// generationModel is iris declared for the reload case: generation gen
// (an annotation, so each generation is a new revision) of the iris
// sample (even) or iris-v2 (odd), with canaryTrafficPercent pct.
func generationModel(t *testing.T, gen, pct int) string {
	sample := "iris"
	if gen%2 == 1 {
		sample = "iris-v2"
	}
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  annotations: {long.infergate.io/generation: "%d"}
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 1
    timeout: 10
    canaryTrafficPercent: %d
    model:
      modelFormat: {name: onnx}
      storageUri: %q
`, gen, pct, filepath.Join(samplesDir(t), sample))
}

// applyBody is POST /api/v1/apply's body for one YAML file.
func applyBody(yaml string) map[string]any {
	return map[string]any{"files": []map[string]string{{"source": "test-long", "yaml": yaml}}}
}

// testReloadWeights changes iris's traffic every 300ms under load, ten
// different ways in turn: rewriting the -config file (picked up by the
// watcher, or at once on SIGHUP) with another canaryTrafficPercent or a
// new revision, the admin API's promote, rollback and apply, and the
// `infergate rollout` CLI. New revisions start while older ones retire
// (ten are kept). The README's promise: every route change swaps an
// immutable table, requests in flight finish on the one they started
// with, none is dropped; and a new revision takes traffic only once it
// is ready. So every request must get 200.
func testReloadWeights(t *testing.T) {
	r := newReport(t)
	s := startServer(t, generationModel(t, 0, 100))
	if !s.waitReady(t, "iris", 1, time.Minute) {
		return
	}
	l := startLoad(t, s, loadOptions{rate: faultRate, mix: irisMix("iris")})
	step(r, s, l, "steady", 2*time.Second)
	l.setPhase("changes every 300ms")
	api := map[string]int{}
	cli := map[string]int{}
	gen, actions, hups := 0, 0, 0
	write := func(pct int, hup bool) {
		s.writeConfig(generationModel(t, gen, pct))
		if hup {
			s.signal(syscall.SIGHUP)
			hups++
		}
	}
	post := func(what, path string, body any) {
		code, out := s.adminPost(path, body)
		api[fmt.Sprintf("%s %d", what, code)]++
		if code >= 500 || code == 0 {
			r.errorf("admin API %s answered %d: %s", what, code, strings.TrimSpace(out))
		}
	}
	rollout := func(action string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binPath, "rollout", action, "iris", "-admin", s.admin).CombinedOutput()
		key := "rollout " + action + ": ok"
		if err != nil {
			key = "rollout " + action + ": " + foldDigits(firstLine(string(out)), 80)
		}
		cli[key]++
	}
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !s.hasExited() {
		// Two new revisions every ten changes, each then moved by every
		// kind of change in turn, so that each acts on a live canary.
		switch actions % 10 {
		case 0:
			gen++
			write(30, true)
		case 1:
			write(10, false)
		case 2:
			post("rollback", "/api/v1/rollouts/iris/rollback", map[string]any{})
		case 3:
			write(50, true)
		case 4:
			post("promote", "/api/v1/rollouts/iris/promote", map[string]any{})
		case 5:
			gen++
			write(70, true)
		case 6:
			rollout("rollback")
		case 7:
			post("apply", "/api/v1/apply", applyBody(generationModel(t, gen, 90)))
		case 8:
			write(0, true)
		case 9:
			rollout("promote")
		}
		actions++
		<-tick.C
	}
	step(r, s, l, "after the changes", 5*time.Second)
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.alive(s)
	r.phases(tl)
	r.notef("%d changes in 30s: config rewrites with %d SIGHUPs, %d revisions declared; admin API answers %s; CLI %s", actions, hups, gen+1, formatInts(api), formatInts(cli))
	r.notef("answers by revision: %s", formatMap(c.revisions))
	if n := strings.Count(s.log(), "config not applied"); n > 0 {
		r.notef("the serve log has %d \"config not applied\" lines", n)
	}
	r.allOK("every request while traffic changed every 300ms", c)
}

// testBadReload declares, under load, a new iris whose storageUri does
// not exist: in the -config file (promoted at once, no canary), then
// through the admin API (canary 50%), then restores the good file. The
// README's promise: a bad declaration leaves the running routes as they
// were, and a new revision takes traffic only once ready (this one never
// is). So every request must get 200.
func testBadReload(t *testing.T) {
	r := newReport(t)
	good := irisModel(t, "iris", "iris", 1, 1, 10, "")
	missing := filepath.Join(t.TempDir(), "does-not-exist")
	s := startServer(t, good)
	if !s.waitReady(t, "iris", 1, time.Minute) {
		return
	}
	l := startLoad(t, s, loadOptions{rate: faultRate, mix: irisMix("iris")})
	ok := step(r, s, l, "before", 3*time.Second)
	s.writeConfig(irisModel(t, "iris", missing, 1, 1, 10, ""))
	s.signal(syscall.SIGHUP)
	ok = ok && step(r, s, l, "missing storageUri in the config file", 10*time.Second)
	code, out := s.adminPost("/api/v1/apply", applyBody(irisModel(t, "iris", missing+"-2", 1, 1, 10, "    canaryTrafficPercent: 50\n")))
	r.notef("POST /api/v1/apply with a missing storageUri answered %d: %s", code, foldDigits(strings.TrimSpace(out), 300))
	if code >= 500 || code == 0 {
		r.errorf("the admin API answered a bad apply with %d", code)
	}
	ok = ok && step(r, s, l, "missing storageUri applied through the API", 8*time.Second)
	s.writeConfig(good)
	s.signal(syscall.SIGHUP)
	_ = ok && step(r, s, l, "good config restored", 5*time.Second)
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.alive(s)
	r.phases(tl)
	r.notef("answers by revision: %s; the serve log has %d \"config not applied\" lines", formatMap(c.revisions), strings.Count(s.log(), "config not applied"))
	if rows, err := s.models("iris"); err == nil {
		for _, row := range rows {
			r.notef("revision %s: traffic %d%%, ready %d, failed %v %s", row.Revision, row.Traffic, row.Ready, row.Failed, foldDigits(firstLine(row.Reason), 120))
		}
	}
	r.allOK("every request across the bad reloads", c)
}

// simModel writes a simulated model (50ms per request, 64 at once,
// iris-shaped) to a temporary directory and returns its declaration.
func simModel(t *testing.T, name string, min, max, timeout int) string {
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"name": %q, "max_batch_size": 64, "simulate": {"latency_ms": 50, "slots": 64,
  "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
  "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}}`, name)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return irisModel(t, name, dir, min, max, timeout, "")
}

// testSigtermHealthy sends SIGTERM to infergate serve while a model that
// takes 50ms per request is under load. The README's promise: the
// gateway stops accepting, lets in-flight requests finish (here
// -drain-timeout 10s, far more than they need), stops its runtimes and
// exits 0. So requests sent before the signal get 200, later ones get a
// clean refusal (connection refused, or a 503 / UNAVAILABLE answer),
// none is lost, and the process is gone within the drain timeout.
func testSigtermHealthy(t *testing.T) {
	r := newReport(t)
	const drain = 10 * time.Second
	s := startServer(t, simModel(t, "sim", 2, 2, 10), "-drain-timeout", drain.String())
	if !s.waitReady(t, "sim", 2, time.Minute) {
		return
	}
	l := startLoad(t, s, loadOptions{rate: faultRate, mix: irisMix("sim")})
	step(r, s, l, "before SIGTERM", 4*time.Second)
	inFlight := l.inFlight.Load()
	l.setPhase("after SIGTERM")
	t0 := time.Now()
	s.signal(syscall.SIGTERM)
	exited := s.waitExit(drain + 50*time.Second)
	l.setPhase("after exit")
	time.Sleep(time.Second)
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.phases(tl)
	r.notef("%d requests in flight at SIGTERM", inFlight)
	checkExit(r, s, exited, t0, drain, drain+3*time.Second)
	before := tl.phase("before SIGTERM")
	r.onlyStatuses("requests sent before SIGTERM", before, "rest 200", "grpc OK")
	r.onlyStatuses("requests sent after SIGTERM", tl.sum(func(p, _ string) bool { return p != "before SIGTERM" }),
		"rest 200", "grpc OK", "rest 503", "grpc Unavailable")
}

// checkExit asserts that infergate serve exited 0 within limit of t0.
func checkExit(r *report, s *server, exited bool, t0 time.Time, drain, limit time.Duration) {
	r.t.Helper()
	if !exited {
		r.errorf("infergate serve still runs %s after SIGTERM (drain timeout %s)", time.Since(t0).Round(time.Millisecond), drain)
		return
	}
	took := s.exitedAt.Sub(t0)
	r.notef("infergate serve exited %s after SIGTERM (%v), drain timeout %s", took.Round(time.Millisecond), s.waitErr, drain)
	if s.waitErr != nil {
		r.errorf("infergate serve exited with %v after SIGTERM, want exit 0", s.waitErr)
	}
	if took > limit {
		r.errorf("infergate serve took %s to exit after SIGTERM, more than %s (drain timeout %s)", took.Round(time.Millisecond), limit, drain)
	}
}

// testSigtermHung sends SIGTERM while requests hang on a replica stopped
// with SIGSTOP (their 30s deadline is far past the 5s drain timeout). The
// README's promise: in-flight requests may take the drain timeout; then
// the runtimes stop (SIGTERM, SIGKILL 10s later: the stopped replica
// needs the SIGKILL) and the process exits 0. Requests that could not
// finish must get a clean error before the gateway goes, not a broken
// connection: none lost.
func testSigtermHung(t *testing.T) {
	r := newReport(t)
	rng := newRand(t)
	const drain = 5 * time.Second
	s := startServer(t, irisModel(t, "iris", "iris", 2, 2, 30, ""), "-drain-timeout", drain.String())
	if !s.waitReady(t, "iris", 2, time.Minute) {
		return
	}
	l := startLoad(t, s, loadOptions{rate: faultRate / 2, mix: irisMix("iris"), timeout: 40 * time.Second})
	ok := step(r, s, l, "before", 3*time.Second)
	reps := s.replicas("iris")
	if len(reps) == 0 {
		t.Fatal("no iris replica")
	}
	a := reps[rng.IntN(len(reps))]
	l.setPhase("replica hung")
	a.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = syscall.Kill(a.pid, syscall.SIGCONT) })
	_ = ok && step(r, s, l, "replica hung", 2*time.Second)
	inFlight := l.inFlight.Load()
	l.setPhase("after SIGTERM")
	t0 := time.Now()
	s.signal(syscall.SIGTERM)
	exited := s.waitExit(drain + 55*time.Second)
	l.setPhase("after exit")
	time.Sleep(time.Second)
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.phases(tl)
	r.notef("%d requests in flight at SIGTERM, some stuck on the stopped replica", inFlight)
	checkExit(r, s, exited, t0, drain, drain+10*time.Second+3*time.Second)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func formatInts(m map[string]int) string {
	m64 := make(map[string]int64, len(m))
	for k, v := range m {
		m64[k] = int64(v)
	}
	return formatMap(m64)
}
