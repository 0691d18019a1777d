package jsonhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// BaseURL returns the URL of the admin port that admin names, as
// scheme://host: admin is HOST:PORT (as the CLI's -admin takes it) or an
// http:// or https:// URL with no path but "/" and no query.
func BaseURL(admin string) (string, error) {
	base := admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("admin address %q: want HOST:PORT or an http:// URL (https:// too)", admin)
	}
	return u.Scheme + "://" + u.Host, nil
}

// NewRequest returns a request of url carrying in as its JSON body, with
// Content-Type: application/json; a nil in sends no body.
func NewRequest(ctx context.Context, method, url string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// Do sends req with hc and reads its answer with ReadAnswer.
func Do(hc *http.Client, req *http.Request, limit int64, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return ReadAnswer(resp, limit, out)
}

// ReadAnswer reads resp's body, at most limit bytes (the caller closes
// it). A 2xx answer is decoded into out (nil, or a 204: not decoded); any
// other is an *AnswerError for the caller to map to its own errors.
func ReadAnswer(resp *http.Response, limit int64, out any) error {
	what := "the answer"
	if req := resp.Request; req != nil {
		what = req.Method + " " + req.URL.RequestURI()
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &AnswerError{Status: resp.StatusCode, StatusText: resp.Status, Body: b}
		var e ErrorBody
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			ae.Code, ae.Message = e.Code, e.Error
		}
		return ae
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: the answer is not JSON: %w", what, err)
	}
	return nil
}

// AnswerError is an answer of a status other than 2xx. Message and Code
// are the server's, when the body is an ErrorBody; else they are empty
// and Body is what the server said.
type AnswerError struct {
	Status     int    // resp.StatusCode
	StatusText string // resp.Status: "404 Not Found"
	Code       string
	Message    string
	Body       []byte
}

func (e *AnswerError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(e.Body)), "\n")
	if line == "" {
		return e.StatusText
	}
	return e.StatusText + ": " + line
}
