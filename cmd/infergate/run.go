package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/pipelines"
	"github.com/infergate/infergate/pipelines/pipelinesapi"
	"github.com/infergate/infergate/registry/registryapi"
)

// `infergate run ...`: the pipeline runs' CLI, a client of the admin
// port's runs API (pipelines/pipelinesapi). Every decision is the
// engine's; this file only shapes requests and shows answers.

const runUsage = `Usage:
  infergate run submit -f FILE [-p NAME=VALUE]... [-no-cache] [-wait]
  infergate run list [-pipeline NAME] [-state STATE] [-limit N]
  infergate run get ID
  infergate run logs [-f] [-iteration N] [-attempt N] ID STEP
  infergate run cancel ID
  infergate run retry ID [-wait]

Every command takes -admin HOST:PORT or URL (the gateway's admin address,
default 127.0.0.1:8090), and all but logs take -o table|json (-json is
-o json). Flags may come before, between or after the words and arguments.

submit sends the pipeline file (its relative paths resolve against the
file's directory) and prints the run's id; -p gives a parameter as text
(-p epochs=20 -p rate=0.1 -p xs='[1,2]'); -wait follows the run until it
ends, shows its steps and exits non-zero unless it succeeded. logs prints
a step's log (an iteration's with -iteration, an earlier attempt's with
-attempt); -f follows it until the step ends. retry runs again what did
not succeed in a failed or cancelled run.
`

// runFlags holds every flag of the run commands; each command registers
// the ones it takes.
type runFlags struct {
	admin, output      string
	asJSON             bool
	file               string
	params             stringList
	noCache, wait      bool
	pipeline, state    string
	limit              int
	follow             bool
	iteration, attempt int
}

// runCommand is one `infergate run` command: its word, positional
// arguments, own flags and action.
type runCommand struct {
	name  string
	args  []string
	flags func(fs *flag.FlagSet, f *runFlags)
	// noOutput says the command prints no document (logs): it takes no
	// -o or -json.
	noOutput bool
	run      func(c *runCLI, pos []string) error
}

var runCommands = []runCommand{
	{name: "submit", flags: func(fs *flag.FlagSet, f *runFlags) {
		fs.StringVar(&f.file, "f", "", "the pipeline's YAML file (required)")
		fs.Var(&f.params, "p", "a parameter NAME=VALUE, the value as text (repeatable)")
		fs.BoolVar(&f.noCache, "no-cache", false, "run every step, reusing no earlier outputs")
		waitFlag(fs, f)
	}, run: (*runCLI).submit},
	{name: "list", flags: func(fs *flag.FlagSet, f *runFlags) {
		fs.StringVar(&f.pipeline, "pipeline", "", "only the runs of this pipeline")
		fs.StringVar(&f.state, "state", "", "only runs in this state: pending, running, succeeded, failed or cancelled")
		fs.IntVar(&f.limit, "limit", 100, "show at most this many runs, newest first")
	}, run: (*runCLI).list},
	{name: "get", args: []string{"ID"}, run: (*runCLI).get},
	{name: "logs", args: []string{"ID", "STEP"}, noOutput: true, flags: func(fs *flag.FlagSet, f *runFlags) {
		fs.BoolVar(&f.follow, "f", false, "follow the log until the step ends")
		fs.IntVar(&f.iteration, "iteration", 0, "the iteration of a parallelFor step")
		fs.IntVar(&f.attempt, "attempt", 0, "the attempt (default: the latest)")
	}, run: (*runCLI).logs},
	{name: "cancel", args: []string{"ID"}, run: (*runCLI).cancel},
	{name: "retry", args: []string{"ID"}, flags: waitFlag, run: (*runCLI).retry},
}

func waitFlag(fs *flag.FlagSet, f *runFlags) {
	fs.BoolVar(&f.wait, "wait", false, "follow the run until it ends; exit non-zero unless it succeeded")
}

