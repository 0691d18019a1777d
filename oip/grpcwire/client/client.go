package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options configures a Client. Zero fields take the documented defaults.
type Options struct {
	// MaxMessageSize bounds the request and the response message, without
	// their 5-byte prefix (default 4 MiB, grpc-go's default for
	// receiving). A larger request fails at once, a larger response with
	// RESOURCE_EXHAUSTED, and its stream is reset.
	MaxMessageSize int
	// MaxConns bounds the connections to the address open at once
	// (default 16). When all are at the peer's stream limit, calls wait
	// for a stream to end.
	MaxConns int
	// DialTimeout bounds a connection's TCP connect and HTTP/2 handshake
	// (the peer's first SETTINGS), whatever the waiting calls' deadlines
	// (default 20s).
	DialTimeout time.Duration
	// WriteTimeout bounds a write to the connection: a peer that takes
	// no bytes for that long fails the connection and its calls with
	// UNAVAILABLE (default 10s; negative for none). Calls waiting on a
	// stuck write wait this long whatever their deadlines.
	WriteTimeout time.Duration
	// StreamWindow is the receive window advertised for each stream
	// (SETTINGS_INITIAL_WINDOW_SIZE; default 4 MiB, at most 1<<31-1).
	StreamWindow int
	// ConnWindow is the receive window of each connection (default
	// 16 MiB, at most 1<<31-1, at least StreamWindow).
	ConnWindow int
	// MaxHeaderListSize bounds the size of a response's header and
	// trailer blocks, as HTTP/2 counts it (default 1 MiB). It is
	// advertised to the peer.
	MaxHeaderListSize int
	// UserAgent is the user-agent header (default "infergate-grpcwire").
	UserAgent string
	// TLSConfig, when set, makes every connection TLS: the handshake is
	// part of dialling (within DialTimeout), on a copy of the config with
	// ServerName set to the address's host when empty and ALPN h2, which
	// the peer must agree to (as grpc-go requires). Nil means cleartext
	// HTTP/2 with prior knowledge.
	TLSConfig *tls.Config
}

const (
	defaultMaxMessageSize    = 4 << 20
	defaultMaxConns          = 16
	defaultDialTimeout       = 20 * time.Second
	defaultWriteTimeout      = 10 * time.Second
	defaultStreamWindow      = 4 << 20
	defaultConnWindow        = 16 << 20
	defaultMaxHeaderListSize = 1 << 20
	defaultUserAgent         = "infergate-grpcwire"
	maxWindow                = 1<<31 - 1
)

func (o *Options) setDefaults() {
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = defaultMaxMessageSize
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.StreamWindow <= 0 {
		o.StreamWindow = defaultStreamWindow
	}
	o.StreamWindow = min(max(o.StreamWindow, initialWindow), maxWindow)
	if o.ConnWindow <= 0 {
		o.ConnWindow = defaultConnWindow
	}
	o.ConnWindow = min(max(o.ConnWindow, o.StreamWindow), maxWindow)
	if o.MaxHeaderListSize <= 0 {
		o.MaxHeaderListSize = defaultMaxHeaderListSize
	}
	if o.UserAgent == "" {
		o.UserAgent = defaultUserAgent
	}
}

// Client makes unary gRPC calls to one address. It is safe for concurrent
// use. Its zero value is not usable: call New.
type Client struct {
	addr string
	opts Options

	conns atomic.Pointer[[]*conn] // the connections that may take new streams

	mu      sync.Mutex
	dialing *dialState
	closed  bool
	slot    chan struct{} // closed when a stream ends while calls wait for one
	waiters atomic.Int32  // calls in the slow path of pick

	dialCtx    context.Context // ended by Close
	cancelDial context.CancelFunc

	calls sync.Pool // *call
}

// dialState is one connection being dialed, which waiting calls share.
type dialState struct {
	done chan struct{}
	err  error
}

// New returns a client for the host:port addr. It dials nothing and starts
// no goroutine until the first Invoke.
func New(addr string, opts Options) (*Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("grpcwire/client: address %q: %w", addr, err)
	}
	opts.setDefaults()
	if opts.TLSConfig != nil {
		cfg := opts.TLSConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		cfg.NextProtos = []string{"h2"}
		opts.TLSConfig = cfg
	}
	c := &Client{addr: addr, opts: opts}
	c.dialCtx, c.cancelDial = context.WithCancel(context.Background())
	c.calls.New = func() any {
		return &call{done: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
	}
	return c, nil
}

// Addr returns the address the client calls.
func (c *Client) Addr() string { return c.addr }

var (
	errNotSent      = errors.New("grpcwire/client: stream not opened")
	errClientClosed = status.Error(codes.Canceled, "grpcwire: the client is closed")
)

// maxAttempts bounds how often a call that was never sent moves to
// another connection (one that went away between choice and use).
const maxAttempts = 3

// Invoke calls method (a :path such as "/inference.GRPCInferenceService/
// ModelInfer") with the encoded request message req, which Invoke does not
// keep, and returns the encoded response message, which the caller owns.
// md holds optional extra metadata as key, value pairs; keys must be
// lower-case and not reserved by gRPC or HTTP/2. The call ends with ctx:
// its deadline is sent as grpc-timeout. Every error is a gRPC status
// error (see the package comment).
func (c *Client) Invoke(ctx context.Context, method string, req []byte, md []string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError(err)
	}
	if len(req) > c.opts.MaxMessageSize {
		return nil, status.Errorf(codes.ResourceExhausted, "grpcwire: trying to send message larger than max (%d vs. %d)", len(req), c.opts.MaxMessageSize)
	}
	if err := checkMetadata(md); err != nil {
		return nil, err
	}
	cs := c.calls.Get().(*call)
	for attempt := 1; ; attempt++ {
		cc, err := c.pick(ctx)
		if err != nil {
			c.putCall(cs)
			return nil, err
		}
		resp, err := cc.roundTrip(ctx, cs, method, req, md)
		if err == errNotSent {
			cs.reset()
			if attempt < maxAttempts {
				continue
			}
			err = c.unavailable("no connection took the stream")
		}
		c.putCall(cs)
		return resp, err
	}
}

