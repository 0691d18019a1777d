package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/sweep"
	"github.com/infergate/infergate/training"
)

const stepUsage = `Usage: infergate step STEP [flags]

The pipelines' built-in steps, each a command configured by its flags alone:
it reads the files its flags name and writes its outputs where they say.

Steps:
  mlp       write an untrained multi-layer perceptron as an ONNX model
  train     train an ONNX classifier on a labelled CSV
  evaluate  run a labelled CSV through a model with the built-in runtime
  sweep     search hyperparameters: run trials, stop bad ones early, keep the best
  register  register a model version (or move an alias) through the admin API
  deploy    apply InferenceServices and wait for the rollout's verdict

Run "infergate step STEP -h" for a step's flags.
`

// runStep runs `infergate step STEP`. SIGINT and SIGTERM cancel the step:
// train stops between two batches, sweep stops its trials.
func runStep(args []string, stdout, stderr io.Writer) error {
	return untilSignal(runStepContext, args, stdout, stderr)
}

func runStepContext(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, stepUsage)
		return errors.New("step: name the step: mlp, train, evaluate, sweep, register or deploy")
	}
	switch name, rest := args[0], args[1:]; name {
	case "mlp":
		return stepMLP(rest, stdout, stderr)
	case "train":
		return stepTrain(ctx, rest, stdout, stderr)
	case "evaluate":
		return stepEvaluate(ctx, rest, stdout, stderr)
	case "sweep":
		return stepSweep(ctx, rest, stdout, stderr)
	case "register":
		return stepRegister(ctx, rest, stdout, stderr)
	case "deploy":
		return stepDeploy(ctx, rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, stepUsage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, stepUsage)
		return fmt.Errorf("step: unknown step %q (want mlp, train, evaluate, sweep, register or deploy)", name)
	}
}

// stepFlags is a step's flag set, printing usage then the flags.
func stepFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("step "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseStepFlags parses flags given in any order; a step takes no
// positional arguments.
func parseStepFlags(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("%s: unexpected argument %q (every input is a flag)", fs.Name(), pos[0])
	}
	return nil
}

// required fails, naming the first flag of names that is empty.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if fs.Lookup(n).Value.String() == "" {
			fs.Usage()
			return fmt.Errorf("%s: -%s is required", fs.Name(), n)
		}
	}
	return nil
}

func stepMLP(args []string, stdout, stderr io.Writer) error {
	fs := stepFlags("mlp", "Usage: infergate step mlp -inputs N -classes N [-hidden N[,N...]] [-seed N] [-logits] -out PATH", stderr)
	var (
		inputs  = fs.Int("inputs", 0, "number of input features (required)")
		classes = fs.Int("classes", 0, "number of classes, at least 2 (required)")
		hidden  = fs.String("hidden", "", "sizes of the hidden layers, comma-separated (16, or 32,16); empty for none, a linear model")
		seed    = fs.Uint64("seed", 0, "seed of the initial weights: the same flags write the same bytes")
		logits  = fs.Bool("logits", false, "leave out the final Softmax: output logits rather than probabilities")
		out     = fs.String("out", "", "where to write the ONNX model (required)")
	)
	if err := parseStepFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "out"); err != nil {
		return err
	}
	if *inputs == 0 || *classes == 0 {
		fs.Usage()
		return errors.New("step mlp: -inputs and -classes are required")
	}
	opts := training.MLPOptions{Inputs: *inputs, Classes: *classes, Seed: *seed, Logits: *logits}
	if strings.TrimSpace(*hidden) != "" {
		for _, f := range strings.Split(*hidden, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("step mlp: -hidden %q: want layer sizes (whole numbers from 1) separated by commas", *hidden)
			}
			opts.Hidden = append(opts.Hidden, n)
		}
	}
	b, err := training.NewMLP(opts)
	if err != nil {
		return fmt.Errorf("step mlp: %w", err)
	}
	if err := writeFileAtomic(*out, b); err != nil {
		return fmt.Errorf("step mlp: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: an MLP of %d inputs, hidden layers %v, %d classes, seed %d (%d bytes)\n", *out, *inputs, opts.Hidden, *classes, *seed, len(b))
	return nil
}

func stepTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := stepFlags("train", `Usage: infergate step train -model PATH -data CSV -out PATH [-metrics PATH] [-progress PATH] [-param NAME=PATH ...] [flags]

Trains the model's weights on the CSV (pure Go, GoMLX) and writes the trained
model; -metrics gets the run's figures as JSON, -progress one JSON line per
epoch ({"epoch": n, "loss": x, "validation_accuracy": y}) as it goes, and each
-param NAME=PATH one figure of the metrics as a plain file (a pipeline's
output parameter).`, stderr)
	var (
		model     = fs.String("model", "", "the ONNX model to train, its initial weights (required; see infergate step mlp)")
		data      = fs.String("data", "", "the labelled CSV to train on (required)")
		label     = fs.String("label-column", "", "the label column: a header name or a zero-based index (negative from the end); empty for the last")
		optimizer = fs.String("optimizer", training.DefaultOptimizer, "adam or sgd")
		rate      = fs.Float64("learning-rate", 0, fmt.Sprintf("the optimizer's step size; 0 for its default (%v for adam, %v for sgd)", training.DefaultAdamRate, training.DefaultSGDRate))
		schedule  = fs.String("schedule", training.DefaultSchedule, "how the learning rate changes: cosine (decays to 0) or constant")
		epochs    = fs.Int("epochs", training.DefaultEpochs, "passes over the training rows")
		batch     = fs.Int("batch-size", training.DefaultBatchSize, "rows per optimizer step")
		split     = fs.Float64("validation-split", training.DefaultValidationSplit, "fraction of each class's rows held out to measure validation accuracy, in [0, 1); 0 holds out nothing")
		seed      = fs.Uint64("seed", 0, "seed of the split and the shuffles: the same flags, model and data train the same bytes")
		out       = fs.String("out", "", "where to write the trained ONNX model (required)")
		metrics   = fs.String("metrics", "", "where to write the metrics as JSON (loss curve, accuracies, ...)")
		progress  = fs.String("progress", "", "a file to append one JSON line per epoch to, as it trains")
		params    stringList
	)
	fs.Var(&params, "param", "NAME=PATH: write the metric NAME (validation_accuracy, loss, train_accuracy, ...) to PATH as a plain value; repeatable")
	if err := parseStepFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model", "data", "out"); err != nil {
		return err
	}
	outs, err := parseMetricParams(params, training.Metrics{})
	if err != nil {
		return fmt.Errorf("step train: %w", err)
	}
	opts := training.TrainOptions{
		Model: *model, Data: *data, LabelColumn: *label, Optimizer: *optimizer, LearningRate: *rate,
		Schedule: *schedule, Epochs: *epochs, BatchSize: *batch, ValidationSplit: *split, Seed: *seed, Out: *out,
	}
	if *split == 0 {
		opts.ValidationSplit = -1 // the flag's 0 is "none"; the option's 0 is "the default"
	}
	if *epochs < 1 || *batch < 1 {
		return fmt.Errorf("step train: -epochs %d and -batch-size %d: want 1 or more", *epochs, *batch)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if *progress != "" {
		f, err := openProgress(*progress)
		if err != nil {
			return fmt.Errorf("step train: -progress: %w", err)
		}
		defer f.Close()
		opts.Progress = progressWriter(f, *split != 0, cancel)
	}
	m, err := training.Train(ctx, opts)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, ctx.Err()) {
			err = cause // the progress file failed, not the training
		}
		return fmt.Errorf("step train: %w", err)
	}
	if err := writeMetrics(*metrics, m, outs); err != nil {
		return fmt.Errorf("step train: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d epochs in %.1fs, loss %.4f, train accuracy %.4f", *out, m.Epochs, m.TrainSeconds, m.Loss, m.TrainAccuracy)
	if m.ValidationRows > 0 {
		fmt.Fprintf(stdout, ", validation accuracy %.4f on %d rows", m.ValidationAccuracy, m.ValidationRows)
	}
	fmt.Fprintln(stdout)
	return nil
}

