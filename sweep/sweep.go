package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"
)

// Defaults for the zero values of Options' fields.
const (
	DefaultAlgorithm       = Random
	DefaultGoal            = Maximize
	DefaultGridPoints      = 3
	DefaultParallel        = 1
	DefaultMedianMinTrials = 3 // Katib's min_trials_required
	DefaultKillGrace       = 10 * time.Second
	DefaultPollInterval    = 200 * time.Millisecond
	DefaultMetricsFile     = "metrics.json"
	DefaultProgressFile    = "progress.jsonl"
)

// MaxParallel bounds Options.Parallel.
const MaxParallel = 256

// Options configure a sweep. Space, Trials, Objective, Command and Dir are
// required; every other zero value is a documented default.
type Options struct {
	// Space is the search space, one Param per hyperparameter.
	Space []Param
	// Algorithm chooses the trials' parameters; "" means Random.
	Algorithm Algorithm
	// Seed seeds Random: the same options run the same trials in the
	// same order. Every value, 0 included, is a seed.
	Seed uint64
	// GridPoints is how many values Grid tries for each double; 0 means
	// DefaultGridPoints.
	GridPoints int
	// Trials is the budget: how many trials run at most (a grid runs
	// each of its points once, and may not have more than Trials).
	Trials int
	// Parallel is how many trials run at once; 0 means 1.
	Parallel int

	// Objective is the metric the sweep optimizes: a top-level number of
	// the trial's metrics file and, for the median stopping rule, of
	// each line of its progress file.
	Objective string
	// Goal is the objective's direction; "" means Maximize.
	Goal Goal

	// MedianStopAfter turns the median stopping rule on (see the package
	// documentation) from this epoch on; 0 leaves every trial to finish.
	MedianStopAfter int
	// MedianMinTrials is how many completed trials the rule needs before
	// it stops any; 0 means DefaultMedianMinTrials.
	MedianMinTrials int

	// Command is the trial's program and arguments, each a text/template
	// (see the package documentation). A first word "infergate" runs
	// Infergate.
	Command []string
	// Prepare are commands run, in order, before each trial's Command,
	// as Command is: templates, in the trial's environment. A prepare
	// command that fails fails the trial.
	Prepare [][]string
	// LeftDelim and RightDelim are the templates' delimiters; "" means
	// "{{" and "}}". Other delimiters let a sweep's templates pass
	// through a template engine of their own, such as a pipeline's.
	LeftDelim, RightDelim string
	// Infergate is the program a command whose first word is
	// "infergate" runs, usually the running binary, so that trials run
	// the same infergate as the sweep whatever PATH says; "" looks the
	// word up in PATH like any other.
	Infergate string
	// Env is the trials' environment, to which the sweep adds
	// INFERGATE_SWEEP_TRIAL (the trial's number) and
	// INFERGATE_SWEEP_TRIAL_DIR; nil means the sweep's own environment.
	Env []string

	// Dir is where the trials' directories (Dir/trial-N) are made. It is
	// created if missing; a trial-N already in it is an error, so that a
	// sweep never reads an earlier sweep's files as its own.
	Dir string
	// MetricsFile and ProgressFile are where, relative to its directory,
	// a trial writes its final metrics (a JSON object) and its progress
	// (JSON lines); "" means DefaultMetricsFile and DefaultProgressFile.
	MetricsFile, ProgressFile string

	// TrialTimeout, if positive, fails a trial (its prepare commands and
	// its command together) that runs longer.
	TrialTimeout time.Duration
	// KillGrace is how long a trial being stopped has between SIGTERM and
	// SIGKILL; 0 means DefaultKillGrace.
	KillGrace time.Duration
	// PollInterval is how often a running trial's progress is read for
	// the median stopping rule; 0 means DefaultPollInterval.
	PollInterval time.Duration

	// ParamsDir, if set, receives the best trial's parameters, one file
	// per parameter (ParamsDir/NAME holding the value and a newline).
	ParamsDir string
	// BestDir, if set, receives a copy of the best trial's directory;
	// it must not hold any of the files copied.
	BestDir string
	// Summary, if set, is where the JSON summary (Result) is written,
	// whether or not a trial succeeded.
	Summary string

	// Logger gets a line as each trial starts and ends; nil discards
	// them.
	Logger *slog.Logger
}

