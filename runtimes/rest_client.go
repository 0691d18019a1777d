package runtimes

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/oip/rest"
)

// RESTOptions configures a RESTClient. Zero fields take the documented
// defaults.
type RESTOptions struct {
	// Addr is the runtime's host:port. Required.
	Addr string
	// Name is how the client's errors, which may reach the gateway's
	// clients, name the replica: `model "iris" replica 0`, say (default
	// "runtime"). They never name Addr; Detail adds what a transport
	// failure said about it, for logs.
	Name string
	// MaxConns bounds the open connections to the replica (default 1024).
	MaxConns int
	// MaxIdleConnDuration closes keep-alive connections idle this long
	// (default 30s).
	MaxIdleConnDuration time.Duration
	// MaxResponseBodySize bounds a response body (default 64 MiB).
	MaxResponseBodySize int
	// DefaultTimeout applies to calls whose context has no deadline
	// (default 60s).
	DefaultTimeout time.Duration
	// Dial opens a connection to Addr (default: TCP). Tests use it to
	// reach in-memory listeners.
	Dial func(addr string) (net.Conn, error)
	// Pipeline sends requests over HTTP/1.1 pipelining: concurrent requests
	// share PipelineConns connections and their writes are coalesced into
	// one syscall, which roughly halves the gateway's syscalls per request
	// under load. Responses come back in order, so one slow inference
	// delays those queued behind it on its connection, and a broken
	// connection fails every request in flight on it (they are not
	// retried, since they may have run). Use it for runtimes on a trusted
	// network whose latency varies little; it is off by default.
	Pipeline bool
	// PipelineConns is the number of pipelined connections (default 2).
	PipelineConns int
	// TLS makes the client speak HTTPS: every connection is a TLS
	// connection, its handshake done while dialling (so that a
	// certificate the client does not trust is a failure to reach the
	// replica, and the call is not sent).
	TLS bool
	// TLSConfig configures TLS when TLS is set, and is ignored otherwise
	// (as http.Transport's TLSClientConfig is for http URLs). The client
	// uses a copy, with ServerName set to Addr's host when empty and ALPN
	// http/1.1. Nil means the system's roots.
	TLSConfig *tls.Config
}

// RESTClient is a Client for a runtime speaking OIP over HTTP/1.1, with a
// keep-alive connection pool. It is safe for concurrent use.
type RESTClient struct {
	addr    string
	name    string // how errors name the replica
	hc      *fasthttp.HostClient
	pc      *fasthttp.PipelineClient // set when pipelining
	timeout time.Duration
	conns   connSet // every connection open to the replica, for CloseConns
}

// httpScheme is the scheme of every request a RESTClient sends: TLS, when
// the replica speaks it, is the dialler's, below fasthttp, which refuses
// a request whose scheme differs from its own.
var httpScheme = []byte("http")