func (c *Client) putCall(cs *call) {
	cs.reset()
	c.calls.Put(cs)
}

// pick returns a connection with a stream reserved for the caller.
func (c *Client) pick(ctx context.Context) (*conn, error) {
	for {
		if p := c.conns.Load(); p != nil {
			for _, cc := range *p {
				if cc.reserve() {
					return cc, nil
				}
			}
		}
		cc, wait, d, err := c.slowPick()
		if cc != nil || err != nil {
			return cc, err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			c.waiters.Add(-1)
			return nil, ctxError(ctx.Err())
		}
		c.waiters.Add(-1)
		if d != nil && d.err != nil {
			return nil, d.err
		}
	}
}

// slowPick, under the client's lock, reserves a stream on a connection or
// says what to wait for: a dial (d), started here if none is under way
// and MaxConns allows, or a stream's end. A call that gets wait must
// decrement waiters when it is done waiting.
func (c *Client) slowPick() (cc *conn, wait <-chan struct{}, d *dialState, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, nil, errClientClosed
	}
	// Counted before looking, so that a stream ending after the look
	// wakes us (see slotFreed).
	c.waiters.Add(1)
	var open int
	if p := c.conns.Load(); p != nil {
		for _, cc := range *p {
			if cc.reserve() {
				c.waiters.Add(-1)
				return cc, nil, nil, nil
			}
		}
		open = len(*p)
	}
	if c.dialing == nil && open < c.opts.MaxConns {
		c.dialing = &dialState{done: make(chan struct{})}
		go c.dial(c.dialing)
	}
	if c.dialing != nil {
		return nil, c.dialing.done, c.dialing, nil
	}
	if c.slot == nil {
		c.slot = make(chan struct{})
	}
	return nil, c.slot, nil, nil
}

// slotFreed wakes the calls waiting for a stream or a connection.
func (c *Client) slotFreed() {
	if c.waiters.Load() == 0 {
		return
	}
	c.mu.Lock()
	if c.slot != nil {
		close(c.slot)
		c.slot = nil
	}
	c.mu.Unlock()
}

// dial opens a connection for d's waiters.
func (c *Client) dial(d *dialState) {
	cc, err := dialConn(c)
	c.mu.Lock()
	c.dialing = nil
	if err == nil && c.closed {
		err = errClientClosed
		cc.shutdown()
		cc = nil
	}
	if err != nil {
		d.err = err
	} else {
		old := c.conns.Load()
		var list []*conn
		if old != nil {
			list = append(list, *old...)
		}
		list = append(list, cc)
		c.conns.Store(&list)
	}
	close(d.done)
	c.mu.Unlock()
	if cc != nil {
		cc.start()
	}
}

// removeConn takes cc out of the connections new calls may use.
func (c *Client) removeConn(cc *conn) {
	c.mu.Lock()
	if old := c.conns.Load(); old != nil {
		list := make([]*conn, 0, len(*old))
		for _, x := range *old {
			if x != cc {
				list = append(list, x)
			}
		}
		c.conns.Store(&list)
	}
	if c.slot != nil {
		close(c.slot)
		c.slot = nil
	}
	c.mu.Unlock()
}

// Close stops the client: later calls fail with CANCELED, calls under way
// finish on their connections, which close when their last stream ends.
// It does not wait for them.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancelDial()
	var list []*conn
	if p := c.conns.Load(); p != nil {
		list = *p
	}
	c.conns.Store(nil)
	if c.slot != nil {
		close(c.slot)
		c.slot = nil
	}
	c.mu.Unlock()
	for _, cc := range list {
		cc.closing.Store(true)
		cc.shutdownIfIdle()
	}
	return nil
}

func (c *Client) unavailable(format string, a ...any) error {
	return status.Error(codes.Unavailable, "grpcwire: "+c.addr+": "+fmt.Sprintf(format, a...))
}

func ctxError(err error) error {
	return status.FromContextError(err).Err()
}

// checkMetadata refuses metadata HTTP/2 or gRPC would not carry as given.
func checkMetadata(md []string) error {
	if len(md)%2 != 0 {
		return status.Error(codes.Internal, "grpcwire: metadata has a key without a value")
	}
	for i := 0; i < len(md); i += 2 {
		k := md[i]
		if k == "" || k[0] == ':' || reservedHeader(k) {
			return status.Errorf(codes.Internal, "grpcwire: metadata key %q is reserved", k)
		}
		for j := 0; j < len(k); j++ {
			if c := k[j]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return status.Errorf(codes.Internal, "grpcwire: metadata key %q: want lower-case letters, digits, '-', '_' and '.'", k)
			}
		}
		v := md[i+1]
		for j := 0; j < len(v); j++ {
			if c := v[j]; c < ' ' && c != '\t' || c == 0x7f {
				return status.Errorf(codes.Internal, "grpcwire: metadata %q has a control character in its value", k)
			}
		}
	}
	return nil
}

func reservedHeader(k string) bool {
	switch k {
	case "content-type", "user-agent", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
		"grpc-message-type", "grpc-status", "grpc-message", "connection", "host", "keep-alive",
		"proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}
