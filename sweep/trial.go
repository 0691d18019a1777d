package sweep

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runTrial runs one trial to its end and records how it ended in t.
func (s *Sweep) runTrial(ctx context.Context, t *Trial) {
	start := time.Now()
	t.Reason = ""
	fail := func(format string, args ...any) {
		t.Status, t.Reason = Failed, fmt.Sprintf(format, args...)
	}
	s.log.Info("trial starting", "trial", t.Number, "params", formatValues(s.opts.Space, t.Params))
	defer func() {
		t.DurationSeconds = time.Since(start).Seconds()
		s.logEnd(t)
	}()

	if err := os.Mkdir(t.Dir, 0o755); err != nil {
		fail("%v", err)
		return
	}
	logPath := filepath.Join(t.Dir, "log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fail("%v", err)
		return
	}
	defer logf.Close()
	if b, err := json.MarshalIndent(t.Params, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(t.Dir, "params.json"), append(b, '\n'), 0o644)
	}

	if s.opts.TrialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, s.opts.TrialTimeout, errTrialTimeout)
		defer cancel()
	}
	data := s.templateData(t.Number, t.Dir, t.Params)
	env := append(append([]string(nil), s.env()...),
		"INFERGATE_SWEEP_TRIAL="+strconv.Itoa(t.Number), "INFERGATE_SWEEP_TRIAL_DIR="+t.Dir)

	for i, p := range s.prepare {
		argv, err := render(p, data)
		if err != nil {
			fail("prepare command %d: %v", i+1, err)
			return
		}
		writeLine(logf, "prepare command %d: %s", i+1, strings.Join(argv, " "))
		from := logSize(logf)
		out := s.runProcess(ctx, argv, env, logf, nil)
		if out.err != nil {
			s.ended(ctx, t, out, logPath, from, fmt.Sprintf("prepare command %d (%s)", i+1, argv[0]))
			return
		}
	}
	argv, err := render(s.command, data)
	if err != nil {
		fail("command: %v", err)
		return
	}
	writeLine(logf, "command: %s", strings.Join(argv, " "))
	from := logSize(logf)
	progress := &progressReader{path: filepath.Join(t.Dir, s.opts.ProgressFile), objective: s.opts.Objective}
	var watch func() (bool, string)
	if s.opts.MedianStopAfter > 0 {
		watch = func() (bool, string) { return s.checkMedian(t, progress, logf) }
	}
	out := s.runProcess(ctx, argv, env, logf, watch)
	// The final read: the epochs the trial wrote since the last poll,
	// for its record and, if it succeeded, for the median of later ones.
	if err := progress.read(); err != nil {
		writeLine(logf, "reading %s: %v", s.opts.ProgressFile, err)
	}
	for _, p := range progress.takeProblems() {
		writeLine(logf, "%s: %s; the line is ignored", s.opts.ProgressFile, p)
	}
	if n := len(progress.curve); n > 0 {
		t.Epochs = progress.curve[n-1].epoch
	}
	if out.err != nil || out.stopped != "" {
		s.ended(ctx, t, out, logPath, from, "command")
		return
	}
	obj, err := readObjective(filepath.Join(t.Dir, s.opts.MetricsFile), s.opts.Objective)
	if err != nil {
		fail("exited 0, but %v", err)
		return
	}
	t.Status, t.Objective = Succeeded, &obj
	if len(progress.curve) > 0 {
		s.mu.Lock()
		s.completed = append(s.completed, progress.curve)
		s.mu.Unlock()
	}
}

// errTrialTimeout is the cause of a trial context that timed out.
var errTrialTimeout = errors.New("trial timed out")

// ended records a process that did not exit 0, or that the sweep stopped.
// Its output in the log starts at byte from.
func (s *Sweep) ended(ctx context.Context, t *Trial, out procResult, logPath string, from int64, what string) {
	switch {
	case out.stopped != "":
		t.Status, t.Reason = EarlyStopped, out.stopped
	case errors.Is(context.Cause(ctx), errTrialTimeout):
		t.Status, t.Reason = Failed, fmt.Sprintf("%s: timed out after %s and was killed", what, s.opts.TrialTimeout)
	case ctx.Err() != nil:
		t.Status, t.Reason = Cancelled, fmt.Sprintf("%s: stopped: the sweep was cancelled", what)
	default:
		t.Status, t.Reason = Failed, fmt.Sprintf("%s: %v", what, out.err)
		if lines := firstLines(logPath, from, 3); lines != "" {
			t.Reason += ": " + lines
		}
	}
}

