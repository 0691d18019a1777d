package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/bench"
)

// profiler profiles the gateway's pass-through under load and counts each
// proxy's syscalls and wake-ups per request, with infergate's generator
// at the highest concurrency. It runs after the comparison, so that the
// tracing does not disturb the figures of the table.
type profiler struct {
	dir       string
	seconds   int
	infergate string
	timeout   time.Duration
	out       io.Writer
	conc      int
	tool      string // "perf", "strace" or "" for the best available
}

type profileReport struct {
	Concurrency int               `json:"concurrency"`
	Pprof       map[string]string `json:"pprof_files"`
	SyscallTool string            `json:"syscall_tool"`
	Syscalls    []syscallCount    `json:"syscalls"`
}

// wakeupsRow names the voluntary context switches of the proxy's threads
// (from /proc/<pid>/task/*/status) in syscallCount.PerRequest: each is a
// thread that blocked and was woken up again.
const wakeupsRow = "wake-ups (voluntary switches)"

// syscallCount is what one proxy did per request over a counted window.
type syscallCount struct {
	Target     string             `json:"target"`
	Requests   int64              `json:"requests"`
	PerRequest map[string]float64 `json:"per_request"`
}

func (pr *profiler) run(ctx context.Context, gw *proc, gwAddrs proxyAddrs, targets []*target) (*profileReport, error) {
	if err := os.MkdirAll(pr.dir, 0o755); err != nil {
		return nil, err
	}
	rep := &profileReport{Concurrency: pr.conc, Pprof: map[string]string{}}
	byKey := map[string]*target{}
	for _, t := range targets {
		byKey[t.key] = t
	}
	for _, key := range []string{tGatewayREST, tGatewayGRPC} {
		t := byKey[key]
		if t == nil || gw == nil {
			continue
		}
		path := filepath.Join(pr.dir, key+".pprof")
		if err := pr.pprof(ctx, t, gwAddrs.admin, path); err != nil {
			return nil, fmt.Errorf("%s: %w", t.label, err)
		}
		rep.Pprof[key] = path
		if top, err := pprofTop(pr.infergate, path); err == nil {
			_ = os.WriteFile(strings.TrimSuffix(path, ".pprof")+".top.txt", []byte(top), 0o644)
			fmt.Fprintf(pr.out, "\n%s, concurrency %d: CPU profile %s\n%s", t.label, pr.conc, path, firstLines(top, 30))
		} else {
			fmt.Fprintf(pr.out, "\n%s: CPU profile %s (go tool pprof: %v)\n", t.label, path, err)
		}
	}

	tool, events := syscallTool(pr.tool)
	if tool == "" {
		fmt.Fprintln(pr.out, "\nsyscall counts skipped: neither perf (with syscall tracepoints) nor strace is installed (apt-get install linux-perf or strace)")
		return rep, nil
	}
	rep.SyscallTool = tool
	// Every target through a proxy: the gateway (REST, gRPC and both
	// translations), nginx and haproxy (REST and gRPC).
	for _, t := range targets {
		if t.proxy == nil {
			continue // direct: no proxy to count
		}
		c, err := pr.countSyscalls(ctx, tool, events, t, t.proxy)
		if err != nil {
			return nil, fmt.Errorf("%s: counting syscalls: %w", t.label, err)
		}
		rep.Syscalls = append(rep.Syscalls, c)
	}
	printSyscalls(pr.out, rep)
	return rep, nil
}

// pprof takes a CPU profile of the gateway from its admin port while t is
// under load.
func (pr *profiler) pprof(ctx context.Context, t *target, admin, path string) error {
	client, err := t.client(pr.conc)
	if err != nil {
		return err
	}
	loadDone := make(chan error, 1)
	go func() {
		_, err := bench.RunClosedLoop(ctx, client, bench.LoopOptions{
			Concurrency: pr.conc, Duration: time.Duration(pr.seconds+2) * time.Second, StopTimeout: pr.timeout,
		})
		loadDone <- err
	}()
	defer func() { <-loadDone }()
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	cl := &http.Client{Timeout: time.Duration(pr.seconds+30) * time.Second}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, pr.seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 256<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pprofTop(bin, profile string) (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(goCmd, "tool", "pprof", "-top", "-nodecount=40", bin, profile).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, firstLines(string(out), 5))
	}
	return string(out), nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "")
}