// openProgress opens a progress file for appending, making its directory.
func openProgress(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

// epochProgress is one line of train's -progress file, which a sweep reads
// while the trial runs.
type epochProgress struct {
	Epoch              int      `json:"epoch"`
	Loss               float64  `json:"loss"`
	ValidationAccuracy *float64 `json:"validation_accuracy,omitempty"`
}

// progressWriter returns a Progress callback that appends a line per epoch
// to f, each in one write so that a reader sees whole lines. A write that
// fails cancels training with the error as the cause.
func progressWriter(f *os.File, validation bool, cancel context.CancelCauseFunc) func(int, float64, float64) {
	return func(epoch int, loss, valAcc float64) {
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return // not JSON; Train fails with ErrDiverged
		}
		l := epochProgress{Epoch: epoch, Loss: loss}
		if validation {
			l.ValidationAccuracy = &valAcc
		}
		b, _ := json.Marshal(l)
		if _, err := f.Write(append(b, '\n')); err != nil {
			cancel(fmt.Errorf("-progress: %w", err))
		}
	}
}

// metricParam is one -param NAME=PATH of train and evaluate.
type metricParam struct{ name, path string }

// parseMetricParams reads -param NAME=PATH flags, checking NAME against the
// numbers of zero (a Metrics or EvalMetrics) before the step runs.
func parseMetricParams(specs []string, zero any) ([]metricParam, error) {
	nums, err := jsonNumbers(zero)
	if err != nil {
		return nil, err
	}
	var out []metricParam
	for _, s := range specs {
		name, path, ok := strings.Cut(s, "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("-param %q: want NAME=PATH", s)
		}
		if _, ok := nums[name]; !ok {
			return nil, fmt.Errorf("-param %q: the metrics have no number %q (they have %s)", s, name, strings.Join(slices.Sorted(maps.Keys(nums)), ", "))
		}
		out = append(out, metricParam{name, path})
	}
	return out, nil
}

// jsonNumbers returns the top-level numbers of v's JSON form.
func jsonNumbers(v any) (map[string]json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, raw := range all {
		if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
			delete(all, k)
		}
	}
	return all, nil
}

// writeMetrics writes m as JSON to path (if set) and each of params to its
// file.
func writeMetrics(path string, m any, params []metricParam) error {
	if path != "" {
		if err := training.WriteJSON(path, m); err != nil {
			return err
		}
	}
	if len(params) == 0 {
		return nil
	}
	nums, err := jsonNumbers(m)
	if err != nil {
		return err
	}
	for _, p := range params {
		// A JSON number is the text a pipeline reads an int or double
		// output parameter from.
		if err := writeFileAtomic(p.path, append(append([]byte(nil), nums[p.name]...), '\n')); err != nil {
			return fmt.Errorf("-param %s: %w", p.name, err)
		}
	}
	return nil
}

func stepEvaluate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := stepFlags("evaluate", `Usage: infergate step evaluate -model PATH -data CSV -metrics PATH [-label-column C] [-param NAME=PATH ...]

Runs every row of the CSV through the model with the built-in ONNX runtime,
one row per request, and writes accuracy, per-class precision, recall and F1,
the confusion matrix and latency as JSON.`, stderr)
	var (
		model   = fs.String("model", "", "the ONNX model to evaluate (required)")
		data    = fs.String("data", "", "the labelled CSV (required)")
		label   = fs.String("label-column", "", "the label column: a header name or a zero-based index (negative from the end); empty for the last")
		metrics = fs.String("metrics", "", "where to write the metrics as JSON (required)")
		params  stringList
	)
	fs.Var(&params, "param", "NAME=PATH: write the metric NAME (accuracy, macro_f1, latency_p99_ns, ...) to PATH as a plain value; repeatable")
	if err := parseStepFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model", "data", "metrics"); err != nil {
		return err
	}
	outs, err := parseMetricParams(params, training.EvalMetrics{})
	if err != nil {
		return fmt.Errorf("step evaluate: %w", err)
	}
	m, err := training.Evaluate(ctx, training.EvalOptions{Model: *model, Data: *data, LabelColumn: *label})
	if err != nil {
		return fmt.Errorf("step evaluate: %w", err)
	}
	if err := writeMetrics(*metrics, m, outs); err != nil {
		return fmt.Errorf("step evaluate: %w", err)
	}
	fmt.Fprintf(stdout, "accuracy %.4f on %d rows, macro F1 %.4f, latency p50 %s p99 %s\n", m.Accuracy, m.Rows, m.MacroF1, m.LatencyP50, m.LatencyP99)
	return nil
}

