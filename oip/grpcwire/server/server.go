package server

import (
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/tap"
)

// Options configures a Server. Every field's zero value has the default
// grpc-go's server has without the matching grpc.ServerOption, unless
// documented otherwise.
type Options struct {
	// Codec marshals and unmarshals every method's messages, whatever
	// content-subtype the client names (grpc.ForceServerCodecV2). Nil
	// means gRPC's registered "proto" codec. A codec's Unmarshal must not
	// keep the buffers it is given: they are reused once it returns.
	Codec encoding.CodecV2
	// MaxRecvMsgSize bounds a received message, compressed or not; larger
	// ones end the call with RESOURCE_EXHAUSTED. Zero means 4 MiB.
	MaxRecvMsgSize int
	// MaxSendMsgSize bounds a sent message; larger ones end the call with
	// RESOURCE_EXHAUSTED. Zero means math.MaxInt32.
	MaxSendMsgSize int
	// MaxConcurrentStreams is advertised in SETTINGS and enforced per
	// connection: a stream beyond it is refused with RST_STREAM
	// REFUSED_STREAM, which clients retry. Zero means no limit.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize is advertised in SETTINGS and bounds a request's
	// header list (RFC 9113's size: names, values and 32 bytes a field).
	// Zero means 16 MiB, which is not advertised.
	MaxHeaderListSize uint32
	// InTapHandle, when set, is called on the connection's reader with a
	// call's context (its metadata, deadline and peer) and method, after
	// its HEADERS and before any of its messages is read. An error ends
	// the call with its status (PERMISSION_DENIED for an error that has
	// none); the context it returns becomes the call's: ServerStream's
	// Context and the waits of RecvMsg follow it. It must not block, and
	// must not keep the *tap.Info, which is reused.
	InTapHandle tap.ServerInHandle
	// ConnectionTimeout bounds the time a new connection has to send its
	// preface and first SETTINGS frame. Zero means 120 seconds.
	ConnectionTimeout time.Duration
	// MaxConnectionIdle closes a connection that has had no call for this
	// long, gracefully (GOAWAY). Zero means never.
	MaxConnectionIdle time.Duration
	// InitialWindowSize is every stream's receive window: what a client
	// may send of a call's messages before the handler reads them
	// (RecvMsg opens the window to a message's length as it starts
	// reading it). Values below 65535 mean 65535. The window is fixed:
	// there is no bandwidth estimation.
	InitialWindowSize int32
	// InitialConnWindowSize is each connection's receive window, topped
	// up as frames arrive. Values below 65535 mean 65535.
	InitialConnWindowSize int32
	// NumWorkers bounds the goroutines kept to run handlers: a call that
	// finds none idle runs on a goroutine of its own, which joins the
	// workers if there are fewer than NumWorkers. Zero means 256.
	NumWorkers int
	// WorkerIdle is how long a worker waits for a call before it exits,
	// so that the pool, grown to the calls in flight under load, shrinks
	// back once the load is gone. Zero means 10 seconds.
	WorkerIdle time.Duration
	// MinPingInterval is the keepalive enforcement: a client PING that
	// comes sooner than this after the previous one, with no HEADERS or
	// DATA sent by the server in between, is a strike; a PING that comes
	// later, or after the server sent something, clears the strikes; the
	// third strike in a row closes the connection with GOAWAY
	// ENHANCE_YOUR_CALM ("too_many_pings"). Zero means 10 seconds
	// (lenient: grpc-go's default is 5 minutes, and its strikes are
	// cleared only by the server's HEADERS or DATA); negative turns
	// enforcement off. PINGs are always answered.
	MinPingInterval time.Duration
	// ReadBufferSize is each connection's read buffer. Values below 32 KiB
	// mean 32 KiB.
	ReadBufferSize int
}

// Defaults of Options.
const (
	defaultMaxRecvMsgSize    = 4 << 20
	defaultMaxSendMsgSize    = math.MaxInt32
	defaultMaxHeaderListSize = 16 << 20
	defaultConnectionTimeout = 120 * time.Second
	defaultNumWorkers        = 256
	defaultWorkerIdle        = 10 * time.Second
	defaultMinPingInterval   = 10 * time.Second
	minReadBufferSize        = 32 << 10
)

