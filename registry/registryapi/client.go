package registryapi

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/registry"
)

// Client calls the registry and event API of an admin port: what the CLI
// uses. It is safe for concurrent use.
type Client struct {
	base string
	opts ClientOptions
}

// ClientOptions configure a Client. Every zero value has a documented
// default.
type ClientOptions struct {
	// HTTPClient sends the requests; nil means a client of its own with
	// no overall timeout (uploads and streams last), each JSON call being
	// bounded by CallTimeout.
	HTTPClient *http.Client
	// Actor is sent as X-Infergate-Actor with every request: who makes
	// the changes (the CLI's OS user). "" sends none: the server records
	// the client's address.
	Actor string
	// Token, when set, is sent as "Authorization: Bearer <Token>" with
	// every request: an API key or a JWT, for an admin port that
	// authenticates.
	Token string
	// CallTimeout bounds a JSON call (not an upload or a stream). 0 means
	// 30s.
	CallTimeout time.Duration
	// Follow's reconnection: after a stream drops it waits RetryMin,
	// doubling up to RetryMax, and gives up after MaxFailures connections
	// in a row that delivered no event. 0 means 500ms, 8s and 10.
	RetryMin, RetryMax time.Duration
	MaxFailures        int
}

// APIError is an error answer of the API: Message is the server's
// (fit to show a user), Code its code (NOT_FOUND...), Status the HTTP
// status.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// NewClient returns a client of the admin port at admin: HOST:PORT (as
// the CLI's -admin takes it) or an http:// or https:// URL.
func NewClient(admin string, opts ClientOptions) (*Client, error) {
	base, err := jsonhttp.BaseURL(admin)
	if err != nil {
		return nil, err
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&opts.CallTimeout, 30 * time.Second}, {&opts.RetryMin, 500 * time.Millisecond}, {&opts.RetryMax, 8 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 10
	}
	return &Client{base: base, opts: opts}, nil
}

// Base returns the admin port's URL, without a trailing slash.
func (c *Client) Base() string { return c.base }

// Call sends body (nil: none; else as JSON) to path (with its query) and
// decodes a 2xx answer into out (nil: ignored). An error answer is an
// *APIError.
func (c *Client) Call(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	req, err := jsonhttp.NewRequest(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	c.identify(req)
	return c.apiError(jsonhttp.Do(c.opts.HTTPClient, req, maxAnswerBytes, out))
}

// NewRequest makes a request of the admin port's path (with its query)
// carrying the client's actor and token, for calls Call does not fit (a
// stream read as it comes).
func (c *Client) NewRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	c.identify(req)
	return req, nil
}

// identify has req carry the client's actor and token.
func (c *Client) identify(req *http.Request) {
	if c.opts.Actor != "" {
		req.Header.Set(ActorHeader, c.opts.Actor)
	}
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
}

// maxAnswerBytes bounds the answer the client reads.
const maxAnswerBytes = 64 << 20

// answer reads a response: a 2xx one into out (nil: ignored), another as
// an *APIError with the server's message.
func (c *Client) answer(resp *http.Response, out any) error {
	return c.apiError(jsonhttp.ReadAnswer(resp, maxAnswerBytes, out))
}

// apiError returns err, an error answer made an *APIError.
func (c *Client) apiError(err error) error {
	var ae *jsonhttp.AnswerError
	if !errors.As(err, &ae) {
		return err
	}
	if ae.Message != "" {
		return &APIError{Status: ae.Status, Code: ae.Code, Message: ae.Message}
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(ae.Body)), "\n")
	return &APIError{Status: ae.Status, Message: fmt.Sprintf("%s answered %s: %s", c.base, ae.StatusText, line)}
}

// ArtifactPath returns the API path of a version's artifact, each
// element of name escaped.
func ArtifactPath(model string, version int64, name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return VersionPath(model, version) + "/artifacts/" + strings.Join(parts, "/")
}

// Upload is one file to upload: its bytes are streamed from Path, and
// Size and SHA256 (hex) are what the server checks them against, so a
// file that changed after it was hashed is refused and stores nothing.
type Upload struct {
	Name        string // the artifact's name in the version
	Path        string
	Size        int64
	SHA256      string
	Format      string // "" for none
	ContentType string // "" for application/octet-stream
}