func stepSweep(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := stepFlags("sweep", `Usage: infergate step sweep -param SPEC ... -objective METRIC -dir DIR [flags] -- COMMAND [ARG...]

Runs up to -trials trials of COMMAND, -parallel at once, each with its own
parameters from the search space and its own directory DIR/trial-N, and keeps
the best by the number METRIC of the trial's metrics.json. Each word of
COMMAND (and of each -prepare command) is a template over the parameters
({{.lr}}), {{.TrialDir}} and {{.Trial}}; the first word "infergate" runs this
binary. A trial writes {{.TrialDir}}/metrics.json, and for the median stopping
rule {{.TrialDir}}/progress.jsonl; its output goes to DIR/trial-N/log.

SPEC is NAME=double:MIN..MAX[:log], NAME=int:MIN..MAX or NAME=categorical:A|B|...

Example:
  infergate step sweep -param lr=double:0.001..0.1:log -param 'hidden=categorical:8|16' \
    -trials 8 -parallel 2 -objective validation_accuracy -median-stop-after 10 -dir trials \
    -prepare 'infergate step mlp -inputs 4 -hidden {{.hidden}} -classes 3 -out {{.TrialDir}}/init.onnx' \
    -out-params best/params -out-best best/trial -metrics best/sweep.json -- \
    infergate step train -model {{.TrialDir}}/init.onnx -data iris.csv -learning-rate {{.lr}} \
    -out {{.TrialDir}}/model.onnx -metrics {{.TrialDir}}/metrics.json -progress {{.TrialDir}}/progress.jsonl`, stderr)
	var (
		specs, prepares stringList
		logs            logFlags
		algorithm       = fs.String("algorithm", string(sweep.DefaultAlgorithm), "random (draws with -seed) or grid (every combination)")
		seed            = fs.Uint64("seed", 0, "seed of the random draws: the same flags run the same trials in the same order")
		gridPoints      = fs.Int("grid-points", sweep.DefaultGridPoints, "values of each double parameter on a grid (ints and categoricals take all theirs)")
		trials          = fs.Int("trials", 10, "the budget: trials to run at most (a grid must fit in it)")
		parallel        = fs.Int("parallel", sweep.DefaultParallel, "trials running at once")
		objective       = fs.String("objective", "", "the metric to optimize: a number in each trial's metrics.json (and progress lines) (required)")
		goal            = fs.String("goal", string(sweep.DefaultGoal), "maximize or minimize the objective")
		medianAfter     = fs.Int("median-stop-after", 0, "stop a trial whose best objective, from this epoch on, is worse than the median of the completed trials' running averages (Katib's median stopping rule); 0 lets every trial finish")
		medianMin       = fs.Int("median-min-trials", sweep.DefaultMedianMinTrials, "completed trials the median stopping rule needs before it stops any")
		trialTimeout    = fs.Duration("trial-timeout", 0, "fail a trial that runs longer than this; 0 for no limit")
		killGrace       = fs.Duration("kill-grace", sweep.DefaultKillGrace, "time a stopped trial has between SIGTERM and SIGKILL")
		delims          = fs.String("delims", "{{ }}", "the templates' left and right delimiters, separated by a space: in a pipeline, whose engine renders {{ }} first, use '[[ ]]'")
		dir             = fs.String("dir", "", "directory for the trials' directories, trial-1, trial-2, ... (required; created if missing; must hold no trial-N)")
		trialMetrics    = fs.String("trial-metrics-file", sweep.DefaultMetricsFile, "the file a trial writes its final metrics to, relative to its directory")
		trialProgress   = fs.String("trial-progress-file", sweep.DefaultProgressFile, "the file a trial appends its progress to, relative to its directory")
		outParams       = fs.String("out-params", "", "directory to write the best trial's parameters to, one file per parameter")
		outBest         = fs.String("out-best", "", "directory to copy the best trial's directory (its model, metrics, log) into")
		metrics         = fs.String("metrics", "", "where to write the sweep's summary as JSON: every trial's parameters, status, objective and duration, and the best")
	)
	fs.Var(&specs, "param", "SPEC: a dimension of the search space (see above); repeatable (required)")
	fs.Var(&prepares, "prepare", "a command run before each trial's COMMAND, as it is (templates, the trial's environment), split into words at white space outside {{ }}; repeatable")
	logs.register(fs)

	before, command := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		before, command = args[:i], args[i+1:]
	}
	if err := parseStepFlags(fs, before); err != nil {
		return err
	}
	if len(command) == 0 {
		fs.Usage()
		return errors.New("step sweep: give the trial command after --")
	}
	if err := required(fs, "objective", "dir"); err != nil {
		return err
	}
	if len(specs) == 0 {
		fs.Usage()
		return errors.New("step sweep: give the search space with -param")
	}
	left, right, ok := strings.Cut(strings.TrimSpace(*delims), " ")
	left, right = strings.TrimSpace(left), strings.TrimSpace(right)
	if !ok || left == "" || right == "" || strings.ContainsAny(left+right, " \t") {
		return fmt.Errorf("step sweep: -delims %q: want the left and right delimiters separated by a space, such as '[[ ]]'", *delims)
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	opts := sweep.Options{
		Algorithm: sweep.Algorithm(*algorithm), Seed: *seed, GridPoints: *gridPoints, Trials: *trials, Parallel: *parallel,
		Objective: *objective, Goal: sweep.Goal(*goal), MedianStopAfter: *medianAfter, MedianMinTrials: *medianMin,
		Command: command, LeftDelim: left, RightDelim: right, Dir: *dir,
		MetricsFile: *trialMetrics, ProgressFile: *trialProgress, TrialTimeout: *trialTimeout, KillGrace: *killGrace,
		ParamsDir: *outParams, BestDir: *outBest, Summary: *metrics, Logger: log,
	}
	if *killGrace <= 0 {
		return fmt.Errorf("step sweep: -kill-grace %s: want a positive duration", *killGrace)
	}
	if self, err := os.Executable(); err == nil {
		opts.Infergate = self
	}
	for _, s := range specs {
		p, err := sweep.ParseParam(s)
		if err != nil {
			return fmt.Errorf("step sweep: -param: %w", err)
		}
		opts.Space = append(opts.Space, p)
	}
	for _, p := range prepares {
		words := splitWords(p, left, right)
		if len(words) == 0 {
			return errors.New("step sweep: -prepare: an empty command")
		}
		opts.Prepare = append(opts.Prepare, words)
	}
	sw, err := sweep.New(opts)
	if err != nil {
		return fmt.Errorf("step sweep: %w", err)
	}
	res, err := sw.Run(ctx)
	printSweep(stdout, res, opts.Space)
	return err
}

