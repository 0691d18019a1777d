package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/oip/rest"
)

// RESTOptions configures a RESTTarget. Zero fields take the documented
// defaults.
type RESTOptions struct {
	// Addr is the server's host:port. Required.
	Addr string
	// Path is the request path (default /v2/models/{Model}/infer).
	Path string
	// Model names the model when Path is empty (default "iris").
	Model string
	// Method is the HTTP method (default POST).
	Method string
	// Body is sent as it is with every request when Requests is empty; the
	// target keeps it and never writes to it.
	Body []byte
	// ContentType is Body's type (default application/json).
	ContentType string
	// Header holds extra request headers, name then value, sent with every
	// request (Requests included).
	Header [][2]string
	// Requests, when not empty, are the bodies sent in turn instead of
	// Body: each pooled request cycles through them. The target keeps them
	// and never writes to them.
	Requests []RESTRequest
	// Timeout bounds one request, connecting included (default 10s).
	Timeout time.Duration
	// MaxConns bounds the keep-alive connections (default 1024); a request
	// that finds none free waits for one up to Timeout.
	MaxConns int
	// Check judges an answer (default: status 200 is success, any other is
	// a *StatusError with the server's message). body is valid only during
	// the call.
	Check func(status int, body []byte) error
	// Dial opens a connection to Addr (default TCP, bounded by Timeout).
	// Tests use it for in-memory listeners.
	Dial func(addr string) (net.Conn, error)
}

// RESTRequest is one prepared request: a body and the headers that go with
// it alone (such as Inference-Header-Content-Length for a body with binary
// tensors).
type RESTRequest struct {
	Body []byte
	// ContentType is the body's type (default application/json).
	ContentType string
	// Header holds headers for this body only, name then value.
	Header [][2]string
}

// RESTTarget sends prepared OIP REST requests over HTTP/1.1 keep-alive
// connections (fasthttp). Do allocates nothing in steady state: requests
// are built once per pooled call and reused. It counts the bytes moved on
// its connections (ByteCounter). It is safe for concurrent use.
type RESTTarget struct {
	hc      *fasthttp.HostClient
	made    atomic.Uint32 // calls made, to start each at another body
	timeout time.Duration
	check   func(int, []byte) error
	calls   sync.Pool
	opts    RESTOptions
	bytes   connCounter
}

// restCall is a set of prepared requests, one per body, and a response;
// a call is used by one Do at a time and sends its bodies in turn. Calls
// live in a sync.Pool, which may drop them, so the bodies are cycled
// evenly but not in a strict global order.
type restCall struct {
	reqs []fasthttp.Request
	next int
	resp fasthttp.Response
}

// NewRESTTarget validates opts and returns a target. It dials lazily.
func NewRESTTarget(opts RESTOptions) (*RESTTarget, error) {
	if opts.Addr == "" {
		return nil, errors.New("bench: RESTOptions.Addr is empty")
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("bench: RESTOptions.Addr %q: %w", opts.Addr, err)
	}
	if opts.Model == "" {
		opts.Model = "iris"
	}
	if opts.Path == "" {
		opts.Path = "/v2/models/" + opts.Model + "/infer"
	}
	if opts.Method == "" {
		opts.Method = fasthttp.MethodPost
	}
	if opts.ContentType == "" {
		opts.ContentType = "application/json"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 1024
	}
	if len(opts.Requests) == 0 {
		opts.Requests = []RESTRequest{{Body: opts.Body, ContentType: opts.ContentType}}
	}
	for i := range opts.Requests {
		if opts.Requests[i].ContentType == "" {
			opts.Requests[i].ContentType = "application/json"
		}
	}
	t := &RESTTarget{
		timeout: opts.Timeout,
		check:   opts.Check,
		opts:    opts,
	}
	t.hc = &fasthttp.HostClient{
		Addr:                     opts.Addr,
		MaxConns:                 opts.MaxConns,
		MaxConnWaitTimeout:       opts.Timeout,
		MaxIdleConnDuration:      5 * time.Minute,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		RetryIfErr:               func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}
	if opts.Dial != nil {
		t.hc.Dial = func(addr string) (net.Conn, error) {
			c, err := opts.Dial(addr)
			if err != nil {
				return nil, err
			}
			return t.bytes.wrap(c), nil
		}
	} else {
		t.hc.DialTimeout = func(addr string, timeout time.Duration) (net.Conn, error) {
			c, err := fasthttp.DialTimeout(addr, timeout)
			if err != nil {
				return nil, err
			}
			return t.bytes.wrap(c), nil
		}
	}
	if t.check == nil {
		t.check = checkOK
	}
	t.calls.New = t.newCall
	return t, nil
}