// PrepareUploads lists the files to upload from root, each hashed: the
// file itself under its base name, or every regular file of a directory
// (symbolic links followed) under its slash-separated path relative to
// root, in name order. Format and ContentType are left for the caller.
func PrepareUploads(root string) ([]Upload, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	var out []Upload
	if !info.IsDir() {
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file or a directory", root)
		}
		out = []Upload{{Name: filepath.Base(root), Path: root}}
	} else {
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			info, err := os.Stat(p)
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", p)
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, Upload{Name: filepath.ToSlash(rel), Path: p})
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s holds no file", root)
		}
	}
	for i := range out {
		if err := hashUpload(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hashUpload sets an upload's Size and SHA256, streaming its file.
func hashUpload(up *Upload) error {
	f, err := os.Open(up.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%s: %w", up.Path, err)
	}
	up.Size, up.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return nil
}

// UploadFile streams a file as an artifact of a PENDING version.
func (c *Client) UploadFile(ctx context.Context, model string, version int64, up Upload) (*registry.Artifact, error) {
	f, err := os.Open(up.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	path := ArtifactPath(model, version, up.Name)
	if up.Format != "" {
		path += "?" + url.Values{"format": {up.Format}}.Encode()
	}
	req, err := c.NewRequest(ctx, http.MethodPut, path, io.LimitReader(f, up.Size))
	if err != nil {
		return nil, err
	}
	req.ContentLength = up.Size
	if up.Size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set(SHA256Header, up.SHA256)
	if up.ContentType == "" {
		up.ContentType = "application/octet-stream"
	}
	req.Header.Set("Content-Type", up.ContentType)
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var a registry.Artifact
	if err := c.answer(resp, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Follow reads GET /api/v1/events/stream with q's filters (since, model,
// kind) and calls emit for each event in order, until ctx is done (then
// it returns nil). When the stream drops (a restart, a proxy), it
// reconnects with Last-Event-ID, so that no event is missed or repeated,
// telling notify (nil: nobody) why and how long it waits. It returns an
// error when the server refuses the request (4xx) or after
// ClientOptions.MaxFailures connections in a row delivered nothing.
func (c *Client) Follow(ctx context.Context, q url.Values, emit func(registry.Event), notify func(reason error, wait time.Duration)) error {
	lastID := ""
	failures := 0
	wait := c.opts.RetryMin
	for {
		delivered, err := c.streamOnce(ctx, q, lastID, func(id string, e registry.Event) {
			lastID = id
			emit(e)
		})
		if ctx.Err() != nil {
			return nil
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status/100 == 4 {
			return err // the request is wrong: retrying will not help
		}
		if delivered {
			failures, wait = 0, c.opts.RetryMin
		}
		if failures++; failures > c.opts.MaxFailures {
			if err == nil {
				err = errors.New("the stream ended")
			}
			return fmt.Errorf("the event stream failed %d times in a row: %w", failures-1, err)
		}
		if err == nil {
			err = errors.New("the stream ended")
		}
		if notify != nil {
			notify(err, wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, c.opts.RetryMax)
	}
}

// streamOnce reads one connection of the stream, calling emit for each
// event; delivered says whether it emitted any. An "event: error" from the
// server ends it with that error.
func (c *Client) streamOnce(ctx context.Context, q url.Values, lastID string, emit func(id string, e registry.Event)) (delivered bool, err error) {
	path := eventsPrefix + "stream"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.NewRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if err := c.answer(resp, nil); err != nil {
			return false, err
		}
		return false, fmt.Errorf("%s answered %s, not an event stream", c.base, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var id, event, data string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			switch {
			case event == "error":
				var e jsonhttp.ErrorBody
				_ = json.Unmarshal([]byte(data), &e)
				return delivered, fmt.Errorf("the server ended the stream: %s", e.Error)
			case data != "":
				var e registry.Event
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					return delivered, fmt.Errorf("event %s: %w", id, err)
				}
				emit(id, e)
				delivered = true
			}
			id, event, data = "", "", ""
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: the heartbeat
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "id":
			id = v
		case "event":
			event = v
		case "data":
			if data != "" {
				data += "\n"
			}
			data += v
		}
	}
	return delivered, sc.Err()
}
