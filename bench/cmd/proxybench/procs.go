package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/infergate/infergate/bench"
	"github.com/infergate/infergate/bench/internal/procs"
)

// proc is a process this driver started, in its own process group, so that
// stopping it stops what it started (nginx's workers) and nothing else.
type proc struct {
	*procs.Process
	name string
	// tree: the process's CPU is its own plus its children's (a master
	// and its workers).
	tree bool
}

// startProc starts path with args in a process group of its own that dies
// with this driver, its stdout and stderr in logPath.
func startProc(name, logPath string, tree bool, path string, args ...string) (*proc, error) {
	return startProcEnv(name, logPath, tree, nil, path, args...)
}

// startProcEnv is startProc with env added to this process's environment.
func startProcEnv(name, logPath string, tree bool, env []string, path string, args ...string) (*proc, error) {
	p, err := procs.Start(procs.Options{Path: path, Args: args, Env: env, LogPath: logPath})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &proc{Process: p, name: name, tree: tree}, nil
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
	lines := make(chan string, 1)
	pp, err := procs.Start(procs.Options{
		Path: exe, Args: []string{"-upstream", "-upstream-models", strings.Join(models, ",")}, LogPath: logPath,
		// The first line gives the addresses; the rest is the log's.
		Stdout: func(out io.Reader, log io.Writer) {
			br := bufio.NewReader(out)
			line, _ := br.ReadString('\n')
			lines <- line
			_, _ = io.Copy(log, br)
		},
	})
	if err != nil {
		return nil, "", "", fmt.Errorf("upstream: %w", err)
	}
	p = &proc{Process: pp, name: "upstream"}
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

// pids returns the process and, for a tree, its children.
func (p *proc) pids() []int {
	out := []int{p.Pid()}
	if p.tree {
		kids, _ := bench.Children(p.Pid())
		out = append(out, kids...)
	}
	return out
}

// cpu returns the CPU time the process (and its children, for a tree) has
// used so far.
func (p *proc) cpu() (time.Duration, error) {
	if p.tree {
		return bench.ProcessTreeCPU(p.Pid())
	}
	return bench.ProcessCPU(p.Pid())
}

// stop sends SIGTERM to the process group, waits up to 5s, then SIGKILLs
// the group.
func (p *proc) stop() { p.Stop(5 * time.Second) }

// logTail returns the last lines of the process's log for error messages.
func (p *proc) logTail() string { return p.LogTail(10) }