// Status is how a trial ended.
type Status string

const (
	Succeeded Status = "succeeded"
	// Failed: a prepare command or the command exited non-zero or could
	// not start, the trial timed out, or its metrics file was missing or
	// had no number Objective.
	Failed Status = "failed"
	// EarlyStopped: the median stopping rule stopped it.
	EarlyStopped Status = "early-stopped"
	// Cancelled: the sweep's context ended while it ran or before it
	// started.
	Cancelled Status = "cancelled"
)

// Trial is one trial of a sweep and how it ended.
type Trial struct {
	// Number counts the trials from 1, in the order they start.
	Number int    `json:"trial"`
	Dir    string `json:"dir"`
	Params Values `json:"params"`
	Status Status `json:"status"`
	// Objective is the metrics file's objective, for a trial that
	// succeeded.
	Objective *float64 `json:"objective,omitempty"`
	// Epochs is the last epoch the trial reported progress for, if
	// the sweep read its progress file.
	Epochs int `json:"epochs,omitempty"`
	// Reason says why a trial did not succeed: the exit status and
	// the first lines of its log, the median rule's figures, ...
	Reason          string  `json:"reason,omitempty"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// Result is the summary of a sweep, as the Summary file holds it.
type Result struct {
	Objective string    `json:"objective"`
	Goal      Goal      `json:"goal"`
	Algorithm Algorithm `json:"algorithm"`
	Seed      uint64    `json:"seed"`
	Space     []string  `json:"space"`
	// Best is the succeeded trial with the best objective (the first
	// one on a tie); nil when none succeeded.
	Best            *Trial  `json:"best"`
	Succeeded       int     `json:"succeeded"`
	Failed          int     `json:"failed"`
	EarlyStopped    int     `json:"early_stopped"`
	Cancelled       int     `json:"cancelled"`
	Trials          []Trial `json:"trials"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// Sweep is a validated sweep, ready to Run once.
type Sweep struct {
	opts    Options
	trials  []Values
	command []*template.Template
	prepare [][]*template.Template
	log     *slog.Logger
	ran     bool

	mu        sync.Mutex
	completed [][]point // progress curves of the succeeded trials, for the median rule
}

// New validates opts, chooses the trials' parameters and checks the
// templates against them. It starts nothing. Errors name the option and
// wrap ErrInvalidOptions.
func New(opts Options) (*Sweep, error) {
	if opts.Algorithm == "" {
		opts.Algorithm = DefaultAlgorithm
	}
	if opts.Goal == "" {
		opts.Goal = DefaultGoal
	}
	if opts.GridPoints == 0 {
		opts.GridPoints = DefaultGridPoints
	}
	if opts.Parallel == 0 {
		opts.Parallel = DefaultParallel
	}
	if opts.MedianMinTrials == 0 {
		opts.MedianMinTrials = DefaultMedianMinTrials
	}
	if opts.KillGrace == 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MetricsFile == "" {
		opts.MetricsFile = DefaultMetricsFile
	}
	if opts.ProgressFile == "" {
		opts.ProgressFile = DefaultProgressFile
	}
	if opts.LeftDelim == "" {
		opts.LeftDelim = "{{"
	}
	if opts.RightDelim == "" {
		opts.RightDelim = "}}"
	}
	bad := func(format string, args ...any) (*Sweep, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	switch {
	case opts.Goal != Maximize && opts.Goal != Minimize:
		return bad("goal %q: want maximize or minimize", opts.Goal)
	case opts.Objective == "":
		return bad("no objective: name the metric to optimize")
	case opts.Parallel < 1 || opts.Parallel > MaxParallel:
		return bad("parallel %d: want 1 to %d", opts.Parallel, MaxParallel)
	case opts.MedianStopAfter < 0:
		return bad("median stop after %d epochs: want 0 (off) or more", opts.MedianStopAfter)
	case opts.MedianMinTrials < 1:
		return bad("median min trials %d: want 1 or more", opts.MedianMinTrials)
	case opts.TrialTimeout < 0 || opts.KillGrace < 0 || opts.PollInterval < 0:
		return bad("negative durations: trial timeout %s, kill grace %s, poll interval %s", opts.TrialTimeout, opts.KillGrace, opts.PollInterval)
	case len(opts.Command) == 0:
		return bad("no trial command")
	case opts.Dir == "":
		return bad("no directory for the trials")
	}
	for _, f := range []string{opts.MetricsFile, opts.ProgressFile} {
		if !filepath.IsLocal(f) {
			return bad("trial file %q: want a relative path inside the trial's directory", f)
		}
	}
	trials, err := Suggest(opts.Space, opts.Algorithm, opts.Trials, opts.Seed, opts.GridPoints)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return bad("directory %q: %v", opts.Dir, err)
	}
	opts.Dir = dir
	s := &Sweep{opts: opts, trials: trials, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// Every template runs once here, on the first trial's values, so
	// that a typo fails the sweep before any trial starts rather than
	// every trial after.
	sample := s.templateData(1, filepath.Join(dir, "trial-1"), trials[0])
	if s.command, err = s.compile("command", opts.Command, sample); err != nil {
		return nil, err
	}
	for i, p := range opts.Prepare {
		if len(p) == 0 {
			return bad("prepare command %d is empty", i+1)
		}
		t, err := s.compile(fmt.Sprintf("prepare command %d", i+1), p, sample)
		if err != nil {
			return nil, err
		}
		s.prepare = append(s.prepare, t)
	}
	return s, nil
}

// compile parses the words of a command, renders them on sample and checks
// that the program can be found.
func (s *Sweep) compile(what string, words []string, sample map[string]any) ([]*template.Template, error) {
	ts := make([]*template.Template, len(words))
	for i, w := range words {
		t, err := template.New(what).Delims(s.opts.LeftDelim, s.opts.RightDelim).Option("missingkey=error").Parse(w)
		if err != nil {
			return nil, fmt.Errorf("%w: %s, word %d %q: %v", ErrInvalidOptions, what, i+1, w, err)
		}
		ts[i] = t
	}
	argv, err := render(ts, sample)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (the parameters are %s; the sweep adds .TrialDir and .Trial)", ErrInvalidOptions, what, err, s.paramNames())
	}
	if _, err := s.lookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidOptions, what, err)
	}
	return ts, nil
}