func (t *RESTTarget) newCall() any {
	c := &restCall{reqs: make([]fasthttp.Request, len(t.opts.Requests))}
	c.next = int(t.made.Add(1)-1) % len(c.reqs)
	for i := range c.reqs {
		r, b := &c.reqs[i], &t.opts.Requests[i]
		r.Header.DisableNormalizing()
		r.Header.SetMethod(t.opts.Method)
		r.SetRequestURI(t.opts.Path)
		r.Header.SetHost(t.opts.Addr)
		if len(b.Body) > 0 || t.opts.Method == fasthttp.MethodPost {
			r.Header.SetContentType(b.ContentType)
			r.SetBodyRaw(b.Body)
		}
		for _, h := range t.opts.Header {
			r.Header.Set(h[0], h[1])
		}
		for _, h := range b.Header {
			r.Header.Set(h[0], h[1])
		}
	}
	return c
}

func checkOK(status int, body []byte) error {
	if status == fasthttp.StatusOK {
		return nil
	}
	return statusError(status, body)
}

// Do sends the next request once and judges the answer with Check.
func (t *RESTTarget) Do(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	default:
	}
	deadline := time.Now().Add(t.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c := t.calls.Get().(*restCall)
	req := &c.reqs[c.next]
	if c.next++; c.next == len(c.reqs) {
		c.next = 0
	}
	err := t.hc.DoDeadline(req, &c.resp, deadline)
	if err == nil {
		err = t.check(c.resp.StatusCode(), c.resp.Body())
	}
	t.calls.Put(c)
	return err
}

// BytesMoved returns the bytes sent and received on the target's
// connections so far.
func (t *RESTTarget) BytesMoved() (sent, received int64) { return t.bytes.total() }

// Close closes the idle connections.
func (t *RESTTarget) Close() error {
	t.hc.CloseIdleConnections()
	return nil
}

// Probe sends the target's first request once and checks that the answer
// is a 200 carrying a well-formed OIP inference response, decoding it
// fully. A run cannot afford that per request; a check before the run
// can, so that a server answering something else fails early.
func (t *RESTTarget) Probe(ctx context.Context) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	c := t.calls.Get().(*restCall)
	c.reqs[0].CopyTo(req)
	t.calls.Put(c)
	deadline := time.Now().Add(t.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := t.hc.DoDeadline(req, resp, deadline); err != nil {
		return err
	}
	if err := t.check(resp.StatusCode(), resp.Body()); err != nil {
		return err
	}
	headerLen := -1
	if v := resp.Header.Peek(rest.HeaderInferenceHeaderContentLength); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("bench: the answer's %s is %q", rest.HeaderInferenceHeaderContentLength, v)
		}
		headerLen = n
	}
	var out oip.InferResponse
	if err := oip.DecodeInferResponse(resp.Body(), headerLen, &out); err != nil {
		return fmt.Errorf("bench: the answer is not an OIP inference response: %s", oip.Message(err))
	}
	if len(out.Outputs) == 0 {
		return errors.New("bench: the answer is not an OIP inference response: it has no outputs")
	}
	return nil
}
