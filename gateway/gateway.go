package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/gateway/netlimit"
	"github.com/infergate/infergate/gateway/payloadlog"
	"github.com/infergate/infergate/gateway/quota"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/oip"
	grpcserver "github.com/infergate/infergate/oip/grpcwire/server"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/router"
	"github.com/infergate/infergate/runtimes"
)

// HeaderRequestTimeout lets a REST client set its request's deadline: a Go
// duration ("250ms", "2s") or a number of seconds ("1.5"). It is capped by
// nothing but the client's own patience; without it the model's timeout
// applies. gRPC clients use grpc-timeout.
const HeaderRequestTimeout = "X-Request-Timeout"

// HeaderRevision pins a request to one of its model's revisions: a
// revision name ("iris-00002"), its number ("2") or a tag ("latest",
// "prev"). /v2/models/{m}/versions/{v}/... pins the same way and wins
// over the header. gRPC clients send x-model-revision metadata or set
// model_version. Every inference answer carries the header (gRPC: header
// metadata) naming the revision that answered.
const HeaderRevision = "X-Model-Revision"

// HeaderSessionKey keeps a caller on one revision while a model's traffic
// is split (and on one replica where the revision asks for it): requests
// with the same key take the same path. A cookie named CookieSession does
// the same for browsers; gRPC clients send x-session-key metadata.
const HeaderSessionKey = "X-Session-Key"

// CookieSession is the cookie read for a session key when the request has
// no HeaderSessionKey.
const CookieSession = "infergate-session"

// Route sends one revision's requests to its runtime pool.
type Route struct {
	// Model is the name clients use, which is also the name at the runtime.
	Model string
	// Revision names the revision: the activator's key and the metrics'
	// revision label. SetModels sets it from the router's revision name;
	// SetRoutes defaults it to Model.
	Revision string
	// StickyReplicas sends requests with a session key to the same replica
	// (consistent hashing with bounded load) rather than the least loaded
	// of two: for runtimes that keep per-session state or caches.
	StickyReplicas bool
	// Pool holds the model's runtime replicas. Required.
	Pool *runtimes.Pool
	// Timeout is the deadline of requests that bring none (default 60s).
	Timeout time.Duration
	// Batcher, when set, batches the model's inference requests: the
	// gateway decodes each request and submits it, and the batcher calls
	// the pool with merged requests (see NewBatcher). Its Run is the
	// caller's to start.
	Batcher *batcher.Batcher
	// Activator, when set, holds the model's requests while it has no
	// ready replica with room (scale from zero, containerConcurrency) and
	// counts its load for the autoscaler.
	Activator *activator.Activator
	// Labels are the model's labels (its InferenceService's), which
	// grants may select models by (auth.Grant.Selector).
	Labels map[string]string
	// Limit bounds the model's requests across all tenants (requests/s,
	// burst, in flight); the first revision of a model with one sets it.
	Limit quota.Limit
	// Fair, when set, holds the revision's requests while it is saturated
	// and gives freed places to tenants by weighted fair queuing (see
	// quota.FairQueue): its owner sets its capacity to what the ready
	// replicas take at once.
	Fair *quota.FairQueue
	// Serving, when set, reports whether the model is as ready as it is
	// meant to be for the gateway to count as ready: its owner (a
	// supervisor) knows when replicas are wanted but not up yet. Without
	// it a model counts when its pool is empty or has a ready replica.
	Serving func() bool
}

