package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infergate/infergate/bench"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes"
)

const benchUsage = `Usage: infergate bench -u URL -m MODEL [flags]
       infergate bench -compare OLD.json NEW.json

Load-tests any Open Inference Protocol (KServe v2) server over REST or gRPC.
It reads the model's metadata, builds valid requests (or takes them from a
file), checks one, then sends load: a closed loop (fixed concurrency) or an
open loop (fixed rate, latency from each request's intended send time), for
one point or a sweep, and prints throughput, latency quantiles, errors by
kind and bytes moved.

Target:
  -u, -url URL            http://host:port (REST) or grpc://host:port (gRPC)
  -m, -model NAME         the model to load
  -model-version V        a version of it (default: the server's choice)
  -protocol rest|grpc     overrides the URL's scheme
  -binary                 REST: send tensors in Triton's binary extension, ask for binary outputs
  -raw                    gRPC: send tensors in raw_input_contents (default: typed contents)
  -grpc-conns N           gRPC: HTTP/2 connections to spread calls over (default 1)
  -H 'Name: value'        REST: an extra request header; repeatable
  -timeout D              bound of one request, and of the metadata call (default 10s)

Requests (random data of each input's datatype and shape, unless -input-data):
  -batch N                size of a variable (-1) first dimension (default 1)
  -shape NAME:D1,D2,...   the whole shape of an input; repeatable
  -input-data FILE        requests from a JSON file: one OIP request, an array
                          of them (cycled), or perf_analyzer's {"data": [...]}
  -distinct N             random requests made and cycled (default 16)
  -seed N                 seed of the random data and Poisson arrivals (default 1)
  -string-length N        length of random BYTES elements (default 16)

Load:
  -c, -concurrency N      closed loop: N requests in flight at all times (default 1)
  -rate R                 open loop: R requests/s, whatever the answers do
  -arrivals KIND          open loop: constant (default) or poisson
  -max-inflight N         open loop: most requests in flight (default 1024)
  -d, -duration D         measured time of each point (default 10s unless -n)
  -n N                    measured requests of each point
  -warmup D               unmeasured load before each point (default 1s)
  -concurrency-range S    sweep concurrencies, START:END[:STEP], STEP xF or +N: 1:64:x2
  -rate-range S           sweep rates the same way: 100:2000:+100
  -latency-limit D        stop a sweep after the point whose latency passes D
  -latency-stat S         the latency compared: p50, p90, p95, p99 (default), p99.9, max, mean
  -max-error-ratio F      stop a sweep after a point with more than F of requests failed
  -max-duration D         bound of the whole run, checked before and enforced during (default 10m)

Output (a table on stdout in any case; files only at the paths these flags give):
  -json FILE              the report as JSON (what -compare reads)
  -csv FILE               one line per point, perf_analyzer's column names
  -html FILE              a self-contained page with throughput-latency and over-time charts
                          (none unless given: no file is written to the working directory by default)
  -progress auto|on|off   a live line on stderr (default auto: when stderr is a terminal)
  -compare OLD NEW        print the differences between two JSON reports, with ratios

Ctrl-C stops the run: the points measured so far are printed and written.
`

// benchFlags are `infergate bench`'s flags as given.
type benchFlags struct {
	url, model, version, protocol string
	binary, raw                   bool
	grpcConns                     int
	headers                       stringList
	timeout                       time.Duration

	batch        int64
	shapes       stringList
	inputData    string
	distinct     int
	seed         uint64
	stringLength int

	concurrency      int
	rate             float64
	arrivals         string
	maxInflight      int
	duration         time.Duration
	requests         int64
	warmup           time.Duration
	concRange        string
	rateRange        string
	latencyLimit     time.Duration
	latencyStat      string
	maxErrorRatio    float64
	maxDuration      time.Duration
	jsonOut, csvOut  string
	htmlOut          string
	progress         string
	compare          string
	durationGiven    bool
	concurrencyGiven bool
}

