// Package otlptest is an in-process OpenTelemetry collector for tests: an
// HTTP server on a loopback port that accepts OTLP/HTTP trace exports
// (POST /v1/traces, protobuf or JSON, gzip or not), keeps the spans, and
// lets a test wait until a number of them arrived, without sleeping.
package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds one export's body.
const maxBody = 32 << 20

// Span is one span the collector received, with its resource's and
// scope's names.
type Span struct {
	*tracepb.Span
	// Resource holds the resource's attributes, rendered as strings.
	Resource map[string]string
	// Scope is the instrumentation scope's name.
	Scope string
}

// TraceIDHex returns the span's trace id in hex.
func (s Span) TraceIDHex() string { return hex.EncodeToString(s.GetTraceId()) }

// SpanIDHex returns the span's id in hex.
func (s Span) SpanIDHex() string { return hex.EncodeToString(s.GetSpanId()) }

// ParentSpanIDHex returns the span's parent's id in hex, "" for a root.
func (s Span) ParentSpanIDHex() string { return hex.EncodeToString(s.GetParentSpanId()) }

// Attr returns the span attribute key rendered as a string, and whether
// the span has it.
func (s Span) Attr(key string) (string, bool) { return attr(s.GetAttributes(), key) }

// Attrs returns all the span's attributes rendered as strings.
func (s Span) Attrs() map[string]string { return attrs(s.GetAttributes()) }

func attr(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return render(kv.GetValue()), true
		}
	}
	return "", false
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = render(kv.GetValue())
	}
	return m
}

func render(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	}
	return fmt.Sprint(v)
}

// Collector is the in-process collector. Its methods are safe for
// concurrent use.
type Collector struct {
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	spans    []Span
	requests int
	// changed is closed, and replaced, whenever spans arrive.
	changed chan struct{}
	status  int
}

// New starts a collector on 127.0.0.1 on a port of the system's choosing.
// Close stops it.
func New() (*Collector, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlptest: listen: %w", err)
	}
	c := &Collector{ln: ln, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", c.traces)
	c.srv = &http.Server{Handler: mux}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// Start is New for a test: it fails tb on error and closes the collector
// when tb ends.
func Start(tb testing.TB) *Collector {
	tb.Helper()
	c, err := New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// URL returns the collector's base URL ("http://127.0.0.1:port"); the
// exports go to URL()+"/v1/traces".
func (c *Collector) URL() string { return "http://" + c.ln.Addr().String() }

// Close stops the collector.
func (c *Collector) Close() error { return c.srv.Close() }

// SetStatus makes the collector answer every export with HTTP status code
// (and drop it) when code is not 0 or 200; 0 restores normal answers.
func (c *Collector) SetStatus(code int) {
	c.mu.Lock()
	c.status = code
	c.mu.Unlock()
}

// Spans returns the spans received so far, in order of arrival.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Requests returns the number of export requests received, dropped ones
// included.
func (c *Collector) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

// WaitSpans waits until at least n spans have arrived and returns them
// all, or returns those that did with ctx's error.
func (c *Collector) WaitSpans(ctx context.Context, n int) ([]Span, error) {
	for {
		c.mu.Lock()
		if len(c.spans) >= n {
			s := append([]Span(nil), c.spans...)
			c.mu.Unlock()
			return s, nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return c.Spans(), fmt.Errorf("otlptest: waiting for %d spans: %w", n, ctx.Err())
		}
	}
}

func (c *Collector) traces(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, maxBody)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, maxBody)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, "read: "+err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	jsonBody := r.Header.Get("Content-Type") == "application/json"
	if jsonBody {
		err = protojson.Unmarshal(data, &req)
	} else {
		err = proto.Unmarshal(data, &req)
	}
	if err != nil {
		http.Error(w, "decode: "+err.Error(), http.StatusBadRequest)
		return
	}

	c.mu.Lock()
	c.requests++
	if c.status != 0 && c.status != http.StatusOK {
		code := c.status
		c.mu.Unlock()
		http.Error(w, "refused by the test", code)
		return
	}
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, Span{Span: s, Resource: res, Scope: ss.GetScope().GetName()})
			}
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()

	var out []byte
	resp := &coltracepb.ExportTraceServiceResponse{}
	if jsonBody {
		out, err = protojson.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
	} else {
		out, err = proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(out)
}