func (s *Sweep) paramNames() string {
	names := make([]string, len(s.opts.Space))
	for i, p := range s.opts.Space {
		names[i] = "." + p.Name
	}
	return strings.Join(names, ", ")
}

// lookPath resolves a command's first word: "infergate" is
// Options.Infergate when set.
func (s *Sweep) lookPath(prog string) (string, error) {
	if prog == "infergate" && s.opts.Infergate != "" {
		return s.opts.Infergate, nil
	}
	return exec.LookPath(prog)
}

// templateData is what a trial's templates see.
func (s *Sweep) templateData(n int, dir string, vals Values) map[string]any {
	d := make(map[string]any, len(vals)+2)
	for k, v := range vals {
		d[k] = v
	}
	d["TrialDir"] = dir
	d["Trial"] = n
	return d
}

func render(ts []*template.Template, data map[string]any) ([]string, error) {
	argv := make([]string, len(ts))
	var b strings.Builder
	for i, t := range ts {
		b.Reset()
		if err := t.Execute(&b, data); err != nil {
			return nil, err
		}
		argv[i] = b.String()
	}
	if argv[0] == "" {
		return nil, errors.New("the program renders empty")
	}
	return argv, nil
}

// Trials returns the parameters of the trials Run will start, in order.
func (s *Sweep) Trials() []Values { return s.trials }

// ErrNoTrialSucceeded is wrapped by Run's error when every trial ran and
// none succeeded; the message names each trial's failure.
var ErrNoTrialSucceeded = errors.New("no trial succeeded")