func (f *benchFlags) register(fs *flag.FlagSet) {
	for _, n := range []string{"u", "url"} {
		fs.StringVar(&f.url, n, "", "")
	}
	for _, n := range []string{"m", "model"} {
		fs.StringVar(&f.model, n, "", "")
	}
	fs.StringVar(&f.version, "model-version", "", "")
	fs.StringVar(&f.protocol, "protocol", "", "")
	fs.BoolVar(&f.binary, "binary", false, "")
	fs.BoolVar(&f.raw, "raw", false, "")
	fs.IntVar(&f.grpcConns, "grpc-conns", 1, "")
	fs.Var(&f.headers, "H", "")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "")
	fs.Int64Var(&f.batch, "batch", 1, "")
	fs.Var(&f.shapes, "shape", "")
	fs.StringVar(&f.inputData, "input-data", "", "")
	fs.IntVar(&f.distinct, "distinct", 16, "")
	fs.Uint64Var(&f.seed, "seed", 1, "")
	fs.IntVar(&f.stringLength, "string-length", 16, "")
	for _, n := range []string{"c", "concurrency"} {
		fs.IntVar(&f.concurrency, n, 1, "")
	}
	fs.Float64Var(&f.rate, "rate", 0, "")
	fs.StringVar(&f.arrivals, "arrivals", bench.ArrivalsConstant, "")
	fs.IntVar(&f.maxInflight, "max-inflight", 1024, "")
	for _, n := range []string{"d", "duration"} {
		fs.DurationVar(&f.duration, n, 10*time.Second, "")
	}
	fs.Int64Var(&f.requests, "n", 0, "")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "")
	fs.StringVar(&f.concRange, "concurrency-range", "", "")
	fs.StringVar(&f.rateRange, "rate-range", "", "")
	fs.DurationVar(&f.latencyLimit, "latency-limit", 0, "")
	fs.StringVar(&f.latencyStat, "latency-stat", "p99", "")
	fs.Float64Var(&f.maxErrorRatio, "max-error-ratio", 0, "")
	fs.DurationVar(&f.maxDuration, "max-duration", 10*time.Minute, "")
	fs.StringVar(&f.jsonOut, "json", "", "")
	fs.StringVar(&f.csvOut, "csv", "", "")
	fs.StringVar(&f.htmlOut, "html", "", "")
	fs.StringVar(&f.progress, "progress", "auto", "")
	fs.StringVar(&f.compare, "compare", "", "")
}

// noteGiven records which flags with defaults were given.
func (f *benchFlags) noteGiven(fs *flag.FlagSet) {
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "d", "duration":
			f.durationGiven = true
		case "c", "concurrency":
			f.concurrencyGiven = true
		}
	})
}

// benchPlan is the validated configuration of a run.
type benchPlan struct {
	f        benchFlags
	addr     string
	grpc     bool
	open     bool
	loads    []float64
	sweep    string
	rule     bench.StopRule
	shapes   map[string][]int64
	headers  [][2]string
	duration time.Duration // 0 when only -n bounds a point
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage) }
	var f benchFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	f.noteGiven(fs)
	if f.compare != "" {
		if fs.NArg() != 1 {
			return errors.New("bench: -compare OLD.json NEW.json takes two reports")
		}
		return compareReports(stdout, f.compare, fs.Arg(0))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q (flags go before it; see -h)", fs.Arg(0))
	}
	plan, err := f.plan()
	if err != nil {
		return err
	}
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return plan.run(sigCtx, stdout, stderr)
}

