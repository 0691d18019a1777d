package payloadlog_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/gateway/payloadlog"
)

// received is one POST an HTTP sink got.
type received struct {
	header http.Header
	body   []byte
}

// sinkServer is an HTTP sink on 127.0.0.1 that reports every POST on got
// and then, when block is not nil, waits for it to close before answering.
type sinkServer struct {
	*httptest.Server
	got   chan received
	block chan struct{}
}

func newSink(t *testing.T, blocking bool) *sinkServer {
	t.Helper()
	s := &sinkServer{got: make(chan received, 1000)}
	if blocking {
		s.block = make(chan struct{})
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.got <- received{r.Header.Clone(), body}
		if s.block != nil {
			<-s.block
		}
	}))
	t.Cleanup(s.Close)
	if blocking {
		// Cleanups run last first: the handlers return before Close waits for them.
		t.Cleanup(s.release)
	}
	return s
}

func (s *sinkServer) release() {
	select {
	case <-s.block:
	default:
		close(s.block)
	}
}

func (s *sinkServer) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-s.got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the sink received nothing in 10 s")
	}
	return received{}
}

// running is a Logger whose Run the test stops with stop.
type running struct {
	*payloadlog.Logger
	reg  *prometheus.Registry
	stop func()
}

func start(t *testing.T, o payloadlog.Options, models map[string]payloadlog.ModelConfig) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := payloadlog.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	o.Metrics = m
	l, err := payloadlog.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetModels(models); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return within 30 s of its context's end")
		}
	}
	t.Cleanup(stop)
	return &running{Logger: l, reg: reg, stop: stop}
}

// metric returns the value of the counter or gauge name with labels.
func (r *running) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

var jsonType = []byte("application/json")

func TestHTTPSinkGetsKServeEvents(t *testing.T) {
	sink := newSink(t, false)
	l := start(t, payloadlog.Options{Senders: 1}, map[string]payloadlog.ModelConfig{
		"iris": {Sink: sink.URL, SampleRate: 1, Namespace: "team-a"},
	})
	reqBody := []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)
	respBody := []byte(`{"model_name":"iris","outputs":[{"name":"y","shape":[1],"datatype":"INT64","data":[0]}]}`)
	wantReq, wantResp := string(reqBody), string(respBody)

	before := time.Now().Add(-time.Second)
	h := l.Begin("iris", "iris-00002", []byte("req-42"))
	if !h.Logged() || h.ID() != "req-42" {
		t.Fatalf("Logged %v, ID %q", h.Logged(), h.ID())
	}
	h.Request(jsonType, reqBody)
	copy(reqBody, bytes.Repeat([]byte("X"), len(reqBody))) // the gateway reuses its buffers
	h.Response([]byte("application/json; charset=utf-8"), respBody)
	copy(respBody, bytes.Repeat([]byte("Y"), len(respBody)))

	for _, want := range []struct{ typ, contentType, body string }{
		{payloadlog.TypeRequest, "application/json", wantReq},
		{payloadlog.TypeResponse, "application/json; charset=utf-8", wantResp},
	} {
		got := sink.next(t)
		if string(got.body) != want.body {
			t.Errorf("%s body %q, want %q", want.typ, got.body, want.body)
		}
		headers := map[string]string{}
		for _, k := range []string{"Ce-Specversion", "Ce-Type", "Ce-Source", "Ce-Id", "Ce-Inferenceservicename",
			"Ce-Namespace", "Ce-Component", "Ce-Endpoint", "Content-Type"} {
			headers[k] = got.header.Get(k)
		}
		if diff := cmp.Diff(map[string]string{
			"Ce-Specversion":          "1.0",
			"Ce-Type":                 want.typ,
			"Ce-Source":               "/v2/models/iris",
			"Ce-Id":                   "req-42",
			"Ce-Inferenceservicename": "iris",
			"Ce-Namespace":            "team-a",
			"Ce-Component":            "predictor",
			"Ce-Endpoint":             "iris-00002",
			"Content-Type":            want.contentType,
		}, headers); diff != "" {
			t.Errorf("%s headers (-want +got):\n%s", want.typ, diff)
		}
		ts, err := time.Parse(time.RFC3339Nano, got.header.Get("Ce-Time"))
		if err != nil || ts.Before(before) {
			t.Errorf("Ce-Time %q: %v", got.header.Get("Ce-Time"), err)
		}
	}
	// No id of its own: both events share a new one.
	h = l.Begin("iris", "iris-00002", nil)
	h.Request(jsonType, []byte(`{}`))
	h.Response(jsonType, []byte(`{}`))
	a, b := sink.next(t).header.Get("Ce-Id"), sink.next(t).header.Get("Ce-Id")
	if a != b || len(a) != 36 || a == "req-42" {
		t.Errorf("request id %q, response id %q: want one new UUID", a, b)
	}
	l.stop()
	if got := l.metric(t, "infergate_payloadlog_events_sent_total", "model", "iris"); got != 4 {
		t.Errorf("sent %v, want 4", got)
	}
}