// NewRESTClient returns a client for the runtime at opts.Addr. It dials
// lazily: a runtime that is not up yet is not an error here.
func NewRESTClient(opts RESTOptions) (*RESTClient, error) {
	if opts.Addr == "" {
		return nil, errors.New("runtimes: RESTOptions.Addr is empty")
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("runtimes: RESTOptions.Addr %q: %w", opts.Addr, err)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 1024
	}
	if opts.MaxIdleConnDuration <= 0 {
		opts.MaxIdleConnDuration = 30 * time.Second
	}
	if opts.MaxResponseBodySize <= 0 {
		opts.MaxResponseBodySize = 64 << 20
	}
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = 60 * time.Second
	}
	if opts.Name == "" {
		opts.Name = defaultReplicaName
	}
	c := &RESTClient{
		addr:    opts.Addr,
		name:    opts.Name,
		timeout: opts.DefaultTimeout,
	}
	var tlsConf *tls.Config
	if opts.TLS {
		tlsConf = clientTLS(opts.TLSConfig, opts.Addr, "http/1.1")
	}
	// Every connection is dialled through the set, so that CloseConns can
	// reach those in use too; without opts.Dial, as fasthttp would, with
	// the request's remaining time as the dial timeout, which the TLS
	// handshake shares.
	dial := func(addr string, timeout time.Duration) (net.Conn, error) {
		var deadline time.Time
		if timeout > 0 {
			deadline = time.Now().Add(timeout)
		}
		var (
			conn net.Conn
			err  error
		)
		switch {
		case opts.Dial != nil:
			conn, err = opts.Dial(addr)
		case timeout > 0:
			conn, err = fasthttp.DialTimeout(addr, timeout)
		default:
			conn, err = fasthttp.Dial(addr)
		}
		if err == nil && tlsConf != nil {
			conn, err = handshakeTLS(conn, tlsConf, addr, deadline)
		}
		return c.conns.track(conn, err)
	}
	c.hc = &fasthttp.HostClient{
		Addr:                     opts.Addr,
		MaxConns:                 opts.MaxConns,
		MaxIdleConnDuration:      opts.MaxIdleConnDuration,
		MaxResponseBodySize:      opts.MaxResponseBodySize,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		DialTimeout:              dial,
		// The most recently used idle connection goes first, so that
		// the ones a burst opened go idle and close: first in, first
		// out, the supervisor's probes alone (4/s) kept ~120 per
		// replica open for ever by using each before it was idle long.
		ConnPoolStrategy: fasthttp.LIFO,
		// A request is retried only by the pool, which knows whether
		// it may have reached the runtime.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}
	if opts.Pipeline {
		if opts.PipelineConns <= 0 {
			opts.PipelineConns = 2
		}
		c.pc = &fasthttp.PipelineClient{
			Addr:                     opts.Addr,
			MaxConns:                 opts.PipelineConns,
			MaxPendingRequests:       opts.MaxConns,
			MaxIdleConnDuration:      opts.MaxIdleConnDuration,
			MaxResponseBodySize:      opts.MaxResponseBodySize,
			NoDefaultUserAgentHeader: true,
			DisablePathNormalizing:   true,
			Dial:                     func(addr string) (net.Conn, error) { return dial(addr, 0) },
			Logger:                   discardLogger{},
		}
	}
	return c, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// Addr returns the replica's host:port.
func (c *RESTClient) Addr() string { return c.addr }

// Name returns how the client's errors name the replica.
func (c *RESTClient) Name() string { return c.name }

// Close closes idle connections.
func (c *RESTClient) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// CloseConns closes every connection open to the replica, idle or in use:
// the calls waiting on them (Forward has no context to cancel) fail at once
// with an unavailable error that does not say the request was not sent.
// The client stays usable; later calls dial anew. A gateway whose drain
// deadline passed uses it to answer the requests still in flight.
func (c *RESTClient) CloseConns() { c.conns.closeAll() }

// connSet holds the open connections of a client. The zero value is
// ready.
type connSet struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

// track adds a freshly dialled connection to s, passing a dial error on.
func (s *connSet) track(conn net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn, set: s}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[*trackedConn]struct{})
	}
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	return tc, nil
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for tc := range s.conns {
		conns = append(conns, tc)
	}
	s.mu.Unlock()
	for _, tc := range conns {
		_ = tc.Close()
	}
}

// trackedConn is a connection of a connSet, which leaves the set when
// closed.
type trackedConn struct {
	net.Conn
	set *connSet
}

func (tc *trackedConn) Close() error {
	tc.set.mu.Lock()
	delete(tc.set.conns, tc)
	tc.set.mu.Unlock()
	return tc.Conn.Close()
}

// mayHaveSent reports whether a call this client reports unavailable may
// have reached the runtime all the same: with pipelining, it may.
func (c *RESTClient) mayHaveSent() bool { return c.pc != nil }

// Forward sends req to the replica as it is (the caller sets the URI path,
// method, headers and body) and reads the answer into resp. It is the
// gateway's pass-through: the body is neither decoded nor copied. Errors are
// transport errors only; an HTTP error status is a normal response.
//
// A pipelining client consumes req's body; its failures are never marked
// unreachable, so a pool does not resend a request that may have run.
func (c *RESTClient) Forward(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	req.SetHost(c.addr)
	// The request may have come in over https (a TLS front door).
	req.URI().SetSchemeBytes(httpScheme)
	if c.pc != nil {
		if err := c.pc.DoDeadline(req, resp, deadline); err != nil {
			if errors.Is(err, fasthttp.ErrTimeout) {
				return c.transportError(err)
			}
			return c.failed(err)
		}
		return nil
	}
	if err := c.hc.DoDeadline(req, resp, deadline); err != nil {
		return c.transportError(err)
	}
	return nil
}

func (c *RESTClient) transportError(err error) error {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout):
		return &oip.Error{Kind: oip.KindDeadlineExceeded, Msg: c.name + " did not answer in time", Err: err}
	case isNotSent(err):
		return unavailable(c.name, err)
	}
	return c.failed(err)
}

