package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testTimeout bounds every sweep a test runs, generously: a sweep that
// hangs fails its test instead of the whole run.
const testTimeout = 2 * time.Minute

// logWriter sends the sweep's log lines to the test's log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// script is a trial command: a shell script, a template over the trial's
// parameters.
func script(s string) []string { return []string{"sh", "-c", s} }

// writeMetrics is shell that writes the objective acc = {{.v}}.
const writeMetrics = `printf '{"acc": %s, "loss": 1}\n' {{.v}} > "{{.TrialDir}}/metrics.json"`

// newSweep fills in what every test's sweep needs and validates it.
func newSweep(t *testing.T, opts Options) *Sweep {
	t.Helper()
	dir := t.TempDir()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(dir, "trials")
	}
	if opts.Summary == "" {
		opts.Summary = filepath.Join(dir, "summary.json")
	}
	if opts.Objective == "" {
		opts.Objective = "acc"
	}
	if opts.Trials == 0 {
		opts.Trials = 100
	}
	if opts.Algorithm == "" {
		opts.Algorithm = Grid
	}
	opts.Logger = slog.New(slog.NewTextHandler(logWriter{t}, nil))
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func runSweep(t *testing.T, s *Sweep) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := s.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the sweep did not end within %s", testTimeout)
	}
	return res, err
}

func statuses(res Result) []Status {
	var out []Status
	for _, tr := range res.Trials {
		out = append(out, tr.Status)
	}
	return out
}

// TestSweepBest runs three trials, two at once, and checks the outputs:
// the best parameters as files, the best trial's directory, the summary.
func TestSweepBest(t *testing.T) {
	for _, tc := range []struct {
		goal Goal
		best string
	}{{Maximize, "0.875"}, {Minimize, "0.25"}} {
		t.Run(string(tc.goal), func(t *testing.T) {
			out := t.TempDir()
			s := newSweep(t, Options{
				Space:     mustParams(t, "v=categorical:0.5|0.875|0.25", "n=int:7..7"),
				Goal:      tc.goal,
				Parallel:  2,
				Command:   script(writeMetrics + `; echo model {{.v}} > "{{.TrialDir}}/model.onnx"`),
				ParamsDir: filepath.Join(out, "params"),
				BestDir:   filepath.Join(out, "best"),
			})
			res, err := runSweep(t, s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]Status{Succeeded, Succeeded, Succeeded}, statuses(res)); diff != "" {
				t.Fatalf("statuses (-want +got):\n%s", diff)
			}
			if res.Best == nil || formatValue(res.Best.Params["v"]) != tc.best {
				t.Fatalf("best = %+v, want v=%s", res.Best, tc.best)
			}
			for name, want := range map[string]string{"params/v": tc.best + "\n", "params/n": "7\n", "best/model.onnx": "model " + tc.best + "\n"} {
				b, err := os.ReadFile(filepath.Join(out, name))
				if err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", name, b, err, want)
				}
			}
			for _, f := range []string{"metrics.json", "params.json", "log"} {
				if _, err := os.Stat(filepath.Join(out, "best", f)); err != nil {
					t.Errorf("the best trial's %s was not copied: %v", f, err)
				}
			}
			var sum Result
			b, err := os.ReadFile(s.opts.Summary)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &sum); err != nil {
				t.Fatal(err)
			}
			if sum.Succeeded != 3 || sum.Best == nil || sum.Best.Number != res.Best.Number || len(sum.Trials) != 3 ||
				sum.Objective != "acc" || sum.Goal != tc.goal || sum.Trials[0].DurationSeconds <= 0 {
				t.Errorf("summary %s", b)
			}
		})
	}
}