// Options configures a Gateway. Zero fields take the documented defaults.
type Options struct {
	// Routes are the models served.
	Routes []Route
	// MaxBodyBytes bounds a REST request body (default 64 MiB; larger
	// bodies get 413) and a gRPC message (larger ones get
	// RESOURCE_EXHAUSTED).
	MaxBodyBytes int
	// HeaderTimeout bounds the wait for a REST request's headers, from the
	// connection's opening (or, on a kept-alive connection, from the
	// request's first byte), and a gRPC connection's HTTP/2 handshake
	// (default 10s). A connection that sends nothing in that time is
	// closed; one that sent part of a request gets 408.
	HeaderTimeout time.Duration
	// ReadTimeout bounds reading a REST request's body, from the end of
	// its headers (default 60s; a slower body gets 408).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a REST answer (default 60s).
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive REST connection, or a gRPC
	// connection with no call, idle that long (default 75s: longer than
	// the 60s after which common proxies and load balancers drop their
	// own idle connections to a backend, so that they, not the gateway,
	// close them and never send a request on a connection being closed).
	IdleTimeout time.Duration
	// MaxConns bounds the open connections of each front door, REST and
	// gRPC (default netlimit.DefaultMaxConns(): a quarter of the process's
	// open-file limit, at most 16384). At the cap, new clients wait in the
	// listen backlog until a connection closes.
	MaxConns int
	// MaxHeaderBytes bounds a REST request's request line and headers
	// (larger ones get 431) and a gRPC call's header list (default 16 KiB,
	// as Node.js allows; every kept-alive REST connection holds a read
	// buffer this large).
	MaxHeaderBytes int
	// MaxStreams bounds the concurrent calls on one gRPC connection
	// (default 1024); a client past it waits for a stream to end.
	MaxStreams int
	// GRPCServer picks the gRPC front door's server: GRPCServerInfergate
	// (the default, infergate's own HTTP/2 gRPC server, oip/grpcwire/server)
	// or GRPCServerGRPCGo (grpc-go's), for a client that needs what only
	// grpc-go's does (see oip/grpcwire/server's doc).
	GRPCServer string
	// RESTTLS and GRPCTLS, when set, serve the REST and gRPC front doors
	// over TLS with these configurations (see internal/tlsconf: ALPN
	// http/1.1 for REST, h2 for gRPC; a client CA there requires client
	// certificates). The handshake is bounded by HeaderTimeout.
	RESTTLS, GRPCTLS *tls.Config
	// Auth, when set, authenticates every model request (REST
	// Authorization: Bearer, gRPC authorization metadata) and checks the
	// caller's grants; UpdateAccess gives it the tenants, keys and
	// grants. nil: requests are not authenticated (health and server
	// metadata never are).
	Auth *auth.Authenticator
	// MaxInFlightBytes bounds the request bytes the gateway holds at once,
	// REST bodies and gRPC inference messages, from their arrival to
	// their answer (default 1 GiB, or MaxBodyBytes when that is larger;
	// an explicit value below MaxBodyBytes is an error). A REST body's
	// room is taken from its Content-Length before it is read; a request
	// that finds no room within InFlightWait gets 503 with Retry-After
	// (gRPC: RESOURCE_EXHAUSTED).
	MaxInFlightBytes int64
	// InFlightWait is how long a request waits for room under
	// MaxInFlightBytes before it is refused (default 1s).
	InFlightWait time.Duration
	// DrainTimeout bounds the drain at shutdown, for every front door
	// (default 30s). Once it is over, the requests still waiting for a
	// runtime are answered at once, REST with 503 and Connection: close,
	// gRPC with UNAVAILABLE ("gateway shutting down: the request did not
	// finish within the drain timeout"); a second later at most, the
	// connections still open are closed, whatever they are doing.
	DrainTimeout time.Duration
	// Registerer receives the gateway's metrics (default: a private
	// registry, so nothing is registered globally).
	Registerer prometheus.Registerer
	// Logger receives the gateway's logs; nothing is logged per request at
	// info level (default slog.Default()).
	Logger *slog.Logger
	// Version is reported by server metadata (default "dev").
	Version string
	// MirrorConcurrency bounds the mirrored copies in flight at once
	// (default 64); a copy that finds no room is dropped and counted.
	MirrorConcurrency int
	// Tracer, when set, traces inference requests (see tracing.New):
	// the caller's W3C traceparent is continued (else a trace starts,
	// sampled at the Tracer's ratio), the runtime receives the upstream
	// call's traceparent (REST header, gRPC metadata), and a sampled
	// request's spans (server, activator hold, queue wait, batch wait,
	// upstream call) are exported by OTLP. Its Shutdown is the caller's.
	// nil: tracing is off, the caller's trace headers reach a REST
	// runtime unchanged, and nothing is allocated for it. Server-Timing
	// is set on every inference answer either way (HeaderServerTiming).
	Tracer *tracing.Tracer
	// Payloads, when set, logs the request and response payloads of the
	// models SetPayloadLogs configures, as KServe's logger does; its Run
	// is the caller's to start. Mirrored copies are never logged. nil:
	// nothing is logged.
	Payloads *payloadlog.Logger
}