// plan validates the flags, before anything is sent.
func (f benchFlags) plan() (*benchPlan, error) {
	p := &benchPlan{f: f}
	if f.url == "" || f.model == "" {
		return nil, errors.New("bench: give the server with -u and the model with -m (see -h)")
	}
	rest, ok := strings.CutPrefix(f.url, "http://")
	switch {
	case ok:
	case strings.HasPrefix(f.url, "grpc://"):
		rest, p.grpc = strings.TrimPrefix(f.url, "grpc://"), true
	case strings.HasPrefix(f.url, "https://"):
		return nil, fmt.Errorf("bench: -u %s: TLS is not supported; give http://host:port or grpc://host:port", f.url)
	case !strings.Contains(f.url, "://"):
		rest = f.url
	default:
		return nil, fmt.Errorf("bench: -u %s: want http://host:port or grpc://host:port", f.url)
	}
	switch f.protocol {
	case "":
	case "rest", "http":
		p.grpc = false
	case "grpc":
		p.grpc = true
	default:
		return nil, fmt.Errorf("bench: -protocol %q: want rest or grpc", f.protocol)
	}
	p.addr = strings.TrimSuffix(rest, "/")
	if strings.Contains(p.addr, "/") || !strings.Contains(p.addr, ":") {
		return nil, fmt.Errorf("bench: -u %s: want host:port after the scheme, with no path", f.url)
	}
	if p.grpc && f.binary {
		return nil, errors.New("bench: -binary is REST's binary tensor extension; over gRPC use -raw")
	}
	if !p.grpc && f.raw {
		return nil, errors.New("bench: -raw is gRPC's raw_input_contents; over REST use -binary")
	}
	if p.grpc && len(f.headers) > 0 {
		return nil, errors.New("bench: -H applies to REST only")
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("bench: -H %q: want 'Name: value'", h)
		}
		p.headers = append(p.headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	if f.batch < 1 {
		return nil, fmt.Errorf("bench: -batch %d: want 1 or more", f.batch)
	}
	for _, s := range f.shapes {
		name, dims, ok := strings.Cut(s, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("bench: -shape %q: want NAME:D1,D2,...", s)
		}
		var shape []int64
		for _, d := range strings.Split(dims, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(d), 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("bench: -shape %q: %q is not a dimension", s, d)
			}
			shape = append(shape, n)
		}
		if p.shapes == nil {
			p.shapes = map[string][]int64{}
		}
		p.shapes[name] = shape
	}
	if f.inputData != "" && (len(f.shapes) > 0 || f.batch != 1) {
		return nil, errors.New("bench: -input-data gives whole requests: -shape and -batch do not apply")
	}
	if f.distinct < 1 || f.stringLength < 1 || f.grpcConns < 1 || f.maxInflight < 1 {
		return nil, errors.New("bench: -distinct, -string-length, -grpc-conns and -max-inflight must be positive")
	}
	if f.timeout <= 0 || f.maxDuration <= 0 || f.warmup < 0 || f.duration < 0 || f.requests < 0 {
		return nil, errors.New("bench: -timeout and -max-duration must be positive, -warmup, -duration and -n not negative")
	}
	if f.durationGiven && f.duration == 0 {
		return nil, errors.New("bench: -duration 0: give a positive duration, or bound points with -n alone")
	}

	// Closed or open loop, one point or a sweep.
	if f.concRange != "" && f.rateRange != "" {
		return nil, errors.New("bench: give -concurrency-range or -rate-range, not both")
	}
	p.open = f.rate != 0 || f.rateRange != ""
	if p.open && (f.concurrencyGiven || f.concRange != "") {
		return nil, errors.New("bench: -c and -concurrency-range are closed-loop settings; an open loop (-rate, -rate-range) bounds in-flight requests with -max-inflight")
	}
	if f.rate < 0 || math.IsNaN(f.rate) || math.IsInf(f.rate, 0) {
		return nil, fmt.Errorf("bench: -rate %v: want a positive number of requests per second", f.rate)
	}
	if f.arrivals != bench.ArrivalsConstant && f.arrivals != bench.ArrivalsPoisson {
		return nil, fmt.Errorf("bench: -arrivals %q: want %s or %s", f.arrivals, bench.ArrivalsConstant, bench.ArrivalsPoisson)
	}
	switch {
	case f.concRange != "":
		loads, err := bench.ParseRange(f.concRange, true)
		if err != nil {
			return nil, fmt.Errorf("bench: -concurrency-range: %w", err)
		}
		p.loads, p.sweep = loads, "concurrency "+f.concRange
	case f.rateRange != "":
		loads, err := bench.ParseRange(f.rateRange, false)
		if err != nil {
			return nil, fmt.Errorf("bench: -rate-range: %w", err)
		}
		p.loads, p.sweep = loads, "rate "+f.rateRange
	case p.open:
		p.loads = []float64{f.rate}
	default:
		if f.concurrency < 1 {
			return nil, fmt.Errorf("bench: -c %d: want 1 or more", f.concurrency)
		}
		p.loads = []float64{float64(f.concurrency)}
	}
	if !p.open && slices.Max(p.loads) > 100_000 {
		return nil, errors.New("bench: concurrency above 100000 is not supported")
	}
	p.rule = bench.StopRule{Stat: f.latencyStat, Limit: f.latencyLimit, MaxErrorRatio: f.maxErrorRatio}
	if err := p.rule.Validate(); err != nil {
		return nil, fmt.Errorf("bench: -latency-stat, -latency-limit or -max-error-ratio: %w", err)
	}
	if (f.latencyLimit > 0 || f.maxErrorRatio > 0) && p.sweep == "" {
		return nil, errors.New("bench: -latency-limit and -max-error-ratio stop a sweep: give -concurrency-range or -rate-range")
	}

	// Bounded: a point by its duration or count, the run by -max-duration.
	p.duration = f.duration
	if f.requests > 0 && !f.durationGiven {
		p.duration = 0
	}
	if p.duration > 0 {
		total := time.Duration(len(p.loads)) * (f.warmup + p.duration)
		if total > f.maxDuration {
			return nil, fmt.Errorf("bench: the run would take %v (%d points of %v after %v of warm-up), more than -max-duration %v",
				total, len(p.loads), p.duration, f.warmup, f.maxDuration)
		}
	}
	if f.progress != "auto" && f.progress != "on" && f.progress != "off" {
		return nil, fmt.Errorf("bench: -progress %q: want auto, on or off", f.progress)
	}
	return p, nil
}