// TestSweepFailedTrial: a trial that fails is recorded with its exit and
// the first lines of its output, and the sweep still succeeds.
func TestSweepFailedTrial(t *testing.T) {
	s := newSweep(t, Options{
		Space:   mustParams(t, "v=categorical:0.5|fail|nometrics|noobjective|0.75"),
		Command: script(`case {{.v}} in fail) echo first line; echo second line >&2; exit 3;; nometrics) exit 0;; noobjective) echo '{"loss": 1}' > "{{.TrialDir}}/metrics.json"; exit 0;; esac; ` + writeMetrics),
	})
	res, err := runSweep(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Status{Succeeded, Failed, Failed, Failed, Succeeded}, statuses(res)); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	for i, want := range map[int]string{
		1: "command: exit status 3: first line | second line",
		2: "exited 0, but wrote no metrics file",
		3: `has no number "acc" (its numbers: loss)`,
	} {
		if !strings.Contains(res.Trials[i].Reason, want) {
			t.Errorf("trial %d: reason %q, want %q", i+1, res.Trials[i].Reason, want)
		}
	}
	if res.Best.Number != 5 || res.Failed != 3 || res.Succeeded != 2 {
		t.Errorf("best trial %d, %d failed, %d succeeded; want 5, 3, 2", res.Best.Number, res.Failed, res.Succeeded)
	}
}

