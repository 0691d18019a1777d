package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/infergate/infergate/bench"
)

// driver runs one comparison: the processes it started, the targets that
// reach the runtime through them, the generators that drive them, and the
// report.
type driver struct {
	f     flags
	out   io.Writer
	concs []int
	want  map[string]bool
	gens  []string
	dir   string
	rep   *report
	noted map[string]bool

	procs          []*proc // stopped in reverse order
	upstream       *proc
	upREST, upGRPC string
	gateway        *proc
	gwAddrs        proxyAddrs
	nginx, haproxy *proc
	targets        []*target
	wrkScript      string
}

func runDriver(f flags, out io.Writer) error {
	d := &driver{f: f, out: out, want: map[string]bool{}, noted: map[string]bool{}}
	d.rep = &report{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), LoadBefore: loadAvg(),
		Versions: map[string]string{"go": runtime.Version()}}
	if err := d.validate(); err != nil {
		return err
	}
	d.rep.Settings = settings{Rounds: f.rounds, Window: f.window.String(), Warmup: f.warmup.String(),
		WindowWarmup: f.winWarmup.String(), Concurrency: d.concs, MaxRequests: f.maxRequests, Generators: d.gens,
		GRPCStreamsPerConn: f.grpcStreamsPerConn, WrkThreads: f.wrkThreads, H2loadThreads: f.h2loadThreads}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	d.dir = dir
	if f.keep {
		fmt.Fprintln(out, "configs and logs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	defer d.close()

	if err := d.start(ctx); err != nil {
		return err
	}
	if err := d.measure(ctx); err != nil {
		return err
	}
	d.rep.Goals = checkGoals(d.rep.Rows, d.concs, d.rep.Memory)
	d.rep.print(out)
	if f.profileDir != "" {
		pr := profiler{dir: f.profileDir, seconds: f.profileSeconds, infergate: f.infergate, timeout: f.timeout,
			out: out, conc: slices.Max(d.concs), tool: f.syscallTool}
		prof, err := pr.run(ctx, d.gateway, d.gwAddrs, d.targets)
		if err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		d.rep.Profile = prof
	}
	if f.jsonPath != "" {
		if err := d.rep.writeJSON(f.jsonPath); err != nil {
			return err
		}
		fmt.Fprintln(out, "results written to", f.jsonPath)
	}
	return nil
}

func (d *driver) validate() error {
	f := d.f
	concs, err := parseInts(f.concurrency)
	if err != nil {
		return fmt.Errorf("-concurrency: %w", err)
	}
	d.concs = concs
	for _, k := range strings.Split(f.targets, ",") {
		k = strings.TrimSpace(k)
		spec, ok := specOf(k)
		if !ok {
			return fmt.Errorf("-targets: unknown target %q (have %s)", k, strings.Join(targetKeys(false), ", "))
		}
		d.want[k] = true
		// A ratio needs its baseline.
		if spec.grpc {
			d.want[tDirectGRPC] = true
		} else {
			d.want[tDirectREST] = true
		}
	}
	if f.rounds < 1 || f.window <= 0 || f.maxRequests < 1 || f.wrkThreads < 1 || f.h2loadThreads < 1 || f.grpcStreamsPerConn < 1 {
		return errors.New("-rounds, -window, -max-requests, -wrk-threads, -h2load-threads and -grpc-streams-per-conn must be positive")
	}
	if f.memoryWindow > 0 {
		if f.memoryConc < 1 {
			return errors.New("-memory-concurrency must be positive")
		}
		if !slices.Contains([]string{tGatewayREST, tGatewayPipe, tGatewayRESTToGRPC, tGatewayGRPC, tGatewayGRPCToREST}, f.memoryTarget) {
			return fmt.Errorf("-memory-target %q: not a gateway target", f.memoryTarget)
		}
		d.want[f.memoryTarget] = true
	}
	for _, g := range strings.Split(f.generators, ",") {
		g = strings.TrimSpace(g)
		if !slices.Contains(allGenerators, g) {
			return fmt.Errorf("-generators: unknown generator %q (have %s)", g, strings.Join(allGenerators, ", "))
		}
		if slices.Contains(d.gens, g) {
			continue
		}
		switch g {
		case genWrk:
			path, err := exec.LookPath(f.wrk)
			if err != nil {
				d.rep.note("wrk rows skipped: %s not found (apt-get install wrk)", f.wrk)
				continue
			}
			d.f.wrk = path
			d.rep.Versions["wrk"] = toolVersion(path, "-v")
		case genH2load:
			path, err := exec.LookPath(f.h2load)
			if err != nil {
				d.rep.note("h2load rows skipped: %s not found (apt-get install nghttp2-client)", f.h2load)
				continue
			}
			d.f.h2load = path
			d.rep.Versions["h2load"] = toolVersion(path, "--version")
		}
		d.gens = append(d.gens, g)
	}
	if len(d.gens) == 0 {
		return errors.New("-generators: none is available")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return errors.New("CPU accounting reads /proc: Linux only")
	}
	return nil
}

// noteOnce adds a note to the report the first time key is seen.
func (d *driver) noteOnce(key, format string, args ...any) {
	if !d.noted[key] {
		d.noted[key] = true
		d.rep.note(format, args...)
	}
}

// grpcConns is the connections that carry conc concurrent gRPC streams.
func (d *driver) grpcConns(conc int) int { return grpcConns(conc, d.f.grpcStreamsPerConn) }

// close closes the targets and stops every process started, last first.
func (d *driver) close() {
	for _, t := range d.targets {
		_ = t.close()
	}
	for i := len(d.procs) - 1; i >= 0; i-- {
		d.procs[i].stop()
	}
}

// started keeps p (even when its start failed, so that it is stopped) and
// passes err on.
func (d *driver) started(p *proc, err error) error {
	if p != nil {
		d.procs = append(d.procs, p)
	}
	return err
}

// start starts the runtime and the proxies, waits until each answers, and
// builds the targets, checking one answer through each.
func (d *driver) start(ctx context.Context) error {
	f := d.f
	var err error
	d.upstream, d.upREST, d.upGRPC, err = startUpstream(ctx, filepath.Join(d.dir, "upstream.log"), []string{restModel, grpcModel, pipeModel, splitModel})
	if err := d.started(d.upstream, err); err != nil {
		return err
	}
	iris := bench.IrisResponseJSON
	if d.want[tDirectREST] {
		if err := d.addREST(tDirectREST, nil, d.upREST, restModel, iris(restModel)); err != nil {
			return err
		}
	}
	needGateway := f.profileDir != ""
	for _, k := range []string{tGatewayREST, tGatewaySplit, tGatewayPipe, tGatewayRESTToGRPC, tGatewayGRPC, tGatewayGRPCToREST} {
		needGateway = needGateway || d.want[k]
	}
	if needGateway {
		if _, err := os.Stat(f.infergate); err != nil {
			return fmt.Errorf("-infergate %s: %w (run make build)", f.infergate, err)
		}
		d.rep.Versions["infergate"] = toolVersion(f.infergate, "version")
		if src := toolVersion("git", "describe", "--always", "--dirty"); src != "" {
			d.rep.Versions["source"] = src // of the working tree, which built the binary under make bench
		}
		d.gateway, d.gwAddrs, err = startGateway(ctx, f.infergate, d.dir, d.upREST, d.upGRPC, f.gatewayEnv)
		if err := d.started(d.gateway, err); err != nil {
			return err
		}
		if d.want[tGatewayREST] {
			if err := d.addREST(tGatewayREST, d.gateway, d.gwAddrs.rest, restModel, iris(restModel)); err != nil {
				return err
			}
		}
		if d.want[tGatewaySplit] {
			if err := canarySplit(ctx, d.gwAddrs.admin, d.upREST); err != nil {
				return err
			}
			if err := d.addREST(tGatewaySplit, d.gateway, d.gwAddrs.rest, splitModel, iris(splitModel)); err != nil {
				return err
			}
		}
		if d.want[tGatewayPipe] {
			if err := d.addREST(tGatewayPipe, d.gateway, d.gwAddrs.rest, pipeModel, iris(pipeModel)); err != nil {
				return err
			}
		}
		if d.want[tGatewayRESTToGRPC] {
			// The answer is the gateway's JSON of the runtime's gRPC answer:
			// learnt from the first one, once its outputs are checked.
			if err := d.addREST(tGatewayRESTToGRPC, d.gateway, d.gwAddrs.rest, grpcModel, nil); err != nil {
				return err
			}
		}
	}
	var ngAddrs, hpAddrs proxyAddrs
	if d.want[tNginx] || d.want[tNginxGRPC] {
		if _, err := os.Stat(f.nginx); err != nil {
			d.rep.note("nginx rows skipped: %s not found (apt-get install nginx)", f.nginx)
		} else {
			d.rep.Versions["nginx"] = toolVersion(f.nginx, "-v")
			d.nginx, ngAddrs, err = startNginx(ctx, f.nginx, d.dir, d.upREST, d.upGRPC)
			if err := d.started(d.nginx, err); err != nil {
				return err
			}
			if d.want[tNginx] {
				if err := d.addREST(tNginx, d.nginx, ngAddrs.rest, restModel, iris(restModel)); err != nil {
					return err
				}
			}
		}
	}
	if d.want[tHAProxy] || d.want[tHAProxyGRPC] {
		if _, err := os.Stat(f.haproxy); err != nil {
			d.rep.note("haproxy rows skipped: %s not found (apt-get install haproxy)", f.haproxy)
		} else {
			d.rep.Versions["haproxy"] = toolVersion(f.haproxy, "-v")
			d.haproxy, hpAddrs, err = startHAProxy(ctx, f.haproxy, d.dir, d.upREST, d.upGRPC)
			if err := d.started(d.haproxy, err); err != nil {
				return err
			}
			if d.want[tHAProxy] {
				if err := d.addREST(tHAProxy, d.haproxy, hpAddrs.rest, restModel, iris(restModel)); err != nil {
					return err
				}
			}
		}
	}
	type grpcPath struct {
		key   string
		p     *proc
		addr  string
		model string
	}
	for _, g := range []grpcPath{
		{tDirectGRPC, nil, d.upGRPC, grpcModel},
		{tGatewayGRPC, d.gateway, d.gwAddrs.grpc, grpcModel},
		{tNginxGRPC, d.nginx, ngAddrs.grpc, grpcModel},
		{tHAProxyGRPC, d.haproxy, hpAddrs.grpc, grpcModel},
		{tGatewayGRPCToREST, d.gateway, d.gwAddrs.grpc, restModel},
	} {
		if !d.want[g.key] || (g.key != tDirectGRPC && g.p == nil) {
			continue
		}
		if err := d.addGRPC(ctx, g.key, g.p, g.addr, g.model); err != nil {
			return err
		}
	}
	// One request through each REST path, its body checked.
	for _, t := range d.targets {
		if !t.grpc {
			if err := t.rest.Do(ctx); err != nil {
				return fmt.Errorf("%s: first request: %w", t.label, err)
			}
		}
	}
	if slices.Contains(d.gens, genWrk) {
		d.wrkScript = filepath.Join(d.dir, "post.lua")
		if err := writeFile(d.wrkScript, []byte(wrkLua(bench.IrisRequestJSON()))); err != nil {
			return err
		}
	}
	// Every gRPC path once through h2load, with the answers' bytes
	// counted: a path h2load cannot take has no h2load rows.
	if slices.Contains(d.gens, genH2load) {
		for _, t := range d.targets {
			if !t.grpc {
				continue
			}
			if err := d.checkH2load(ctx, t, 200); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				d.rep.note("%s: no h2load rows: %v", t.label, err)
				continue
			}
			t.h2loadOK = true
		}
	}
	return nil
}