func TestModes(t *testing.T) {
	sink := newSink(t, false)
	l := start(t, payloadlog.Options{}, map[string]payloadlog.ModelConfig{
		"req":  {Sink: sink.URL, SampleRate: 1, Mode: payloadlog.ModeRequest},
		"resp": {Sink: sink.URL, SampleRate: 1, Mode: payloadlog.ModeResponse},
	})
	for _, m := range []string{"req", "resp", "other"} {
		h := l.Begin(m, "", []byte(m))
		h.Request(jsonType, []byte(`{"r":1}`))
		h.Response(jsonType, []byte(`{"r":2}`))
	}
	l.stop()
	got := map[string]string{}
	for range 2 {
		r := sink.next(t)
		got[r.header.Get("Ce-Inferenceservicename")] = r.header.Get("Ce-Type")
	}
	if diff := cmp.Diff(map[string]string{"req": payloadlog.TypeRequest, "resp": payloadlog.TypeResponse}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := len(sink.got); n != 0 {
		t.Errorf("%d events more than the modes allow", n)
	}
}

// readLines parses a file sink's lines.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFileSinkWritesStructuredEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "iris.jsonl")
	l := start(t, payloadlog.Options{}, map[string]payloadlog.ModelConfig{
		"iris": {Sink: "file://" + path, SampleRate: 1, Namespace: "default"},
	})
	h := l.Begin("iris", "iris-00001", []byte("a-1"))
	h.Request(jsonType, []byte("{\"inputs\": [\n{\"name\":\"x\",\"data\":[1]}]}"))
	h.Response([]byte("application/octet-stream"), []byte{0, 1, 2, 0xff})
	l.stop()

	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	byType := map[string]map[string]any{}
	for _, m := range lines {
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Errorf("time: %v", err)
		}
		delete(m, "time")
		byType[m["type"].(string)] = m
	}
	want := map[string]map[string]any{
		payloadlog.TypeRequest: {
			"specversion": "1.0", "type": payloadlog.TypeRequest, "source": "/v2/models/iris", "id": "a-1",
			"datacontenttype": "application/json", "inferenceservicename": "iris", "namespace": "default",
			"component": "predictor", "endpoint": "iris-00001",
			"data": map[string]any{"inputs": []any{map[string]any{"name": "x", "data": []any{1.0}}}},
		},
		payloadlog.TypeResponse: {
			"specversion": "1.0", "type": payloadlog.TypeResponse, "source": "/v2/models/iris", "id": "a-1",
			"datacontenttype": "application/octet-stream", "inferenceservicename": "iris", "namespace": "default",
			"component": "predictor", "endpoint": "iris-00001",
			"data_base64": "AAEC/w==",
		},
	}
	if diff := cmp.Diff(want, byType); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRedactionOnOIPPayloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.jsonl")
	cfg, ok, err := payloadlog.ParseAnnotations(map[string]string{
		payloadlog.AnnotationSink:   path,
		payloadlog.AnnotationRedact: "parameters.user_id, inputs[name=ssn].data, outputs[name=score].parameters.explanation",
	})
	if err != nil || !ok {
		t.Fatalf("ParseAnnotations: %v %v", ok, err)
	}
	l := start(t, payloadlog.Options{Senders: 1}, map[string]payloadlog.ModelConfig{"fraud": cfg})
	h := l.Begin("fraud", "fraud-00001", []byte("r1"))
	h.Request(jsonType, []byte(`{"parameters":{"user_id":"u-77","channel":"web"},"inputs":[
		{"name":"ssn","shape":[1],"datatype":"BYTES","data":["123-45-6789"]},
		{"name":"amount","shape":[1],"datatype":"FP32","data":[12.5]}]}`))
	h.Response(jsonType, []byte(`{"model_name":"fraud","outputs":[{"name":"score","shape":[1],"datatype":"FP32","data":[0.9],"parameters":{"explanation":"ssn matched"}}]}`))
	// Binary tensor extension: not JSON, cannot be shown clean: dropped.
	h = l.Begin("fraud", "fraud-00001", []byte("r2"))
	h.Request([]byte("application/octet-stream"), []byte{1, 2, 3})
	l.stop()

	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	got := map[string]any{}
	for _, m := range lines {
		got[m["type"].(string)] = m["data"]
	}
	var wantReq, wantResp any
	_ = json.Unmarshal([]byte(`{"parameters":{"user_id":"[REDACTED]","channel":"web"},"inputs":[
		{"name":"ssn","shape":[1],"datatype":"BYTES","data":"[REDACTED]"},
		{"name":"amount","shape":[1],"datatype":"FP32","data":[12.5]}]}`), &wantReq)
	_ = json.Unmarshal([]byte(`{"model_name":"fraud","outputs":[{"name":"score","shape":[1],"datatype":"FP32","data":[0.9],"parameters":{"explanation":"[REDACTED]"}}]}`), &wantResp)
	if diff := cmp.Diff(map[string]any{payloadlog.TypeRequest: wantReq, payloadlog.TypeResponse: wantResp}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := l.metric(t, "infergate_payloadlog_events_dropped_total", "model", "fraud", "reason", payloadlog.ReasonUnredactable); got != 1 {
		t.Errorf("unredactable drops %v, want 1", got)
	}
}

