package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/config"
	samples "github.com/infergate/infergate/examples/models"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/supervisor"
)

type serveFlags struct {
	config, dataDir               string
	restAddr, grpcAddr, adminAddr string
	maxBody                       int
	drain                         time.Duration
	pprofAnywhere                 bool
	logs                          logFlags
}

// runServe runs `infergate serve` (withRuntimes: models without endpoints
// get local runtime processes, the built-in model server or the model's
// infergate.io/command, run by a supervisor per model) and `infergate
// gateway` (every model must name its runtimes' URLs).
func runServe(args []string, stderr io.Writer, withRuntimes bool) error {
	name := "serve"
	if !withRuntimes {
		name = "gateway"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	fs.StringVar(&f.config, "config", "", "InferenceService YAML file or directory (default: the built-in sample models)")
	fs.StringVar(&f.dataDir, "data-dir", "data", "directory for runtime logs and extracted sample models")
	fs.StringVar(&f.restAddr, "rest-addr", ":8080", "OIP REST listen address")
	fs.StringVar(&f.grpcAddr, "grpc-addr", ":8081", "OIP gRPC listen address")
	fs.StringVar(&f.adminAddr, "admin-addr", ":8090", "admin listen address: /metrics, /debug/pprof (loopback clients only)")
	fs.IntVar(&f.maxBody, "max-body-bytes", 64<<20, "largest REST body or gRPC message accepted")
	fs.DurationVar(&f.drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.BoolVar(&f.pprofAnywhere, "pprof-anywhere", false, "serve /debug/pprof to non-loopback clients too")
	f.logs.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	log, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	slog.SetDefault(log)

	var models []config.Model
	switch {
	case f.config != "":
		models, err = config.LoadPath(f.config)
	case !withRuntimes:
		err = errors.New("gateway: -config is required (models with infergate.io/endpoints)")
	default:
		models, err = sampleModels(f.dataDir)
	}
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Listen first, so that a busy port fails before any runtime starts.
	restLn, err := net.Listen("tcp", f.restAddr)
	if err != nil {
		return fmt.Errorf("REST listener: %w", err)
	}
	grpcLn, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		restLn.Close()
		return fmt.Errorf("gRPC listener: %w", err)
	}
	adminLn, err := net.Listen("tcp", f.adminAddr)
	if err != nil {
		restLn.Close()
		grpcLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The activator holds requests for supervised models with no ready
	// replica and pokes the autoscaler, which is created once the
	// supervisors exist; poke forwards to it.
	var scaler *autoscaler.Autoscaler
	act, err := activator.New(activator.Options{
		Poke:       func(model string) { scaler.Poke(model) },
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	rt := &localRuntimes{log: log, dataDir: f.dataDir, act: act}
	routes, probed, sups, err := rt.routes(models, withRuntimes)
	if err != nil {
		restLn.Close()
		grpcLn.Close()
		adminLn.Close()
		return err
	}
	// Replicas run under their own context, ended only once the gateway
	// has drained, so that requests in flight finish on them.
	stopRuntimes := startSupervisors(sups)
	defer stopRuntimes()

	scaler, err = newAutoscaler(models, sups, act, reg, log)
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Options{
		Routes:       routes,
		MaxBodyBytes: f.maxBody,
		DrainTimeout: f.drain,
		Registerer:   reg,
		Logger:       log,
		Version:      version,
	})
	if err != nil {
		return err
	}
	// Batchers run until the gateway has drained, like the runtimes.
	batchCtx, stopBatchers := context.WithCancel(context.Background())
	defer stopBatchers()
	batchers, err := startBatchers(batchCtx, gw, routes, models, reg, log)
	if err != nil {
		return err
	}
	admin := &http.Server{
		Handler:           adminMux(gateway.AdminHandler(gateway.AdminOptions{Gatherer: reg, PprofFromAnywhere: f.pprofAnywhere, Ready: gw.Ready}), modelsHandler(sups, scaler, modelNames(models))),
		ReadHeaderTimeout: 10 * time.Second,
	}

	log.Info("infergate listening", "rest", restLn.Addr().String(), "grpc", grpcLn.Addr().String(), "admin", adminLn.Addr().String(), "models", len(routes))
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return scaler.Run(gctx) })
	for _, m := range models {
		if sup := sups.Get(m.Name); sup != nil {
			eg.Go(func() error { watchCapacity(gctx, sup, act); return nil })
		}
	}
	for _, p := range probed {
		eg.Go(func() error { return p.Run(gctx) })
	}
	eg.Go(func() error { return gw.Serve(gctx, restLn, grpcLn) })
	eg.Go(func() error {
		if err := admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	eg.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return admin.Shutdown(sctx)
	})
	err = eg.Wait()
	stopBatchers()
	batchers.Wait()
	stopRuntimes()
	log.Info("infergate stopped")
	return err
}

// startBatchers creates a batcher for each model whose InferenceService
// sets spec.predictor.batcher, swaps the routes to use them, and runs them
// until ctx ends; wait on the returned group after cancelling ctx.
func startBatchers(ctx context.Context, gw *gateway.Gateway, routes []gateway.Route, models []config.Model, reg prometheus.Registerer, log *slog.Logger) (*sync.WaitGroup, error) {
	var wg sync.WaitGroup
	batched := false
	for i, m := range models {
		if m.Batcher == nil {
			continue
		}
		pool := routes[i].Pool
		dispatch := gw.Dispatcher(m.Name, pool)
		cfg := m.Batcher
		callTimeout := cfg.Timeout
		inFlight := gateway.ReadyReplicas(pool)
		if n := cfg.MaxBatchesInFlight; n > 0 {
			inFlight = func() int { return n }
		}
		preferred := make([]int64, len(cfg.PreferredBatchSizes))
		for j, p := range cfg.PreferredBatchSizes {
			preferred[j] = int64(p)
		}
		action := batcher.TimeoutReject
		if cfg.QueuePolicy.TimeoutAction == config.TimeoutDelay {
			action = batcher.TimeoutDelay
		}
		oversize := batcher.OversizeSendAlone
		if cfg.Oversize == config.OversizeReject {
			oversize = batcher.OversizeReject
		}
		b, err := batcher.New(batcher.Options{
			Model:               m.Name,
			MaxBatchSize:        int64(cfg.MaxBatchSize),
			PreferredBatchSizes: preferred,
			MaxQueueDelay:       cfg.MaxLatency,
			MaxQueueSize:        cfg.MaxQueueSize,
			PriorityLevels:      cfg.PriorityLevels,
			DefaultPriority:     cfg.DefaultPriority,
			DefaultQueuePolicy: batcher.QueuePolicy{
				TimeoutAction:        action,
				DefaultTimeout:       cfg.QueuePolicy.DefaultTimeout,
				AllowTimeoutOverride: cfg.QueuePolicy.AllowTimeoutOverride,
			},
			PreserveOrdering:   cfg.PreserveOrdering,
			MaxBatchesInFlight: inFlight,
			OversizePolicy:     oversize,
			Dispatch: func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
				ctx, cancel := context.WithTimeout(ctx, callTimeout)
				defer cancel()
				return dispatch(ctx, req)
			},
			Registerer: reg,
			Logger:     log,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: batcher: %w", m.Source, err)
		}
		routes[i].Batcher = b
		batched = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.Run(ctx) // returns nil once ctx ends, answering what is queued
		}()
	}
	if batched {
		if err := gw.SetRoutes(routes); err != nil {
			return nil, err
		}
	}
	return &wg, nil
}