// Run runs the trials, at most Parallel at once, in order, and returns the
// summary; it returns when every trial it started has ended and its
// process group is gone. It then writes the Summary and, if a trial
// succeeded, ParamsDir and BestDir.
//
// The error wraps ErrNoTrialSucceeded when no trial succeeded (a failed
// or early-stopped trial does not fail a sweep in which another
// succeeds), ctx.Err() when ctx ended first (the running trials are
// stopped, SIGTERM then SIGKILL, and the rest never start), and the
// cause when an output cannot be written. The Result lists every trial
// in every case but one: when Dir cannot be made or holds a trial
// directory already, Run starts nothing and lists no trial. Run may be
// called once.
func (s *Sweep) Run(ctx context.Context) (Result, error) {
	if s.ran {
		return Result{}, errors.New("sweep: Run called twice")
	}
	s.ran = true
	start := time.Now()
	res := Result{Objective: s.opts.Objective, Goal: s.opts.Goal, Algorithm: s.opts.Algorithm, Seed: s.opts.Seed}
	for _, p := range s.opts.Space {
		res.Space = append(res.Space, p.String())
	}
	if err := s.prepareDir(len(s.trials)); err != nil {
		return res, err
	}
	res.Trials = make([]Trial, len(s.trials))
	for i, v := range s.trials {
		res.Trials[i] = Trial{Number: i + 1, Dir: filepath.Join(s.opts.Dir, fmt.Sprintf("trial-%d", i+1)), Params: v, Status: Cancelled,
			Reason: "the sweep was cancelled before the trial started"}
	}
	s.log.Info("sweep starting", "trials", len(s.trials), "parallel", s.opts.Parallel, "algorithm", s.opts.Algorithm,
		"objective", s.opts.Objective, "goal", s.opts.Goal, "dir", s.opts.Dir)

	slots := make(chan struct{}, s.opts.Parallel)
	var wg sync.WaitGroup
	for i := range res.Trials {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		t := &res.Trials[i]
		wg.Go(func() {
			defer func() { <-slots }()
			s.runTrial(ctx, t)
		})
	}
	wg.Wait()
	res.DurationSeconds = time.Since(start).Seconds()

	var failures []string
	for i := range res.Trials {
		t := &res.Trials[i]
		switch t.Status {
		case Succeeded:
			res.Succeeded++
			if res.Best == nil || s.opts.Goal.better(*t.Objective, *res.Best.Objective) {
				res.Best = t
			}
		case Failed:
			res.Failed++
			failures = append(failures, fmt.Sprintf("trial %d: %s", t.Number, t.Reason))
		case EarlyStopped:
			res.EarlyStopped++
		case Cancelled:
			res.Cancelled++
		}
	}
	if res.Best != nil {
		best := *res.Best // a copy, so that the summary holds the trial twice rather than aliasing
		res.Best = &best
	}
	runErr := s.outcome(ctx, res, failures)
	return res, errors.Join(runErr, s.writeOutputs(res))
}

// outcome is Run's error before the outputs are written.
func (s *Sweep) outcome(ctx context.Context, res Result, failures []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sweep: stopped after %d of %d trials ended: %w", res.Succeeded+res.Failed+res.EarlyStopped, len(res.Trials), context.Cause(ctx))
	}
	if res.Best != nil {
		s.log.Info("sweep done", "best", res.Best.Number, s.opts.Objective, *res.Best.Objective,
			"params", formatValues(s.opts.Space, res.Best.Params), "succeeded", res.Succeeded, "failed", res.Failed, "early_stopped", res.EarlyStopped)
		return nil
	}
	return fmt.Errorf("sweep: %w: all %d trials failed:\n  %s", ErrNoTrialSucceeded, len(res.Trials), strings.Join(failures, "\n  "))
}

// prepareDir makes Dir and checks that no trial directory is in it.
func (s *Sweep) prepareDir(n int) error {
	if err := os.MkdirAll(s.opts.Dir, 0o755); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	for i := 1; i <= n; i++ {
		d := filepath.Join(s.opts.Dir, fmt.Sprintf("trial-%d", i))
		if _, err := os.Lstat(d); err == nil {
			return fmt.Errorf("sweep: %w: %s exists: give the sweep a directory of its own (an earlier sweep's trials would be read as this one's)", ErrInvalidOptions, d)
		}
	}
	return nil
}

// writeLine writes s and a newline to w, for a log.
func writeLine(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "infergate sweep: "+format+"\n", args...)
}
