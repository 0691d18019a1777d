// Command proxybench compares infergate's gateway with nginx and haproxy in
// front of the same trivial OIP runtime, on loopback, from one interleaved
// run: requests/s, p50/p99 latency and each proxy's CPU time per request
// (from /proc/<pid>/stat over each measured window), at several
// concurrencies, for REST direct, through the gateway, through nginx and
// through haproxy, and gRPC direct and through the gateway.
//
// It builds nothing: `make bench` builds bin/infergate and passes it with
// -infergate. nginx and haproxy are Debian's; a missing one is skipped
// with a note. Everything listens on 127.0.0.1, every loop is bounded in
// time and count, and every process started is stopped at the end or on
// Ctrl-C (each runs in its own process group and dies with this one).
//
// Usage:
//
//	go run ./bench/cmd/proxybench -infergate bin/infergate [-rounds 3] [-window 3s] [-json out.json] [-profile-dir DIR]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/bench"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// The models the gateway routes: one to the upstream's REST port, one to
// its gRPC port. nginx and haproxy forward whatever path they get.
// pipeModel is routed to the REST port with HTTP/1.1 pipelining
// (infergate.io/pipeline).
const (
	restModel = "iris"
	grpcModel = "iris-grpc"
	pipeModel = "iris-pipelined"
	// splitModel has two revisions at 90/10 (a canary), both to the
	// upstream's REST port: the router's cost against restModel's.
	splitModel = "iris-split"
)

type flags struct {
	infergate, nginx, haproxy string
	concurrency               string
	targets                   string
	rounds                    int
	window, warmup, winWarmup time.Duration
	maxRequests               int64
	timeout                   time.Duration
	jsonPath                  string
	profileDir                string
	profileSeconds            int
	syscallTool               string
	gatewayEnv                envFlag
	keep                      bool

	upstream       bool
	upstreamModels string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("proxybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f flags
	fs.StringVar(&f.infergate, "infergate", "bin/infergate", "the infergate binary to run as the gateway (make build)")
	fs.StringVar(&f.nginx, "nginx", "/usr/sbin/nginx", "nginx binary; skipped when missing")
	fs.StringVar(&f.haproxy, "haproxy", "/usr/sbin/haproxy", "haproxy binary; skipped when missing")
	fs.StringVar(&f.concurrency, "concurrency", "16,64", "comma-separated concurrencies")
	fs.StringVar(&f.targets, "targets", strings.Join(allTargets, ","), "comma-separated targets to run")
	fs.IntVar(&f.rounds, "rounds", 3, "measured rounds; each runs every target at every concurrency once, interleaved")
	fs.DurationVar(&f.window, "window", 3*time.Second, "length of one measured window")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "warm-up of each target at each concurrency before the first round")
	fs.DurationVar(&f.winWarmup, "window-warmup", 200*time.Millisecond, "unmeasured load just before each measured window")
	fs.Int64Var(&f.maxRequests, "max-requests", 5_000_000, "most requests in one measured window")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "timeout of one request")
	fs.StringVar(&f.jsonPath, "json", "", "write the results as JSON to this file")
	fs.StringVar(&f.profileDir, "profile-dir", "", "after the comparison, profile the gateway (pprof) and count syscalls per request of each proxy, into this directory")
	fs.IntVar(&f.profileSeconds, "profile-seconds", 5, "length of each profile and syscall count")
	fs.StringVar(&f.syscallTool, "syscall-tool", "", "count syscalls with perf or strace (default: perf when it can, else strace)")
	fs.Var(&f.gatewayEnv, "gateway-env", "KEY=VALUE added to the gateway's environment (GOMAXPROCS, GOGC, GODEBUG...); repeatable")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directory (configs and logs)")
	fs.BoolVar(&f.upstream, "upstream", false, "internal: run as the trivial runtime")
	fs.StringVar(&f.upstreamModels, "upstream-models", restModel+","+grpcModel+","+pipeModel+","+splitModel, "internal: models the trivial runtime serves")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.upstream {
		if err := runUpstream(f.upstreamModels, stdout); err != nil {
			fmt.Fprintln(stderr, "proxybench upstream:", err)
			return 1
		}
		return 0
	}
	if err := runDriver(f, stdout); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "proxybench: interrupted; every process it started is stopped")
			return 130
		}
		fmt.Fprintln(stderr, "proxybench:", err)
		return 1
	}
	return 0
}