// adminMux adds the control API (GET /api/v1/models) to the gateway's
// admin handler.
func adminMux(base, models http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", base)
	mux.Handle("GET /api/v1/models", models)
	return mux
}

func modelNames(models []config.Model) []string {
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.Name
	}
	return names
}

// newAutoscaler builds the autoscaler for the supervised models: KPA
// settings from each InferenceService (min/max replicas, scale target and
// metric, containerConcurrency, autoscaling.knative.dev annotations),
// replica counts set through the supervisors, load read from the
// activator.
func newAutoscaler(models []config.Model, sups *supervisor.Set, act *activator.Activator, reg prometheus.Registerer, log *slog.Logger) (*autoscaler.Autoscaler, error) {
	settings := make(map[string]autoscaler.Settings)
	for _, m := range models {
		if sups.Get(m.Name) == nil {
			continue
		}
		s := autoscaler.DefaultSettings()
		s.MinReplicas, s.MaxReplicas = m.MinReplicas, m.MaxReplicas
		// minReplicas 0 starts nothing until the first request (Knative starts
		// one and waits out the grace period); an annotation can say otherwise.
		s.InitialScale = m.MinReplicas
		if m.ScaleMetric == config.MetricRPS {
			s.Metric = autoscaler.MetricRPS
		}
		if m.ScaleTarget > 0 {
			s.Target = float64(m.ScaleTarget)
		}
		s.ContainerConcurrency = int(m.ContainerConcurrency)
		s, err := autoscaler.SettingsFromAnnotations(s, m.Annotations)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Source, err)
		}
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Source, err)
		}
		settings[m.Name] = s
	}
	return autoscaler.New(autoscaler.Options{
		Scaler:   sups,
		Observer: act,
		Ready: autoscaler.ReadyFunc(func(model string) int {
			if s := sups.Get(model); s != nil {
				return s.Status().Ready
			}
			return 0
		}),
		Models:     settings,
		Registerer: reg,
		Logger:     log,
	})
}