// splitWords splits a -prepare command into words at white space outside
// template actions (between left and right), so that {{ .x }} stays one
// word. There is no quoting: a command that needs it is `sh -c`, given
// as the trial command's words after --.
func splitWords(s, left, right string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], left):
			end := strings.Index(s[i+len(left):], right)
			if end < 0 { // unterminated: the template's parser says so
				cur.WriteString(s[i:])
				i = len(s)
			} else {
				n := len(left) + end + len(right)
				cur.WriteString(s[i : i+n])
				i += n
			}
			inWord = true
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			i++
		default:
			cur.WriteByte(s[i])
			inWord = true
			i++
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// printSweep prints the trials and the best one.
func printSweep(w io.Writer, res sweep.Result, space []sweep.Param) {
	if len(res.Trials) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TRIAL\tSTATUS\t%s\tEPOCHS\tSECONDS\tPARAMS\n", strings.ToUpper(res.Objective))
	for _, t := range res.Trials {
		obj := "-"
		if t.Objective != nil {
			obj = strconv.FormatFloat(*t.Objective, 'g', 6, 64)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%.1f\t%s\n", t.Number, t.Status, obj, t.Epochs, t.DurationSeconds, paramString(space, t.Params))
	}
	tw.Flush()
	if b := res.Best; b != nil {
		fmt.Fprintf(w, "best: trial %d, %s %s (%s), in %s\n", b.Number, res.Objective, strconv.FormatFloat(*b.Objective, 'g', 6, 64),
			paramString(space, b.Params), time.Duration(res.DurationSeconds*float64(time.Second)).Round(time.Millisecond))
	}
}

func paramString(space []sweep.Param, v sweep.Values) string {
	parts := make([]string, len(space))
	for i, p := range space {
		parts[i] = fmt.Sprintf("%s=%v", p.Name, v[p.Name])
	}
	return strings.Join(parts, " ")
}

// writeFileAtomic writes b to path through a temporary file renamed into
// place, making the directory, so that a step killed half-way leaves no
// half-written output for the pipeline to read.
func writeFileAtomic(path string, b []byte) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
