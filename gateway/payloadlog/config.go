package payloadlog

import (
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

// Mode says which events of a request are logged, as KServe's logger
// mode does.
type Mode uint8

const (
	// ModeAll logs the request and its response (KServe's "all").
	ModeAll Mode = iota
	// ModeRequest logs requests only.
	ModeRequest
	// ModeResponse logs responses only.
	ModeResponse
)

// ParseMode reads "all", "request" or "response"; "" is ModeAll.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "all":
		return ModeAll, nil
	case "request":
		return ModeRequest, nil
	case "response":
		return ModeResponse, nil
	}
	return 0, fmt.Errorf("mode %q: want all, request or response", s)
}

func (m Mode) String() string {
	switch m {
	case ModeRequest:
		return "request"
	case ModeResponse:
		return "response"
	}
	return "all"
}

func (m Mode) requests() bool  { return m != ModeResponse }
func (m Mode) responses() bool { return m != ModeRequest }

// ModelConfig is one model's payload logging. Its zero value logs
// nothing (no Sink).
type ModelConfig struct {
	// Sink is where events go: an http:// or https:// URL takes
	// binary-mode CloudEvents POSTs; file:///abs/path, file:rel/path or a
	// plain path appends one structured-mode CloudEvent per line. Empty
	// disables logging for the model.
	Sink string
	// Mode picks the request, the response, or both (the zero value).
	Mode Mode
	// SampleRate is the fraction of requests logged, 0 to 1: 0 logs none,
	// 1 all. A request's request and response are logged together or not
	// at all. ParseAnnotations defaults it to 1.
	SampleRate float64
	// SampleByID samples by a hash of the request's id when it has one
	// (the same id is always, or never, logged); otherwise, and for
	// requests without an id, each request is drawn at random. A client
	// choosing its ids can then choose whether it is logged.
	SampleByID bool
	// Redact are paths of JSON values replaced with "[REDACTED]" (see the
	// package documentation for their syntax). With any path set, a
	// payload that is not JSON is not logged (dropped, reason
	// "unredactable"): it cannot be shown to hold nothing to redact.
	Redact []string
	// Namespace and Component are the events' namespace and component
	// extensions; Component "" means "predictor".
	Namespace, Component string
	// Source is the events' source; "" means "/v2/models/<model>".
	Source string
}

// The annotations ParseAnnotations reads: the lead's config package lists
// them as known.
const (
	// AnnotationSink is ModelConfig.Sink: its presence enables payload
	// logging for the model.
	AnnotationSink = "infergate.io/payload-log"
	// AnnotationMode is ModelConfig.Mode: all (default), request or
	// response.
	AnnotationMode = "infergate.io/payload-log-mode"
	// AnnotationSample is ModelConfig.SampleRate, "0" to "1" (default 1);
	// a suffix "/id" sets SampleByID ("0.1/id").
	AnnotationSample = "infergate.io/payload-log-sample"
	// AnnotationRedact is ModelConfig.Redact, paths separated by commas
	// outside brackets ("parameters.user_id, inputs[name=ssn].data").
	AnnotationRedact = "infergate.io/payload-log-redact"
)

// ParseAnnotations reads a model's payload logging from its
// InferenceService annotations. It returns ok false, and no error, when
// AnnotationSink is absent and no other payload-log annotation is set; an
// error names the annotation and its bad value.
func ParseAnnotations(ann map[string]string) (c ModelConfig, ok bool, err error) {
	sink, has := ann[AnnotationSink]
	if !has {
		for _, k := range []string{AnnotationMode, AnnotationSample, AnnotationRedact} {
			if _, set := ann[k]; set {
				return c, false, fmt.Errorf("annotation %s is set without %s (where to log)", k, AnnotationSink)
			}
		}
		return c, false, nil
	}
	c.Sink = strings.TrimSpace(sink)
	if _, err := parseSink(c.Sink); err != nil {
		return c, false, fmt.Errorf("annotation %s: %w", AnnotationSink, err)
	}
	if c.Mode, err = ParseMode(strings.TrimSpace(ann[AnnotationMode])); err != nil {
		return c, false, fmt.Errorf("annotation %s: %w", AnnotationMode, err)
	}
	c.SampleRate = 1
	if v, set := ann[AnnotationSample]; set {
		v = strings.TrimSpace(v)
		if r, found := strings.CutSuffix(v, "/id"); found {
			v, c.SampleByID = r, true
		}
		if c.SampleRate, err = parseRate(v); err != nil {
			return c, false, fmt.Errorf("annotation %s: %w", AnnotationSample, err)
		}
	}
	if v := strings.TrimSpace(ann[AnnotationRedact]); v != "" {
		for _, p := range splitOutsideBrackets(v, ',') {
			if p = strings.TrimSpace(p); p != "" {
				c.Redact = append(c.Redact, p)
			}
		}
		if _, err := compilePaths(c.Redact); err != nil {
			return c, false, fmt.Errorf("annotation %s: %w", AnnotationRedact, err)
		}
	}
	return c, true, nil
}