// Gateway is the OIP front door. Its route table is an immutable snapshot
// swapped atomically by SetRoutes; requests in flight finish on the table
// they started with.
type Gateway struct {
	opts      Options
	router    router.Router[*route]
	metrics   *metrics
	listeners *netlimit.Metrics
	budget    *byteBudget
	health    *health.Server
	mirror    *mirrorer
	// limiter admits requests under the tenants' and models' quotas;
	// limits are its inputs; quotaMetrics are shared with the routes'
	// fair queues.
	limiter      *quota.Limiter
	limits       accessLimits
	quotaMetrics *quota.Metrics
	// drain is cancelled at Serve's drain deadline (see abortInFlight):
	// every wait of a request for its runtime is derived from it or
	// checks it. It is never reset: a Gateway is served once.
	// closing is set when the REST front door starts to drain: every
	// answer then carries Connection: close (see keepAliveGrace).
	closing     atomic.Bool
	drain       context.Context
	cancelDrain context.CancelFunc
	// mu serialises table changes (SetModels), not requests.
	mu sync.Mutex
}

// route is a revision's Route with its metrics, the backend of the
// router's revisions.
type route struct {
	Route
	name                     string // the model's name in the router
	stats                    *router.Stats
	gatewayREST, gatewayGRPC prometheus.Observer
	upstream                 prometheus.Observer
	inFlight                 prometheus.Gauge
	// grpcHeader names the revision in gRPC answers; grpc.SetHeader copies
	// it, so one per revision serves every call.
	grpcHeader                 metadata.MD
	restRequests, grpcRequests *codeCounters
	upstreamRequests           *codeCounters
}

// New validates opts and returns a gateway. It starts no goroutine.
func New(opts Options) (*Gateway, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	lm, err := netlimit.NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g := &Gateway{opts: opts, metrics: m, listeners: lm, health: health.NewServer()}
	g.drain, g.cancelDrain = context.WithCancel(context.Background())
	g.budget = newByteBudget(opts.MaxInFlightBytes, opts.InFlightWait, m.inFlightBytes)
	m.inFlightLimit.Set(float64(opts.MaxInFlightBytes))
	g.mirror = newMirrorer(g, opts.MirrorConcurrency)
	if g.quotaMetrics, err = quota.NewMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	if g.limiter, err = quota.NewLimiter(quota.LimiterOptions{Metrics: g.quotaMetrics}); err != nil {
		return nil, err
	}
	if err := opts.Registerer.Register(newPoolCollector(g)); err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	if err := g.SetRoutes(opts.Routes); err != nil {
		return nil, err
	}
	return g, nil
}

// setDefaults fills the zero fields of opts and checks the others.
func (opts *Options) setDefaults() error {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 20
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = 10 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 60 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 60 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 75 * time.Second
	}
	if opts.MaxConns < 0 {
		return fmt.Errorf("gateway: MaxConns %d: must not be negative", opts.MaxConns)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = netlimit.DefaultMaxConns()
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 16 << 10
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 1024
	}
	switch opts.GRPCServer {
	case "":
		opts.GRPCServer = GRPCServerInfergate
	case GRPCServerInfergate, GRPCServerGRPCGo:
	default:
		return fmt.Errorf("gateway: GRPCServer %q: want %q or %q", opts.GRPCServer, GRPCServerInfergate, GRPCServerGRPCGo)
	}
	switch {
	case opts.MaxInFlightBytes < 0:
		return fmt.Errorf("gateway: MaxInFlightBytes %d: must not be negative", opts.MaxInFlightBytes)
	case opts.MaxInFlightBytes == 0:
		opts.MaxInFlightBytes = max(1<<30, int64(opts.MaxBodyBytes))
	case opts.MaxInFlightBytes < int64(opts.MaxBodyBytes):
		return fmt.Errorf("gateway: MaxInFlightBytes %d is below MaxBodyBytes %d: a request of the largest size could never be let in", opts.MaxInFlightBytes, opts.MaxBodyBytes)
	}
	if opts.InFlightWait <= 0 {
		opts.InFlightWait = time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	return nil
}