// runUpstream serves the trivial runtime on two loopback ports, announces
// them on stdout and runs until SIGTERM or SIGINT.
func runUpstream(models string, stdout io.Writer) error {
	u, err := bench.NewUpstream(bench.UpstreamOptions{Models: strings.Split(models, ",")})
	if err != nil {
		return err
	}
	restLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "%s rest=%s grpc=%s\n", announcePrefix, restLn.Addr(), grpcLn.Addr())
	return u.Serve(ctx, restLn, grpcLn)
}

// The targets, in the order of the table.
const (
	tDirectREST   = "direct-rest"
	tGatewayREST  = "gateway-rest"
	tGatewayPipe  = "gateway-rest-pipelined"
	tGatewaySplit = "gateway-rest-split"
	tNginx        = "nginx"
	tHAProxy      = "haproxy"
	tDirectGRPC   = "direct-grpc"
	tGatewayGRPC  = "gateway-grpc"
)

var allTargets = []string{tDirectREST, tGatewayREST, tGatewaySplit, tGatewayPipe, tNginx, tHAProxy, tDirectGRPC, tGatewayGRPC}

// target is one way to reach the runtime.
type target struct {
	key, label string
	grpc       bool
	proxy      *proc // nil when direct
	t          bench.Target
	close      func() error
}

func (t *target) baseline() string {
	if t.grpc {
		return tDirectGRPC
	}
	return tDirectREST
}

// driver runs one comparison: the processes it started, the targets that
// reach the runtime through them, and the report.
type driver struct {
	f     flags
	out   io.Writer
	concs []int
	want  map[string]bool
	dir   string
	rep   *report

	procs          []*proc // stopped in reverse order
	upstream       *proc
	upREST, upGRPC string
	gateway        *proc
	gwAddrs        proxyAddrs
	nginx, haproxy *proc
	targets        []*target
}