// newRunFlagSet returns a FlagSet with the common flags and cmd's.
func newRunFlagSet(cmd *runCommand, f *runFlags, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("run "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.admin, "admin", "127.0.0.1:8090", "the gateway's admin address: HOST:PORT or a URL")
	if !cmd.noOutput {
		fs.StringVar(&f.output, "o", "table", "output: table or json")
		fs.BoolVar(&f.asJSON, "json", false, "print JSON (-o json)")
	}
	if cmd.flags != nil {
		cmd.flags(fs, f)
	}
	return fs
}

// runCLI is one run of a run command.
type runCLI struct {
	ctx            context.Context
	f              runFlags
	set            map[string]bool // the flags given
	api            *registryapi.Client
	stream         *http.Client // for logs, which last as long as the step
	stdout, stderr io.Writer
	// pollMin and pollMax bound the wait between two looks at a run while
	// -wait follows it: it starts at pollMin after a change and doubles up
	// to pollMax while nothing changes.
	pollMin, pollMax time.Duration
}

// runRun runs `infergate run ...` (see runUsage). SIGINT and SIGTERM stop
// a -wait or a logs -f (the run goes on).
func runRun(args []string, stdout, stderr io.Writer) error {
	return untilSignal(runRunContext, args, stdout, stderr)
}

// untilSignal runs a command with a context that SIGINT and SIGTERM
// cancel, for the commands (run, step) whose work should stop on Ctrl-C.
func untilSignal(cmd func(ctx context.Context, args []string, stdout, stderr io.Writer) error, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return cmd(ctx, args, stdout, stderr)
}

// runRunContext is runRun until ctx is done.
func runRunContext(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, i, help := findRunCommand(args)
	if cmd == nil {
		fmt.Fprint(stderr, runUsage)
		if help {
			return flag.ErrHelp
		}
		if w := firstRunWord(args); w != "" {
			return fmt.Errorf("run: unknown command %q", w)
		}
		return errors.New("run: say what to do, as in: infergate run list")
	}
	c := &runCLI{ctx: ctx, stdout: stdout, stderr: stderr, stream: &http.Client{}, pollMin: 100 * time.Millisecond, pollMax: time.Second}
	fs := newRunFlagSet(cmd, &c.f, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: infergate run %s [flags]\nFlags may come before, between or after the arguments.\n", strings.Join(append([]string{cmd.name}, cmd.args...), " "))
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, slices.Concat(args[:i], args[i+1:]))
	if err != nil {
		return err // -h: flag.ErrHelp, after the usage
	}
	name := "run " + cmd.name
	if len(pos) != len(cmd.args) {
		fs.Usage()
		if len(pos) < len(cmd.args) {
			return fmt.Errorf("%s: missing %s", name, strings.Join(cmd.args[len(pos):], " "))
		}
		return fmt.Errorf("%s: unexpected argument %q", name, pos[len(cmd.args)])
	}
	c.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { c.set[fl.Name] = true })
	if c.f.asJSON {
		c.f.output = "json"
	}
	if !cmd.noOutput && c.f.output != "table" && c.f.output != "json" {
		return fmt.Errorf("%s: -o %q: want table or json", name, c.f.output)
	}
	if c.api, err = newRegistryClient(c.f.admin); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.run(c, pos); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(append([]string{name}, pos...), " "), err)
	}
	return nil
}

// findRunCommand finds the command word among args wherever the flags
// stand: the first word naming a command such that the arguments before
// it are that command's flags and their values (so that a flag's value
// is never taken for the command, and -f may take a value in submit and
// none in logs). It returns the command and its index or, when there is
// none, whether -h was asked for.
func findRunCommand(args []string) (cmd *runCommand, at int, help bool) {
	for i, a := range args {
		before := slices.DeleteFunc(slices.Clone(args[:i]), isHelpFlag)
		for j := range runCommands {
			c := &runCommands[j]
			if c.name != a {
				continue
			}
			var f runFlags
			fs := newRunFlagSet(c, &f, io.Discard)
			if fs.Parse(before) == nil && fs.NArg() == 0 {
				return c, i, false
			}
		}
	}
	return nil, 0, slices.ContainsFunc(args, isHelpFlag)
}