// benchTarget is a prepared target with its one-request check.
type benchTarget interface {
	bench.Target
	Probe(ctx context.Context) error
	Close() error
}

// run fetches the metadata, prepares the requests and the target, checks
// one request, measures every point and writes the outputs.
func (p *benchPlan) run(sigCtx context.Context, stdout, stderr io.Writer) error {
	f := p.f
	started := time.Now()
	md, err := p.metadata(sigCtx)
	if err != nil {
		return err
	}
	reqs, dataDesc, err := p.requests(md)
	if err != nil {
		return err
	}
	target, encoding, err := p.target(reqs)
	if err != nil {
		return err
	}
	defer target.Close()
	pctx, cancel := context.WithTimeout(sigCtx, f.timeout)
	err = target.Probe(pctx)
	cancel()
	if err != nil {
		if sigCtx.Err() != nil {
			return errors.New("bench: interrupted before the run")
		}
		return fmt.Errorf("bench: the first request to %s failed, so no load was sent: %s", f.url, oneLine(bench.ErrorKind(err)))
	}

	rep := &bench.Report{
		Tool: "infergate bench", Version: version, Started: started.UTC().Format(time.RFC3339),
		URL: p.scheme() + p.addr, Model: md.Name, ModelVersion: f.version,
		Protocol: map[bool]string{false: "rest", true: "grpc"}[p.grpc], Encoding: encoding,
		Batch: batchOf(md, reqs[0]), Inputs: describeRequest(reqs[0]), Data: dataDesc,
		Mode:   map[bool]string{false: bench.ModeClosed, true: bench.ModeOpen}[p.open],
		Warmup: f.warmup, Duration: p.duration, Requests: f.requests, Sweep: p.sweep,
	}
	if p.open {
		rep.Arrivals = f.arrivals
	}
	if p.sweep != "" && f.latencyLimit > 0 {
		rep.LatencyStat, rep.LatencyLimit = p.rule.Stat, f.latencyLimit
	}

	runCtx, cancelRun := context.WithTimeout(sigCtx, f.maxDuration)
	defer cancelRun()
	prog := newProgressLine(stderr, f.progress)
	points, stopped, err := bench.RunSweep(runCtx, p.loads, p.rule, func(ctx context.Context, load float64) (*bench.Result, error) {
		return p.point(ctx, target, load, prog)
	}, func(float64, *bench.Result) { prog.done() })
	prog.done()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	rep.Points, rep.Stopped = points, stopped
	if p.sweep == "" {
		rep.Stopped = ""
	}
	if runCtx.Err() != nil {
		rep.Interrupted = true
		if sigCtx.Err() == nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("stopped at -max-duration %v", f.maxDuration))
		}
	}
	rep.Notes = append(rep.Notes, lateNotes(rep)...)
	if len(rep.Points) == 0 {
		return errors.New("bench: interrupted before the first point was measured")
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{f.jsonOut, rep.WriteJSON}, {f.csvOut, rep.WriteCSV}, {f.htmlOut, rep.WriteHTML}} {
		if out.path == "" {
			continue
		}
		var buf bytes.Buffer
		if err := out.write(&buf); err != nil {
			return fmt.Errorf("bench: %s: %w", out.path, err)
		}
		if err := os.WriteFile(out.path, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if rep.Interrupted && sigCtx.Err() != nil {
		return errors.New("bench: interrupted; the points measured so far are above")
	}
	return nil
}

func (p *benchPlan) scheme() string {
	if p.grpc {
		return "grpc://"
	}
	return "http://"
}

// metadata fetches the model's metadata, turning every failure into one
// line that says what to fix.
func (p *benchPlan) metadata(ctx context.Context) (*oip.ModelMetadata, error) {
	var (
		c   runtimes.Client
		err error
	)
	if p.grpc {
		c, err = runtimes.NewGRPCClient(runtimes.GRPCOptions{Addr: p.addr})
	} else {
		c, err = runtimes.NewRESTClient(runtimes.RESTOptions{Addr: p.addr, MaxConns: 1})
	}
	if err != nil {
		return nil, fmt.Errorf("bench: -u %s: %w", p.f.url, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, p.f.timeout)
	defer cancel()
	md, err := c.ModelMetadata(ctx, p.f.model, p.f.version)
	url := p.scheme() + p.addr
	switch {
	case err == nil:
		return md, nil
	case errors.Is(err, runtimes.ErrUnreachable) || oip.KindOf(err) == oip.KindUnavailable:
		return nil, fmt.Errorf("bench: cannot reach %s: %s", url, oneLine(unreachableCause(err)))
	case oip.KindOf(err) == oip.KindNotFound:
		return nil, fmt.Errorf("bench: model %q not found at %s: %s", p.f.model, url, oneLine(oip.Message(err)))
	case oip.KindOf(err) == oip.KindDeadlineExceeded:
		return nil, fmt.Errorf("bench: %s did not answer the metadata request within -timeout %v", url, p.f.timeout)
	}
	return nil, fmt.Errorf("bench: metadata of model %q from %s: %s", p.f.model, url, oneLine(oip.Message(err)))
}

// unreachableCause is the innermost useful words of a connection failure.
func unreachableCause(err error) string {
	k := bench.ErrorKind(err)
	for _, s := range []string{"connection refused", "connection reset", "no such host", "i/o timeout", "network is unreachable"} {
		if strings.Contains(k, s) || strings.Contains(err.Error(), s) {
			return s
		}
	}
	return k
}

// requests builds the requests: from -input-data, checked against the
// metadata, or random.
func (p *benchPlan) requests(md *oip.ModelMetadata) ([]*oip.InferRequest, string, error) {
	f := p.f
	if f.inputData != "" {
		doc, err := os.ReadFile(f.inputData)
		if err != nil {
			return nil, "", fmt.Errorf("bench: -input-data: %w", err)
		}
		reqs, err := bench.LoadRequests(doc, md)
		if err != nil {
			return nil, "", fmt.Errorf("bench: -input-data %s: %s", f.inputData, oneLine(err.Error()))
		}
		return reqs, fmt.Sprintf("requests from %s (%d)", f.inputData, len(reqs)), nil
	}
	reqs, err := bench.GenerateRequests(md, bench.RequestOptions{
		Batch: f.batch, Shapes: p.shapes, Distinct: f.distinct, Seed: f.seed, StringLength: f.stringLength,
	})
	if errors.Is(err, bench.ErrShapeNeeded) {
		return nil, "", fmt.Errorf("%s with -shape NAME:D1,D2,...", strings.TrimPrefix(err.Error(), "bench: "))
	}
	if err != nil {
		return nil, "", err
	}
	return reqs, fmt.Sprintf("random data, %d distinct requests (seed %d)", len(reqs), f.seed), nil
}

// target encodes the requests once and makes the target.
func (p *benchPlan) target(reqs []*oip.InferRequest) (benchTarget, string, error) {
	f := p.f
	maxLoad := int(slices.Max(p.loads))
	if p.grpc {
		msgs, err := bench.GRPCRequests(reqs, f.model, f.version, f.raw)
		if err != nil {
			return nil, "", err
		}
		t, err := bench.NewGRPCTarget(bench.GRPCOptions{Addr: p.addr, Requests: msgs, Timeout: f.timeout, Conns: f.grpcConns})
		if err != nil {
			return nil, "", err
		}
		return t, map[bool]string{false: "contents", true: "raw"}[f.raw], nil
	}
	bodies, err := bench.RESTRequests(reqs, f.binary)
	if err != nil {
		return nil, "", err
	}
	path := runtimes.ModelPath(f.model, f.version, "/infer")
	conns := maxLoad
	if p.open {
		conns = f.maxInflight
	}
	t, err := bench.NewRESTTarget(bench.RESTOptions{Addr: p.addr, Path: path, Requests: bodies, Header: p.headers, Timeout: f.timeout, MaxConns: conns})
	if err != nil {
		return nil, "", err
	}
	return t, map[bool]string{false: "json", true: "binary"}[f.binary], nil
}

// point measures one load.
func (p *benchPlan) point(ctx context.Context, t bench.Target, load float64, prog *progressLine) (*bench.Result, error) {
	f := p.f
	dur := p.duration
	if dur == 0 {
		dur = f.maxDuration // -n alone: the run's bound is the point's
	}
	if p.open {
		prog.start(fmt.Sprintf("rate %s/s", strconv.FormatFloat(load, 'f', -1, 64)), p.duration)
		return bench.RunOpenLoop(ctx, t, bench.OpenLoopOptions{
			Rate: load, Arrivals: f.arrivals, Seed: f.seed, MaxInflight: f.maxInflight,
			Warmup: f.warmup, Duration: dur, Requests: f.requests, StopTimeout: f.timeout,
			Progress: prog.update,
		})
	}
	prog.start(fmt.Sprintf("concurrency %d", int(load)), p.duration)
	return bench.RunClosedLoop(ctx, t, bench.LoopOptions{
		Concurrency: int(load), Warmup: f.warmup, Duration: dur, Requests: f.requests,
		StopTimeout: f.timeout, Progress: prog.update,
	})
}

// lateNotes warns when an open loop's sends fell behind the schedule.
func lateNotes(rep *bench.Report) []string {
	var out []string
	for _, pt := range rep.Points {
		if pt.Mode == bench.ModeOpen && pt.Requests > 0 && float64(pt.Late) > 0.01*float64(pt.Requests) {
			out = append(out, fmt.Sprintf("at rate %s, %d sends started more than 1ms behind schedule (send lag p99 %s): "+
				"the server held requests back (-max-inflight reached) or the generator lacked CPU; latencies count the delay",
				rep.Load(pt), pt.Late, bench.FormatDuration(pt.SendLagP99)))
		}
	}
	return out
}

// batchOf is the batch size of r: its first dimension when the model's
// first input has a variable one, else 1.
func batchOf(md *oip.ModelMetadata, r *oip.InferRequest) int64 {
	in := md.Inputs[0]
	if t := r.Input(in.Name); t != nil && len(in.Shape) > 0 && in.Shape[0] < 0 && len(t.Shape) > 0 {
		return t.Shape[0]
	}
	return 1
}

// describeRequest writes a request's tensors: "input FP32 [1,4]".
func describeRequest(r *oip.InferRequest) string {
	parts := make([]string, len(r.Inputs))
	for i, t := range r.Inputs {
		s := make([]string, len(t.Shape))
		for j, d := range t.Shape {
			s[j] = strconv.FormatInt(d, 10)
		}
		parts[i] = t.Name + " " + t.Datatype.String() + " [" + strings.Join(s, ",") + "]"
	}
	return "inputs " + strings.Join(parts, ", ")
}

// oneLine keeps an error on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func compareReports(w io.Writer, oldPath, newPath string) error {
	old, err := bench.ReadReport(oldPath)
	if err != nil {
		return fmt.Errorf("bench: -compare: %w", err)
	}
	cur, err := bench.ReadReport(newPath)
	if err != nil {
		return fmt.Errorf("bench: -compare: %w", err)
	}
	return bench.Compare(w, oldPath, old, newPath, cur)
}

// progressLine is the live line on a terminal: elapsed, requests, current
// rate and errors, rewritten in place; it writes nothing when off.
type progressLine struct {
	w        io.Writer
	on       bool
	label    string
	total    time.Duration
	lastAt   time.Duration
	lastReqs int64
	drawn    bool
}

func newProgressLine(w io.Writer, mode string) *progressLine {
	on := mode == "on"
	if mode == "auto" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				on = true
			}
		}
	}
	return &progressLine{w: w, on: on}
}

func (pl *progressLine) start(label string, total time.Duration) {
	pl.label, pl.total, pl.lastAt, pl.lastReqs = label, total, 0, 0
}

// update is the loops' Progress callback; it runs on the loop's own
// goroutine, one call at a time.
func (pl *progressLine) update(pr bench.Progress) {
	if !pl.on {
		return
	}
	pl.drawn = true
	if pr.Warmup {
		fmt.Fprintf(pl.w, "\r\x1b[K%s: warming up %s", pl.label, pr.Elapsed.Round(100*time.Millisecond))
		return
	}
	rate := 0.0
	if dt := pr.Elapsed - pl.lastAt; dt > 0 {
		rate = float64(pr.Requests-pl.lastReqs) / dt.Seconds()
	}
	pl.lastAt, pl.lastReqs = pr.Elapsed, pr.Requests
	fmt.Fprintf(pl.w, "\r\x1b[K%s", bench.FormatProgress(pl.label, pr, pl.total, rate))
}

// done ends the line of a point.
func (pl *progressLine) done() {
	if pl.on && pl.drawn {
		fmt.Fprint(pl.w, "\r\x1b[K")
		pl.drawn = false
	}
}