func runDriver(f flags, out io.Writer) error {
	d := &driver{f: f, out: out, want: map[string]bool{}}
	if err := d.validate(); err != nil {
		return err
	}
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

	d.rep = &report{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), LoadBefore: loadAvg(),
		Versions: map[string]string{"go": runtime.Version()},
		Settings: settings{Rounds: f.rounds, Window: f.window.String(), Warmup: f.warmup.String(),
			WindowWarmup: f.winWarmup.String(), Concurrency: d.concs, MaxRequests: f.maxRequests}}
	if err := d.start(ctx); err != nil {
		return err
	}
	if err := d.measure(ctx); err != nil {
		return err
	}
	d.rep.print(out)
	if f.profileDir != "" {
		pr := profiler{dir: f.profileDir, seconds: f.profileSeconds, infergate: f.infergate, timeout: f.timeout,
			out: out, conc: slices.Max(d.concs), tool: f.syscallTool}
		prof, err := pr.run(ctx, d.gateway, d.gwAddrs, d.targets, d.nginx, d.haproxy)
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
		if !slices.Contains(allTargets, k) {
			return fmt.Errorf("-targets: unknown target %q (have %s)", k, strings.Join(allTargets, ", "))
		}
		d.want[k] = true
	}
	// A ratio needs its baseline.
	for _, k := range allTargets {
		switch {
		case d.want[k] && strings.HasSuffix(k, "-grpc"):
			d.want[tDirectGRPC] = true
		case d.want[k]:
			d.want[tDirectREST] = true
		}
	}
	if f.rounds < 1 || f.window <= 0 || f.maxRequests < 1 {
		return errors.New("-rounds, -window and -max-requests must be positive")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return errors.New("CPU accounting reads /proc: Linux only")
	}
	return nil
}

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
	if d.want[tDirectREST] {
		if err := d.addREST(tDirectREST, "direct REST", nil, d.upREST, restModel); err != nil {
			return err
		}
	}
	if d.want[tGatewayREST] || d.want[tGatewaySplit] || d.want[tGatewayPipe] || d.want[tGatewayGRPC] || f.profileDir != "" {
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
			if err := d.addREST(tGatewayREST, "gateway REST", d.gateway, d.gwAddrs.rest, restModel); err != nil {
				return err
			}
		}
		if d.want[tGatewaySplit] {
			if err := canarySplit(ctx, d.gwAddrs.admin, d.upREST); err != nil {
				return err
			}
			if err := d.addREST(tGatewaySplit, "gateway REST 90/10 split", d.gateway, d.gwAddrs.rest, splitModel); err != nil {
				return err
			}
		}
		if d.want[tGatewayPipe] {
			if err := d.addREST(tGatewayPipe, "gateway REST pipelined", d.gateway, d.gwAddrs.rest, pipeModel); err != nil {
				return err
			}
		}
	}
	if d.want[tNginx] {
		if _, err := os.Stat(f.nginx); err != nil {
			d.rep.note("nginx rows skipped: %s not found (apt-get install nginx)", f.nginx)
		} else {
			d.rep.Versions["nginx"] = toolVersion(f.nginx, "-v")
			var a proxyAddrs
			d.nginx, a, err = startNginx(ctx, f.nginx, d.dir, d.upREST)
			if err := d.started(d.nginx, err); err != nil {
				return err
			}
			if err := d.addREST(tNginx, "nginx", d.nginx, a.rest, restModel); err != nil {
				return err
			}
		}
	}
	if d.want[tHAProxy] {
		if _, err := os.Stat(f.haproxy); err != nil {
			d.rep.note("haproxy rows skipped: %s not found (apt-get install haproxy)", f.haproxy)
		} else {
			d.rep.Versions["haproxy"] = toolVersion(f.haproxy, "-v")
			var a proxyAddrs
			d.haproxy, a, err = startHAProxy(ctx, f.haproxy, d.dir, d.upREST)
			if err := d.started(d.haproxy, err); err != nil {
				return err
			}
			if err := d.addREST(tHAProxy, "haproxy", d.haproxy, a.rest, restModel); err != nil {
				return err
			}
		}
	}
	if d.want[tDirectGRPC] {
		if err := d.addGRPC(ctx, tDirectGRPC, "direct gRPC", nil, d.upGRPC); err != nil {
			return err
		}
	}
	if d.want[tGatewayGRPC] {
		if err := d.addGRPC(ctx, tGatewayGRPC, "gateway gRPC", d.gateway, d.gwAddrs.grpc); err != nil {
			return err
		}
	}
	// One request through each REST path, its body checked.
	for _, t := range d.targets {
		if !t.grpc {
			if err := t.t.Do(ctx); err != nil {
				return fmt.Errorf("%s: first request: %w", t.label, err)
			}
		}
	}
	return nil
}

