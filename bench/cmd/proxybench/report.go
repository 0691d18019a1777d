package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/bench"
)

// The load generators.
const (
	genInfergate = "infergate" // package bench's closed loop, in this process
	genWrk       = "wrk"       // REST only
	genH2load    = "h2load"    // gRPC only
)

var allGenerators = []string{genInfergate, genWrk, genH2load}

// speaks reports whether generator g drives clients of t's protocol.
func speaks(g string, grpc bool) bool {
	switch g {
	case genWrk:
		return !grpc
	case genH2load:
		return grpc
	}
	return true
}

// windowResult is one measured window of one generator against one target
// at one concurrency.
type windowResult struct {
	requests int64 // completed, errors included
	errors   int64
	firstErr string
	elapsed  time.Duration // the measured window
	rps      float64       // successful requests per second
	p50, p99 time.Duration
	// hist holds every successful request's latency, when the generator
	// gives them (infergate, h2load); wrk gives quantiles only.
	hist          *bench.Histogram
	before, after snapshot
	// genCPU is the generator's CPU time over the window (for wrk, over
	// its whole run) and genWall the wall time it was measured over.
	genCPU, genWall time.Duration
}

// fromResult is a window of infergate's generator, which runs in this
// process: its CPU is this process's.
func fromResult(res *bench.Result, before, after snapshot) *windowResult {
	return &windowResult{requests: res.Requests, errors: res.Errors, firstErr: res.FirstError, elapsed: res.Elapsed,
		rps: res.RPS, p50: res.P50, p99: res.P99, hist: res.Latency, before: before, after: after,
		genCPU: after.driverCPU - before.driverCPU, genWall: res.Elapsed}
}

// measurements collects the windows of every target and generator at
// every concurrency.
type measurements struct {
	targets      []*target
	gens         []string
	concs        []int
	rounds       int
	scrapeMalloc float64 // a /metrics scrape's own allocations in the gateway
	cells        map[cellKey]*cell
}

type cellKey struct {
	target, gen string
	conc        int
}

type cell struct {
	t      *target
	rounds []*windowResult
}

func newMeasurements(targets []*target, gens []string, concs []int, rounds int, scrapeMalloc float64) *measurements {
	m := &measurements{targets: targets, gens: gens, concs: concs, rounds: rounds, scrapeMalloc: scrapeMalloc, cells: map[cellKey]*cell{}}
	for _, t := range targets {
		for _, g := range gens {
			for _, c := range concs {
				m.cells[cellKey{t.key, g, c}] = &cell{t: t, rounds: make([]*windowResult, rounds)}
			}
		}
	}
	return m
}

func (m *measurements) add(key, gen string, conc, round int, w *windowResult) {
	m.cells[cellKey{key, gen, conc}].rounds[round] = w
}

// row is one line of the tables (and of the JSON results).
type row struct {
	Target      string `json:"target"`
	Key         string `json:"key"`
	Protocol    string `json:"protocol"`
	Generator   string `json:"generator"`
	Concurrency int    `json:"concurrency"`
	Requests    int64  `json:"requests"`
	Errors      int64  `json:"errors"`
	FirstError  string `json:"first_error,omitempty"`
	// RPS is the successful requests over the measured time of every
	// round.
	RPS float64 `json:"rps"`
	// Ratio is the median over rounds of this target's requests/s over
	// direct's (same protocol, same generator) in the same round.
	Ratio float64 `json:"ratio_to_direct"`
	// P50us and P99us are over every round's requests when the generator
	// gives latencies (infergate, h2load), else (wrk) the median of the
	// rounds' own quantiles; LatencyOver says which.
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	LatencyOver string  `json:"latency_over"`
	AddedP50us  float64 `json:"added_p50_us"`
	// CPU time per request, in microseconds: the proxy's (0 when direct),
	// the runtime's and the generator's.
	ProxyCPUus     float64 `json:"proxy_cpu_us_per_request"`
	UpstreamCPUus  float64 `json:"upstream_cpu_us_per_request"`
	GeneratorCPUus float64 `json:"generator_cpu_us_per_request"`
	// WakeupsPerReq are the proxy's voluntary context switches per
	// request.
	WakeupsPerReq float64 `json:"proxy_wakeups_per_request"`
	// Gateway rows only: the gateway's heap allocations per request and
	// GC cycles per second, from its Go runtime's counters.
	Gateway      bool       `json:"gateway"`
	AllocsPerReq float64    `json:"gateway_allocs_per_request,omitempty"`
	GCPerSec     float64    `json:"gateway_gc_per_second,omitempty"`
	Rounds       []roundRow `json:"rounds"`
}