// loop runs infergate's generator against t at conc for dur, and fails if
// a process died meanwhile.
func (d *driver) loop(ctx context.Context, t *target, conc int, dur time.Duration) (*bench.Result, error) {
	client, err := t.client(conc)
	if err != nil {
		return nil, err
	}
	res, err := bench.RunClosedLoop(ctx, client, bench.LoopOptions{
		Concurrency: conc, Duration: dur, Requests: d.f.maxRequests, StopTimeout: d.f.timeout,
	})
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, d.checkAlive()
}

// checkAlive fails when a process this driver started has exited.
func (d *driver) checkAlive() error {
	for _, p := range d.procs {
		if p.Exited() {
			return fmt.Errorf("%s exited during the run (%v)%s", p.name, p.Err(), p.logTail())
		}
	}
	return nil
}

// pair is one target driven by one generator.
type pair struct {
	t   *target
	gen string
}

// pairs are the target and generator pairs of a round.
func (d *driver) pairs() []pair {
	var out []pair
	for _, t := range d.targets {
		for _, g := range d.gens {
			if speaks(g, t.grpc) && (g != genH2load || t.h2loadOK) {
				out = append(out, pair{t, g})
			}
		}
	}
	return out
}

// window runs one measured window of p at conc, preceded by its warm-up.
func (d *driver) window(ctx context.Context, p pair, conc int) (*windowResult, error) {
	var w *windowResult
	var err error
	switch p.gen {
	case genH2load:
		// h2load warms up by itself (--warm-up-time), on its connections.
		w, err = d.runH2load(ctx, p.t, conc)
	case genWrk:
		if d.f.winWarmup > 0 {
			if _, err := d.loop(ctx, p.t, conc, d.f.winWarmup); err != nil {
				return nil, err
			}
		}
		w, err = d.runWrk(ctx, p.t, conc)
	default:
		if d.f.winWarmup > 0 {
			if _, err := d.loop(ctx, p.t, conc, d.f.winWarmup); err != nil {
				return nil, err
			}
		}
		before := d.snap(p.t, 0)
		res, lerr := d.loop(ctx, p.t, conc, d.f.window)
		if lerr != nil {
			return nil, lerr
		}
		w = fromResult(res, before, d.snap(p.t, 0))
	}
	if err != nil {
		return nil, err
	}
	return w, d.checkAlive()
}