// TestSweepAllFail: a sweep whose every trial fails says why each did,
// writes its summary and no best outputs.
func TestSweepAllFail(t *testing.T) {
	out := t.TempDir()
	s := newSweep(t, Options{
		Space:     mustParams(t, "v=int:1..2"),
		Command:   script(`echo "cannot train with v={{.v}}" >&2; exit 1`),
		ParamsDir: filepath.Join(out, "params"),
		BestDir:   filepath.Join(out, "best"),
	})
	res, err := runSweep(t, s)
	if !errors.Is(err, ErrNoTrialSucceeded) {
		t.Fatalf("err = %v, want ErrNoTrialSucceeded", err)
	}
	for _, want := range []string{"all 2 trials failed", "trial 1: command: exit status 1: cannot train with v=1", "trial 2: command: exit status 1: cannot train with v=2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if res.Best != nil || res.Failed != 2 {
		t.Errorf("best %+v, %d failed", res.Best, res.Failed)
	}
	if _, err := os.Stat(s.opts.Summary); err != nil {
		t.Errorf("no summary: %v", err)
	}
	for _, d := range []string{"params", "best"} {
		if _, err := os.Stat(filepath.Join(out, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written for a sweep with no best trial: %v", d, err)
		}
	}
}

// TestSweepMedianStop runs five trials one at a time: three complete
// (running averages up to epoch 2: 0.75, 1, 0.875; median 0.875), the
// fourth reports 0.25 at epochs 1 and 2 and would then run for ten
// minutes, ignoring SIGTERM: the rule stops it, and SIGKILL ends it after
// the grace. The fifth reports better than the median and completes.
func TestSweepMedianStop(t *testing.T) {
	s := newSweep(t, Options{
		Space: mustParams(t, "v=categorical:0.75|1|0.875|0.25|0.9375"),
		// The slow trial ignores SIGTERM (its child too) before it reports
		// any progress, so that the rule cannot stop it any earlier.
		Command: script(`if [ {{.v}} = 0.25 ]; then trap '' TERM; sleep 600 & echo $! > "{{.TrialDir}}/child"; echo $$ > "{{.TrialDir}}/pid"; fi
for e in 1 2; do printf '{"epoch": %d, "loss": 0.5, "acc": %s}\n' $e {{.v}} >> "{{.TrialDir}}/progress.jsonl"; done
if [ {{.v}} = 0.25 ]; then wait; fi
` + writeMetrics),
		MedianStopAfter: 2,
		KillGrace:       100 * time.Millisecond,
		PollInterval:    20 * time.Millisecond,
	})
	res, err := runSweep(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Status{Succeeded, Succeeded, Succeeded, EarlyStopped, Succeeded}, statuses(res)); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	stopped := res.Trials[3]
	for _, want := range []string{"median stopping rule at epoch 2", "best acc 0.25 is worse than 0.875", "3 completed trials"} {
		if !strings.Contains(stopped.Reason, want) {
			t.Errorf("reason %q does not say %q", stopped.Reason, want)
		}
	}
	if stopped.Epochs != 2 || stopped.Objective != nil {
		t.Errorf("early-stopped trial: epochs %d, objective %v; want 2, none", stopped.Epochs, stopped.Objective)
	}
	log, _ := os.ReadFile(filepath.Join(stopped.Dir, "log"))
	if !strings.Contains(string(log), "did not exit within 100ms of SIGTERM") {
		t.Errorf("the trial ignoring SIGTERM was not killed after the grace; its log:\n%s", log)
	}
	for _, f := range []string{"pid", "child"} {
		waitGone(t, readPID(t, filepath.Join(stopped.Dir, f)))
	}
	if res.EarlyStopped != 1 || res.Best.Number != 2 {
		t.Errorf("%d early-stopped, best trial %d; want 1, 2", res.EarlyStopped, res.Best.Number)
	}
}

// TestSweepCancel: cancelling the sweep stops its running trials (their
// whole process groups) and starts no more.
func TestSweepCancel(t *testing.T) {
	s := newSweep(t, Options{
		Space:     mustParams(t, "v=int:1..3"),
		Parallel:  2,
		Command:   script(`sleep 600 & echo $! > "{{.TrialDir}}/child"; wait`),
		KillGrace: 5 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ran struct {
		res Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := s.Run(ctx)
		done <- ran{res, err}
	}()
	var children []int
	for _, n := range []string{"trial-1", "trial-2"} {
		children = append(children, readPID(t, filepath.Join(s.opts.Dir, n, "child")))
	}
	cancel()
	var r ran
	select {
	case r = <-done:
	case <-time.After(testTimeout):
		t.Fatal("the sweep did not stop when cancelled")
	}
	if !errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "stopped after 0 of 3 trials ended") {
		t.Errorf("err = %v, want context.Canceled", r.err)
	}
	if diff := cmp.Diff([]Status{Cancelled, Cancelled, Cancelled}, statuses(r.res)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.res.Trials[2].Reason, "before the trial started") {
		t.Errorf("trial 3: %q", r.res.Trials[2].Reason)
	}
	if _, err := os.Stat(r.res.Trials[2].Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trial 3 started after the cancel: %v", err)
	}
	for _, pid := range children {
		waitGone(t, pid)
	}
}

// TestSweepTimeoutAndPrepare: prepare commands run first, in the trial's
// environment; a failing one fails its trial and a trial past its
// timeout is killed and failed.
func TestSweepTimeoutAndPrepare(t *testing.T) {
	s := newSweep(t, Options{
		Space: mustParams(t, "v=categorical:0.5|badprep|slow"),
		Prepare: [][]string{
			{"sh", "-c", `test {{.v}} != badprep || { echo no model for you >&2; exit 2; }`},
			{"sh", "-c", `echo "$INFERGATE_SWEEP_TRIAL $INFERGATE_SWEEP_TRIAL_DIR" > "{{.TrialDir}}/prepared"`},
		},
		Command:      script(`test {{.v}} != slow || exec sleep 600; ` + writeMetrics),
		TrialTimeout: 2 * time.Second,
		KillGrace:    5 * time.Second,
	})
	res, err := runSweep(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Status{Succeeded, Failed, Failed}, statuses(res)); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	if want := "prepare command 1 (sh): exit status 2: no model for you"; !strings.Contains(res.Trials[1].Reason, want) {
		t.Errorf("trial 2: %q, want %q", res.Trials[1].Reason, want)
	}
	if want := "command: timed out after 2s and was killed"; !strings.Contains(res.Trials[2].Reason, want) {
		t.Errorf("trial 3: %q, want %q", res.Trials[2].Reason, want)
	}
	b, err := os.ReadFile(filepath.Join(res.Trials[0].Dir, "prepared"))
	if want := "1 " + res.Trials[0].Dir + "\n"; err != nil || string(b) != want {
		t.Errorf("prepared = %q, %v; want %q", b, err, want)
	}
}

// TestSweepDelims: a sweep inside a pipeline uses other delimiters, so
// that the pipeline's {{ }} pass through.
func TestSweepDelims(t *testing.T) {
	s := newSweep(t, Options{
		Space:     mustParams(t, "v=categorical:0.5"),
		LeftDelim: "[[", RightDelim: "]]",
		Command: script(`printf '{"acc": [[.v]]}' > "[[.TrialDir]]/metrics.json"; echo '{{.Params.x}}' > "[[.TrialDir]]/braces"`),
	})
	res, err := runSweep(t, s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(res.Trials[0].Dir, "braces"))
	if string(b) != "{{.Params.x}}\n" {
		t.Errorf("braces = %q", b)
	}
}

func TestNewErrors(t *testing.T) {
	space := mustParams(t, "lr=double:0..1")
	used := t.TempDir()
	if err := os.Mkdir(filepath.Join(used, "trial-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	ok := Options{Space: space, Trials: 2, Objective: "acc", Command: []string{"true"}, Dir: t.TempDir()}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"unknown template field", func(o *Options) { o.Command = []string{"echo", "{{.lrr}}"} }, `map has no entry for key "lrr" (the parameters are .lr`},
		{"bad template", func(o *Options) { o.Command = []string{"echo", "{{.lr"} }, `command, word 2 "{{.lr"`},
		{"bad prepare template", func(o *Options) { o.Prepare = [][]string{{"echo", "{{if}}"}} }, "prepare command 1, word 2"},
		{"empty prepare", func(o *Options) { o.Prepare = [][]string{nil} }, "prepare command 1 is empty"},
		{"program not found", func(o *Options) { o.Command = []string{"no-such-program-here"} }, `"no-such-program-here": executable file not found`},
		{"program renders empty", func(o *Options) { o.Command = []string{"{{if false}}x{{end}}"} }, "the program renders empty"},
		{"no command", func(o *Options) { o.Command = nil }, "no trial command"},
		{"no objective", func(o *Options) { o.Objective = "" }, "no objective"},
		{"no dir", func(o *Options) { o.Dir = "" }, "no directory"},
		{"bad goal", func(o *Options) { o.Goal = "max" }, `goal "max"`},
		{"too parallel", func(o *Options) { o.Parallel = MaxParallel + 1 }, "parallel 257"},
		{"negative median", func(o *Options) { o.MedianStopAfter = -1 }, "median stop after -1"},
		{"metrics outside", func(o *Options) { o.MetricsFile = "../m.json" }, `trial file "../m.json"`},
		{"grid too large", func(o *Options) { o.Algorithm = Grid; o.GridPoints = 5 }, "the grid has 5 points"},
		{"no trials", func(o *Options) { o.Trials = 0 }, "trials 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			_, err := New(o)
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want ErrInvalidOptions saying %q", err, tc.want)
			}
		})
	}
	t.Run("trial directory exists", func(t *testing.T) {
		o := ok
		o.Dir = used
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Run(context.Background())
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "trial-1 exists") {
			t.Errorf("Run: %v, want an error naming the existing trial-1", err)
		}
		if len(res.Trials) != 0 {
			t.Errorf("a sweep that started nothing lists trials: %+v", res.Trials)
		}
	})
	t.Run("infergate runs Options.Infergate", func(t *testing.T) {
		o := ok
		o.Command = []string{"infergate", "step"}
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), `"infergate"`) {
			t.Errorf("without Infergate, the word is looked up in PATH: %v", err)
		}
		o.Infergate = "/bin/true"
		if _, err := New(o); err != nil {
			t.Errorf("with Infergate: %v", err)
		}
	})
}

