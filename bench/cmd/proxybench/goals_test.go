package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/bench"
)

// goalRows are the rows of a run at c16 and c64 with the gateway, nginx
// and haproxy measured by wrk and h2load; change edits them.
func goalRows(change func(key, gen string, conc int, r *row)) []row {
	var out []row
	for _, c := range []int{16, 64} {
		for _, x := range []struct {
			key, gen        string
			ratio, cpu, p99 float64
		}{
			{tGatewayREST, genWrk, 0.50, 14, 1000},
			{tNginx, genWrk, 0.45, 18, 1200},
			{tHAProxy, genWrk, 0.44, 20, 1100},
			{tGatewayGRPC, genH2load, 0.65, 15, 900},
			{tHAProxyGRPC, genH2load, 0.60, 16, 800},
			{tNginxGRPC, genH2load, 0.30, 44, 2000},
			// infergate's rows do not count.
			{tGatewayREST, genInfergate, 0.01, 99, 9999},
		} {
			r := row{Key: x.key, Generator: x.gen, Concurrency: c, Ratio: x.ratio, ProxyCPUus: x.cpu, P99us: x.p99}
			if change != nil {
				change(x.key, x.gen, c, &r)
			}
			out = append(out, r)
		}
	}
	return out
}

func statuses(goals []goalLine) map[string]string {
	m := map[string]string{}
	for _, g := range goals {
		m[g.Goal] = g.Status
	}
	return m
}