func TestSampling(t *testing.T) {
	dir := t.TempDir()
	l := start(t, payloadlog.Options{QueueLength: 1000}, map[string]payloadlog.ModelConfig{
		"none": {Sink: filepath.Join(dir, "none.jsonl"), SampleRate: 0},
		"all":  {Sink: filepath.Join(dir, "all.jsonl"), SampleRate: 1, Mode: payloadlog.ModeRequest},
		"half": {Sink: filepath.Join(dir, "half.jsonl"), SampleRate: 0.5, SampleByID: true, Mode: payloadlog.ModeRequest},
	})
	const n = 200
	logged := map[string]int{}
	for i := range n {
		id := []byte(fmt.Sprintf("id-%d", i))
		for _, m := range []string{"none", "all", "half"} {
			h := l.Begin(m, "", id)
			if h.Logged() {
				logged[m]++
			}
			h.Request(jsonType, []byte(`{"i":1}`))
			h.Response(jsonType, []byte(`{"i":2}`))
			// By id: the same id, the same decision.
			if m == "half" && l.Begin(m, "", id).Logged() != h.Logged() {
				t.Fatalf("id %s sampled once and not again", id)
			}
		}
	}
	l.stop()
	if logged["none"] != 0 || logged["all"] != n {
		t.Errorf("logged %v: want none 0, all %d", logged, n)
	}
	// Binomial(200, 0.5): outside [60, 140] has probability below 1e-8.
	if h := logged["half"]; h < 60 || h > 140 {
		t.Errorf("rate 0.5 logged %d of %d", h, n)
	}
	for m, want := range map[string]int{"none": 0, "all": n, "half": logged["half"]} {
		if got := len(readLines(t, filepath.Join(dir, m+".jsonl"))); got != want {
			t.Errorf("%s: %d lines, want %d", m, got, want)
		}
	}
}

