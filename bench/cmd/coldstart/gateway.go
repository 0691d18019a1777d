package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infergate/infergate/bench/internal/procs"
)

// modelKind is what the bench knows of one of its models.
type modelKind struct {
	label string // the table's name for it
	// body is the request sent to it.
	body func(f flags) ([]byte, error)
}

var modelKinds = map[string]modelKind{
	"iris": {
		label: "iris (ONNX)",
		body: func(f flags) ([]byte, error) {
			return os.ReadFile(f.samples + "/iris/request.json")
		},
	},
	"sim": {
		label: "sim (simulated)",
		body: func(flags) ([]byte, error) {
			return []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`), nil
		},
	},
}

// Metric names the split reads from the gateway's /metrics.
const (
	metricStartToReady = "infergate_runtime_start_to_ready_seconds"
	metricProbeGap     = "infergate_runtime_ready_probe_gap_seconds"
)

// writeConfig writes the InferenceServices of the models into dir.
func writeConfig(dir string, f flags, models []string) (string, error) {
	var b strings.Builder
	for _, m := range models {
		var uri string
		switch m {
		case "iris":
			abs, err := absPath(f.samples + "/iris")
			if err != nil {
				return "", err
			}
			uri = abs
		case "sim":
			uri = dir + "/models/sim"
			if err := os.MkdirAll(uri, 0o755); err != nil {
				return "", err
			}
			cfg := fmt.Sprintf(`{"simulate": {"latency_ms": %g, "slots": 256,
  "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
  "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}}
`, f.simLatency)
			if err := os.WriteFile(uri+"/config.json", []byte(cfg), 0o644); err != nil {
				return "", err
			}
		}
		// The shortest way to zero the annotations allow: a 6 s stable
		// window (their minimum) without traffic, then a 1 s grace period;
		// the autoscaler decides every 2 s.
		fmt.Fprintf(&b, `---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
  annotations:
    autoscaling.knative.dev/window: "6s"
    autoscaling.knative.dev/scale-to-zero-grace-period: "1s"
spec:
  predictor:
    minReplicas: 0
    model: {modelFormat: {name: onnx}, storageUri: %q}
`, m, uri)
	}
	path := dir + "/models.yaml"
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func absPath(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return wd + "/" + p, nil
}

// gateway is the `infergate serve` process the bench runs.
type gateway struct {
	proc        *procs.Process
	rest, admin string
	http        *http.Client
	mu          sync.Mutex
	ready       []readyEvent // the supervisor's "replica ready" lines, in order
}

// readyEvent is one "replica ready" line of the gateway's JSON log.
type readyEvent struct {
	model             string
	startToReady, gap time.Duration
	hasStart, hasGap  bool
}

// startGateway runs `infergate serve` on free loopback ports with JSON
// logs, copies its log to dir/gateway.log while reading the supervisor's
// readiness lines from it, and waits until it answers ready. The gateway
// runs in a process group of its own and, on Linux, dies with this
// program.
func startGateway(ctx context.Context, f flags, dir, config string) (*gateway, error) {
	addrs, err := procs.FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	g := &gateway{
		rest:  addrs[0],
		admin: addrs[2],
		http:  &http.Client{Timeout: 10 * time.Second},
	}
	g.proc, err = procs.Start(procs.Options{
		Path: f.infergate,
		Args: []string{"serve", "-config", config, "-data-dir", dir + "/data",
			"-rest-addr", g.rest, "-grpc-addr", addrs[1], "-admin-addr", g.admin,
			"-log-format", "json"},
		LogPath: dir + "/gateway.log",
		Stderr:  g.scanLog,
	})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ok, _ := g.get(ctx, g.rest, "/v2/health/ready"); ok {
			return g, nil
		}
		select {
		case <-g.proc.Done():
			return nil, fmt.Errorf("infergate serve exited (%v)%s", g.proc.Err(), g.logTail())
		case <-ctx.Done():
			g.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, errors.New("infergate serve not ready within 60s" + g.logTail())
		}
	}
}

// scanLog copies the gateway's log to w and keeps its "replica ready"
// lines.
func (g *gateway) scanLog(r io.Reader, w io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			_, _ = w.Write(line)
			if ev, ok := parseReadyLine(line); ok {
				g.mu.Lock()
				g.ready = append(g.ready, ev)
				g.mu.Unlock()
			}
		}
		if err != nil {
			return
		}
	}
}

// parseReadyLine reads the supervisor's JSON log line for a replica that
// became ready: its start-to-ready time ("after") and, when the supervisor
// logs it, its probe gap ("probe_gap"), both in nanoseconds.
func parseReadyLine(line []byte) (readyEvent, bool) {
	if !bytes.Contains(line, []byte(`"replica ready"`)) {
		return readyEvent{}, false
	}
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil || rec["msg"] != "replica ready" {
		return readyEvent{}, false
	}
	ev := readyEvent{}
	ev.model, _ = rec["model"].(string)
	if v, ok := rec["after"].(float64); ok {
		ev.startToReady, ev.hasStart = time.Duration(v), true
	}
	if v, ok := rec["probe_gap"].(float64); ok {
		ev.gap, ev.hasGap = time.Duration(v), true
	}
	return ev, ev.model != "" && ev.hasStart
}

// readyEvents returns the "replica ready" events of model (or of its
// revisions) from the index-th on.
func (g *gateway) readyEvents(model string, from int) (events []readyEvent, next int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ev := range g.ready[min(from, len(g.ready)):] {
		if nameMatches(ev.model, model) {
			events = append(events, ev)
		}
	}
	return events, len(g.ready)
}

// nameMatches says whether a name in the gateway's output (a model, or a
// revision of it such as iris-00001) is model's.
func nameMatches(name, model string) bool {
	if name == model {
		return true
	}
	rest, ok := strings.CutPrefix(name, model+"-")
	if !ok || rest == "" {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// get reports whether GET http://addr+path answered 200.
func (g *gateway) get(ctx context.Context, addr, path string) (bool, []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return false, nil
	}
	resp, err := g.http.Do(req)
	if err != nil {
		return false, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return err == nil && resp.StatusCode == http.StatusOK, b
}

// modelRow is the part of a GET /api/v1/models row the bench reads.
type modelRow struct {
	Name    string `json:"name"` // the model's; a row per revision
	Desired int    `json:"desired"`
	Running int    `json:"running"`
	Ready   int    `json:"ready"`
}

// row returns model's state from the admin API: its row, or the sum of the
// rows of its revisions.
func (g *gateway) row(ctx context.Context, model string) (modelRow, error) {
	ok, b := g.get(ctx, g.admin, "/api/v1/models")
	if !ok {
		return modelRow{}, errors.New("GET /api/v1/models failed")
	}
	return findRow(b, model)
}

func findRow(b []byte, model string) (modelRow, error) {
	var rows []modelRow
	if err := json.Unmarshal(b, &rows); err != nil {
		return modelRow{}, fmt.Errorf("GET /api/v1/models: %w", err)
	}
	sum, found := modelRow{Name: model}, false
	for _, r := range rows {
		if r.Name == model {
			sum.Desired += r.Desired
			sum.Running += r.Running
			sum.Ready += r.Ready
			found = true
		}
	}
	if !found {
		return modelRow{}, fmt.Errorf("GET /api/v1/models: no row for %q", model)
	}
	return sum, nil
}

// histSums are a histogram's sum and count for one model (all its series).
type histSums struct {
	sum   float64
	count float64
	found bool
}

// metrics reads the start-to-ready and probe-gap histograms of model from
// /metrics.
func (g *gateway) metrics(ctx context.Context, model string) (start, gap histSums, err error) {
	ok, b := g.get(ctx, g.admin, "/metrics")
	if !ok {
		return start, gap, errors.New("GET /metrics failed")
	}
	return scrapeHist(b, metricStartToReady, model), scrapeHist(b, metricProbeGap, model), nil
}

// scrapeHist adds up the _sum and _count series of the histogram name in
// Prometheus text exposition b whose model label is model's.
func scrapeHist(b []byte, name, model string) histSums {
	var h histSums
	for line := range bytes.Lines(b) {
		s := strings.TrimSpace(string(line))
		var isSum bool
		switch {
		case strings.HasPrefix(s, name+"_sum"):
			isSum = true
			s = s[len(name+"_sum"):]
		case strings.HasPrefix(s, name+"_count"):
			s = s[len(name+"_count"):]
		default:
			continue
		}
		labels := ""
		if strings.HasPrefix(s, "{") {
			end := strings.IndexByte(s, '}')
			if end < 0 {
				continue
			}
			labels, s = s[1:end], s[end+1:]
		}
		if !strings.HasPrefix(s, " ") || !nameMatches(labelValue(labels, "model"), model) {
			continue
		}
		fields := strings.Fields(s)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		h.found = true
		if isSum {
			h.sum += v
		} else {
			h.count += v
		}
	}
	return h
}

// labelValue returns the value of label key in a Prometheus label list
// (a="x",b="y"); values holding quotes or commas are not expected here.
func labelValue(labels, key string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == key {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// stop sends SIGTERM to the gateway, which stops its runtimes, and SIGKILL
// to its process group after 20 s.
func (g *gateway) stop() { g.proc.Stop(20 * time.Second) }

// logTail returns the last lines of the gateway's log for error messages.
func (g *gateway) logTail() string { return g.proc.LogTail(15) }