type roundRow struct {
	RPS        float64 `json:"rps"`
	Ratio      float64 `json:"ratio_to_direct"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	ProxyCPUus float64 `json:"proxy_cpu_us_per_request"`
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func perRequest(d time.Duration, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return us(d) / float64(n)
}

func (m *measurements) rows() []row {
	var out []row
	for _, conc := range m.concs {
		for _, g := range m.gens {
			for _, t := range m.targets {
				if !speaks(g, t.grpc) {
					continue
				}
				c := m.cells[cellKey{t.key, g, conc}]
				base := m.cells[cellKey{t.baseline(), g, conc}]
				if r, ok := m.row(t, g, conc, c, base); ok {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// row sums the rounds of one cell; it is false when no round ran.
func (m *measurements) row(t *target, gen string, conc int, c, base *cell) (row, bool) {
	r := row{Target: t.label, Key: t.key, Protocol: "rest", Generator: gen, Concurrency: conc, Gateway: t.gateway}
	if t.grpc {
		r.Protocol = "grpc"
	}
	var proxyCPU, upCPU, genCPU time.Duration
	var elapsed time.Duration
	var ok, mallocOK bool
	var good, wakes int64
	var mallocs, gcs float64
	var ratios, p50s, p99s []float64
	hist := new(bench.Histogram)
	allHist := true
	for i, w := range c.rounds {
		if w == nil {
			continue
		}
		ok = true
		r.Requests += w.requests
		r.Errors += w.errors
		if r.FirstError == "" {
			r.FirstError = w.firstErr
		}
		good += w.requests - w.errors
		elapsed += w.elapsed
		proxyCPU += w.after.proxyCPU - w.before.proxyCPU
		upCPU += w.after.upstreamCPU - w.before.upstreamCPU
		wakes += w.after.wakeups - w.before.wakeups
		// wrk's CPU covers its whole run: scaled to the measured window.
		g := w.genCPU
		if w.genWall > w.elapsed && w.elapsed > 0 {
			g = time.Duration(float64(g) * float64(w.elapsed) / float64(w.genWall))
		}
		genCPU += g
		if w.before.gw.ok && w.after.gw.ok {
			mallocOK = true
			mallocs += max(0, w.after.gw.mallocs-w.before.gw.mallocs-m.scrapeMalloc)
			gcs += w.after.gw.gcCycles - w.before.gw.gcCycles
		}
		if w.hist != nil {
			hist.Merge(w.hist)
		} else {
			allHist = false
		}
		p50s, p99s = append(p50s, us(w.p50)), append(p99s, us(w.p99))
		rr := roundRow{RPS: w.rps, P50us: us(w.p50), P99us: us(w.p99), Requests: w.requests, Errors: w.errors,
			ProxyCPUus: perRequest(w.after.proxyCPU-w.before.proxyCPU, w.requests)}
		if base != nil && base.rounds[i] != nil && base.rounds[i].rps > 0 {
			rr.Ratio = w.rps / base.rounds[i].rps
			ratios = append(ratios, rr.Ratio)
		}
		r.Rounds = append(r.Rounds, rr)
	}
	if !ok {
		return r, false
	}
	if elapsed > 0 {
		r.RPS = float64(good) / elapsed.Seconds()
	}
	r.Ratio = median(ratios)
	if allHist && hist.Count() > 0 {
		r.P50us, r.P99us, r.LatencyOver = us(hist.Quantile(0.5)), us(hist.Quantile(0.99)), "all requests"
	} else {
		r.P50us, r.P99us, r.LatencyOver = median(p50s), median(p99s), "median of rounds"
	}
	if base != nil && base != c {
		if b, ok := m.row(base.t, gen, conc, base, nil); ok {
			r.AddedP50us = r.P50us - b.P50us
		}
	}
	r.ProxyCPUus = perRequest(proxyCPU, r.Requests)
	r.UpstreamCPUus = perRequest(upCPU, r.Requests)
	r.GeneratorCPUus = perRequest(genCPU, r.Requests)
	if r.Requests > 0 {
		r.WakeupsPerReq = float64(wakes) / float64(r.Requests)
		if mallocOK {
			r.AllocsPerReq = mallocs / float64(r.Requests)
		}
	}
	if mallocOK && elapsed > 0 {
		r.GCPerSec = gcs / elapsed.Seconds()
	}
	return r, true
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report is the whole run, as printed and as written to JSON.
type report struct {
	Started    time.Time         `json:"started"`
	CPUs       int               `json:"cpus"`
	LoadBefore string            `json:"load_average_before"`
	LoadAfter  string            `json:"load_average_after"`
	Versions   map[string]string `json:"versions"`
	Settings   settings          `json:"settings"`
	Rows       []row             `json:"rows"`
	Memory     *memoryReport     `json:"memory,omitempty"`
	Goals      []goalLine        `json:"goals,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
	Profile    *profileReport    `json:"profile,omitempty"`
}

