package procs

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Options say what Start runs and where its output goes.
type Options struct {
	// Path is the program to run: a path, or a name looked up in PATH.
	Path string
	// Args are its arguments, without the program's name.
	Args []string
	// Env is added to this process's environment. Nil passes the
	// environment on unchanged.
	Env []string
	// LogPath is the file, created or truncated, that receives the
	// child's stdout and stderr.
	LogPath string
	// Stdout and Stderr, when set, read that stream of the child instead
	// of it going straight to the log. Each runs in its own goroutine and
	// must read r until it fails (at the latest when the child and every
	// process holding the stream have exited), writing to log whatever is
	// to be kept. The child is not waited for, and Done not closed, until
	// both have returned.
	Stdout, Stderr func(r io.Reader, log io.Writer)
}

// Process is a child started by Start. Its methods are safe for
// concurrent use.
type Process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // Wait's, set before done is closed
}

// Start starts opts.Path in a process group of its own (its pgid is its
// pid) and returns without waiting for it. On Linux the child is killed
// when the thread that started it dies. A goroutine waits for the child
// (and one more runs each of opts.Stdout and opts.Stderr); it ends when
// the child has exited and the log is closed.
//
// An error says "start PATH: " and wraps the cause (the log that could not
// be created, the program that could not be run); the caller adds which
// process it was. Nothing is left running after an error.
func Start(opts Options) (*Process, error) {
	logF, err := os.Create(opts.LogPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", opts.Path, err)
	}
	cmd := exec.Command(opts.Path, opts.Args...)
	if len(opts.Env) > 0 {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	cmd.SysProcAttr = sysProcAttr()
	var filters []func()
	for _, s := range []struct {
		filter func(io.Reader, io.Writer)
		w      *io.Writer // cmd.Stdout or cmd.Stderr
		pipe   func() (io.ReadCloser, error)
	}{
		{opts.Stdout, &cmd.Stdout, cmd.StdoutPipe},
		{opts.Stderr, &cmd.Stderr, cmd.StderrPipe},
	} {
		if s.filter == nil {
			*s.w = logF
			continue
		}
		r, err := s.pipe()
		if err != nil {
			logF.Close()
			return nil, fmt.Errorf("start %s: %w", opts.Path, err)
		}
		filters = append(filters, func() { s.filter(r, logF) })
	}
	if err := cmd.Start(); err != nil {
		logF.Close()
		return nil, fmt.Errorf("start %s: %w", opts.Path, err)
	}
	p := &Process{cmd: cmd, logPath: opts.LogPath, done: make(chan struct{})}
	var read sync.WaitGroup
	for _, f := range filters {
		read.Go(f)
	}
	go func() {
		read.Wait() // Wait closes the pipes: they are read to the end first.
		p.err = cmd.Wait()
		logF.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the child's process id, which is also its process group's.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited, its output has been read and
// its log closed.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns how the child ended, as exec.Cmd.Wait says it (nil for exit
// status 0, an *exec.ExitError otherwise). It is nil until Done is closed.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stop ends the child and its process group: it sends SIGTERM to the
// group and waits up to grace for the child to exit, then sends SIGKILL to
// the group and waits for the child. Members of the group still there when
// the child has exited are killed without a grace. Stop returns once Done
// is closed.
//
// Stop does nothing when the child had already exited: its group may be
// empty by then, and the id taken by someone else's.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	pgid := -p.Pid()
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
}

// LogTail returns the last n lines of the child's log, as
// "; last lines of PATH:\n" and the lines, to end an error message with;
// or "" when the log is empty or cannot be read. It may be called while
// the child runs.
func (p *Process) LogTail(n int) string { return logTail(p.logPath, n) }

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 || n < 1 {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "; last lines of " + path + ":\n" + string(bytes.Join(lines, []byte("\n")))
}

// FreeAddrs returns n distinct addresses "127.0.0.1:PORT" that were free a
// moment ago. Another process may take one before the child binds it; the
// child's start then fails, and says so.
func FreeAddrs(n int) ([]string, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return addrs, nil
}
