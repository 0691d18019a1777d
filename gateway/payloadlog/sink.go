package payloadlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CloudEvents types of KServe's inference logger.
const (
	TypeRequest  = "org.kubeflow.serving.inference.request"
	TypeResponse = "org.kubeflow.serving.inference.response"
)

// sink delivers events. send is called by the sender goroutines, several
// at once.
type sink interface {
	send(ctx context.Context, ev *event, data []byte) error
	close() error
}

// httpSink POSTs each event as a binary-mode CloudEvent: the attributes
// in Ce- headers, the payload as the body with its own Content-Type, as
// KServe's logger does.
type httpSink struct {
	url    string
	client *http.Client
}

func (s *httpSink) send(ctx context.Context, ev *event, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	h := req.Header
	h["Ce-Specversion"] = []string{"1.0"}
	h["Ce-Type"] = []string{ev.ceType()}
	h["Ce-Source"] = []string{ev.m.cfg.Source}
	h["Ce-Id"] = []string{ev.id}
	h["Ce-Time"] = []string{ev.time.UTC().Format(time.RFC3339Nano)}
	h["Ce-Inferenceservicename"] = []string{ev.m.name}
	if ev.m.cfg.Namespace != "" {
		h["Ce-Namespace"] = []string{ev.m.cfg.Namespace}
	}
	h["Ce-Component"] = []string{ev.m.cfg.Component}
	if ev.endpoint != "" {
		h["Ce-Endpoint"] = []string{ev.endpoint}
	}
	if ev.contentType != "" {
		h["Content-Type"] = []string{ev.contentType}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	// Drain a little so that the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("payloadlog: %s answered %s", s.url, resp.Status)
	}
	return nil
}

func (s *httpSink) close() error { return nil }

// fileSink appends one structured-mode CloudEvent (JSON) per line.
type fileSink struct {
	path string
	mu   sync.Mutex
	f    *os.File
	buf  bytes.Buffer
}

// openFileSink opens path for appending, in root when it is set (see
// Options.FileRoot).
func openFileSink(root *os.Root, path string) (*fileSink, error) {
	mkdirAll, openFile := os.MkdirAll, os.OpenFile
	if root != nil {
		mkdirAll, openFile = root.MkdirAll, root.OpenFile
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := mkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("payloadlog: sink %s: %w", path, err)
		}
	}
	f, err := openFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("payloadlog: sink: %w", err)
	}
	return &fileSink{path: path, f: f}, nil
}

// structured is a CloudEvent in the JSON event format, KServe's
// extensions as top-level attributes.
type structured struct {
	SpecVersion          string          `json:"specversion"`
	Type                 string          `json:"type"`
	Source               string          `json:"source"`
	ID                   string          `json:"id"`
	Time                 string          `json:"time"`
	DataContentType      string          `json:"datacontenttype,omitempty"`
	InferenceServiceName string          `json:"inferenceservicename"`
	Namespace            string          `json:"namespace,omitempty"`
	Component            string          `json:"component"`
	Endpoint             string          `json:"endpoint,omitempty"`
	Data                 json.RawMessage `json:"data,omitempty"`
	DataBase64           []byte          `json:"data_base64,omitempty"`
}

func (s *fileSink) send(_ context.Context, ev *event, data []byte) error {
	e := structured{
		SpecVersion:          "1.0",
		Type:                 ev.ceType(),
		Source:               ev.m.cfg.Source,
		ID:                   ev.id,
		Time:                 ev.time.UTC().Format(time.RFC3339Nano),
		DataContentType:      ev.contentType,
		InferenceServiceName: ev.m.name,
		Namespace:            ev.m.cfg.Namespace,
		Component:            ev.m.cfg.Component,
		Endpoint:             ev.endpoint,
	}
	if isJSONType(ev.contentType) && json.Valid(data) {
		e.Data = data
	} else if len(data) > 0 {
		e.DataBase64 = data
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return fmt.Errorf("payloadlog: sink %s is closed", s.path)
	}
	s.buf.Reset()
	enc := json.NewEncoder(&s.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&e); err != nil { // one line: Encode compacts data and ends with '\n'
		return fmt.Errorf("payloadlog: encode event: %w", err)
	}
	if _, err := s.f.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("payloadlog: sink: %w", err)
	}
	if s.buf.Cap() > 1<<20 {
		s.buf = bytes.Buffer{}
	}
	return nil
}

func (s *fileSink) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// isJSONType reports whether a Content-Type is JSON's (application/json,
// anything +json), or absent (a JSON payload then goes inline).
func isJSONType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (len(mt) > 5 && mt[len(mt)-5:] == "+json")
}
