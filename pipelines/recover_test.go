package pipelines

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/infergate/infergate/registry"
)

// childEnv makes the test binary the engine process of
// TestRecoverAfterSIGKILL: it opens the store in PIPELINES_TEST_DIR,
// submits the pipeline file PIPELINES_TEST_PIPELINE, prints the run id and
// waits to be killed.
const childEnv = "PIPELINES_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

func childMain() int {
	ctx := context.Background()
	dir := os.Getenv("PIPELINES_TEST_DIR")
	reg, err := registry.Open(ctx, registry.Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e, err := Open(ctx, Options{Registry: reg, DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p, err := ParseFile(os.Getenv("PIPELINES_TEST_PIPELINE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	id, err := e.Submit(ctx, p, nil, SubmitOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(id)
	select {} // until SIGKILL
}

// TestRecoverAfterSIGKILL runs the engine in a child process, SIGKILLs it
// while a step runs, and recovers the run in this process: the attempt
// is failed as orphaned, what is left of its process group is killed, and
// it is retried to success; the step before it is not run again.
func TestRecoverAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	pipeline := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pipeline, []byte(`
apiVersion: infergate.io/v1alpha1
kind: Pipeline
metadata: {name: crash}
spec:
  steps:
    - name: first
      command: [sh, -c, 'echo 40 > outputs/params/v']
      outputs: {params: {v: {type: int}}}
    - name: slow
      command: [sh, -c, 'if [ "$INFERGATE_ATTEMPT" = 1 ]; then sleep 300 & echo $! > child.pid; wait; fi; echo $(( {{.Inputs.v}} + 2 )) > outputs/params/v']
      inputs: {v: {from: steps.first.outputs.v}}
      outputs: {params: {v: {type: int}}}
      retry: {limit: 1, backoff: 10ms}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", "PIPELINES_TEST_DIR="+dir, "PIPELINES_TEST_PIPELINE="+pipeline)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Process.Kill()
		child.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the run id from the child: %v", err)
	}
	id := RunID(strings.TrimSpace(line))

	reg, err := registry.Open(t.Context(), registry.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	e, err := Open(t.Context(), Options{Registry: reg, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	te := &testEnv{t: t, dir: dir, reg: reg, e: e}
	grandchild := childPid(t, te, id, "slow")

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	run, err := e.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if run.State != RunRunning || step(t, run, "slow").Attempts[0].State != StepRunning {
		t.Fatalf("after SIGKILL the store holds:\n%s", describeRun(run))
	}
	if gone(grandchild) {
		t.Fatalf("the step's child %d died with the engine: nothing left to recover", grandchild)
	}

	if n, err := e.Recover(t.Context()); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1 run", n, err)
	}
	run = te.wait(id)
	wantState(t, run, RunSucceeded)
	slow := step(t, run, "slow")
	if len(slow.Attempts) != 2 {
		t.Fatalf("slow attempts %+v, want 2", slow.Attempts)
	}
	if a := slow.Attempts[0]; a.State != StepFailed || a.Reason != "the control plane stopped during the attempt" || a.EndTime.IsZero() {
		t.Errorf("attempt 1 = %+v, want failed as orphaned", a)
	}
	if a := slow.Attempts[1]; a.State != StepSucceeded {
		t.Errorf("attempt 2 = %+v, want succeeded", a)
	}
	if got := slow.Outputs.Params["v"]; got != int64(42) {
		t.Errorf("slow v = %v, want 42", got)
	}
	if n := len(step(t, run, "first").Attempts); n != 1 {
		t.Errorf("first ran %d times, want once", n)
	}
	if !eventuallyGone(grandchild) {
		t.Errorf("the orphaned attempt's process %d is still running after Recover", grandchild)
	}
	evs, err := reg.QueryEvents(t.Context(), registry.EventQuery{Kind: "step.retrying"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "the control plane stopped during the attempt") {
		t.Errorf("retrying events %+v", evs)
	}
}