// The syscalls counted one by one; the total counts them all.
var syscallNames = []string{
	"read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg", "sendfile64",
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "futex", "nanosleep", "sched_yield",
	"getsockopt", "setsockopt", "accept4", "connect", "close", "tgkill", "getpid", "madvise",
}

// syscallTool picks perf (tracepoints: exact and cheap) when it can count
// syscalls here, else strace -c (slows the traced process a lot, but the
// counts per request stay right, and it counts failed calls too). want
// forces one ("perf" or "strace"); it returns perf's event list.
func syscallTool(want string) (string, []string) {
	if _, err := exec.LookPath("perf"); err == nil && want != "strace" {
		for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
			if _, err := os.Stat(filepath.Join(root, "events/raw_syscalls/sys_enter")); err != nil {
				continue
			}
			events := []string{"raw_syscalls:sys_enter", "context-switches"}
			for _, n := range syscallNames {
				if _, err := os.Stat(filepath.Join(root, "events/syscalls/sys_enter_"+n)); err == nil {
					events = append(events, "syscalls:sys_enter_"+n)
				}
			}
			return "perf", events
		}
	}
	if _, err := exec.LookPath("strace"); err == nil && want != "perf" {
		return "strace", nil
	}
	return "", nil
}

// countSyscalls traces p while t runs for pr.seconds at pr.conc and
// returns p's syscalls per request.
func (pr *profiler) countSyscalls(ctx context.Context, tool string, events []string, t *target, p *proc) (syscallCount, error) {
	out := filepath.Join(pr.dir, t.key+"."+tool+".txt")
	var pidArgs []string
	for _, pid := range p.pids() {
		pidArgs = append(pidArgs, strconv.Itoa(pid))
	}
	var args []string
	switch tool {
	case "perf":
		args = []string{"stat", "-x", ",", "-o", out, "-e", strings.Join(events, ",")}
		// Reads that find nothing to read (EAGAIN) are the price of a
		// readiness model that tries first and waits after.
		for _, n := range []string{"read", "recvfrom"} {
			if slices.Contains(events, "syscalls:sys_enter_"+n) {
				args = append(args, "-e", "syscalls:sys_exit_"+n, "--filter", "ret < 0")
			}
		}
		args = append(args, "-p", strings.Join(pidArgs, ","))
	case "strace":
		args = []string{"-c", "-f", "-q", "-o", out}
		for _, pid := range pidArgs {
			args = append(args, "-p", pid)
		}
	}
	tr, err := startProc(tool, filepath.Join(pr.dir, t.key+"."+tool+".log"), false, tool, args...)
	if err != nil {
		return syscallCount{}, err
	}
	defer tr.stop()
	// Let the tracer attach before the load starts.
	select {
	case <-time.After(700 * time.Millisecond):
	case <-ctx.Done():
		return syscallCount{}, ctx.Err()
	}
	if tr.Exited() {
		return syscallCount{}, fmt.Errorf("%s exited (%v)%s", tool, tr.Err(), tr.logTail())
	}
	client, err := t.client(pr.conc)
	if err != nil {
		return syscallCount{}, err
	}
	wake0 := wakeups(p.pids())
	res, err := bench.RunClosedLoop(ctx, client, bench.LoopOptions{
		Concurrency: pr.conc, Duration: time.Duration(pr.seconds) * time.Second, StopTimeout: pr.timeout,
	})
	if err != nil {
		return syscallCount{}, err
	}
	wake := wakeups(p.pids()) - wake0
	// SIGINT makes both tools write their summary and detach.
	_ = syscall.Kill(tr.Pid(), syscall.SIGINT)
	select {
	case <-tr.Done():
	case <-time.After(30 * time.Second):
		return syscallCount{}, fmt.Errorf("%s did not stop within 30s", tool)
	}
	f, err := os.Open(out)
	if err != nil {
		return syscallCount{}, err
	}
	defer f.Close()
	var counts map[string]float64
	if tool == "perf" {
		counts, err = parsePerfStat(f)
	} else {
		counts, err = parseStraceSummary(f)
	}
	if err != nil {
		return syscallCount{}, fmt.Errorf("%s: %w", out, err)
	}
	c := syscallCount{Target: t.label, Requests: res.Requests, PerRequest: map[string]float64{}}
	for k, v := range counts {
		if res.Requests > 0 {
			c.PerRequest[k] = v / float64(res.Requests)
		}
	}
	if res.Requests > 0 {
		c.PerRequest[wakeupsRow] = float64(wake) / float64(res.Requests)
	}
	return c, nil
}

