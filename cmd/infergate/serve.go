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
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	samples "github.com/infergate/infergate/examples/models"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/gateway/netlimit"
	"github.com/infergate/infergate/runtimes"
)

type serveFlags struct {
	config, dataDir               string
	restAddr, grpcAddr, adminAddr string
	maxBody                       int
	drain                         time.Duration
	// Limits of the front doors and the process; see gateway.Options.
	maxConns, adminMaxConns                 int
	headerTimeout, idleTimeout, readTimeout time.Duration
	maxHeaderBytes                          int
	maxInFlightBytes, memLimit              int64
	pprofAnywhere                           bool
	changesAnywhere                         bool
	logs                                    logFlags
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
	fs.DurationVar(&f.drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests may take to finish; then those still waiting get 503/UNAVAILABLE and, a second later at most, every connection still open is closed")
	fs.IntVar(&f.maxConns, "max-conns", 0, "most open connections on each of the REST and gRPC ports; more wait in the listen backlog (0: a quarter of the open-file limit, at most 16384)")
	fs.IntVar(&f.adminMaxConns, "admin-max-conns", 256, "most open connections on the admin port")
	fs.DurationVar(&f.headerTimeout, "header-timeout", 10*time.Second, "how long a connection may take to send a request's headers (gRPC: its HTTP/2 preface); a silent connection is closed then")
	fs.DurationVar(&f.readTimeout, "read-timeout", 60*time.Second, "how long a request's body (gRPC: its message) may take to arrive after its headers; then 408 / DEADLINE_EXCEEDED")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 75*time.Second, "how long a kept-alive connection (gRPC: one with no call) may stay idle")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 16<<10, "largest request line and headers accepted (REST 431 past it)")
	fs.Int64Var(&f.maxInFlightBytes, "max-inflight-bytes", 0, "most request bytes held at once across all requests; past it a request waits briefly, then gets 503 (gRPC RESOURCE_EXHAUSTED) (0: 1 GiB, or -max-body-bytes if larger)")
	fs.Int64Var(&f.memLimit, "memory-limit", 0, "Go soft memory limit in bytes, unless GOMEMLIMIT is set (0: 90% of the cgroup's memory limit if there is one, else none; -1: none)")
	fs.BoolVar(&f.pprofAnywhere, "pprof-anywhere", false, "serve /debug/pprof to non-loopback clients too")
	fs.BoolVar(&f.changesAnywhere, "api-changes-anywhere", false, "accept apply and rollout actions on the admin API from non-loopback clients too")
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
	memLimit, memFrom := gateway.SetMemoryLimit(f.memLimit)
	openFiles, _ := netlimit.FileLimit()
	log.Info("process limits", "open_files", openFiles, "memory_limit", memLimit, "memory_limit_from", memFrom)

	var (
		models []config.Model
		// The config's fingerprint before it is read: a change made while
		// infergate starts is applied by the watcher.
		configFP string
	)
	switch {
	case f.config != "":
		configFP = fingerprint(f.config)
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
	// The servers close them when they stop; closing again on the way out
	// covers the returns before they start.
	restLn, err := net.Listen("tcp", f.restAddr)
	if err != nil {
		return fmt.Errorf("REST listener: %w", err)
	}
	defer restLn.Close()
	grpcLn, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	defer grpcLn.Close()
	adminLn, err := net.Listen("tcp", f.adminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	defer adminLn.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The activator holds requests for supervised revisions with no ready
	// replica and pokes the autoscaler, which is created after it; poke
	// forwards to it.
	var scaler *autoscaler.Autoscaler
	act, err := activator.New(activator.Options{
		Poke:       func(rev string) { scaler.Poke(rev) },
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Options{
		MaxBodyBytes:     f.maxBody,
		MaxConns:         f.maxConns,
		HeaderTimeout:    f.headerTimeout,
		ReadTimeout:      f.readTimeout,
		IdleTimeout:      f.idleTimeout,
		MaxHeaderBytes:   f.maxHeaderBytes,
		MaxInFlightBytes: f.maxInFlightBytes,
		DrainTimeout:     f.drain,
		Registerer:       reg,
		Logger:           log,
		Version:          version,
	})
	if err != nil {
		return err
	}
	// Revisions' runtimes and batchers run under their own context, ended
	// only once the gateway has drained, so that requests in flight finish
	// on them.
	runCtx, stopRuntimes := context.WithCancel(context.Background())
	rt := newRuntimeManager(runCtx, log, f.dataDir, withRuntimes, act, gw, reg)
	defer func() {
		stopRuntimes()
		rt.wait()
	}()
	scaler, err = autoscaler.New(autoscaler.Options{
		Scaler:     rt,
		Observer:   act,
		Ready:      autoscaler.ReadyFunc(rt.ready),
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	dep, err := controlplane.New(controlplane.Options{})
	if err != nil {
		return err
	}
	rec := &reconciler{dep: dep, rt: rt, gw: gw, scaler: scaler, drain: f.drain, log: log}
	reg.MustRegister(deploymentCollector{dep})
	if _, err := rec.apply(models, true); err != nil {
		return err
	}
	api := &controlAPI{changesFromAnywhere: f.changesAnywhere, rec: rec}
	admin := gateway.AdminServerOptions{
		Handler:        api.handler(gateway.AdminHandler(gateway.AdminOptions{Gatherer: reg, PprofFromAnywhere: f.pprofAnywhere, Ready: gw.Ready})),
		MaxConns:       f.adminMaxConns,
		HeaderTimeout:  f.headerTimeout,
		IdleTimeout:    f.idleTimeout,
		MaxHeaderBytes: f.maxHeaderBytes,
		DrainTimeout:   f.drain,
		Registerer:     reg,
		Logger:         log,
	}

	log.Info("infergate listening", "rest", restLn.Addr().String(), "grpc", grpcLn.Addr().String(), "admin", adminLn.Addr().String(), "models", len(models))
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return scaler.Run(gctx) })
	eg.Go(func() error { rec.run(gctx); return nil })
	// Rollouts are judged four times a second from the gateway's counts
	// (a failing canary is rolled back soon after it has a step's
	// requests); their decisions change the state, which rec.run turns
	// into routes.
	eg.Go(func() error { return dep.Run(gctx, 250*time.Millisecond, gw.RevisionCounts, logDecision(log)) })
	if f.config != "" {
		eg.Go(func() error { watchConfig(gctx, f.config, configFP, rec, log); return nil })
	}
	eg.Go(func() error { return gw.Serve(gctx, restLn, grpcLn) })
	eg.Go(func() error { return gateway.ServeAdmin(gctx, adminLn, admin) })
	err = eg.Wait()
	stopRuntimes()
	rt.wait()
	log.Info("infergate stopped")
	return err
}

// watchConfig re-reads the config file or directory when its fingerprint
// differs from last (looked at every second) and on SIGHUP, until ctx
// ends. A new state is
// applied whole or not at all: a bad document is logged with its file,
// field and reason, and the running routes stay.
func watchConfig(ctx context.Context, path, last string, rec *reconciler, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		forced := false
		select {
		case <-ctx.Done():
			return
		case <-hup:
			forced = true
		case <-t.C:
		}
		fp := fingerprint(path)
		if !forced && fp == last {
			continue
		}
		last = fp
		models, err := config.LoadPath(path)
		if err == nil {
			var ch controlplane.Changes
			if ch, err = rec.apply(models, true); err == nil {
				for _, c := range ch.Models {
					if c.Action != controlplane.ActionUnchanged {
						log.Info("config applied", "model", c.Model, "action", c.Action, "revision", c.Revision, "traffic", c.Traffic)
					}
				}
				continue
			}
		}
		log.Error("config not applied; the running routes stay", "path", path, "err", err)
	}
}

// fingerprint sums up the files config.LoadPath would read at path
// (names, sizes, modification times), so that a change shows without
// reading them.
func fingerprint(path string) string {
	var b strings.Builder
	files, _ := config.Files(path)
	for _, f := range append(files, path) {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
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
