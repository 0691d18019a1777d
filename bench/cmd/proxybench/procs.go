package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/infergate/infergate/bench"
)

// proc is a process this driver started, in its own process group, so that
// stopping it stops what it started (nginx's workers) and nothing else.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logF    *os.File
	// tree: the process's CPU is its own plus its children's (a master
	// and its workers).
	tree bool
	done chan struct{}
	err  error
}

// startProc starts path with args, its stdout and stderr in logPath.
func startProc(name, logPath string, tree bool, path string, args ...string) (*proc, error) {
	return startProcEnv(name, logPath, tree, nil, path, args...)
}

// startProcEnv is startProc with env added to this process's environment.
func startProcEnv(name, logPath string, tree bool, env []string, path string, args ...string) (*proc, error) {
	logF, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logF, logF
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logF.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, path, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logF: logF, tree: tree, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logF.Close()
		close(p.done)
	}()
	return p, nil
}

// announcePrefix starts the line the upstream prints once it listens.
const announcePrefix = "PROXYBENCH-UPSTREAM"

// startUpstream re-executes this program as the trivial runtime and waits
// for the line that gives its addresses.
func startUpstream(ctx context.Context, logPath string, models []string) (p *proc, restAddr, grpcAddr string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", "", err
	}
	logF, err := os.Create(logPath)
	if err != nil {
		return nil, "", "", err
	}
	cmd := exec.Command(exe, "-upstream", "-upstream-models", strings.Join(models, ","))
	cmd.Stderr = logF
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		logF.Close()
		return nil, "", "", err
	}
	if err := cmd.Start(); err != nil {
		logF.Close()
		return nil, "", "", fmt.Errorf("upstream: start: %w", err)
	}
	p = &proc{name: "upstream", cmd: cmd, logPath: logPath, logF: logF, done: make(chan struct{})}
	lines := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		br := bufio.NewReader(out)
		line, _ := br.ReadString('\n')
		lines <- line
		_, _ = io.Copy(logF, br)
	}()
	go func() {
		<-copied // Wait must not close the pipe before the copy ends.
		p.err = cmd.Wait()
		logF.Close()
		close(p.done)
	}()
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, announcePrefix) {
			p.stop()
			return nil, "", "", fmt.Errorf("upstream: unexpected first line %q%s", line, p.logTail())
		}
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "rest":
				restAddr = v
			case "grpc":
				grpcAddr = v
			}
		}
		return p, restAddr, grpcAddr, nil
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, "", "", errors.New("upstream: did not listen within 30s" + p.logTail())
	case <-ctx.Done():
		p.stop()
		return nil, "", "", ctx.Err()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// pids returns the process and, for a tree, its children.
func (p *proc) pids() []int {
	out := []int{p.pid()}
	if p.tree {
		kids, _ := bench.Children(p.pid())
		out = append(out, kids...)
	}
	return out
}

// cpu returns the CPU time the process (and its children, for a tree) has
// used so far.
func (p *proc) cpu() (time.Duration, error) {
	if p.tree {
		return bench.ProcessTreeCPU(p.pid())
	}
	return bench.ProcessCPU(p.pid())
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to 5s, then SIGKILLs
// the group.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	pgid := -p.pid()
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	// Members the leader left behind get no grace.
	_ = syscall.Kill(pgid, syscall.SIGKILL)
}

// logTail returns the last lines of the process's log for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "; last lines of " + p.logPath + ":\n" + string(bytes.Join(lines, []byte("\n")))
}

// freePort returns a loopback port that was free a moment ago. Another
// process may take it before ours binds it; the start then fails and says
// so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