func (s *Sweep) logEnd(t *Trial) {
	switch t.Status {
	case Succeeded:
		s.log.Info("trial succeeded", "trial", t.Number, s.opts.Objective, *t.Objective, "seconds", round3(t.DurationSeconds))
	case EarlyStopped:
		s.log.Info("trial early-stopped", "trial", t.Number, "reason", t.Reason)
	case Cancelled:
		s.log.Info("trial cancelled", "trial", t.Number)
	default:
		s.log.Warn("trial failed", "trial", t.Number, "reason", t.Reason)
	}
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func (s *Sweep) env() []string {
	if s.opts.Env != nil {
		return s.opts.Env
	}
	return os.Environ()
}

// checkMedian reads the trial's new progress and applies the median
// stopping rule to it; it returns whether to stop and why.
func (s *Sweep) checkMedian(t *Trial, progress *progressReader, logf *os.File) (bool, string) {
	if err := progress.read(); err != nil {
		writeLine(logf, "reading %s: %v", s.opts.ProgressFile, err)
	}
	for _, p := range progress.takeProblems() {
		writeLine(logf, "%s: %s; the line is ignored", s.opts.ProgressFile, p)
	}
	s.mu.Lock()
	v := medianStop(s.opts.Goal, progress.curve, s.completed, s.opts.MedianStopAfter, s.opts.MedianMinTrials)
	s.mu.Unlock()
	if !v.stop {
		return false, ""
	}
	why := fmt.Sprintf("median stopping rule at epoch %d: best %s %s is worse than %s, the median of %d completed trials' running averages up to that epoch",
		v.epoch, s.opts.Objective, formatFloat(v.best), formatFloat(v.median), v.n)
	writeLine(logf, "stopping the trial: %s", why)
	return true, why
}

// procResult is how a process ended: err is nil for an exit 0; stopped
// says why the sweep stopped it early.
type procResult struct {
	err     error
	stopped string
}

// runProcess runs argv in a process group of its own, its output to logf,
// until it exits, ctx ends or watch (polled every PollInterval) says to
// stop it. Whatever it leaves in its group is killed when it exits.
func (s *Sweep) runProcess(ctx context.Context, argv, env []string, logf *os.File, watch func() (bool, string)) procResult {
	path, err := s.lookPath(argv[0])
	if err != nil {
		return procResult{err: err}
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = env
	// A file, not a pipe: Wait returns when the process exits, even if
	// something it started still holds the file open.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return procResult{err: err}
	}
	pgid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var tick <-chan time.Time
	if watch != nil {
		ticker := time.NewTicker(s.opts.PollInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case err := <-exited:
			signalGroup(pgid, syscall.SIGKILL) // what it left behind
			return procResult{err: err}
		case <-ctx.Done():
			err := s.stopGroup(pgid, exited, logf)
			return procResult{err: orErr(err, ctx.Err())}
		case <-tick:
			if stop, why := watch(); stop {
				s.stopGroup(pgid, exited, logf)
				return procResult{stopped: why}
			}
		}
	}
}

// orErr returns err if it is set, else def.
func orErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// stopGroup sends SIGTERM to the process group, SIGKILL after KillGrace if
// its leader has not exited, and SIGKILL to what is left once it has. It
// returns the leader's exit.
func (s *Sweep) stopGroup(pgid int, exited <-chan error, logf *os.File) error {
	signalGroup(pgid, syscall.SIGTERM)
	grace := time.NewTimer(s.opts.KillGrace)
	defer grace.Stop()
	var err error
	select {
	case err = <-exited:
	case <-grace.C:
		writeLine(logf, "the process did not exit within %s of SIGTERM: killing it", s.opts.KillGrace)
		signalGroup(pgid, syscall.SIGKILL)
		err = <-exited
	}
	signalGroup(pgid, syscall.SIGKILL)
	return err
}

// signalGroup sends sig to process group pgid; a group already gone is no
// error, and no other error can be acted on.
func signalGroup(pgid int, sig syscall.Signal) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// readObjective reads the number named objective from a trial's metrics
// file, a JSON object.
func readObjective(path, objective string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("wrote no metrics file %s", path)
		}
		return 0, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("its metrics file %s is not a JSON object: %v", path, err)
	}
	v, ok := m[objective].(float64)
	if !ok {
		keys := make([]string, 0, len(m))
		for k, v := range m {
			if _, num := v.(float64); num {
				keys = append(keys, k)
			}
		}
		return 0, fmt.Errorf("its metrics file %s has no number %q (its numbers: %s)", path, objective, strings.Join(slices.Sorted(slices.Values(keys)), ", "))
	}
	return v, nil
}

// logSize is the size of the trial's log: where the output of the process
// about to start begins.
func logSize(logf *os.File) int64 {
	fi, err := logf.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// firstLines returns the first n non-empty lines of a process's output in
// the log from byte from on (not the sweep's own lines), each clipped,
// joined with " | ".
func firstLines(path string, from int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var lines []string
	for sc.Scan() && len(lines) < n {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "infergate sweep: ") {
			continue
		}
		if len(l) > 200 {
			l = l[:200] + "..."
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, " | ")
}
