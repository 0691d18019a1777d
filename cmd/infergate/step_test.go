package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const irisCSV = "../../examples/datasets/iris.csv"

// runStepTest runs `infergate step args...` in process and returns its
// output.
func runStepTest(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err = runStepContext(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestStepHelp: `-h` prints the usage and asks main to exit 0, for the
// step command and each step.
func TestStepHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "Usage: infergate step STEP"},
		{[]string{"help"}, "Usage: infergate step STEP"},
		{[]string{"mlp", "-h"}, "Usage: infergate step mlp"},
		{[]string{"train", "-h"}, "Usage: infergate step train"},
		{[]string{"evaluate", "-help"}, "Usage: infergate step evaluate"},
		{[]string{"sweep", "-h"}, "Usage: infergate step sweep"},
		{[]string{"sweep", "-objective", "x", "-h", "--", "true"}, "-median-stop-after"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, err := runStepTest(t, tc.args...)
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("err = %v, want flag.ErrHelp (main exits 0)", err)
			}
			mustContain(t, "usage", stderr, tc.want)
		})
	}
}

// TestStepErrors: bad flags, missing files and bad search spaces are
// errors that say what is wrong, before any work.
func TestStepErrors(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "init.onnx")
	if _, _, err := runStepTest(t, "mlp", "-inputs", "4", "-hidden", "4", "-classes", "3", "-out", model); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	sweepOK := []string{"sweep", "-param", "lr=double:0.01..0.1", "-objective", "acc", "-dir", filepath.Join(dir, "trials")}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no step", nil, "name the step"},
		{"unknown step", []string{"fit"}, `unknown step "fit"`},
		{"unknown flag", []string{"train", "-modle", model}, "flag provided but not defined: -modle"},
		{"positional argument", []string{"train", "-model", model, "iris.csv"}, `step train: unexpected argument "iris.csv"`},
		{"mlp without -out", []string{"mlp", "-inputs", "4", "-classes", "3"}, "step mlp: -out is required"},
		{"mlp without -inputs", []string{"mlp", "-classes", "3", "-out", out}, "-inputs and -classes are required"},
		{"mlp bad hidden", []string{"mlp", "-inputs", "4", "-classes", "3", "-hidden", "16,x", "-out", out}, `-hidden "16,x"`},
		{"mlp one class", []string{"mlp", "-inputs", "4", "-classes", "1", "-out", out}, "Classes"},
		{"train without -data", []string{"train", "-model", model, "-out", out}, "step train: -data is required"},
		{"train missing data", []string{"train", "-model", model, "-data", filepath.Join(dir, "nope.csv"), "-out", out}, "no such file"},
		{"train missing model", []string{"train", "-model", filepath.Join(dir, "nope.onnx"), "-data", irisCSV, "-out", out}, "no such file"},
		{"train bad optimizer", []string{"train", "-model", model, "-data", irisCSV, "-out", out, "-optimizer", "lbfgs"}, "lbfgs"},
		{"train zero epochs", []string{"train", "-model", model, "-data", irisCSV, "-out", out, "-epochs", "0"}, "-epochs 0"},
		{"train unknown metric param", []string{"train", "-model", model, "-data", irisCSV, "-out", out, "-param", "accuracy=" + out}, `the metrics have no number "accuracy" (they have`},
		{"train bad param", []string{"train", "-model", model, "-data", irisCSV, "-out", out, "-param", "loss"}, `-param "loss": want NAME=PATH`},
		{"evaluate without -metrics", []string{"evaluate", "-model", model, "-data", irisCSV}, "step evaluate: -metrics is required"},
		{"evaluate missing model", []string{"evaluate", "-model", filepath.Join(dir, "nope.onnx"), "-data", irisCSV, "-metrics", out}, "no such file"},
		{"evaluate train-only metric", []string{"evaluate", "-model", model, "-data", irisCSV, "-metrics", out, "-param", "validation_accuracy=" + out}, `no number "validation_accuracy"`},
		{"sweep without command", sweepOK, "give the trial command after --"},
		{"sweep empty command", append(sweepOK, "--"), "give the trial command after --"},
		{"sweep without space", []string{"sweep", "-objective", "acc", "-dir", dir, "--", "true"}, "give the search space with -param"},
		{"sweep without objective", []string{"sweep", "-param", "lr=double:0..1", "-dir", dir, "--", "true"}, "-objective is required"},
		{"sweep bad space", []string{"sweep", "-param", "lr=double:0.1..0.01", "-objective", "acc", "-dir", dir, "--", "true"}, `param "lr=double:0.1..0.01": MIN 0.1 is greater than MAX 0.01`},
		{"sweep unknown type", []string{"sweep", "-param", "lr=real:0..1", "-objective", "acc", "-dir", dir, "--", "true"}, `unknown type "real"`},
		{"sweep unknown template field", append(sweepOK, "--", "echo", "{{.rate}}"), `map has no entry for key "rate"`},
		{"sweep bad prepare", append(sweepOK, "-prepare", "echo {{.lr", "--", "true"), "prepare command 1"},
		{"sweep bad delims", append(sweepOK, "-delims", "[[", "--", "true"), `-delims "[["`},
		{"sweep bad algorithm", append(sweepOK, "-algorithm", "bayes", "--", "true"), `algorithm "bayes"`},
		{"sweep grid over budget", append(sweepOK, "-algorithm", "grid", "-grid-points", "20", "--", "true"), "the grid has 20 points, more than the budget of 10 trials"},
		{"sweep unknown program", append(sweepOK, "--", "no-such-trainer"), `"no-such-trainer": executable file not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runStepTest(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, flag.ErrHelp) {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(err.Error()+stderr, tc.want) {
				t.Errorf("error %q (stderr %q) does not say %q", err, stderr, tc.want)
			}
		})
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed step wrote %s: %v", out, err)
	}
}

// TestStepTrainIris makes an MLP, trains it on iris with the flags after
// and before each other, and evaluates it: validation accuracy of at least
// 0.9, a progress line per epoch, and the -param files a pipeline reads.
func TestStepTrainIris(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	if _, _, err := runStepTest(t, "mlp", "-out", p("init.onnx"), "-inputs", "4", "-hidden", "16", "-classes", "3", "-seed", "1"); err != nil {
		t.Fatal(err)
	}
	const epochs = 60
	stdout, _, err := runStepTest(t, "train", "-out", p("model.onnx"), "-model", p("init.onnx"), "-data", irisCSV,
		"-epochs", strconv.Itoa(epochs), "-batch-size", "16", "-seed", "1", "-learning-rate", "0.02",
		"-metrics", p("metrics.json"), "-progress", p("progress.jsonl"),
		"-param", "validation_accuracy="+p("params/validation_accuracy"), "-param", "epochs="+p("params/epochs"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "train's output", stdout, "validation accuracy")

	valAcc := readFloat(t, p("params/validation_accuracy"))
	if valAcc < 0.9 {
		t.Errorf("validation accuracy %v, want at least 0.9", valAcc)
	}
	if n := readFloat(t, p("params/epochs")); n != epochs {
		t.Errorf("params/epochs = %v, want %d", n, epochs)
	}
	var m struct {
		ValidationAccuracy float64   `json:"validation_accuracy"`
		LossCurve          []float64 `json:"loss_curve"`
	}
	readJSON(t, p("metrics.json"), &m)
	if m.ValidationAccuracy != valAcc || len(m.LossCurve) != epochs {
		t.Errorf("metrics.json: validation accuracy %v (param file %v), %d losses", m.ValidationAccuracy, valAcc, len(m.LossCurve))
	}
	lines := readLines(t, p("progress.jsonl"))
	if len(lines) != epochs {
		t.Fatalf("%d progress lines, want %d", len(lines), epochs)
	}
	for i, l := range lines {
		var e struct {
			Epoch *int     `json:"epoch"`
			Loss  *float64 `json:"loss"`
			Acc   *float64 `json:"validation_accuracy"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Epoch == nil || *e.Epoch != i+1 || e.Loss == nil || e.Acc == nil {
			t.Fatalf("progress line %d: %q (%v)", i+1, l, err)
		}
		if i == epochs-1 && *e.Loss != m.LossCurve[i] {
			t.Errorf("last progress loss %v, metrics.json %v", *e.Loss, m.LossCurve[i])
		}
	}

	stdout, _, err = runStepTest(t, "evaluate", "-model", p("model.onnx"), "-data", irisCSV, "-metrics", p("eval.json"),
		"-param", "accuracy="+p("params/accuracy"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "evaluate's output", stdout, "accuracy 0.9")
	if acc := readFloat(t, p("params/accuracy")); acc < 0.9 {
		t.Errorf("evaluation accuracy %v, want at least 0.9", acc)
	}
	var ev struct {
		Rows      int     `json:"rows"`
		Confusion [][]int `json:"confusion"`
	}
	readJSON(t, p("eval.json"), &ev)
	if ev.Rows != 150 || len(ev.Confusion) != 3 {
		t.Errorf("eval.json: %d rows, confusion %v", ev.Rows, ev.Confusion)
	}
}