// failed is the error for a call that may have reached the runtime and
// broke in transport before its answer.
func (c *RESTClient) failed(err error) error {
	return &oip.Error{Kind: oip.KindUnavailable, Msg: c.name + " failed", Err: &transportError{what: transportCause(err), err: err}}
}

// isNotSent reports whether err shows that a request never reached the
// runtime (the connection was refused or could not be made), so sending it
// to another replica cannot run it twice.
func isNotSent(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, fasthttp.ErrNoFreeConns) {
		return true
	}
	if _, ok := errors.AsType[*tlsHandshakeError](err); ok {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (c *RESTClient) deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(c.timeout)
}

// do sends a request built by the caller and returns the response body on
// 200, or the runtime's error mapped to an *oip.Error.
func (c *RESTClient) do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.Forward(req, resp, c.deadline(ctx)); err != nil {
		return err
	}
	if code := resp.StatusCode(); code != fasthttp.StatusOK {
		return responseError(code, resp.Body())
	}
	return nil
}

// responseError turns a runtime's non-200 answer into an *oip.Error with the
// runtime's own message, of the kind its status maps to; a client-error
// status (4xx) never counts against the replica (see answerError).
func responseError(code int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	} else {
		msg = fmt.Sprintf("runtime answered HTTP %d", code)
	}
	return answered(oip.KindFromHTTPStatus(code), msg, httpOutcome(code))
}

// ModelPath returns /v2/models/{model}[/versions/{version}] followed by
// suffix ("" , "/ready" or "/infer").
func ModelPath(model, version, suffix string) string {
	p := "/v2/models/" + model
	if version != "" {
		p += "/versions/" + version
	}
	return p + suffix
}

// ServerReady reports whether the runtime's /v2/health/ready answers 200.
func (c *RESTClient) ServerReady(ctx context.Context) (bool, error) {
	return c.getStatus(ctx, "/v2/health/ready")
}

// ModelReady reports whether the runtime's model ready endpoint answers 200.
func (c *RESTClient) ModelReady(ctx context.Context, model, version string) (bool, error) {
	return c.getStatus(ctx, ModelPath(model, version, "/ready"))
}

func (c *RESTClient) getStatus(ctx context.Context, path string) (bool, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(path)
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := c.Forward(req, resp, c.deadline(ctx)); err != nil {
		return false, err
	}
	return resp.StatusCode() == fasthttp.StatusOK, nil
}

// ModelMetadata fetches the model's metadata.
func (c *RESTClient) ModelMetadata(ctx context.Context, model, version string) (*oip.ModelMetadata, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(ModelPath(model, version, ""))
	if err := c.do(ctx, req, resp); err != nil {
		return nil, err
	}
	var md oip.ModelMetadata
	if err := json.Unmarshal(resp.Body(), &md); err != nil {
		return nil, &oip.Error{Kind: oip.KindInternal, Msg: c.name + " sent malformed model metadata", Err: err}
	}
	return &md, nil
}

// Infer encodes req with binary tensors, sends it, and decodes the answer.
// Outputs come back in binary form unless the request asked otherwise, so the
// caller can re-encode them for its own client cheaply.
func (c *RESTClient) Infer(ctx context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(ModelPath(r.ModelName, r.ModelVersion, "/infer"))
	body, jsonLen, err := oip.AppendInferRequest(req.Body()[:0], r, true)
	if err != nil {
		return nil, err
	}
	req.SetBodyRaw(body)
	if jsonLen >= 0 {
		req.Header.SetContentType("application/octet-stream")
		req.Header.Set(rest.HeaderInferenceHeaderContentLength, strconv.Itoa(jsonLen))
	} else {
		req.Header.SetContentType("application/json")
	}
	if err := c.do(ctx, req, resp); err != nil {
		return nil, err
	}
	headerLen := -1
	if v := resp.Header.Peek(rest.HeaderInferenceHeaderContentLength); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return nil, &oip.Error{Kind: oip.KindInternal, Msg: c.name + " sent a bad " + rest.HeaderInferenceHeaderContentLength + " header"}
		}
		headerLen = n
	}
	out := new(oip.InferResponse)
	// The decoder copies what it keeps, so the pooled body may be reused.
	if err := oip.DecodeInferResponse(resp.Body(), headerLen, out); err != nil {
		return nil, &oip.Error{Kind: oip.KindInternal, Msg: c.name + " sent a malformed response", Err: err}
	}
	return out, nil
}