// watchCapacity tells the activator how many of a supervised model's
// replicas are ready, and when a replica died before any was ready or the
// model failed, each time the supervisor signals a change, until ctx ends.
func watchCapacity(ctx context.Context, sup *supervisor.Supervisor, act *activator.Activator) {
	ready, failed, crashed := -1, false, false
	for {
		st := sup.Status()
		if st.Ready != ready {
			ready = st.Ready
			act.SetCapacity(st.Model, ready)
		}
		backoff := inBackoff(st)
		switch {
		case st.Failed && !failed:
			act.Fail(st.Model, errors.New(st.Reason))
		case backoff && !crashed && st.Ready == 0:
			// A replica died before any was ready: requests held for it
			// fail now with the reason, not at their deadline. The
			// supervisor restarts it after its backoff.
			act.Fail(st.Model, errors.New(lastExit(st)))
		}
		failed, crashed = st.Failed, backoff
		select {
		case <-ctx.Done():
			return
		case <-sup.Changed():
		}
	}
}

// inBackoff reports whether a replica is waiting to restart after an exit.
func inBackoff(st supervisor.Status) bool {
	for _, r := range st.Replicas {
		if r.State == supervisor.StateBackoff {
			return true
		}
	}
	return false
}

// lastExit is how the most recently started replica's process last ended.
func lastExit(st supervisor.Status) string {
	var last supervisor.ReplicaStatus
	for _, r := range st.Replicas {
		if r.LastExit != "" && !r.Started.Before(last.Started) {
			last = r
		}
	}
	if last.LastExit == "" {
		return "replica exited before it was ready"
	}
	return "replica exited before it was ready: " + last.LastExit
}

// startSupervisors runs the supervisors until the returned function is
// called; it stops their replicas and waits for them, once.
func startSupervisors(sups *supervisor.Set) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sups.Run(ctx) // Run returns nil, once ctx is done
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

