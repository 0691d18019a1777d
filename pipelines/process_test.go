package pipelines

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childPid waits for the file a step writes its background child's pid
// to, in the step's first attempt directory, and returns the pid.
func childPid(t *testing.T, te *testEnv, id RunID, stepName string) int {
	t.Helper()
	path := filepath.Join(te.e.attemptDir(id, stepName, -1, 1), "child.pid")
	var pid int
	waitFor(t, "the step's child pid in "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// sleeperYAML's slow step starts a child that ignores SIGTERM (so only
// the group's SIGKILL ends it) and waits for it.
const sleeperYAML = `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: sleeper}
spec:
  steps:
    - name: slow
      command: [sh, -c, 'trap "" TERM; sleep 300 & echo $! > child.pid; wait']
      timeout: 7s
    - name: next
      dependsOn: [slow]
      command: ["true"]
  finally:
    - name: report
      command: [sh, -c, 'echo "{{.Status}} $INFERGATE_RUN_STATUS" > outputs/params/status']
      outputs:
        params: {status: {type: string}}
`

func TestTimeoutKillsProcessGroup(t *testing.T) {
	clk := newFakeClock()
	te := newTestEnv(t, func(o *Options) { o.Clock = clk; o.KillGrace = 2 * time.Second })
	id, err := te.e.Submit(t.Context(), mustParse(t, sleeperYAML), nil, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid := childPid(t, te, id, "slow")
	if gone(pid) {
		t.Fatalf("child %d is not running", pid)
	}
	if d := nextTimer(t, clk); d != 7*time.Second {
		t.Fatalf("timer %s, want the 7s timeout", d)
	}
	clk.fire(7 * time.Second)
	// The group ignores SIGTERM: the engine escalates after the grace.
	if d := nextTimer(t, clk); d != 2*time.Second {
		t.Fatalf("timer %s, want the 2s kill grace", d)
	}
	clk.fire(2 * time.Second)
	run := te.wait(id)
	wantState(t, run, RunFailed)
	slow := step(t, run, "slow")
	if want := "timed out after 7s (the process group was killed)"; slow.State != StepFailed || slow.Reason != want {
		t.Errorf("slow = %s %q, want failed %q", slow.State, slow.Reason, want)
	}
	if !eventuallyGone(pid) {
		t.Errorf("the step's child %d survived the timeout", pid)
	}
	if got := step(t, run, "report").Outputs.Params["status"]; got != "failed failed" {
		t.Errorf("finally step saw status %q, want failed", got)
	}
	log, err := os.ReadFile(filepath.Join(slow.Attempts[0].Dir, "log"))
	if err != nil || !strings.Contains(string(log), "infergate: timed out after 7s") {
		t.Errorf("log %q (%v) does not say the step timed out", log, err)
	}
}

func TestCancelKillsAndRunsFinally(t *testing.T) {
	te := newTestEnv(t, func(o *Options) { o.KillGrace = 100 * time.Millisecond })
	id, err := te.e.Submit(t.Context(), mustParse(t, sleeperYAML), nil, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid := childPid(t, te, id, "slow")
	if err := te.e.Cancel(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	run := te.wait(id)
	wantState(t, run, RunCancelled)
	if run.Reason != "cancelled" || run.Cancelling {
		t.Errorf("run reason %q cancelling %v", run.Reason, run.Cancelling)
	}
	for name, want := range map[string]StepState{"slow": StepCancelled, "next": StepCancelled, "report": StepSucceeded} {
		if s := step(t, run, name); s.State != want {
			t.Errorf("step %s %s (%s), want %s", name, s.State, s.Reason, want)
		}
	}
	if a := step(t, run, "slow").Attempts; len(a) != 1 || a[0].State != StepCancelled {
		t.Errorf("slow attempts %+v, want one cancelled", a)
	}
	if got := step(t, run, "report").Outputs.Params["status"]; got != "cancelled cancelled" {
		t.Errorf("finally step saw status %q, want cancelled", got)
	}
	if !eventuallyGone(pid) {
		t.Errorf("the step's child %d survived the cancel", pid)
	}
	if err := te.e.Cancel(t.Context(), id); !errors.Is(err, ErrConflict) {
		t.Errorf("cancel of an ended run: %v, want ErrConflict", err)
	}
	if err := te.e.Cancel(t.Context(), "nope-12345678"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel of an unknown run: %v, want ErrNotFound", err)
	}
}

// TestCloseThenRecover: Close kills the running step and records
// nothing; a new engine's Recover fails the attempt as orphaned and
// retries it.
func TestCloseThenRecover(t *testing.T) {
	te := newTestEnv(t, func(o *Options) { o.KillGrace = 100 * time.Millisecond })
	p := mustParse(t, `
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: resume}
spec:
  steps:
    - name: first
      command: [sh, -c, 'echo 1 > outputs/params/v']
      outputs: {params: {v: {type: int}}}
    - name: slow
      command: [sh, -c, 'if [ "$INFERGATE_ATTEMPT" = 1 ]; then sleep 300 & echo $! > child.pid; wait; fi; echo $(( {{.Inputs.v}} + 1 )) > outputs/params/v']
      inputs: {v: {from: steps.first.outputs.v}}
      outputs: {params: {v: {type: int}}}
      retry: {limit: 1, backoff: 10ms}
`)
	id, err := te.e.Submit(t.Context(), p, nil, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid := childPid(t, te, id, "slow")
	if err := te.e.Close(); err != nil {
		t.Fatal(err)
	}
	if !eventuallyGone(pid) {
		t.Errorf("Close left the step's child %d running", pid)
	}
	if _, err := te.e.Submit(t.Context(), p, nil, SubmitOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("submit after close: %v, want ErrClosed", err)
	}
	run, err := te.e.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if run.State != RunRunning || step(t, run, "slow").Attempts[0].State != StepRunning {
		t.Fatalf("after Close: %s", describeRun(run))
	}
	e2, err := Open(t.Context(), Options{Registry: te.reg, DataDir: te.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if n, err := e2.Recover(t.Context()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1 run", n, err)
	}
	te.e = e2
	run = te.wait(id)
	wantState(t, run, RunSucceeded)
	slow := step(t, run, "slow")
	if len(slow.Attempts) != 2 || slow.Attempts[0].State != StepFailed || slow.Attempts[0].Reason != orphanReason || slow.Attempts[1].State != StepSucceeded {
		t.Errorf("slow attempts %+v, want an orphaned failure then a success", slow.Attempts)
	}
	if got := slow.Outputs.Params["v"]; got != int64(2) {
		t.Errorf("slow v = %v, want 2 (first's output reused)", got)
	}
	if a := step(t, run, "first").Attempts; len(a) != 1 {
		t.Errorf("first ran %d times, want once", len(a))
	}
}