// TestSlowSinkDoesNotBlockLog: with the one sender stuck in a sink that
// does not answer, Log returns at once; events beyond the queue are
// dropped and counted, exactly.
func TestSlowSinkDoesNotBlockLog(t *testing.T) {
	sink := newSink(t, true)
	const queue = 4
	l := start(t, payloadlog.Options{Senders: 1, QueueLength: queue, SendTimeout: time.Minute}, map[string]payloadlog.ModelConfig{
		"iris": {Sink: sink.URL, SampleRate: 1, Mode: payloadlog.ModeRequest},
	})
	body := []byte(`{"inputs":[]}`)
	l.Begin("iris", "", []byte("first")).Request(jsonType, body)
	sink.next(t) // the sender is now stuck in the sink

	const more = 50
	for i := range queue + more {
		l.Begin("iris", "", []byte(fmt.Sprint("r", i))).Request(jsonType, body)
	}
	if got := l.metric(t, "infergate_payloadlog_events_dropped_total", "model", "iris", "reason", payloadlog.ReasonQueueFull); got != more {
		t.Errorf("dropped %v as queue_full, want %d", got, more)
	}
	if got := l.metric(t, "infergate_payloadlog_queued_events"); got != queue {
		t.Errorf("queued %v, want %d", got, queue)
	}
	if got := l.metric(t, "infergate_payloadlog_queued_bytes"); got != float64(queue*len(body)) {
		t.Errorf("queued bytes %v, want %d", got, queue*len(body))
	}

	sink.release()
	for range queue {
		sink.next(t)
	}
	l.stop()
	if got := l.metric(t, "infergate_payloadlog_events_sent_total", "model", "iris"); got != 1+queue {
		t.Errorf("sent %v, want %d", got, 1+queue)
	}
	if got := l.metric(t, "infergate_payloadlog_queued_bytes"); got != 0 {
		t.Errorf("queued bytes %v after the drain, want 0", got)
	}
}

func TestQueueBytesBound(t *testing.T) {
	sink := newSink(t, true)
	l := start(t, payloadlog.Options{Senders: 1, QueueLength: 100, QueueBytes: 100}, map[string]payloadlog.ModelConfig{
		"iris": {Sink: sink.URL, SampleRate: 1, Mode: payloadlog.ModeRequest},
	})
	l.Begin("iris", "", nil).Request(jsonType, []byte(`{}`))
	sink.next(t)
	big := bytes.Repeat([]byte("1"), 40)
	for range 5 {
		l.Begin("iris", "", nil).Request(jsonType, big) // 2 fit in 100 bytes
	}
	if got := l.metric(t, "infergate_payloadlog_events_dropped_total", "model", "iris", "reason", payloadlog.ReasonQueueFull); got != 3 {
		t.Errorf("dropped %v, want 3", got)
	}
	sink.release()
	l.stop()
	if got := l.metric(t, "infergate_payloadlog_events_sent_total", "model", "iris"); got != 3 {
		t.Errorf("sent %v, want 3", got)
	}
}

