package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/gateway/tracing/otlptest"
)

// TestObservability: `infergate serve -trace-endpoint` continues a
// caller's trace and exports the gateway's spans to an OTLP collector,
// the answer carries Server-Timing, and a model annotated with
// infergate.io/payload-log writes its request and response as CloudEvents
// sharing the request's Ce-Id.
func TestObservability(t *testing.T) {
	collector := otlptest.Start(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "models")
	writeFiles(t, cfg, map[string]string{"fake.yaml": fakeModelAnnotated("fake", "1", 200, "",
		"    infergate.io/payload-log: \"file:fake/payloads.jsonl\"\n")})
	p := startInfergate(t, "serve", "-config", cfg, "-trace-endpoint", collector.URL(), "-trace-sample-ratio", "0")
	events := filepath.Join(p.dataDir, "payload-logs", "fake", "payloads.jsonl")

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", "http://"+p.rest+"/v2/models/fake/infer", strings.NewReader(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`))
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01") // sampled by the caller
	req.Header.Set("Ce-Id", "order-1234")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d sends it
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if st := resp.Header.Get("Server-Timing"); !strings.Contains(st, "upstream;dur=") {
		t.Errorf("Server-Timing %q has no upstream stage", st)
	}
	// Spans are exported in batches: the server and upstream spans, at
	// least, of the caller's trace.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spans, err := collector.WaitSpans(ctx, 2)
	if err != nil {
		t.Fatalf("spans: %v (got %d)", err, len(collector.Spans()))
	}
	names := map[string]bool{}
	for _, s := range spans {
		if s.TraceIDHex() != traceID {
			t.Errorf("span %q of trace %s, want the caller's %s", s.GetName(), s.TraceIDHex(), traceID)
		}
		names[s.GetName()] = true
	}
	if !names["upstream call"] {
		t.Errorf("no upstream call span among %v", names)
	}
	// The request and its response, each a line, in order of logging.
	var lines []map[string]any
	for len(lines) < 2 {
		if ctx.Err() != nil {
			t.Fatalf("payload log holds %d events", len(lines))
		}
		lines = readEvents(t, events)
		if len(lines) < 2 {
			time.Sleep(20 * time.Millisecond) // the sink is a file; nothing tells
		}
	}
	types := map[string]bool{}
	for _, e := range lines {
		if e["id"] != "order-1234" {
			t.Errorf("event id %v, want the request's Ce-Id", e["id"])
		}
		types[e["type"].(string)] = true
		if _, ok := e["data"].(map[string]any); !ok {
			t.Errorf("%v: the payload is not logged as JSON: %v", e["type"], e)
		}
	}
	if !types["org.kubeflow.serving.inference.request"] || !types["org.kubeflow.serving.inference.response"] {
		t.Errorf("event types %v", types)
	}
}

func readEvents(t *testing.T, path string) []map[string]any {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err == nil {
			out = append(out, e)
		}
	}
	return out
}