// firstRunWord is the first argument that is neither a flag nor the value
// of one, for the message about an unknown command.
func firstRunWord(args []string) string {
	valued := map[string]bool{"admin": true, "o": true, "p": true, "pipeline": true, "state": true, "limit": true, "iteration": true, "attempt": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return args[i+1]
			}
			return ""
		case strings.HasPrefix(a, "-"):
			if name := strings.TrimLeft(a, "-"); valued[name] {
				i++ // its value follows
			}
		default:
			return a
		}
	}
	return ""
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// json reports whether the output is JSON.
func (c *runCLI) json() bool { return c.f.output == "json" }

func runPath(id string) string { return "/api/v1/runs/" + url.PathEscape(id) }

// --- submit, cancel, retry

func (c *runCLI) submit([]string) error {
	if c.f.file == "" {
		return errors.New("give the pipeline file with -f")
	}
	data, err := readPipelineFile(c.f.file)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(filepath.Dir(c.f.file))
	if err != nil {
		return err
	}
	params, err := keyValues("-p", c.f.params)
	if err != nil {
		return err
	}
	req := pipelinesapi.SubmitRequest{Pipeline: string(data), DisableCache: c.f.noCache, Source: c.f.file, BaseDir: dir}
	for k, v := range params {
		// As text: the engine parses each by its declared type.
		b, _ := json.Marshal(v)
		if req.Params == nil {
			req.Params = make(map[string]json.RawMessage, len(params))
		}
		req.Params[k] = b
	}
	var run pipelines.Run
	if err := c.api.Call(c.ctx, http.MethodPost, "/api/v1/runs", req, &run); err != nil {
		return err
	}
	if !c.f.wait {
		if c.json() {
			return writeIndented(c.stdout, run)
		}
		fmt.Fprintln(c.stdout, run.ID)
		return nil
	}
	if !c.json() {
		fmt.Fprintln(c.stdout, run.ID)
	}
	return c.waitAndShow(run.ID)
}

// readPipelineFile reads a pipeline file, refusing one larger than the
// engine takes before sending it.
func readPipelineFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, pipelines.MaxPipelineBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > pipelines.MaxPipelineBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes, the bound of a pipeline", path, pipelines.MaxPipelineBytes)
	}
	return b, nil
}

func (c *runCLI) cancel(pos []string) error {
	var run pipelines.Run
	if err := c.api.Call(c.ctx, http.MethodPost, runPath(pos[0])+"/cancel", struct{}{}, &run); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, run)
	}
	fmt.Fprintf(c.stdout, "run %s cancelling: its running steps are stopped, then its finally steps run (infergate run get %s)\n", run.ID, run.ID)
	return nil
}

func (c *runCLI) retry(pos []string) error {
	var run pipelines.Run
	if err := c.api.Call(c.ctx, http.MethodPost, runPath(pos[0])+"/retry", struct{}{}, &run); err != nil {
		return err
	}
	if c.f.wait {
		if !c.json() {
			fmt.Fprintf(c.stdout, "run %s retrying\n", run.ID)
		}
		return c.waitAndShow(run.ID)
	}
	if c.json() {
		return writeIndented(c.stdout, run)
	}
	fmt.Fprintf(c.stdout, "run %s retrying what did not succeed (infergate run get %s)\n", run.ID, run.ID)
	return nil
}

// waitAndShow follows a run until it ends, shows it, and returns an error
// unless it succeeded.
func (c *runCLI) waitAndShow(id pipelines.RunID) error {
	run, err := c.wait(id)
	if err != nil {
		if c.ctx.Err() != nil {
			return fmt.Errorf("stopped waiting (%v); the run goes on: infergate run get %s", context.Cause(c.ctx), id)
		}
		return err
	}
	if c.json() {
		if err := writeIndented(c.stdout, run); err != nil {
			return err
		}
	} else {
		printRun(c.stdout, run, time.Now())
	}
	if run.State != pipelines.RunSucceeded {
		if run.Reason != "" {
			return fmt.Errorf("the run %s: %s", run.State, run.Reason)
		}
		return fmt.Errorf("the run %s", run.State)
	}
	return nil
}