func TestCheckGoals(t *testing.T) {
	mem := func(peaks ...float64) *memoryReport {
		m := &memoryReport{}
		for _, p := range peaks {
			m.Rounds = append(m.Rounds, memRound{PeakMiB: p})
		}
		return m
	}
	allPass := map[string]string{
		"REST c16 (wrk): throughput >= nginx's":                                             "PASS",
		"REST c16 (wrk): throughput >= haproxy's":                                           "PASS",
		"REST c16 (wrk): proxy CPU/req <= nginx's":                                          "PASS",
		"REST c16 (wrk): p99 <= nginx's":                                                    "PASS",
		"REST c64 (wrk): throughput >= nginx's":                                             "PASS",
		"REST c64 (wrk): throughput >= haproxy's":                                           "PASS",
		"REST c64 (wrk): proxy CPU/req <= nginx's":                                          "PASS",
		"REST c64 (wrk): p99 <= nginx's":                                                    "PASS",
		"REST c64 (wrk): stretch: proxy CPU/req < 15 us":                                    "PASS",
		"gRPC 16 streams (h2load): throughput >= haproxy-grpc's":                            "PASS",
		"gRPC 16 streams (h2load): proxy CPU/req <= haproxy-grpc's":                         "PASS",
		"gRPC 16 streams (h2load): throughput >= 1.2x nginx-grpc's":                         "PASS",
		"gRPC 16 streams (h2load): stretch: ratio >= 0.6":                                   "PASS",
		"gRPC 64 streams (h2load): throughput >= haproxy-grpc's":                            "PASS",
		"gRPC 64 streams (h2load): proxy CPU/req <= haproxy-grpc's":                         "PASS",
		"gRPC 64 streams (h2load): throughput >= 1.2x nginx-grpc's":                         "PASS",
		"gRPC 64 streams (h2load): stretch: ratio >= 0.6":                                   "PASS",
		"memory: no growth across rounds (each round's peak RSS within 10% of the first's)": "PASS",
	}
	with := func(changes map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range allPass {
			m[k] = v
		}
		for k, v := range changes {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		change func(key, gen string, conc int, r *row)
		mem    *memoryReport
		want   map[string]string
	}{
		{name: "all pass", mem: mem(50, 52, 54), want: allPass},
		{
			name: "REST c16 slower than nginx, costlier than nginx",
			change: func(key, gen string, conc int, r *row) {
				if key == tGatewayREST && gen == genWrk && conc == 16 {
					r.Ratio, r.ProxyCPUus = 0.445, 18.5
				}
			},
			mem: mem(50, 50),
			want: with(map[string]string{
				"REST c16 (wrk): throughput >= nginx's":    "FAIL",
				"REST c16 (wrk): proxy CPU/req <= nginx's": "FAIL",
			}),
		},
		{
			name: "equal figures pass; the p99 and the stretch fail at c64",
			change: func(key, gen string, conc int, r *row) {
				if key == tGatewayREST && gen == genWrk && conc == 64 {
					r.Ratio, r.ProxyCPUus, r.P99us = 0.45, 15, 1300
				}
			},
			mem: mem(50, 50),
			want: with(map[string]string{
				"REST c64 (wrk): p99 <= nginx's":                 "FAIL",
				"REST c64 (wrk): stretch: proxy CPU/req < 15 us": "FAIL",
			}),
		},
		{
			name: "gRPC: not well enough ahead of nginx, costlier than haproxy",
			change: func(key, gen string, conc int, r *row) {
				if key == tGatewayGRPC && conc == 64 {
					r.Ratio, r.ProxyCPUus = 0.35, 16.5
				}
			},
			mem: mem(50, 50),
			want: with(map[string]string{
				"gRPC 64 streams (h2load): throughput >= haproxy-grpc's":    "FAIL",
				"gRPC 64 streams (h2load): proxy CPU/req <= haproxy-grpc's": "FAIL",
				"gRPC 64 streams (h2load): throughput >= 1.2x nginx-grpc's": "FAIL",
				"gRPC 64 streams (h2load): stretch: ratio >= 0.6":           "FAIL",
			}),
		},
		{
			name: "errors fail a comparison the figures pass",
			change: func(key, gen string, conc int, r *row) {
				if key == tGatewayREST && gen == genWrk && conc == 16 {
					r.Errors = 3
				}
			},
			mem: mem(50, 50),
			want: with(map[string]string{
				"REST c16 (wrk): throughput >= nginx's":    "FAIL",
				"REST c16 (wrk): throughput >= haproxy's":  "FAIL",
				"REST c16 (wrk): proxy CPU/req <= nginx's": "FAIL",
				"REST c16 (wrk): p99 <= nginx's":           "FAIL",
			}),
		},
		{
			name: "memory grows",
			mem:  mem(50, 54, 56),
			want: with(map[string]string{"memory: no growth across rounds (each round's peak RSS within 10% of the first's)": "FAIL"}),
		},
		{
			name: "one round of memory",
			mem:  mem(50),
			want: with(map[string]string{"memory: no growth across rounds (each round's peak RSS within 10% of the first's)": "SKIP"}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkGoals(goalRows(tc.change), []int{16, 64}, tc.mem)
			if diff := cmp.Diff(tc.want, statuses(got)); diff != "" {
				t.Errorf("checkGoals (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckGoalsSkipsWhatWasNotMeasured(t *testing.T) {
	// No nginx (REST and gRPC), no h2load rows at all, no memory.
	var rows []row
	for _, r := range goalRows(nil) {
		if r.Key != tNginx && r.Key != tNginxGRPC && r.Generator != genH2load {
			rows = append(rows, r)
		}
	}
	goals := checkGoals(rows, []int{16}, nil)
	got := statuses(goals)
	want := map[string]string{
		"REST c16 (wrk): throughput >= nginx's":                                             "SKIP",
		"REST c16 (wrk): throughput >= haproxy's":                                           "PASS",
		"REST c16 (wrk): proxy CPU/req <= nginx's":                                          "SKIP",
		"REST c16 (wrk): p99 <= nginx's":                                                    "SKIP",
		"gRPC 16 streams (h2load): throughput >= haproxy-grpc's":                            "SKIP",
		"gRPC 16 streams (h2load): proxy CPU/req <= haproxy-grpc's":                         "SKIP",
		"gRPC 16 streams (h2load): throughput >= 1.2x nginx-grpc's":                         "SKIP",
		"gRPC 16 streams (h2load): stretch: ratio >= 0.6":                                   "SKIP",
		"memory: no growth across rounds (each round's peak RSS within 10% of the first's)": "SKIP",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("checkGoals (-want +got):\n%s", diff)
	}
	var b bytes.Buffer
	printGoals(&b, goals)
	for _, s := range []string{"SKIP  REST c16 (wrk): throughput >= nginx's: nginx was not measured with wrk",
		"PASS  REST c16 (wrk): throughput >= haproxy's: gateway 0.50, haproxy 0.44"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("printGoals lacks %q:\n%s", s, b.String())
		}
	}
}

// TestRows checks the sums of a cell: ratios per round over the same
// generator's direct, wrk's CPU scaled to its measured window, the
// gateway's allocations without the scrapes' own.
func TestRows(t *testing.T) {
	direct := &target{key: tDirectREST, label: "direct REST"}
	gw := &target{key: tGatewayREST, label: "gateway REST", gateway: true}
	snap := func(proxyCPU, genCPU time.Duration, wakes int64, mallocs, gcs float64) snapshot {
		return snapshot{proxyCPU: proxyCPU, genCPU: genCPU, wakeups: wakes, gw: goCounters{ok: true, mallocs: mallocs, gcCycles: gcs}}
	}
	m := newMeasurements([]*target{direct, gw}, []string{genWrk}, []int{16}, 2, 100)
	for r, rps := range []float64{1000, 2000} {
		m.add(tDirectREST, genWrk, 16, r, &windowResult{requests: int64(rps), elapsed: time.Second, rps: rps,
			p50: time.Millisecond, p99: 4 * time.Millisecond})
		m.add(tGatewayREST, genWrk, 16, r, &windowResult{requests: int64(rps / 2), elapsed: time.Second, rps: rps / 2,
			p50: time.Duration(r+2) * time.Millisecond, p99: time.Duration(r+5) * time.Millisecond,
			before: snap(0, 0, 0, 1000, 10), after: snap(time.Duration(rps/2)*20*time.Microsecond, 0, int64(rps/2), 1000+100+rps, 12),
			// wrk ran 2s for a measured second: half of its CPU counts.
			genCPU: time.Duration(rps) * 10 * time.Microsecond, genWall: 2 * time.Second})
	}
	rows := m.rows()
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	got := rows[1]
	got.Rounds = nil
	want := row{Target: "gateway REST", Key: tGatewayREST, Protocol: "rest", Generator: genWrk, Concurrency: 16,
		Requests: 1500, RPS: 750, Ratio: 0.5, P50us: 2500, P99us: 5500, LatencyOver: "median of rounds", AddedP50us: 1500,
		ProxyCPUus: 20, GeneratorCPUus: 10, WakeupsPerReq: 1, Gateway: true, AllocsPerReq: 2, GCPerSec: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gateway row (-want +got):\n%s", diff)
	}
	// A generator that gives every latency: the quantiles are over all.
	h := new(bench.Histogram)
	for range 99 {
		h.Record(time.Millisecond)
	}
	h.Record(time.Second)
	m2 := newMeasurements([]*target{direct}, []string{genInfergate}, []int{1}, 1, 0)
	m2.add(tDirectREST, genInfergate, 1, 0, &windowResult{requests: 100, elapsed: time.Second, rps: 100, hist: h})
	r := m2.rows()[0]
	if r.LatencyOver != "all requests" || r.P50us < 990 || r.P50us > 1010 {
		t.Errorf("from a histogram: %s, p50 %v us", r.LatencyOver, r.P50us)
	}
}