// TestStepTrainNoValidation: -validation-split 0 holds out nothing, and
// the progress lines then carry no validation accuracy.
func TestStepTrainNoValidation(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	if _, _, err := runStepTest(t, "mlp", "-inputs", "4", "-classes", "3", "-out", p("init.onnx")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runStepTest(t, "train", "-model", p("init.onnx"), "-data", irisCSV, "-out", p("model.onnx"),
		"-epochs", "2", "-validation-split", "0", "-progress", p("progress.jsonl"), "-metrics", p("metrics.json")); err != nil {
		t.Fatal(err)
	}
	var m struct {
		TrainRows      int `json:"train_rows"`
		ValidationRows int `json:"validation_rows"`
	}
	readJSON(t, p("metrics.json"), &m)
	if m.TrainRows != 150 || m.ValidationRows != 0 {
		t.Errorf("%d training and %d validation rows, want 150 and 0", m.TrainRows, m.ValidationRows)
	}
	if diff := cmp.Diff([]string{`{"epoch":1,"loss":`, `{"epoch":2,"loss":`}, prefixes(readLines(t, p("progress.jsonl")), 18)); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(p("progress.jsonl")); bytes.Contains(b, []byte("validation")) {
		t.Errorf("progress without a validation split:\n%s", b)
	}
}

// requireStepCommand fails the test with what to do if the binary the
// tests built has no `step` command yet.
func requireStepCommand(t *testing.T) {
	t.Helper()
	out, _ := exec.Command(binPath, "step", "-h").CombinedOutput()
	if !bytes.Contains(out, []byte("Usage: infergate step STEP")) {
		t.Fatalf("the infergate binary has no step command: main.go's dispatch needs `case \"step\": return runStep(rest, stdout, stderr)`; it said:\n%s", out)
	}
}

// TestStepSweepIris is the built-in steps end to end, as a pipeline runs
// them: `infergate step sweep` over the learning rate and the hidden size
// of the iris MLP, 4 trials 2 at a time, each an `infergate step mlp` then
// an `infergate step train` of the same binary.
func TestStepSweepIris(t *testing.T) {
	requireStepCommand(t)
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	data, err := filepath.Abs(irisCSV)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "step", "sweep",
		"-param", "lr=double:0.005..0.05:log", "-param", "hidden=categorical:8|16",
		"-algorithm", "random", "-seed", "3", "-trials", "4", "-parallel", "2",
		"-objective", "validation_accuracy", "-goal", "maximize", "-median-stop-after", "10", "-median-min-trials", "1",
		"-dir", p("trials"), "-out-params", p("out/params"), "-out-best", p("out/best"), "-metrics", p("out/sweep.json"),
		"-prepare", "infergate step mlp -inputs 4 -hidden {{.hidden}} -classes 3 -seed 1 -out {{.TrialDir}}/init.onnx",
		"--", "infergate", "step", "train", "-model", "{{.TrialDir}}/init.onnx", "-data", data, "-epochs", "40", "-batch-size", "16",
		"-learning-rate", "{{.lr}}", "-seed", "1", "-out", "{{.TrialDir}}/model.onnx",
		"-metrics", "{{.TrialDir}}/metrics.json", "-progress", "{{.TrialDir}}/progress.jsonl")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := runBounded(t, cmd, 3*time.Minute); err != nil {
		t.Fatalf("sweep: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("the sweep took %s:\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	mustContain(t, "sweep's output", stdout.String(), "best: trial")

	var sum struct {
		Best *struct {
			Number    int            `json:"trial"`
			Params    map[string]any `json:"params"`
			Objective float64        `json:"objective"`
		} `json:"best"`
		Succeeded    int `json:"succeeded"`
		EarlyStopped int `json:"early_stopped"`
		Trials       []struct {
			Status string `json:"status"`
			Epochs int    `json:"epochs"`
		} `json:"trials"`
	}
	readJSON(t, p("out/sweep.json"), &sum)
	if len(sum.Trials) != 4 || sum.Best == nil || sum.Succeeded+sum.EarlyStopped != 4 {
		t.Fatalf("summary: %+v", sum)
	}
	if sum.Best.Objective < 0.9 {
		t.Errorf("best validation accuracy %v, want at least 0.9", sum.Best.Objective)
	}
	for _, tr := range sum.Trials {
		if tr.Status == "succeeded" && tr.Epochs != 40 {
			t.Errorf("a succeeded trial reported %d epochs of progress, want 40", tr.Epochs)
		}
	}
	if got := readFloat(t, p("out/params/lr")); got != sum.Best.Params["lr"] {
		t.Errorf("params/lr = %v, want the best trial's %v", got, sum.Best.Params["lr"])
	}
	if b, err := os.ReadFile(p("out/params/hidden")); err != nil || strings.TrimSpace(string(b)) != sum.Best.Params["hidden"] {
		t.Errorf("params/hidden = %q, %v; want %v", b, err, sum.Best.Params["hidden"])
	}
	var best struct {
		ValidationAccuracy float64 `json:"validation_accuracy"`
	}
	readJSON(t, p("out/best/metrics.json"), &best)
	if best.ValidationAccuracy != sum.Best.Objective {
		t.Errorf("the copied best trial's accuracy %v, want %v", best.ValidationAccuracy, sum.Best.Objective)
	}
	if _, err := os.Stat(p("out/best/model.onnx")); err != nil {
		t.Errorf("the best model was not copied: %v", err)
	}
	// The best model serves: evaluate it through the built-in runtime.
	stdoutEval, _, err := runStepTest(t, "evaluate", "-model", p("out/best/model.onnx"), "-data", irisCSV, "-metrics", p("eval.json"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "evaluate's output", stdoutEval, "on 150 rows")
}

// TestStepSweepSIGTERM: SIGTERM to `infergate step sweep` stops its
// trials, process groups and all, and the sweep exits non-zero saying so.
func TestStepSweepSIGTERM(t *testing.T) {
	requireStepCommand(t)
	dir := t.TempDir()
	cmd := exec.Command(binPath, "step", "sweep", "-param", "v=int:1..2", "-algorithm", "grid", "-parallel", "2",
		"-objective", "acc", "-dir", dir, "-kill-grace", "5s",
		"--", "sh", "-c", `sleep 600 & echo $! > "{{.TrialDir}}/child"; wait`)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	var children []int
	for _, n := range []string{"trial-1", "trial-2"} {
		children = append(children, waitPIDFile(t, filepath.Join(dir, n, "child")))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit %v, want status 1", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the sweep did not exit within a minute of SIGTERM")
	}
	mustContain(t, "stderr", stderr.String(), "sweep: stopped after 0 of 2 trials ended: terminated signal received")
	mustContain(t, "stdout", stdout.String(), "cancelled")
	for _, pid := range children {
		if err := waitExited(pid, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
}

// runBounded runs cmd, killing it after limit.
func runBounded(t *testing.T, cmd *exec.Cmd, limit time.Duration) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("still running after " + limit.String() + ": killed")
	}
}

// waitPIDFile waits for a trial to write a process id and a newline to
// path.
func waitPIDFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %q", path, b)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process id in %s within a minute", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExited waits until process pid is gone or a zombie (an init that
// does not reap counts as exited).
func waitExited(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || syscall.Kill(pid, 0) != nil {
			return nil
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && bytes.HasPrefix(b[i+1:], []byte(" Z")) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("process " + strconv.Itoa(pid) + " still runs after the sweep stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readFloat(t *testing.T, path string) float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		t.Fatalf("%s: %q is not a number", path, b)
	}
	return v
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func prefixes(lines []string, n int) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l[:min(n, len(l))]
	}
	return out
}

// TestSplitWords: a -prepare command splits at white space, but never
// inside a template action.
func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in, left, right string
		want            []string
	}{
		{"infergate step mlp -hidden {{.hidden}} -out {{.TrialDir}}/init.onnx", "{{", "}}",
			[]string{"infergate", "step", "mlp", "-hidden", "{{.hidden}}", "-out", "{{.TrialDir}}/init.onnx"}},
		{"  echo  {{ printf \"%d x\" .n }}-y\tz ", "{{", "}}", []string{"echo", `{{ printf "%d x" .n }}-y`, "z"}},
		{"echo [[ .a ]] {{ .b }}", "[[", "]]", []string{"echo", "[[ .a ]]", "{{", ".b", "}}"}},
		{"echo {{ .a", "{{", "}}", []string{"echo", "{{ .a"}},
		{"   ", "{{", "}}", nil},
	} {
		if diff := cmp.Diff(tc.want, splitWords(tc.in, tc.left, tc.right)); diff != "" {
			t.Errorf("splitWords(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