// TestSweepDeterministic: the same seed runs the same trials in the same
// order, and a trial's parameters reach its command.
func TestSweepDeterministic(t *testing.T) {
	opts := Options{
		Space:     mustParams(t, "lr=double:0.001..0.1:log", "h=int:4..64", "o=categorical:adam|sgd"),
		Algorithm: Random, Seed: 42, Trials: 4, Parallel: 2,
		Command: script(`echo "{{.lr}} {{.h}} {{.o}}" > "{{.TrialDir}}/args"; printf '{"acc": %s}' {{.lr}} > "{{.TrialDir}}/metrics.json"`),
	}
	a := newSweep(t, opts)
	b := newSweep(t, opts)
	if !cmp.Equal(a.Trials(), b.Trials()) {
		t.Fatalf("the same seed chose different trials:\n%v\n%v", a.Trials(), b.Trials())
	}
	res, err := runSweep(t, a)
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range res.Trials {
		got, _ := os.ReadFile(filepath.Join(tr.Dir, "args"))
		v := a.Trials()[i]
		if want := formatValue(v["lr"]) + " " + formatValue(v["h"]) + " " + formatValue(v["o"]) + "\n"; string(got) != want {
			t.Errorf("trial %d ran with %q, want %q", i+1, got, want)
		}
	}
}

// readPID waits for a trial to write a process id to path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %q", path, b)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process id in %s after %s", path, testTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGone waits until process pid has exited (a zombie left for an init
// that does not reap counts as exited).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || syscall.Kill(pid, 0) != nil {
				return
			}
		} else if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs 30s after the sweep stopped it", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
