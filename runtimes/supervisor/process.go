package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// AnnouncePrefix starts the line a model server prints on stdout once its
// listeners are bound: "INFERGATE-LISTEN rest=HOST:PORT grpc=HOST:PORT".
// Binding port 0 and announcing the result avoids the race of picking a
// free port in the parent.
const AnnouncePrefix = "INFERGATE-LISTEN"

// ProcessOptions starts a runtime process. Zero fields take the documented
// defaults.
type ProcessOptions struct {
	// Path is the executable (default: this process's own executable).
	Path string
	// Args are the arguments after the executable's name.
	Args []string
	// LogPath receives the process's stderr and, after the announce line,
	// its stdout (default: discarded).
	LogPath string
	// StartTimeout bounds the wait for the announce line (default 60s).
	StartTimeout time.Duration
	// NoAnnounce says the process prints no announce line (a runtime
	// told its ports by its arguments, as Triton or MLServer): StartProcess
	// returns as soon as the process runs, RESTAddr and GRPCAddr stay
	// empty, and all of stdout goes to the log.
	NoAnnounce bool
	// Env is added to this process's environment, as "KEY=value"; a key
	// given twice takes the last value.
	Env []string
}

// ErrExec is in the chain of StartProcess's error when the executable could
// not be run at all (not found, not executable): trying again will not
// help until someone fixes the command.
var ErrExec = errors.New("cannot execute")

// ProcessError is StartProcess's error for a runtime process that could
// not be started, or that exited or timed out before it announced its
// listeners. Error says everything, with the executable's path and the
// log's last lines, for logs and the admin API; Summary says what happened
// in words a client of the gateway may read.
type ProcessError struct {
	// Summary says what happened with no path, log line or address:
	// "exited before listening (exit status 1)", "did not listen within
	// 1m0s", "executable not found".
	Summary string
	// Path is the executable.
	Path string
	// Tail is the log's last lines, in the form Process.Tail returns
	// ("; last log lines (LOG):\n..."), or "".
	Tail string
	// Err is the cause, when there is one: the exec error (with ErrExec
	// in the chain when the executable cannot run at all), or how the
	// process exited.
	Err error

	start bool // the process could not be started: Error says "start"
}

func (e *ProcessError) Error() string {
	if e.start {
		return "runtimes: start " + e.Path + ": " + e.Err.Error()
	}
	return "runtimes: " + e.Path + " " + e.Summary + e.Tail
}

func (e *ProcessError) Unwrap() error { return e.Err }

// LogTailLines is how many of the log's last lines an error carries.
const LogTailLines = 20

// Process is a runtime process started by StartProcess, in its own process
// group so that stopping it stops everything it started. On Linux it is also
// killed if this process dies.
type Process struct {
	// RESTAddr and GRPCAddr are the addresses the process announced.
	RESTAddr, GRPCAddr string

	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	logF    *os.File
	stopMu  sync.Mutex
	// groupKilled is set under stopMu once the group got SIGKILL.
	groupKilled bool
}

// StartProcess starts a runtime process and waits for its announce line
// (unless opts.NoAnnounce). A process that exits or times out first is an
// error carrying the last lines of its log; an executable that cannot be
// run is an error wrapping ErrExec.
func StartProcess(ctx context.Context, opts ProcessOptions) (*Process, error) {
	if opts.Path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("runtimes: own executable: %w", err)
		}
		opts.Path = exe
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	var logW io.Writer = io.Discard
	var logF *os.File
	if opts.LogPath != "" {
		f, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("runtimes: process log: %w", err)
		}
		logF, logW = f, f
	}
	cmd := exec.Command(opts.Path, opts.Args...)
	// Without a log the child's stderr is /dev/null, not a pipe to
	// io.Discard: a pipe would make Wait wait for every process that
	// inherited it, grandchildren included.
	if logF != nil {
		cmd.Stderr = logF
	}
	cmd.SysProcAttr = processAttr()
	if len(opts.Env) > 0 {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	if opts.NoAnnounce {
		return startQuiet(cmd, opts, logF)
	}
	// Our own pipe rather than StdoutPipe: Wait must not close the reader
	// while the copier still drains what the process wrote last.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		closeFile(logF)
		return nil, err
	}
	cmd.Stdout = stdoutW
	err = cmd.Start()
	_ = stdoutW.Close()
	if err != nil {
		_ = stdout.Close()
		closeFile(logF)
		return nil, startError(opts.Path, err)
	}
	p := &Process{cmd: cmd, logPath: opts.LogPath, done: make(chan struct{}), logF: logF}

	announced := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer stdout.Close()
		br := bufio.NewReader(stdout)
		for {
			line, err := br.ReadString('\n')
			if strings.HasPrefix(line, AnnouncePrefix) {
				announced <- strings.TrimSpace(line)
				_, _ = io.Copy(logW, br)
				return
			}
			_, _ = io.WriteString(logW, line)
			if err != nil {
				return
			}
		}
	}()
	go func() {
		p.waitErr = cmd.Wait()
		// The group is killed on Stop, so the pipe's last writer is gone
		// soon after the leader; don't wait forever for a stray one.
		select {
		case <-copied:
		case <-time.After(time.Second):
		}
		closeFile(logF)
		close(p.done)
	}()

	timer := time.NewTimer(opts.StartTimeout)
	defer timer.Stop()
	select {
	case line := <-announced:
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "rest":
				p.RESTAddr = v
			case "grpc":
				p.GRPCAddr = v
			}
		}
		return p, nil
	case <-p.done:
		return nil, &ProcessError{Summary: fmt.Sprintf("exited before listening (%v)", p.waitErr), Path: opts.Path, Tail: p.Tail(), Err: p.waitErr}
	case <-timer.C:
		_ = p.Stop(5 * time.Second)
		return nil, &ProcessError{Summary: fmt.Sprintf("did not listen within %s", opts.StartTimeout), Path: opts.Path, Tail: p.Tail()}
	case <-ctx.Done():
		_ = p.Stop(5 * time.Second)
		return nil, ctx.Err()
	}
}