// parsePerfStat reads `perf stat -x ,` output: value,unit,event,...
// "raw_syscalls:sys_enter" becomes "total", "syscalls:sys_enter_X" X.
func parsePerfStat(r io.Reader) (map[string]float64, error) {
	counts := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue // <not counted>, <not supported>
		}
		name := f[2]
		switch {
		case name == "raw_syscalls:sys_enter":
			name = "total"
		case strings.HasPrefix(name, "syscalls:sys_enter_"):
			name = strings.TrimPrefix(name, "syscalls:sys_enter_")
		case strings.HasPrefix(name, "syscalls:sys_exit_"):
			name = strings.TrimPrefix(name, "syscalls:sys_exit_") + " (failed)"
		}
		counts[name] = v
	}
	if len(counts) == 0 {
		return nil, errors.New("no counts in perf output")
	}
	return counts, sc.Err()
}

// parseStraceSummary reads the table of `strace -c`:
// % time, seconds, usecs/call, calls, [errors], syscall.
func parseStraceSummary(r io.Reader) (map[string]float64, error) {
	counts := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || strings.HasPrefix(f[0], "%") || strings.HasPrefix(f[0], "-") {
			continue
		}
		n, err := strconv.ParseFloat(f[3], 64)
		if err != nil {
			continue
		}
		name := f[len(f)-1]
		counts[name] = n
		if len(f) == 6 {
			if e, err := strconv.ParseFloat(f[4], 64); err == nil {
				counts[name+" (failed)"] = e
			}
		}
	}
	if len(counts) == 0 {
		return nil, errors.New("no counts in strace summary")
	}
	return counts, sc.Err()
}

// printSyscalls prints one line per syscall seen and a column per proxy.
func printSyscalls(out io.Writer, rep *profileReport) {
	if len(rep.Syscalls) == 0 {
		return
	}
	names := map[string]bool{}
	for _, c := range rep.Syscalls {
		for k, v := range c.PerRequest {
			if v >= 0.005 {
				names[k] = true
			}
		}
	}
	var order []string
	for k := range names {
		if k != "total" && k != "context-switches" && k != wakeupsRow {
			order = append(order, k)
		}
	}
	slices.Sort(order)
	order = append(order, "context-switches", wakeupsRow, "total")
	fmt.Fprintf(out, "\nsyscalls per request (%s, concurrency %d; the proxy's processes only)\n", rep.SyscallTool, rep.Concurrency)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "syscall\t")
	for _, c := range rep.Syscalls {
		fmt.Fprintf(tw, "%s\t", c.Target)
	}
	fmt.Fprintln(tw)
	for _, n := range order {
		fmt.Fprintf(tw, "%s\t", n)
		for _, c := range rep.Syscalls {
			if v, ok := c.PerRequest[n]; ok {
				fmt.Fprintf(tw, "%.2f\t", v)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprint(tw, "requests counted\t")
	for _, c := range rep.Syscalls {
		fmt.Fprintf(tw, "%d\t", c.Requests)
	}
	fmt.Fprintln(tw)
	_ = tw.Flush()
}
