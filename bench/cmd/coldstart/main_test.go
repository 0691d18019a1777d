package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestNameMatches(t *testing.T) {
	tests := []struct {
		name, model string
		want        bool
	}{
		{"iris", "iris", true},
		{"iris-00001", "iris", true},
		{"iris-canary", "iris", false},
		{"iris-", "iris", false},
		{"irises", "iris", false},
		{"sim", "iris", false},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+tc.model, func(t *testing.T) {
			if got := nameMatches(tc.name, tc.model); got != tc.want {
				t.Errorf("nameMatches(%q, %q) = %v, want %v", tc.name, tc.model, got, tc.want)
			}
		})
	}
}

func TestScrapeHist(t *testing.T) {
	text := `# HELP infergate_runtime_start_to_ready_seconds x
# TYPE infergate_runtime_start_to_ready_seconds histogram
infergate_runtime_start_to_ready_seconds_bucket{model="iris",le="0.005"} 0
infergate_runtime_start_to_ready_seconds_sum{model="iris"} 0.25
infergate_runtime_start_to_ready_seconds_count{model="iris"} 3
infergate_runtime_start_to_ready_seconds_sum{model="iris-00002"} 0.5
infergate_runtime_start_to_ready_seconds_count{model="iris-00002"} 1
infergate_runtime_start_to_ready_seconds_sum{model="sim"} 9
infergate_runtime_start_to_ready_seconds_count{model="sim"} 9
infergate_runtime_start_to_ready_seconds_summary_sum{model="iris"} 7
`
	got := scrapeHist([]byte(text), metricStartToReady, "iris")
	if !got.found || got.sum != 0.75 || got.count != 4 {
		t.Errorf("iris = %+v, want found, sum 0.75 and count 4 over the model and its revision", got)
	}
	if got := scrapeHist([]byte(text), metricProbeGap, "iris"); got.found {
		t.Errorf("a histogram that is not there = %+v, want not found", got)
	}
}

func TestParseReadyLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		want readyEvent
	}{
		{"with the probe gap",
			`{"time":"2026-11-27T12:58:24.78Z","level":"INFO","msg":"replica ready","model":"iris","replica":0,"after":11234000,"probe_gap":812000}`,
			true, readyEvent{model: "iris", startToReady: 11234 * time.Microsecond, gap: 812 * time.Microsecond, hasStart: true, hasGap: true}},
		{"without",
			`{"time":"2026-11-27T12:58:24.78Z","level":"INFO","msg":"replica ready","model":"sim","replica":0,"after":59000000}`,
			true, readyEvent{model: "sim", startToReady: 59 * time.Millisecond, hasStart: true}},
		{"ready again is not a start", `{"msg":"replica ready again","model":"sim"}`, false, readyEvent{}},
		{"another line", `{"msg":"replica started","model":"sim"}`, false, readyEvent{}},
		{"not JSON", `time=x msg="replica ready" model=sim`, false, readyEvent{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseReadyLine([]byte(tc.line))
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseReadyLine = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFindRow(t *testing.T) {
	// The admin API's rows, one per revision, named by their model.
	rows := `[{"name":"iris","revision":"iris-00001","desired":1,"running":1,"ready":0},{"name":"sim","revision":"sim-00001","desired":0,"running":1,"ready":0},{"name":"sim","revision":"sim-00002","desired":2,"running":0,"ready":0}]`
	got, err := findRow([]byte(rows), "sim")
	if err != nil || got.Desired != 2 || got.Running != 1 {
		t.Errorf("findRow(sim) = %+v, %v; want the sum of its revisions' rows", got, err)
	}
	if _, err := findRow([]byte(rows), "digits"); err == nil {
		t.Error("findRow(digits) found a row")
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 20; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 10 * time.Millisecond}, {0.95, 19 * time.Millisecond}, {0.99, 20 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(ds, tc.q); got != tc.want {
			t.Errorf("quantile(1..20 ms, %v) = %s, want %s", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(none) = %s, want 0", got)
	}
}

// TestReport checks the table's checks: the gateway's share against the
// target and the failed requests.
func TestReport(t *testing.T) {
	ms := time.Millisecond
	runs := []*modelRun{
		{model: "iris", label: "iris (ONNX)", source: "metrics", cycles: []cycle{
			{first: 30 * ms, startToReady: 20 * ms, known: true, gap: ms, gapKnown: true, sent: 10, replicas: 1, toZero: 9 * time.Second},
			{first: 32 * ms, startToReady: 21 * ms, known: true, gap: ms, gapKnown: true, sent: 12, replicas: 1},
		}},
		{model: "sim", label: "sim (simulated)", source: "log", cycles: []cycle{
			{first: 60 * ms, startToReady: 30 * ms, known: true, sent: 5, failed: 1, failure: "status 503", replicas: 1},
		}},
	}
	var b bytes.Buffer
	report(&b, flags{gateShare: 20 * ms}, runs)
	out := b.String()
	for _, want := range []string{
		"PASS  iris (ONNX): gateway's share of a cold start p99 11.00ms over 2 cycles",
		"FAIL  sim (simulated): gateway's share of a cold start p99 30.00ms over 1 cycles",
		"FAIL  1 failed of 27 requests across 3 cycles",
		"the first: sim (simulated): status 503",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