// startQuiet starts a process that announces nothing: its stdout and
// stderr both go to the log, with no copier in between.
func startQuiet(cmd *exec.Cmd, opts ProcessOptions, logF *os.File) (*Process, error) {
	if logF != nil {
		cmd.Stdout = logF
	}
	if err := cmd.Start(); err != nil {
		closeFile(logF)
		return nil, startError(opts.Path, err)
	}
	p := &Process{cmd: cmd, logPath: opts.LogPath, done: make(chan struct{}), logF: logF}
	go func() {
		p.waitErr = cmd.Wait()
		closeFile(logF)
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process exited; valid after Done is closed.
func (p *Process) Err() error { return p.waitErr }

// Stop sends SIGTERM to the process group, waits up to grace for the
// process to exit, then sends SIGKILL to the group. When the process had
// already exited on its own, Stop sends SIGKILL to what is left of its group
// (children it started and left behind), once. It is safe to call more than
// once.
func (p *Process) Stop(grace time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	pgid := -p.cmd.Process.Pid
	select {
	case <-p.done:
		if !p.groupKilled {
			// While a member lives the group's id cannot be reused; once
			// none does, the id could in time name a new group, so this
			// is done once, by a caller that just saw the exit.
			p.groupKilled = true
			_ = syscall.Kill(pgid, syscall.SIGKILL)
		}
		return nil
	default:
	}
	p.groupKilled = true
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("runtimes: stop pid %d: %w", p.cmd.Process.Pid, err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		// The leader is gone; members it left behind get no grace.
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		return nil
	case <-t.C:
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	<-p.done
	return nil
}

// startError wraps an error of exec.Cmd.Start, marking with ErrExec the
// errors that say the executable cannot be run (as against a fork that
// failed for want of memory or processes, which may pass).
func startError(path string, err error) error {
	e := &ProcessError{Path: path, Err: err, start: true}
	switch {
	case errors.Is(err, exec.ErrNotFound):
		e.Summary = "executable not found in PATH"
	case errors.Is(err, exec.ErrDot):
		e.Summary = "executable found only in the current directory"
	case errors.Is(err, fs.ErrNotExist):
		e.Summary = "executable not found"
	case errors.Is(err, fs.ErrPermission):
		e.Summary = "executable not permitted to run"
	case errors.Is(err, syscall.ENOEXEC):
		e.Summary = "not an executable file"
	default:
		e.Summary = "could not be started"
		var errno syscall.Errno
		if errors.As(err, &errno) {
			e.Summary += " (" + errno.Error() + ")"
		}
		return e
	}
	e.Err = fmt.Errorf("%w: %w", ErrExec, err)
	return e
}

// LogPath returns the path of the process's log, "" when it has none.
func (p *Process) LogPath() string { return p.logPath }

// Tail returns the last lines of the process's log, to end an error
// message with: "; last log lines (PATH):\n" and the lines, or "".
func (p *Process) Tail() string {
	t := LogTail(p.logPath, LogTailLines)
	if t == "" {
		return ""
	}
	return "; last log lines (" + p.logPath + "):\n" + t
}

// LogTail returns the last n lines of the file at path, "" when it is
// empty or cannot be read. It reads at most the file's last 64 KiB.
func LogTail(path string, n int) string {
	if path == "" || n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 64 << 10
	var off int64
	if st, err := f.Stat(); err == nil && st.Size() > window {
		off = st.Size() - window
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, window))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first is likely cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func closeFile(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}
