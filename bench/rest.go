package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
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
	// Body is sent as it is with every request; the target keeps it and
	// never writes to it.
	Body []byte
	// ContentType is the body's type (default application/json).
	ContentType string
	// Header holds extra request headers, name then value.
	Header [][2]string
	// Timeout bounds one request, connecting included (default 10s).
	Timeout time.Duration
	// MaxConns bounds the keep-alive connections (default 1024); a request
	// that finds none free waits for one up to Timeout.
	MaxConns int
	// Check judges an answer (default: status 200 is success, any other is
	// a *StatusError). body is valid only during the call.
	Check func(status int, body []byte) error
	// Dial opens a connection to Addr (default TCP). Tests use it for
	// in-memory listeners.
	Dial func(addr string) (net.Conn, error)
}

// RESTTarget sends one fixed OIP REST request over HTTP/1.1 keep-alive
// connections (fasthttp). Do allocates nothing in steady state: requests
// are prepared once and reused from a pool. It is safe for concurrent use.
type RESTTarget struct {
	hc      *fasthttp.HostClient
	timeout time.Duration
	check   func(int, []byte) error
	calls   sync.Pool
	opts    RESTOptions
}

type restCall struct {
	req  fasthttp.Request
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
	t := &RESTTarget{
		timeout: opts.Timeout,
		check:   opts.Check,
		opts:    opts,
		hc: &fasthttp.HostClient{
			Addr:                          opts.Addr,
			MaxConns:                      opts.MaxConns,
			MaxConnWaitTimeout:            opts.Timeout,
			MaxIdleConnDuration:           5 * time.Minute,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			Dial:                          fasthttp.DialFunc(opts.Dial),
			RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		},
	}
	if t.check == nil {
		t.check = checkOK
	}
	t.calls.New = t.newCall
	return t, nil
}

func (t *RESTTarget) newCall() any {
	c := new(restCall)
	c.req.Header.DisableNormalizing()
	c.req.Header.SetMethod(t.opts.Method)
	c.req.SetRequestURI(t.opts.Path)
	c.req.Header.SetHost(t.opts.Addr)
	if len(t.opts.Body) > 0 || t.opts.Method == fasthttp.MethodPost {
		c.req.Header.SetContentType(t.opts.ContentType)
		c.req.SetBodyRaw(t.opts.Body)
	}
	for _, h := range t.opts.Header {
		c.req.Header.Set(h[0], h[1])
	}
	return c
}

func checkOK(status int, _ []byte) error {
	if status == fasthttp.StatusOK {
		return nil
	}
	return &StatusError{Code: status}
}

// Do sends the request once and judges the answer with Check.
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
	err := t.hc.DoDeadline(&c.req, &c.resp, deadline)
	if err == nil {
		err = t.check(c.resp.StatusCode(), c.resp.Body())
	}
	t.calls.Put(c)
	return err
}

// Close closes the idle connections.
func (t *RESTTarget) Close() error {
	t.hc.CloseIdleConnections()
	return nil
}