// waitFailures is how many looks at a run in a row may fail to reach the
// API (a control plane restarting, which resumes its runs) before -wait
// gives up.
const waitFailures = 10

// wait looks at the run until it has ended, telling stderr of each step
// that starts or ends. An answer of the API other than a 5xx (an unknown
// run) ends the wait with its error; a failure to reach it is tried again.
func (c *runCLI) wait(id pipelines.RunID) (*pipelines.Run, error) {
	seen := map[string]pipelines.StepState{}
	var run pipelines.Run
	err := registryapi.Poll(c.ctx, registryapi.PollOptions{
		Min: c.pollMin, Max: c.pollMax, MaxFailures: waitFailures,
		OnRetry: func(err error, wait time.Duration) {
			fmt.Fprintf(c.stderr, "(run %s: %v; looking again in %s)\n", id, err, wait)
		},
	}, func(ctx context.Context) (done, changed bool, err error) {
		run = pipelines.Run{}
		if err := c.api.Call(ctx, http.MethodGet, runPath(string(id)), nil, &run); err != nil {
			return false, false, err
		}
		changed = c.progress(&run, seen)
		return run.State.Final(), changed, nil
	})
	if err != nil {
		return nil, err
	}
	return &run, nil
}

// progress prints a line for each step or iteration whose state changed
// since seen (pending ones are not news), and reports whether any did.
func (c *runCLI) progress(run *pipelines.Run, seen map[string]pipelines.StepState) bool {
	changed := false
	var visit func(s *pipelines.StepRun)
	visit = func(s *pipelines.StepRun) {
		label := stepLabel(s)
		if old, ok := seen[label]; (ok || s.State != pipelines.StepPending) && old != s.State {
			line := label + " " + string(s.State)
			if s.State.Final() && s.Reason != "" {
				line += ": " + firstLine(s.Reason)
			}
			fmt.Fprintf(c.stderr, "%s  %s\n", time.Now().Format(time.TimeOnly), line)
			changed = true
		}
		seen[label] = s.State
		for i := range s.Iterations {
			visit(&s.Iterations[i])
		}
	}
	for i := range run.Steps {
		visit(&run.Steps[i])
	}
	return changed
}

// stepLabel names a step in progress lines: train, train[2], done (finally).
func stepLabel(s *pipelines.StepRun) string {
	l := s.Name
	if s.Iteration >= 0 {
		l += "[" + strconv.Itoa(s.Iteration) + "]"
	}
	if s.Finally {
		l += " (finally)"
	}
	return l
}

// --- list and get

func (c *runCLI) list([]string) error {
	if c.f.limit < 1 {
		return fmt.Errorf("-limit %d: want 1 or more", c.f.limit)
	}
	q := url.Values{}
	if c.f.pipeline != "" {
		q.Set("pipeline", c.f.pipeline)
	}
	if c.f.state != "" {
		q.Set("state", c.f.state)
	}
	runs, more, err := registryapi.ListAll[pipelines.Run](c.ctx, c.api, "/api/v1/runs", q, "runs", c.f.limit)
	if err != nil {
		return err
	}
	if more {
		fmt.Fprintf(c.stderr, "(more than %d runs: raise -limit to see them)\n", c.f.limit)
	}
	if c.json() {
		return writeIndented(c.stdout, runs)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPIPELINE\tSTATE\tSTARTED\tDURATION")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Pipeline, runState(&r), when(r.StartTime), elapsed(r.StartTime, r.EndTime, now))
	}
	return tw.Flush()
}

func (c *runCLI) get(pos []string) error {
	var run pipelines.Run
	if err := c.api.Call(c.ctx, http.MethodGet, runPath(pos[0]), nil, &run); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, run)
	}
	printRun(c.stdout, &run, time.Now())
	return nil
}

// runState is a run's state, marked while a cancel is under way.
func runState(r *pipelines.Run) string {
	if r.Cancelling && !r.State.Final() {
		return string(r.State) + " (cancelling)"
	}
	return string(r.State)
}