// addREST adds a REST target whose every answer must be the runtime's,
// byte for byte.
func (d *driver) addREST(key, label string, p *proc, addr, model string) error {
	want := bench.IrisResponseJSON(model)
	rt, err := bench.NewRESTTarget(bench.RESTOptions{
		Addr: addr, Model: model, Body: bench.IrisRequestJSON(), Timeout: d.f.timeout,
		Check: func(status int, body []byte) error {
			if status != 200 {
				return &bench.StatusError{Code: status}
			}
			if !bytes.Equal(body, want) {
				return errUnexpectedBody
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	d.targets = append(d.targets, &target{key: key, label: label, proxy: p, t: rt, close: rt.Close})
	return nil
}

// addGRPC adds a gRPC target after checking, with one decoded call, that
// the answer through it is the runtime's.
func (d *driver) addGRPC(ctx context.Context, key, label string, p *proc, addr string) error {
	gt, err := bench.NewGRPCTarget(bench.GRPCOptions{Addr: addr, Request: bench.IrisRequestProto(grpcModel), Timeout: d.f.timeout})
	if err != nil {
		return err
	}
	d.targets = append(d.targets, &target{key: key, label: label, grpc: true, proxy: p, t: gt, close: gt.Close})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := pb.NewGRPCInferenceServiceClient(gt.Conn()).ModelInfer(cctx, bench.IrisRequestProto(grpcModel))
	if err != nil {
		return fmt.Errorf("%s: ModelInfer: %w", label, err)
	}
	if !proto.Equal(resp, bench.IrisResponseProto(grpcModel)) {
		return fmt.Errorf("%s: ModelInfer answered %v, not the runtime's answer", label, resp)
	}
	return nil
}

// loop runs t once at conc for dur, and fails if a process died meanwhile.
func (d *driver) loop(ctx context.Context, t *target, conc int, dur time.Duration) (*bench.Result, error) {
	res, err := bench.RunClosedLoop(ctx, t.t, bench.LoopOptions{
		Concurrency: conc, Duration: dur, Requests: d.f.maxRequests, StopTimeout: d.f.timeout,
	})
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for _, p := range d.procs {
		if p.Exited() {
			return nil, fmt.Errorf("%s exited during the run (%v)%s", p.name, p.Err(), p.logTail())
		}
	}
	return res, nil
}

// measure warms every target up at every concurrency, then runs the
// rounds: every target at every concurrency once per round, in an order
// rotated each round so that no target always follows the same one.
func (d *driver) measure(ctx context.Context) error {
	f := d.f
	total := time.Duration(len(d.targets)*len(d.concs)) * (f.warmup + time.Duration(f.rounds)*(f.window+f.winWarmup))
	fmt.Fprintf(d.out, "proxybench: %d targets x concurrency %v x %d rounds of %v, about %v; load average %s\n",
		len(d.targets), d.concs, f.rounds, f.window, total.Round(time.Second), d.rep.LoadBefore)
	if f.warmup > 0 {
		for _, conc := range d.concs {
			for _, t := range d.targets {
				if _, err := d.loop(ctx, t, conc, f.warmup); err != nil {
					return err
				}
			}
		}
	}
	m := newMeasurements(d.targets, d.concs, f.rounds)
	for r := range f.rounds {
		for _, conc := range d.concs {
			for i := range d.targets {
				t := d.targets[(i+r)%len(d.targets)]
				if f.winWarmup > 0 {
					if _, err := d.loop(ctx, t, conc, f.winWarmup); err != nil {
						return err
					}
				}
				var w window
				w.sample(0, t.proxy, d.upstream)
				res, err := d.loop(ctx, t, conc, f.window)
				if err != nil {
					return err
				}
				w.sample(1, t.proxy, d.upstream)
				m.add(t.key, conc, r, res, w)
			}
		}
		fmt.Fprintf(d.out, "  round %d of %d done\n", r+1, f.rounds)
	}
	d.rep.LoadAfter = loadAvg()
	d.rep.Rows = m.rows()
	return nil
}

var errUnexpectedBody = errors.New("the answer's body is not the runtime's")

// window samples CPU times around one measured window: the proxy's (none
// when direct), the runtime's and this driver's (the client's).
type window struct {
	proxy, upstream, client [2]time.Duration
}

// sample takes the CPU times before (i = 0) or after (i = 1) the window.
func (w *window) sample(i int, proxy, up *proc) {
	// A process that exited is caught after the window; a read that
	// fails otherwise leaves 0, which the table would show as no CPU.
	if proxy != nil {
		w.proxy[i], _ = proxy.cpu()
	}
	w.upstream[i], _ = up.cpu()
	w.client[i], _ = bench.ProcessCPU(os.Getpid())
}

// envFlag collects repeated KEY=VALUE flags.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", p)
		}
		out = append(out, n)
	}
	return out, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
