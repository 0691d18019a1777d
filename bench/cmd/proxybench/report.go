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

// measurements collects the windows of every target at every concurrency.
type measurements struct {
	targets []*target
	concs   []int
	rounds  int
	cells   map[cellKey]*cell
}

type cellKey struct {
	target string
	conc   int
}

type cell struct {
	t      *target
	conc   int
	rounds []*bench.Result
	wins   []window
	merged bench.Result
}

func newMeasurements(targets []*target, concs []int, rounds int) *measurements {
	m := &measurements{targets: targets, concs: concs, rounds: rounds, cells: map[cellKey]*cell{}}
	for _, t := range targets {
		for _, c := range concs {
			m.cells[cellKey{t.key, c}] = &cell{t: t, conc: c, rounds: make([]*bench.Result, rounds), wins: make([]window, rounds)}
		}
	}
	return m
}

func (m *measurements) add(key string, conc, round int, res *bench.Result, w window) {
	c := m.cells[cellKey{key, conc}]
	c.rounds[round] = res
	c.wins[round] = w
	c.merged.Merge(res)
}

// row is one line of the table (and of the JSON results).
type row struct {
	Target      string  `json:"target"`
	Protocol    string  `json:"protocol"`
	Concurrency int     `json:"concurrency"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	RPS         float64 `json:"rps"`
	// Ratio is the median over rounds of this target's requests/s over
	// direct's (same protocol) in the same round.
	Ratio      float64 `json:"ratio_to_direct"`
	P50us      float64 `json:"p50_us"`
	P90us      float64 `json:"p90_us"`
	P99us      float64 `json:"p99_us"`
	MaxUs      float64 `json:"max_us"`
	AddedP50us float64 `json:"added_p50_us"`
	// CPU time per request, in microseconds: the proxy's (0 when direct),
	// the runtime's and this driver's (the client's).
	ProxyCPUus    float64    `json:"proxy_cpu_us_per_request"`
	UpstreamCPUus float64    `json:"upstream_cpu_us_per_request"`
	ClientCPUus   float64    `json:"client_cpu_us_per_request"`
	Rounds        []roundRow `json:"rounds"`
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
		for _, t := range m.targets {
			c := m.cells[cellKey{t.key, conc}]
			base := m.cells[cellKey{t.baseline(), conc}]
			r := row{
				Target: t.label, Protocol: "rest", Concurrency: conc,
				Requests: c.merged.Requests, Errors: c.merged.Errors, FirstError: c.merged.FirstError,
				RPS: c.merged.RPS, P50us: us(c.merged.P50), P90us: us(c.merged.P90), P99us: us(c.merged.P99), MaxUs: us(c.merged.Max),
			}
			if t.grpc {
				r.Protocol = "grpc"
			}
			if base != nil {
				r.AddedP50us = us(c.merged.P50 - base.merged.P50)
			}
			var proxyCPU, upCPU, clientCPU time.Duration
			var ratios []float64
			for i, res := range c.rounds {
				if res == nil {
					continue
				}
				w := c.wins[i]
				proxyCPU += w.proxy[1] - w.proxy[0]
				upCPU += w.upstream[1] - w.upstream[0]
				clientCPU += w.client[1] - w.client[0]
				rr := roundRow{RPS: res.RPS, P50us: us(res.P50), P99us: us(res.P99), Requests: res.Requests, Errors: res.Errors,
					ProxyCPUus: perRequest(w.proxy[1]-w.proxy[0], res.Requests)}
				if base != nil && base.rounds[i] != nil && base.rounds[i].RPS > 0 {
					rr.Ratio = res.RPS / base.rounds[i].RPS
					ratios = append(ratios, rr.Ratio)
				}
				r.Rounds = append(r.Rounds, rr)
			}
			r.Ratio = median(ratios)
			r.ProxyCPUus = perRequest(proxyCPU, r.Requests)
			r.UpstreamCPUus = perRequest(upCPU, r.Requests)
			r.ClientCPUus = perRequest(clientCPU, r.Requests)
			out = append(out, r)
		}
	}
	return out
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
	Notes      []string          `json:"notes,omitempty"`
	Profile    *profileReport    `json:"profile,omitempty"`
}

type settings struct {
	Rounds       int    `json:"rounds"`
	Window       string `json:"window"`
	Warmup       string `json:"warmup"`
	WindowWarmup string `json:"window_warmup"`
	Concurrency  []int  `json:"concurrency"`
	MaxRequests  int64  `json:"max_requests_per_window"`
}

func (r *report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *report) print(out io.Writer) {
	fmt.Fprintf(out, "\n%d CPUs, load average %s before and %s after; %d rounds of %s per target and concurrency, interleaved\n",
		r.CPUs, r.LoadBefore, r.LoadAfter, r.Settings.Rounds, r.Settings.Window)
	var vs []string
	for k, v := range r.Versions {
		if v != "" {
			vs = append(vs, k+": "+v)
		}
	}
	slices.Sort(vs)
	fmt.Fprintln(out, strings.Join(vs, "; "))
	fmt.Fprintln(out, "ratio: requests/s over direct's (same protocol, same round; median of rounds). CPU: per request, from /proc/<pid>/stat over the measured windows.")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconc\treq/s\tratio\tp50 us\tp99 us\t+p50 us\tproxy CPU us/req\truntime CPU us/req\terrors\t")
	for _, x := range r.Rows {
		added, cpu := fmt.Sprintf("%.1f", x.AddedP50us), fmt.Sprintf("%.1f", x.ProxyCPUus)
		if strings.HasPrefix(x.Target, "direct") {
			added, cpu = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.1f\t%.1f\t%s\t%s\t%.1f\t%d\t\n",
			x.Target, x.Concurrency, x.RPS, x.Ratio, x.P50us, x.P99us, added, cpu, x.UpstreamCPUus, x.Errors)
	}
	_ = tw.Flush()
	for _, x := range r.Rows {
		if x.Errors > 0 {
			fmt.Fprintf(out, "%s at %d: %d errors, first: %s\n", x.Target, x.Concurrency, x.Errors, x.FirstError)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(out, "note:", n)
	}
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