func (o Options) withDefaults() Options {
	if o.Codec == nil {
		o.Codec = encoding.GetCodecV2(grpcproto.Name)
	}
	if o.MaxRecvMsgSize <= 0 {
		o.MaxRecvMsgSize = defaultMaxRecvMsgSize
	}
	if o.MaxSendMsgSize <= 0 {
		o.MaxSendMsgSize = defaultMaxSendMsgSize
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = math.MaxUint32
	}
	if o.ConnectionTimeout <= 0 {
		o.ConnectionTimeout = defaultConnectionTimeout
	}
	o.InitialWindowSize = max(o.InitialWindowSize, defaultWindow)
	o.InitialConnWindowSize = max(o.InitialConnWindowSize, defaultWindow)
	if o.NumWorkers <= 0 {
		o.NumWorkers = defaultNumWorkers
	}
	if o.WorkerIdle <= 0 {
		o.WorkerIdle = defaultWorkerIdle
	}
	if o.MinPingInterval == 0 {
		o.MinPingInterval = defaultMinPingInterval
	}
	o.ReadBufferSize = max(o.ReadBufferSize, minReadBufferSize)
	return o
}

// Server is a gRPC server on HTTP/2 (prior knowledge, on cleartext or TLS
// connections: see the package comment), for the part of *grpc.Server's
// API that infergate's gateway uses: services registered with
// RegisterService (the generated Register functions, the health and
// reflection services), Serve, GracefulStop and Stop.
//
// Each connection has one goroutine, which reads its frames; handlers run
// on a pool of worker goroutines (see Options.NumWorkers), and write their
// answers themselves through the connection's buffered writer.
type Server struct {
	opts      Options
	maxRecv   int
	flushMode flushMode // tests and benchmarks set it
	settings  []byte    // the server's connection preface (SETTINGS and WINDOW_UPDATE)

	mu       sync.Mutex
	cv       *sync.Cond // signalled as connections end
	services map[string]*serviceInfo
	methods  map[string]*handler // by full method name, "/service/method"
	serving  bool
	lis      map[net.Listener]bool // nil once stopped
	conns    map[*conn]struct{}    // nil once stopped and empty
	draining bool

	quit     chan struct{} // closed when Stop or GracefulStop begins
	done     chan struct{} // closed when Stop or GracefulStop ends
	quitOnce sync.Once
	doneOnce sync.Once

	serveWG    sync.WaitGroup // Serve loops
	handlersWG sync.WaitGroup // calls whose handler has not returned

	work     chan *stream
	workOnce sync.Once
	workers  atomic.Int32
}

// serviceInfo is a registered service.
type serviceInfo struct {
	impl     any
	methods  map[string]*handler
	metadata any
}

// handler is a registered method.
type handler struct {
	impl   any
	unary  grpc.MethodHandler // set for desc.Methods
	stream grpc.StreamHandler // set for desc.Streams
	// clientStreams and serverStreams are the StreamDesc's: a method that
	// is neither takes one request message and gives one answer.
	clientStreams, serverStreams bool
}

// New returns a Server with opts. It starts no goroutine.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		opts:     opts,
		maxRecv:  opts.MaxRecvMsgSize,
		services: make(map[string]*serviceInfo),
		methods:  make(map[string]*handler),
		lis:      make(map[net.Listener]bool),
		conns:    make(map[*conn]struct{}),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		work:     make(chan *stream),
	}
	s.cv = sync.NewCond(&s.mu)
	s.settings = s.preface()
	return s
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

// RegisterService registers a service and its implementation, as
// grpc.Server's does. It panics if impl does not implement
// desc.HandlerType, if the service is registered already, or if Serve has
// been called: those are programming errors (grpc-go exits the process).
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if impl != nil && desc.HandlerType != nil {
		ht := reflect.TypeOf(desc.HandlerType).Elem()
		if st := reflect.TypeOf(impl); !st.Implements(ht) {
			panic(fmt.Sprintf("server: RegisterService: the handler of type %v does not satisfy %v", st, ht))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving {
		panic(fmt.Sprintf("server: RegisterService(%q) after Serve", desc.ServiceName))
	}
	if _, ok := s.services[desc.ServiceName]; ok {
		panic(fmt.Sprintf("server: RegisterService found a duplicate registration of %q", desc.ServiceName))
	}
	info := &serviceInfo{impl: impl, methods: make(map[string]*handler), metadata: desc.Metadata}
	for i := range desc.Methods {
		m := &desc.Methods[i]
		info.methods[m.MethodName] = &handler{impl: impl, unary: m.Handler}
	}
	for i := range desc.Streams {
		d := &desc.Streams[i]
		info.methods[d.StreamName] = &handler{impl: impl, stream: d.Handler, clientStreams: d.ClientStreams, serverStreams: d.ServerStreams}
	}
	s.services[desc.ServiceName] = info
	for name, h := range info.methods {
		s.methods["/"+desc.ServiceName+"/"+name] = h
	}
}

// GetServiceInfo returns the registered services by name, as grpc.Server's
// does (reflection.Register reads it).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	ret := make(map[string]grpc.ServiceInfo, len(s.services))
	for n, srv := range s.services {
		methods := make([]grpc.MethodInfo, 0, len(srv.methods))
		for m, h := range srv.methods {
			if !h.clientStreams && !h.serverStreams {
				methods = append(methods, grpc.MethodInfo{Name: m})
			}
		}
		for m, h := range srv.methods {
			if h.clientStreams || h.serverStreams {
				methods = append(methods, grpc.MethodInfo{Name: m, IsClientStream: h.clientStreams, IsServerStream: h.serverStreams})
			}
		}
		ret[n] = grpc.ServiceInfo{Methods: methods, Metadata: srv.metadata}
	}
	return ret
}