// printRun shows a run: its fields, then a table of its steps, each
// parallelFor step followed by its iterations, the finally steps last.
// Durations of what still runs are counted to now.
func printRun(w io.Writer, r *pipelines.Run, now time.Time) {
	state := runState(r)
	if r.Reason != "" {
		state += ": " + r.Reason
	}
	fields := [][2]string{{"Run", string(r.ID)}, {"Pipeline", r.Pipeline}, {"State", state}, {"Params", formatParams(r.Params)}}
	if r.DisableCache {
		fields = append(fields, [2]string{"Cache", "off for this run"})
	}
	if r.Actor != "" {
		fields = append(fields, [2]string{"By", r.Actor})
	}
	fields = append(fields, [][2]string{
		{"Created", when(r.CreateTime)}, {"Started", when(r.StartTime)}, {"Ended", when(r.EndTime)},
		{"Duration", elapsed(r.StartTime, r.EndTime, now)},
	}...)
	printFields(w, fields)
	fmt.Fprintln(w, "Steps:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tITERATION\tSTATE\tATTEMPTS\tDURATION\tCACHED\tREASON")
	row := func(s *pipelines.StepRun, iteration, attempts, cached string) {
		took := elapsed(s.StartTime, s.EndTime, now)
		if s.State == pipelines.StepCached {
			took = "-" // nothing ran
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", stepName(s), iteration, s.State, attempts, took, cached, dash(firstLine(s.Reason)))
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		if len(s.Iterations) == 0 {
			row(s, "-", strconv.Itoa(len(s.Attempts)), cachedCell(s))
			continue
		}
		// A parallelFor step: its row sums up its iterations'.
		attempts, cached := len(s.Attempts), 0
		for _, it := range s.Iterations {
			attempts += len(it.Attempts)
			if it.State == pipelines.StepCached {
				cached++
			}
		}
		row(s, "all", strconv.Itoa(attempts), fmt.Sprintf("%d/%d", cached, len(s.Iterations)))
		for j := range s.Iterations {
			it := &s.Iterations[j]
			row(it, strconv.Itoa(it.Iteration), strconv.Itoa(len(it.Attempts)), cachedCell(it))
		}
	}
	tw.Flush()
}

func stepName(s *pipelines.StepRun) string {
	if s.Finally {
		return s.Name + " (finally)"
	}
	return s.Name
}

// cachedCell says whether a step reused earlier outputs (its reason
// says whose) or ran; "-" while that is not known, or if it never ran.
func cachedCell(s *pipelines.StepRun) string {
	switch s.State {
	case pipelines.StepCached:
		return "yes"
	case pipelines.StepSucceeded, pipelines.StepFailed:
		return "no"
	}
	return "-"
}

// formatParams shows parameters as name=value, sorted, values as JSON
// but for strings.
func formatParams(params map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v, ok := params[k].(string)
		if !ok {
			b, _ := json.Marshal(params[k])
			v = string(b)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// elapsed is how long something that started at start ran: until end,
// or until now while it runs; "-" if it has not started.
func elapsed(start, end, now time.Time) string {
	if start.IsZero() {
		return "-"
	}
	if end.IsZero() {
		end = now
	}
	d := max(end.Sub(start), 0)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// --- logs

func (c *runCLI) logs(pos []string) error {
	q := url.Values{}
	if c.f.follow {
		q.Set("follow", "1")
	}
	// Sent only when given: the engine's defaults (iteration 0 of a
	// parallelFor step, the latest attempt) apply otherwise.
	if c.set["iteration"] {
		q.Set("iteration", strconv.Itoa(c.f.iteration))
	}
	if c.set["attempt"] {
		q.Set("attempt", strconv.Itoa(c.f.attempt))
	}
	u := runPath(pos[0]) + "/steps/" + url.PathEscape(pos[1]) + "/logs"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := c.api.NewRequest(c.ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s answered %s", c.api.Base(), resp.Status)
	}
	// The body ends when the log does (with -f: when the step has ended);
	// a connection lost before is an error, not a short log.
	if _, err := io.Copy(c.stdout, resp.Body); err != nil {
		if c.ctx.Err() != nil {
			return nil // interrupted: the user stopped following
		}
		return fmt.Errorf("the log stream broke: %w", err)
	}
	return nil
}