// SetRoutes serves each route as a model with one revision taking all its
// traffic; see SetModels.
func (g *Gateway) SetRoutes(routes []Route) error {
	models := make([]router.Model[Route], len(routes))
	for i, r := range routes {
		if r.Revision == "" {
			r.Revision = r.Model
		}
		models[i] = router.Model[Route]{
			Name:      r.Model,
			Revisions: []*router.Revision[Route]{{Name: r.Revision, Number: 1, Backend: r}},
			Traffic:   []router.Weight{{Revision: r.Revision, Percent: 100}},
		}
	}
	return g.SetModels(models)
}

// SetModels validates models and swaps them in as the new routing table;
// requests in flight finish on the table they started with. Each
// revision's Backend is its Route (Model defaults to the model's name,
// Revision is set to the revision's name). A revision that keeps its name
// keeps its Stats when the caller passes none. The metrics of revisions no
// longer routed stay until Forget.
func (g *Gateway) SetModels(models []router.Model[Route]) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.router.Table()
	var errs []error
	built := make([]router.Model[*route], len(models))
	for i, m := range models {
		b := router.Model[*route]{Name: m.Name, Traffic: m.Traffic, Tags: m.Tags, Mirror: m.Mirror}
		for _, rev := range m.Revisions {
			if rev == nil {
				errs = append(errs, fmt.Errorf("gateway: model %q: a nil revision", m.Name))
				continue
			}
			r := rev.Backend
			if r.Model == "" {
				r.Model = m.Name
			}
			r.Revision = rev.Name
			if r.Model == "" || r.Pool == nil {
				errs = append(errs, fmt.Errorf("gateway: model %q revision %q: model name and pool are required", m.Name, rev.Name))
				continue
			}
			if r.Timeout <= 0 {
				r.Timeout = 60 * time.Second
			}
			stats := rev.Stats
			if stats == nil {
				stats = oldStats(old, m.Name, rev.Name)
			}
			b.Revisions = append(b.Revisions, &router.Revision[*route]{Name: rev.Name, Number: rev.Number, Stats: stats, Backend: g.newRoute(m.Name, r, stats)})
		}
		built[i] = b
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	t, err := router.New(built)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.setModelLimits(modelLimits(models)); err != nil {
		return fmt.Errorf("gateway: models' quotas: %w", err)
	}
	g.router.Store(t)
	return nil
}

// modelLimits are the quotas of models: each one's first revision with a
// Limit.
func modelLimits(models []router.Model[Route]) []quota.ModelLimit {
	var out []quota.ModelLimit
	for _, m := range models {
		for _, rev := range m.Revisions {
			if rev != nil && rev.Backend.Limit != (quota.Limit{}) {
				out = append(out, quota.ModelLimit{Model: m.Name, Limit: rev.Backend.Limit})
				break
			}
		}
	}
	return out
}

// QuotaMetrics returns the quota metrics the routes' fair queues report
// to (quota.FairQueueOptions.Metrics).
func (g *Gateway) QuotaMetrics() *quota.Metrics { return g.quotaMetrics }

// Forget deletes the metrics of a revision no longer routed. Call it once
// the requests that chose the revision are done (its Stats.InFlight is 0):
// one still running would bring its series back.
func (g *Gateway) Forget(model, revision string) {
	g.metrics.forget(model, revision)
}

// oldStats returns the Stats a revision had in t, a fresh one if none.
func oldStats(t *router.Table[*route], model, rev string) *router.Stats {
	if t != nil {
		for _, r := range t.Revisions(model) {
			if r.Name == rev {
				return r.Stats
			}
		}
	}
	return new(router.Stats)
}

func (g *Gateway) newRoute(model string, r Route, stats *router.Stats) *route {
	m := g.metrics
	return &route{
		Route:       r,
		name:        model,
		stats:       stats,
		gatewayREST: m.duration.WithLabelValues(model, r.Revision, "rest"),
		gatewayGRPC: m.duration.WithLabelValues(model, r.Revision, "grpc"),
		upstream:    m.upstreamDuration.WithLabelValues(model, r.Revision),
		inFlight:    m.inFlight.WithLabelValues(model, r.Revision),
		grpcHeader:  metadata.Pairs(metadataRevision, r.Revision),

		restRequests:     newCodeCounters(m.requests, model, r.Revision, "rest"),
		grpcRequests:     newCodeCounters(m.requests, model, r.Revision, "grpc"),
		upstreamRequests: newCodeCounters(m.upstreamRequests, model, r.Revision),
	}
}

// resolve picks the revision for a request, with its mirror if one is
// drawn. name, pin and the key may alias request buffers.
func (g *Gateway) resolve(req router.Request) (r, mirror *route, err error) {
	if err := checkNames(req); err != nil {
		return nil, nil, err
	}
	rev, mrev, err := g.router.Table().Resolve(req)
	if err != nil {
		return nil, nil, err
	}
	if mrev != nil {
		mirror = mrev.Backend
	}
	return rev.Backend, mirror, nil
}

// Ready reports whether every revision with a share of traffic is serving
// as meant (see Route.Serving); revisions kept for pinning or rollback do
// not count. A revision meant to have no replica (scaled to zero, or
// failed) does not hold the gateway back: its requests get their own
// answer, and taking the whole gateway out of rotation for it would fail
// every other model too.
func (g *Gateway) Ready() bool {
	ready := true
	g.router.Table().EachRouted(func(_ string, rev *router.Revision[*route]) {
		r := rev.Backend
		if r.Serving != nil {
			ready = ready && r.Serving()
			return
		}
		if len(r.Pool.Replicas()) > 0 && !r.Pool.Ready() {
			ready = false
		}
	})
	return ready
}

// RevisionCounts returns the request counts of the revision named rev
// (of any model), zero when none is routed; rollouts judge from them.
func (g *Gateway) RevisionCounts(rev string) router.Counts {
	var c router.Counts
	g.router.Table().Each(func(_ string, r *router.Revision[*route]) {
		if r.Name == rev {
			c = r.Stats.Snapshot()
		}
	})
	return c
}

// ErrRevisionRetired, given to the activator's Fail for a revision no
// longer routed, sends the requests it held back to the router: they are
// routed again on the current table rather than failed.
var ErrRevisionRetired = errors.New("revision retired")

func (g *Gateway) serverMetadata() oip.ServerMetadata {
	return oip.ServerMetadata{Name: "infergate", Version: g.opts.Version, Extensions: []string{"binary_tensor_data"}}
}

// Serve runs the REST front door on restLn and the gRPC one on grpcLn
// (either may be nil) until ctx is done, then drains: it stops accepting,
// lets in-flight requests finish within DrainTimeout, answers those still
// waiting for a runtime once it is over (503, UNAVAILABLE: see
// DrainTimeout), gives the front doors up to a second to write those
// answers, closes the connections still open, and returns nil. It returns
// early, after the same drain, with an error if a server fails. Each
// listener is capped at MaxConns connections and survives accept errors
// (see netlimit); Serve closes both listeners. A Gateway is served once:
// once a drain has passed its deadline, the gateway answers every
// request that needs a runtime with that error.
func (g *Gateway) Serve(ctx context.Context, restLn, grpcLn net.Listener) error {
	var fronts []front
	if restLn != nil {
		ln, err := g.limit(restLn, "rest", g.opts.MaxConns)
		if err != nil {
			return err
		}
		srv := g.restServer()
		serve := srv.Serve
		if cfg := g.opts.RESTTLS; cfg != nil {
			serve = func(ln net.Listener) error { return srv.Serve(tls.NewListener(ln, cfg)) }
		}
		fronts = append(fronts, front{
			name:  "REST",
			ln:    ln,
			serve: serve,
			drain: func(ctx context.Context) bool {
				// Closed first, so that a Serve not started yet returns at
				// once: fasthttp's Shutdown knows only listeners Serve has
				// taken.
				_ = ln.Close()
				g.keepAliveGrace(ctx)
				_ = srv.ShutdownWithContext(ctx)
				return ctx.Err() == nil
			},
		})
	}
	if grpcLn != nil {
		ln, err := g.limit(grpcLn, "grpc", g.opts.MaxConns)
		if err != nil {
			return err
		}
		srv := g.grpcServer()
		fronts = append(fronts, front{
			name: "gRPC",
			ln:   ln,
			serve: func(ln net.Listener) error {
				if cfg := g.opts.GRPCTLS; cfg != nil && g.opts.GRPCServer != GRPCServerGRPCGo {
					ln = tls.NewListener(ln, cfg)
				}
				// A Serve that starts after the drain began has nothing to do.
				if err := srv.Serve(ln); !errors.Is(err, grpc.ErrServerStopped) {
					return err
				}
				return nil
			},
			drain: func(ctx context.Context) bool {
				g.health.Shutdown()
				// GracefulStop takes no deadline (and grpc-go's waits even
				// for connections still in their HTTP/2 handshake); past
				// the drain, stop closes them under it.
				done := make(chan struct{})
				go func() { srv.GracefulStop(); close(done) }()
				select {
				case <-done:
					return true
				case <-ctx.Done():
					return false
				}
			},
			stop: srv.Stop,
		})
	}
	return serveFrontsAborting(ctx, g.opts.DrainTimeout, g.abortInFlight, fronts)
}

// limit wraps ln in a netlimit.Listener reporting under name.
func (g *Gateway) limit(ln net.Listener, name string, maxConns int) (*netlimit.Listener, error) {
	// REST marks its connections served (serveREST): a half-sent request
	// is as evictable at the cap as silence. gRPC's requests are frames
	// on a connection the server reads whole: its first bytes count.
	l, err := netlimit.New(ln, netlimit.Options{MaxConns: maxConns, Name: name, Metrics: g.listeners, Logger: g.opts.Logger, UntilServed: name == "rest"})
	if err != nil {
		return nil, fmt.Errorf("gateway: %s listener: %w", name, err)
	}
	return l, nil
}

func (g *Gateway) restServer() *fasthttp.Server {
	// A request's body gets ReadTimeout from the end of its headers, which
	// get HeaderTimeout (the server's ReadTimeout) on their own.
	body := fasthttp.RequestConfig{ReadTimeout: g.opts.ReadTimeout}
	return &fasthttp.Server{
		Handler:        g.serveREST,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig { return body },
		Name:           "infergate",
		// Bodies are read by serveREST, which takes their room under
		// MaxInFlightBytes from their Content-Length first.
		StreamRequestBody:  true,
		MaxRequestBodySize: g.opts.MaxBodyBytes,
		ReadTimeout:        g.opts.HeaderTimeout,
		WriteTimeout:       g.opts.WriteTimeout,
		IdleTimeout:        g.opts.IdleTimeout,
		// The header, request line included, must fit the read buffer.
		ReadBufferSize: g.opts.MaxHeaderBytes,
		// A connection waiting for its first request holds no buffers (a
		// flood of silent connections costs descriptors, not memory), and
		// is closed in silence when HeaderTimeout passes.
		ReduceMemoryUsage: true,
		// The listener caps connections; the worker pool's own cap is
		// above it, so that a connection accepted as another one's worker
		// finishes is never refused.
		Concurrency:           2 * g.opts.MaxConns,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		CloseOnShutdown:       true,
		// fasthttp's errors quote the request they failed on: its logs
		// must not carry Authorization or Cookie headers either.
		SecureErrorLogMessage: true,
		ErrorHandler:          g.restReadError,
		Logger:                fasthttpLogger{g.opts.Logger},
	}
}