// lookup returns the handler of a full method name, or the status message
// of an unknown one (grpc-go's words).
func (s *Server) lookup(method string) (*handler, string) {
	if h := s.methods[method]; h != nil {
		return h, ""
	}
	sm, ok := strings.CutPrefix(method, "/")
	pos := strings.LastIndex(sm, "/")
	if !ok || pos < 0 {
		return nil, fmt.Sprintf("malformed method name: %q", method)
	}
	service, name := sm[:pos], sm[pos+1:]
	if _, ok := s.services[service]; !ok {
		return nil, "unknown service " + service
	}
	return nil, fmt.Sprintf("unknown method %v for service %v", name, service)
}

// ErrServerStopped is grpc.ErrServerStopped: Serve returns it when called
// after Stop or GracefulStop.
var ErrServerStopped = grpc.ErrServerStopped

// Serve accepts connections on ln and serves them until Stop or
// GracefulStop, or until Accept fails with an error that is not
// temporary; it closes ln when it returns. As grpc.Server's, it returns
// nil once Stop or GracefulStop has been called (after they finish),
// ErrServerStopped if it is called after them, and Accept's error
// otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.serving = true
	if s.lis == nil {
		s.mu.Unlock()
		ln.Close()
		return ErrServerStopped
	}
	s.lis[ln] = true
	s.serveWG.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.lis != nil && s.lis[ln] {
			ln.Close()
			delete(s.lis, ln)
		}
		s.mu.Unlock()
		s.serveWG.Done()
		select {
		case <-s.quit:
			// As grpc-go's: return once the stop is over.
			<-s.done
		default:
		}
	}()

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-s.quit:
					t.Stop()
					return nil
				}
				continue
			}
			select {
			case <-s.quit:
				return nil
			default:
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.conns == nil {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		draining := s.draining
		s.mu.Unlock()
		if draining {
			c.close(errServerStopping)
		}
		go c.serve()
	}
}

var errServerStopping = errors.New("server stopping")

// Stop closes every listener and connection at once: the calls in flight
// get their contexts cancelled, and their clients a connection error. It
// does not wait for handlers to return.
func (s *Server) Stop() { s.stop(false) }

// GracefulStop stops accepting connections, sends every connection a
// GOAWAY (twice, as grpc-go does: first with the largest stream ID and a
// PING, then, once the PING is answered or after 5 seconds, with the last
// stream it accepted), lets the calls in flight finish, and returns once
// every connection is closed and every handler returned. A Stop during it
// ends it early.
func (s *Server) GracefulStop() { s.stop(true) }

func (s *Server) stop(graceful bool) {
	s.quitOnce.Do(func() { close(s.quit) })
	s.mu.Lock()
	for ln := range s.lis {
		ln.Close()
	}
	s.lis = nil
	s.mu.Unlock()
	s.serveWG.Wait()

	s.mu.Lock()
	if graceful {
		if !s.draining {
			s.draining = true
			for c := range s.conns {
				c.drain("graceful_stop")
			}
		}
	} else {
		for c := range s.conns {
			c.close(errServerStopping)
		}
	}
	for len(s.conns) != 0 {
		s.cv.Wait()
	}
	s.conns = nil
	s.mu.Unlock()
	// No connection is left to hand the workers a call.
	s.workOnce.Do(func() { close(s.work) })
	if graceful {
		s.handlersWG.Wait()
	}
	s.doneOnce.Do(func() { close(s.done) })
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	if s.conns != nil {
		delete(s.conns, c)
		if len(s.conns) == 0 {
			s.cv.Broadcast()
		}
	}
	s.mu.Unlock()
}

// dispatch runs a call's handler on an idle worker, or on a new goroutine
// that becomes a worker while there are fewer than NumWorkers.
func (s *Server) dispatch(st *stream) {
	select {
	case s.work <- st:
		return
	default:
	}
	if int(s.workers.Add(1)) <= s.opts.NumWorkers {
		go s.worker(st)
		return
	}
	s.workers.Add(-1)
	go st.run()
}

func (s *Server) worker(st *stream) {
	defer s.workers.Add(-1)
	st.run()
	idle := time.NewTimer(s.opts.WorkerIdle)
	defer idle.Stop()
	for {
		select {
		case st, ok := <-s.work:
			if !ok {
				return
			}
			st.run()
			idle.Reset(s.opts.WorkerIdle)
		case <-idle.C:
			return
		}
	}
}