// sampleModels writes the embedded sample models under dataDir/models and
// declares them, each served by one supervised built-in model server.
func sampleModels(dataDir string) ([]config.Model, error) {
	root := filepath.Join(dataDir, "models")
	err := fs.WalkDir(samples.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(root, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := samples.FS.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("writing sample models to %s: %w", root, err)
	}
	var models []config.Model
	for _, name := range samples.Names {
		models = append(models, config.Model{
			Name:        name,
			Source:      "built-in sample",
			Format:      "onnx",
			Path:        filepath.Join(root, name),
			Protocol:    config.ProtocolREST,
			MinReplicas: 1,
			Timeout:     config.DefaultTimeout,
		})
	}
	return models, nil
}

// localRuntimes builds each model's replica pool: over the runtimes at the
// model's endpoints, or over local processes run by a supervisor.
type localRuntimes struct {
	log     *slog.Logger
	dataDir string
	act     *activator.Activator
}

// routes builds a runtime pool and a gateway route per model. It returns
// the pools over endpoints, which the caller probes with Pool.Run, and the
// supervisors of the others, each asked for the model's minReplicas and
// the only prober of its pool (see package supervisor). It starts nothing.
func (l *localRuntimes) routes(models []config.Model, withRuntimes bool) ([]gateway.Route, []*runtimes.Pool, *supervisor.Set, error) {
	var (
		routes []gateway.Route
		probed []*runtimes.Pool
		sups   []*supervisor.Supervisor
	)
	for _, m := range models {
		clients, err := endpointClients(m)
		if err != nil {
			return nil, nil, nil, err
		}
		if len(clients) == 0 && !withRuntimes {
			return nil, nil, nil, fmt.Errorf("%s: model %q names no runtime URL (annotation infergate.io/endpoints); `infergate gateway` starts no runtime, use `infergate serve`", m.Source, m.Name)
		}
		pool, err := runtimes.NewPool(runtimes.PoolOptions{Model: m.Name, Logger: l.log}, clients)
		if err != nil {
			return nil, nil, nil, err
		}
		routes = append(routes, gateway.Route{Model: m.Name, Pool: pool, Timeout: m.Timeout})
		if len(clients) > 0 {
			probed = append(probed, pool)
			continue
		}
		sup, err := l.supervisor(m, pool)
		if err != nil {
			return nil, nil, nil, err
		}
		sups = append(sups, sup)
		routes[len(routes)-1].Activator = l.act
		// Each replica takes at most containerConcurrency requests at
		// once (0: no limit); the rest wait in the activator's queue.
		l.act.SetContainerConcurrency(m.Name, int(m.ContainerConcurrency))
		// Ready once a wanted replica is ready, or none is wanted, or the
		// model failed: not before its first replica is up.
		routes[len(routes)-1].Serving = func() bool {
			st := sup.Status()
			return st.Desired == 0 || st.Failed || st.Ready > 0
		}
	}
	set, err := supervisor.NewSet(sups...)
	if err != nil {
		return nil, nil, nil, err
	}
	return routes, probed, set, nil
}

// supervisor returns the supervisor of a model infergate runs itself,
// asked for the model's minReplicas.
func (l *localRuntimes) supervisor(m config.Model, pool *runtimes.Pool) (*supervisor.Supervisor, error) {
	proto := runtimes.REST
	if m.Protocol == config.ProtocolGRPC {
		proto = runtimes.GRPC
	}
	var env []string
	if ms := m.Spec.Spec.Predictor.Model; ms != nil {
		for _, e := range ms.Env {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	sup, err := supervisor.New(supervisor.Options{
		Model:       m.Name,
		ModelPath:   m.Path,
		Command:     m.Command,
		Env:         env,
		Protocol:    proto,
		Pool:        pool,
		DataDir:     l.dataDir,
		MaxReplicas: m.MaxReplicas,
		Logger:      l.log,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Source, err)
	}
	if err := sup.SetReplicas(context.Background(), m.MinReplicas); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Source, err)
	}
	return sup, nil
}

// endpointClients returns clients for the runtimes at m's endpoints, none
// when it names none.
func endpointClients(m config.Model) ([]runtimes.Client, error) {
	var clients []runtimes.Client
	for _, e := range m.Endpoints {
		var (
			c   runtimes.Client
			err error
		)
		switch {
		case strings.HasPrefix(e.URL, "https://"):
			err = fmt.Errorf("%s: model %q: endpoint %s: TLS to runtimes is not supported yet; use http:// or grpc:// on a trusted network", m.Source, m.Name, e.URL)
		case e.Protocol == config.ProtocolGRPC:
			c, err = runtimes.NewGRPCClient(runtimes.GRPCOptions{Addr: e.Address})
		case e.Protocol == config.ProtocolKServeV1:
			c, err = runtimes.NewKServeV1Client(runtimes.KServeV1Options{Addr: e.Address})
		default:
			c, err = runtimes.NewRESTClient(runtimes.RESTOptions{Addr: e.Address, Pipeline: e.Pipeline})
		}
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
	}
	return clients, nil
}
