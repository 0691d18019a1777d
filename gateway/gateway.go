package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
	"github.com/infergate/infergate/runtimes"
)

// HeaderRequestTimeout lets a REST client set its request's deadline: a Go
// duration ("250ms", "2s") or a number of seconds ("1.5"). It is capped by
// nothing but the client's own patience; without it the model's timeout
// applies. gRPC clients use grpc-timeout.
const HeaderRequestTimeout = "X-Request-Timeout"

// Route sends one model's requests to its runtime pool.
type Route struct {
	// Model is the name clients use, which is also the name at the runtime.
	Model string
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
}

// Gateway is the OIP front door. Its route table is an immutable snapshot
// swapped atomically by SetRoutes; requests in flight finish on the table
// they started with.
type Gateway struct {
	opts    Options
	table   atomic.Pointer[table]
	metrics *metrics
	health  *health.Server
}

type table struct {
	routes map[string]*route
	names  []string
}

type route struct {
	Route
	gatewayREST, gatewayGRPC   prometheus.Observer
	upstream                   prometheus.Observer
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
	if err := g.SetRoutes(opts.Routes); err != nil {
		return nil, err
	}
	return g, nil
}

// SetRoutes validates routes and swaps them in as the new route table.
func (g *Gateway) SetRoutes(routes []Route) error {
	t := &table{routes: make(map[string]*route, len(routes))}
	for _, r := range routes {
		if r.Model == "" || r.Pool == nil {
			return fmt.Errorf("gateway: route %q: model name and pool are required", r.Model)
		}
		if _, dup := t.routes[r.Model]; dup {
			return fmt.Errorf("gateway: model %q is routed twice", r.Model)
		}
		if r.Timeout <= 0 {
			r.Timeout = 60 * time.Second
		}
		t.routes[r.Model] = &route{
			Route:       r,
			gatewayREST: g.metrics.duration.WithLabelValues(r.Model, "rest"),
			gatewayGRPC: g.metrics.duration.WithLabelValues(r.Model, "grpc"),
			upstream:    g.metrics.upstreamDuration.WithLabelValues(r.Model),

			restRequests:     newCodeCounters(g.metrics.requests, r.Model, "rest"),
			grpcRequests:     newCodeCounters(g.metrics.requests, r.Model, "grpc"),
			upstreamRequests: newCodeCounters(g.metrics.upstreamRequests, r.Model),
		}
		t.names = append(t.names, r.Model)
	}
	sort.Strings(t.names)
	g.table.Store(t)
	return nil
}

// lookup returns the route of model, or a not-found error listing the
// models served. name may alias a request buffer: the map lookup with a
// string conversion does not allocate.
func (g *Gateway) lookup(name []byte) (*route, error) {
	t := g.table.Load()
	if r, ok := t.routes[string(name)]; ok {
		return r, nil
	}
	return nil, oip.Errorf(oip.KindNotFound, "model %q not found; served models: %s", name, strings.Join(t.names, ", "))
}

// Ready reports whether every routed model is serving as meant (see
// Route.Serving). A model meant to have no replica (scaled to zero, or
// failed) does not hold the gateway back: its requests get their own
// answer, and taking the whole gateway out of rotation for it would fail
// every other model too.
func (g *Gateway) Ready() bool {
	for _, r := range g.table.Load().routes {
		if r.Serving != nil {
			if !r.Serving() {
				return false
			}
			continue
		}
		if len(r.Pool.Replicas()) > 0 && !r.Pool.Ready() {
			return false
		}
	}
	return true
}

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
		Handler:                       g.HandleREST,
		Name:                          "infergate",
		MaxRequestBodySize:            g.opts.MaxBodyBytes,
		ReadTimeout:                   g.opts.ReadTimeout,
		WriteTimeout:                  g.opts.WriteTimeout,
		IdleTimeout:                   g.opts.IdleTimeout,
		Concurrency:                   g.opts.MaxConns,
		DisableHeaderNamesNormalizing: true,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		CloseOnShutdown:               true,
		ErrorHandler:                  g.restErrorHandler,
		Logger:                        fasthttpLogger{g.opts.Logger},
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
	g.metrics.requests.WithLabelValues("", "rest", statusLabel(ctx.Response.StatusCode())).Inc()
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