type settings struct {
	Rounds             int      `json:"rounds"`
	Window             string   `json:"window"`
	Warmup             string   `json:"warmup"`
	WindowWarmup       string   `json:"window_warmup"`
	Concurrency        []int    `json:"concurrency"`
	MaxRequests        int64    `json:"max_requests_per_window"`
	Generators         []string `json:"generators"`
	GRPCStreamsPerConn int      `json:"grpc_streams_per_connection"`
	WrkThreads         int      `json:"wrk_threads"`
	H2loadThreads      int      `json:"h2load_threads"`
}

func (r *report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// grpcConns is the number of connections that carry conc concurrent
// streams, perConn at most on each.
func grpcConns(conc, perConn int) int {
	return max(1, (conc+perConn-1)/perConn)
}

func (r *report) print(out io.Writer) {
	fmt.Fprintf(out, "\n%d CPUs, load average %s before and %s after; %d rounds of %s per target, generator and concurrency, interleaved\n",
		r.CPUs, r.LoadBefore, r.LoadAfter, r.Settings.Rounds, r.Settings.Window)
	var vs []string
	for k, v := range r.Versions {
		if v != "" {
			vs = append(vs, k+": "+v)
		}
	}
	slices.Sort(vs)
	fmt.Fprintln(out, strings.Join(vs, "; "))
	fmt.Fprintln(out, "ratio: requests/s over direct's (same protocol, same generator, same round; median of rounds). CPU: per request, from /proc/<pid>/stat over the measured windows;")
	fmt.Fprintln(out, "gen CPU is the load generator's own (never in the proxy's). wakeups: the proxy's voluntary context switches per request. allocs and GC/s: the gateway's Go runtime, from its /metrics.")
	fmt.Fprintln(out, "p50/p99: over every request of every round (infergate, h2load), or the median of the rounds' (wrk).")
	for _, proto := range []string{"rest", "grpc"} {
		for _, conc := range r.Settings.Concurrency {
			var rows []row
			for _, x := range r.Rows {
				if x.Protocol == proto && x.Concurrency == conc {
					rows = append(rows, x)
				}
			}
			if len(rows) == 0 {
				continue
			}
			if proto == "rest" {
				fmt.Fprintf(out, "\n== REST, %d connections (wrk -t%d -c%d; infergate: %d workers on a keep-alive pool)\n",
					conc, r.Settings.WrkThreads, conc, conc)
			} else {
				n := grpcConns(conc, r.Settings.GRPCStreamsPerConn)
				fmt.Fprintf(out, "\n== gRPC, %d concurrent streams (%d connection(s) x %d streams: h2load -c%d -m%d; infergate: the same)\n",
					conc, n, (conc+n-1)/n, n, (conc+n-1)/n)
			}
			printRows(out, rows)
		}
	}
	for _, x := range r.Rows {
		if x.Errors > 0 {
			fmt.Fprintf(out, "%s (%s) at %d: %d errors, first: %s\n", x.Target, x.Generator, x.Concurrency, x.Errors, x.FirstError)
		}
	}
	if r.Memory != nil {
		r.Memory.print(out)
	}
	printGoals(out, r.Goals)
	for _, n := range r.Notes {
		fmt.Fprintln(out, "note:", n)
	}
}

func printRows(out io.Writer, rows []row) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tgenerator\treq/s\tratio\tp50 us\tp99 us\tproxy CPU us/req\tgen CPU us/req\truntime CPU us/req\twakeups/req\tallocs/req\tGC/s\terrors\t")
	prev := ""
	for _, x := range rows {
		if prev != "" && x.Generator != prev {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t")
		}
		prev = x.Generator
		cpu, wakes := fmt.Sprintf("%.1f", x.ProxyCPUus), fmt.Sprintf("%.2f", x.WakeupsPerReq)
		if strings.HasPrefix(x.Key, "direct") {
			cpu, wakes = "-", "-"
		}
		allocs, gcs := "-", "-"
		if x.Gateway {
			allocs, gcs = fmt.Sprintf("%.1f", x.AllocsPerReq), fmt.Sprintf("%.1f", x.GCPerSec)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.0f\t%.0f\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%d\t\n",
			x.Target, x.Generator, x.RPS, x.Ratio, x.P50us, x.P99us, cpu, x.GeneratorCPUus, x.UpstreamCPUus, wakes, allocs, gcs, x.Errors)
	}
	_ = tw.Flush()
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }
