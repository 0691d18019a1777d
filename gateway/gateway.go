package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
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
	// ReadTimeout and WriteTimeout bound reading a REST request and writing
	// its answer (default 60s each); IdleTimeout closes idle keep-alive
	// connections (default 120s).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxConns bounds concurrent REST connections (default 16384).
	MaxConns int
	// DrainTimeout bounds the wait for in-flight requests at shutdown
	// (default 30s).
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
}

// Gateway is the OIP front door. Its route table is an immutable snapshot
// swapped atomically by SetRoutes; requests in flight finish on the table
// they started with.
type Gateway struct {
	opts    Options
	router  router.Router[*route]
	metrics *metrics
	health  *health.Server
	mirror  *mirrorer
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
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 20
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 60 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 60 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 120 * time.Second
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 16384
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
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g := &Gateway{opts: opts, metrics: m, health: health.NewServer()}
	g.mirror = newMirrorer(g, opts.MirrorConcurrency)
	if err := opts.Registerer.Register(newPoolCollector(g)); err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	if err := g.SetRoutes(opts.Routes); err != nil {
		return nil, err
	}
	return g, nil
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
	g.router.Store(t)
	return nil
}

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
// lets in-flight requests finish within DrainTimeout, and returns nil. It
// returns early with an error if a server fails.
func (g *Gateway) Serve(ctx context.Context, restLn, grpcLn net.Listener) error {
	eg, ctx := errgroup.WithContext(ctx)
	if restLn != nil {
		srv := g.restServer()
		eg.Go(func() error {
			if err := srv.Serve(restLn); err != nil {
				return fmt.Errorf("gateway: REST: %w", err)
			}
			return nil
		})
		eg.Go(func() error {
			<-ctx.Done()
			dctx, cancel := context.WithTimeout(context.Background(), g.opts.DrainTimeout)
			defer cancel()
			if err := srv.ShutdownWithContext(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("gateway: REST drain: %w", err)
			}
			return nil
		})
	}
	if grpcLn != nil {
		srv := g.grpcServer()
		eg.Go(func() error {
			if err := srv.Serve(grpcLn); err != nil {
				return fmt.Errorf("gateway: gRPC: %w", err)
			}
			return nil
		})
		eg.Go(func() error {
			<-ctx.Done()
			g.health.Shutdown()
			done := make(chan struct{})
			go func() { srv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(g.opts.DrainTimeout):
				srv.Stop()
			}
			return nil
		})
	}
	return eg.Wait()
}

func (g *Gateway) restServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               g.HandleREST,
		Name:                  "infergate",
		MaxRequestBodySize:    g.opts.MaxBodyBytes,
		ReadTimeout:           g.opts.ReadTimeout,
		WriteTimeout:          g.opts.WriteTimeout,
		IdleTimeout:           g.opts.IdleTimeout,
		Concurrency:           g.opts.MaxConns,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		CloseOnShutdown:       true,
		ErrorHandler:          g.restErrorHandler,
		Logger:                fasthttpLogger{g.opts.Logger},
	}
}

// restErrorHandler answers requests fasthttp could not read, in OIP form.
func (g *Gateway) restErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		rest.WriteError(ctx, oip.Errorf(oip.KindTooLarge, "request body exceeds the gateway's limit of %d bytes", g.opts.MaxBodyBytes))
	default:
		rest.WriteError(ctx, oip.Errorf(oip.KindInvalidArgument, "malformed HTTP request: %v", err))
	}
	g.countUnrouted("rest", statusLabel(ctx.Response.StatusCode()))
}

func (g *Gateway) grpcServer() *grpc.Server {
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(g.opts.MaxBodyBytes),
		grpc.MaxSendMsgSize(g.opts.MaxBodyBytes),
		grpc.ForceServerCodecV2(oip.Codec{}),
		// Reused handler goroutines keep their grown stacks: without them
		// every call starts a goroutine whose stack is grown anew.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	)
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
	f.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}