// The gRPC front door's servers (Options.GRPCServer).
const (
	GRPCServerInfergate = "infergate"
	GRPCServerGRPCGo    = "grpc-go"
)

// grpcFrontDoor is what the gateway needs of a gRPC server; grpc-go's and
// infergate's own (oip/grpcwire/server) are both one.
type grpcFrontDoor interface {
	reflection.GRPCServer
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

// grpcServer builds the gRPC front door's server (Options.GRPCServer)
// with the gateway's services. Both servers get the same bounds: a
// connection must finish its HTTP/2 preface and settings in
// HeaderTimeout; fixed flow-control windows (no bandwidth estimate, which
// grows a stream's window to 16 MiB in grpc-go), so that a call waiting
// for room to read its message (recvInfer) holds at most
// grpcStreamWindow of it; and handler goroutines kept between calls
// (grpcStreamWorkers) so that their grown stacks are reused: a call that
// finds no idle worker starts a goroutine whose stack is grown anew
// (copied three or four times on the way to the runtime's answer).
func (g *Gateway) grpcServer() grpcFrontDoor {
	var srv grpcFrontDoor
	if g.opts.GRPCServer == GRPCServerGRPCGo {
		creds := insecure.NewCredentials()
		if g.opts.GRPCTLS != nil {
			// grpc-go does its own handshake, so that its handlers see
			// the peer's TLSInfo.
			creds = credentials.NewTLS(g.opts.GRPCTLS)
		}
		srv = grpc.NewServer(
			grpc.Creds(creds),
			grpc.MaxRecvMsgSize(g.opts.MaxBodyBytes),
			grpc.MaxSendMsgSize(g.opts.MaxBodyBytes),
			grpc.ForceServerCodecV2(oip.Codec{}),
			grpc.NumStreamWorkers(grpcStreamWorkers),
			grpc.ConnectionTimeout(g.opts.HeaderTimeout),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: g.opts.IdleTimeout}),
			grpc.MaxConcurrentStreams(uint32(g.opts.MaxStreams)),
			grpc.MaxHeaderListSize(uint32(g.opts.MaxHeaderBytes)),
			grpc.InTapHandle(g.grpcTap),
			grpc.InitialWindowSize(grpcStreamWindow),
			grpc.InitialConnWindowSize(grpcConnWindow),
		)
	} else {
		srv = grpcserver.New(grpcserver.Options{
			Codec:                 oip.Codec{},
			MaxRecvMsgSize:        g.opts.MaxBodyBytes,
			MaxSendMsgSize:        g.opts.MaxBodyBytes,
			NumWorkers:            grpcStreamWorkers,
			ConnectionTimeout:     g.opts.HeaderTimeout,
			MaxConnectionIdle:     g.opts.IdleTimeout,
			MaxConcurrentStreams:  uint32(g.opts.MaxStreams),
			MaxHeaderListSize:     uint32(g.opts.MaxHeaderBytes),
			InTapHandle:           g.grpcTap,
			InitialWindowSize:     grpcStreamWindow,
			InitialConnWindowSize: grpcConnWindow,
		})
	}
	srv.RegisterService(serviceDesc(), grpcService{g: g})
	healthpb.RegisterHealthServer(srv, g.health)
	reflection.Register(srv)
	g.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	g.health.SetServingStatus(pb.GRPCInferenceService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return srv
}

// parseTimeout reads X-Request-Timeout: a Go duration or seconds.
func parseTimeout(v []byte) (time.Duration, error) {
	s := string(v)
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 && f < 1e9 {
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, oip.Errorf(oip.KindInvalidArgument, "%s: %q is not a positive duration (use 250ms, 2s or seconds)", HeaderRequestTimeout, s)
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
	}
}