// measure warms every target up at every concurrency, then runs the
// rounds: every target with every generator at every concurrency once per
// round, in an order rotated each round so that no target always follows
// the same one; then, once per round, the gateway's RSS under load.
func (d *driver) measure(ctx context.Context) error {
	f := d.f
	pairs := d.pairs()
	perWindow := f.window + f.winWarmup + 200*time.Millisecond // process start, the tables' samples
	total := time.Duration(len(d.targets)*len(d.concs))*f.warmup +
		time.Duration(f.rounds)*(time.Duration(len(pairs)*len(d.concs))*perWindow+f.memoryWindow)
	fmt.Fprintf(d.out, "proxybench: %d targets, generators %s, concurrency %v, %d rounds of %v windows (%d per round), about %v; load average %s\n",
		len(d.targets), strings.Join(d.gens, ","), d.concs, f.rounds, f.window, len(pairs)*len(d.concs), total.Round(time.Second), d.rep.LoadBefore)
	if f.warmup > 0 {
		for _, conc := range d.concs {
			for _, t := range d.targets {
				if _, err := d.loop(ctx, t, conc, f.warmup); err != nil {
					return err
				}
			}
		}
	}
	var scrapeMalloc float64
	if d.gateway != nil {
		scrapeMalloc = scrapeCost(d.gwAddrs.admin)
	}
	var memT *target
	if f.memoryWindow > 0 {
		for _, t := range d.targets {
			if t.key == f.memoryTarget {
				memT = t
			}
		}
		if memT != nil {
			d.rep.Memory = &memoryReport{Target: memT.label, Concurrency: f.memoryConc, Window: f.memoryWindow.String()}
		}
	}
	m := newMeasurements(d.targets, d.gens, d.concs, f.rounds, scrapeMalloc)
	for r := range f.rounds {
		for _, conc := range d.concs {
			for i := range pairs {
				p := pairs[(i+r)%len(pairs)]
				w, err := d.window(ctx, p, conc)
				if err != nil {
					return fmt.Errorf("%s, %s, concurrency %d: %w", p.t.label, p.gen, conc, err)
				}
				m.add(p.t.key, p.gen, conc, r, w)
			}
		}
		if memT != nil {
			mr, err := d.measureMemory(ctx, memT, f.memoryConc, f.memoryWindow)
			if err != nil {
				return fmt.Errorf("memory: %w", err)
			}
			d.rep.Memory.Rounds = append(d.rep.Memory.Rounds, mr)
		}
		fmt.Fprintf(d.out, "  round %d of %d done\n", r+1, f.rounds)
	}
	d.rep.LoadAfter = loadAvg()
	d.rep.Rows = m.rows()
	return nil
}