func TestShutdownDrainsQueuedEvents(t *testing.T) {
	sink := newSink(t, false)
	reg := prometheus.NewRegistry()
	m, _ := payloadlog.NewMetrics(reg)
	l, err := payloadlog.New(payloadlog.Options{QueueLength: 8, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetModels(map[string]payloadlog.ModelConfig{"iris": {Sink: sink.URL, SampleRate: 1, Mode: payloadlog.ModeRequest}}); err != nil {
		t.Fatal(err)
	}
	for i := range 8 { // queued before Run starts
		l.Begin("iris", "", []byte(fmt.Sprint(i))).Request(jsonType, []byte(`{}`))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run starts stopping at once: it drains
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.got); n != 8 {
		t.Errorf("sink got %d events, want 8", n)
	}
	l.Begin("iris", "", nil).Request(jsonType, []byte(`{}`)) // after Run: dropped
	r := &running{Logger: l, reg: reg}
	if got := r.metric(t, "infergate_payloadlog_events_dropped_total", "model", "iris", "reason", payloadlog.ReasonShutdown); got != 1 {
		t.Errorf("dropped after shutdown %v, want 1", got)
	}
	if err := l.Run(context.Background()); err == nil {
		t.Error("a second Run started")
	}
}

// TestShutdownGivesUpAtTheDrainDeadline: a sink that never answers holds
// shutdown for the drain timeout only; the stuck delivery fails and what
// was queued behind it is dropped, counted.
func TestShutdownGivesUpAtTheDrainDeadline(t *testing.T) {
	sink := newSink(t, true)
	l := start(t, payloadlog.Options{Senders: 1, QueueLength: 10, SendTimeout: time.Hour, DrainTimeout: 100 * time.Millisecond},
		map[string]payloadlog.ModelConfig{"iris": {Sink: sink.URL, SampleRate: 1, Mode: payloadlog.ModeRequest}})
	l.Begin("iris", "", nil).Request(jsonType, []byte(`{}`))
	sink.next(t)
	for range 3 {
		l.Begin("iris", "", nil).Request(jsonType, []byte(`{}`))
	}
	l.stop() // returns though the sink never answers
	if got := l.metric(t, "infergate_payloadlog_events_failed_total", "model", "iris"); got != 1 {
		t.Errorf("failed %v, want 1 (the delivery in flight)", got)
	}
	if got := l.metric(t, "infergate_payloadlog_events_dropped_total", "model", "iris", "reason", payloadlog.ReasonShutdown); got != 3 {
		t.Errorf("dropped at shutdown %v, want 3", got)
	}
}

func TestFailedDeliveriesAreCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer srv.Close()
	l := start(t, payloadlog.Options{}, map[string]payloadlog.ModelConfig{"iris": {Sink: srv.URL, SampleRate: 1}})
	h := l.Begin("iris", "", nil)
	h.Request(jsonType, []byte(`{}`))
	h.Response(jsonType, []byte(`{}`))
	l.stop()
	if got := l.metric(t, "infergate_payloadlog_events_failed_total", "model", "iris"); got != 2 {
		t.Errorf("failed %v, want 2", got)
	}
}

func TestSetModels(t *testing.T) {
	l, err := payloadlog.New(payloadlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]payloadlog.ModelConfig{
		"bad rate":   {Sink: "http://127.0.0.1:1/x", SampleRate: 2},
		"bad scheme": {Sink: "ftp://host/x"},
		"bad path":   {Sink: "http://127.0.0.1:1", Redact: []string{"a[b"}},
		"bad mode":   {Sink: "http://127.0.0.1:1", Mode: 9},
		"no host":    {Sink: "http:///x"},
		"file host":  {Sink: "file://remote/x"},
	} {
		if err := l.SetModels(map[string]payloadlog.ModelConfig{"m": c}); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), `"m"`) {
			t.Errorf("%s: error %q does not name the model", name, err)
		}
	}
	// A nil Logger, and a model with no sink, log nothing.
	var nl *payloadlog.Logger
	nl.Begin("m", "", nil).Request(jsonType, nil)
	if err := l.SetModels(map[string]payloadlog.ModelConfig{"m": {SampleRate: 1}}); err != nil {
		t.Fatal(err)
	}
	if l.Begin("m", "", nil).Logged() {
		t.Error("a model with no sink is logged")
	}
}

func TestParseAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    payloadlog.ModelConfig
		wantOK  bool
		wantErr string
	}{
		{name: "none", ann: map[string]string{"other": "x"}},
		{
			name:   "sink only",
			ann:    map[string]string{payloadlog.AnnotationSink: "http://127.0.0.1:8000/events"},
			want:   payloadlog.ModelConfig{Sink: "http://127.0.0.1:8000/events", SampleRate: 1},
			wantOK: true,
		},
		{
			name: "everything",
			ann: map[string]string{
				payloadlog.AnnotationSink:   "file:///var/log/infergate/iris.jsonl",
				payloadlog.AnnotationMode:   "response",
				payloadlog.AnnotationSample: "0.25/id",
				payloadlog.AnnotationRedact: "parameters.user_id, inputs[name=a,b].data ,",
			},
			want: payloadlog.ModelConfig{Sink: "file:///var/log/infergate/iris.jsonl", Mode: payloadlog.ModeResponse,
				SampleRate: 0.25, SampleByID: true, Redact: []string{"parameters.user_id", "inputs[name=a,b].data"}},
			wantOK: true,
		},
		{name: "mode without sink", ann: map[string]string{payloadlog.AnnotationMode: "all"}, wantErr: payloadlog.AnnotationSink},
		{name: "bad mode", ann: map[string]string{payloadlog.AnnotationSink: "x.jsonl", payloadlog.AnnotationMode: "both"}, wantErr: payloadlog.AnnotationMode},
		{name: "bad sample", ann: map[string]string{payloadlog.AnnotationSink: "x.jsonl", payloadlog.AnnotationSample: "10%"}, wantErr: payloadlog.AnnotationSample},
		{name: "sample above 1", ann: map[string]string{payloadlog.AnnotationSink: "x.jsonl", payloadlog.AnnotationSample: "1.5"}, wantErr: payloadlog.AnnotationSample},
		{name: "bad redact", ann: map[string]string{payloadlog.AnnotationSink: "x.jsonl", payloadlog.AnnotationRedact: "inputs[name=ssn"}, wantErr: payloadlog.AnnotationRedact},
		{name: "bad sink", ann: map[string]string{payloadlog.AnnotationSink: "kafka://broker/topic"}, wantErr: payloadlog.AnnotationSink},
		{name: "empty sink", ann: map[string]string{payloadlog.AnnotationSink: " "}, wantErr: payloadlog.AnnotationSink},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := payloadlog.ParseAnnotations(tc.ann)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || ok != tc.wantOK {
				t.Fatalf("ok %v err %v, want ok %v", ok, err, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestFileRootConfinesFileSinks: with a file sinks' directory, a sink is
// a path inside it: an absolute path, one leaving it with "..", or one
// through a symbolic link out of it is refused; a relative path is
// written there.
func TestFileRootConfinesFileSinks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "payload-logs")
	outside := t.TempDir()
	l, err := payloadlog.New(payloadlog.Options{FileRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{
		filepath.Join(outside, "x.jsonl"),
		"file://" + filepath.Join(outside, "x.jsonl"),
		"../x.jsonl",
		"file:../../x.jsonl",
		"escape/x.jsonl", // a link out of the directory
	} {
		if err := l.SetModels(map[string]payloadlog.ModelConfig{"iris": {Sink: sink, SampleRate: 1}}); err == nil {
			t.Errorf("sink %q accepted", sink)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("files made outside the directory: %v", entries)
	}
	if err := l.SetModels(map[string]payloadlog.ModelConfig{"iris": {Sink: "file:iris/requests.jsonl", SampleRate: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "iris", "requests.jsonl")); err != nil {
		t.Errorf("the sink is not in the directory: %v", err)
	}
	if err := payloadlog.CheckSink(payloadlog.ModelConfig{Sink: "/etc/passwd"}); err == nil {
		t.Error("CheckSink accepts an absolute path")
	}
	if err := payloadlog.CheckSink(payloadlog.ModelConfig{Sink: "http://127.0.0.1:9/events"}); err != nil {
		t.Errorf("CheckSink refuses an http sink: %v", err)
	}
}