func parseRate(s string) (float64, error) {
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
		return 0, fmt.Errorf("sample rate %q: want a number from 0 to 1", s)
	}
	return r, nil
}

// destination is a parsed Sink: a URL for HTTP, else a file path.
type destination struct {
	url  string
	path string
}

func parseSink(s string) (destination, error) {
	if s == "" {
		return destination{}, fmt.Errorf("empty sink: want an http(s):// URL or a file path")
	}
	u, err := url.Parse(s)
	if err != nil {
		return destination{}, fmt.Errorf("sink %q: %w", s, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return destination{}, fmt.Errorf("sink %q: no host", s)
		}
		return destination{url: u.String()}, nil
	case "file":
		p := u.Path
		if u.Opaque != "" {
			p = u.Opaque
		}
		if u.Host != "" && u.Host != "localhost" {
			return destination{}, fmt.Errorf("sink %q: a file URL names no host (file:///abs/path or file:rel/path)", s)
		}
		if p == "" {
			return destination{}, fmt.Errorf("sink %q: no path", s)
		}
		return destination{path: filepath.Clean(p)}, nil
	case "":
		return destination{path: filepath.Clean(s)}, nil
	}
	if len(u.Scheme) == 1 { // a Windows drive letter
		return destination{path: filepath.Clean(s)}, nil
	}
	return destination{}, fmt.Errorf("sink %q: scheme %q: want http, https or file", s, u.Scheme)
}

func (d destination) key() string {
	if d.url != "" {
		return d.url
	}
	return "file:" + d.path
}

// validate checks c for model and fills its defaults.
func (c *ModelConfig) validate(model string) (destination, []redactPath, error) {
	d, err := parseSink(c.Sink)
	if err != nil {
		return d, nil, fmt.Errorf("payloadlog: model %q: %w", model, err)
	}
	if c.Mode > ModeResponse {
		return d, nil, fmt.Errorf("payloadlog: model %q: mode %d: want ModeAll, ModeRequest or ModeResponse", model, c.Mode)
	}
	if math.IsNaN(c.SampleRate) || c.SampleRate < 0 || c.SampleRate > 1 {
		return d, nil, fmt.Errorf("payloadlog: model %q: sample rate %v: want a number from 0 to 1", model, c.SampleRate)
	}
	paths, err := compilePaths(c.Redact)
	if err != nil {
		return d, nil, fmt.Errorf("payloadlog: model %q: %w", model, err)
	}
	if c.Component == "" {
		c.Component = "predictor"
	}
	if c.Source == "" {
		c.Source = "/v2/models/" + model
	}
	return d, paths, nil
}

// CheckSink refuses a file sink that is not a path local to the file
// sinks' directory (Options.FileRoot): absolute, or leaving it through
// "..". An http(s) sink passes.
func CheckSink(c ModelConfig) error {
	d, err := parseSink(c.Sink)
	if err != nil || d.path == "" {
		return err
	}
	if !filepath.IsLocal(d.path) {
		return fmt.Errorf("payloadlog: sink %q: a file sink is a relative path in the payload logs' directory (<data-dir>/payload-logs), without \"..\"", c.Sink)
	}
	return nil
}
