package main

import (
	"context"
	"crypto/tls"
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
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/controlplane/tenants"
	samples "github.com/infergate/infergate/examples/models"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/gateway/netlimit"
	"github.com/infergate/infergate/gateway/tracing"
	"github.com/infergate/infergate/internal/tlsconf"
	"github.com/infergate/infergate/pipelines"
	"github.com/infergate/infergate/pipelines/pipelinesapi"
	"github.com/infergate/infergate/registry"
	"github.com/infergate/infergate/registry/registryapi"
	"github.com/infergate/infergate/serving"
)

type serveFlags struct {
	config, dataDir, store        string
	restAddr, grpcAddr, adminAddr string
	maxBody                       int
	drain                         time.Duration
	// Limits of the front doors and the process; see gateway.Options.
	maxConns, adminMaxConns                 int
	headerTimeout, idleTimeout, readTimeout time.Duration
	maxHeaderBytes                          int
	grpcServer                              string
	maxInFlightBytes, memLimit              int64
	gcPercent                               int
	pprofAnywhere                           bool
	changesAnywhere                         bool
	exposeUnauthenticated                   bool
	// Authentication and TLS.
	auth, metricsNeedKey               bool
	jwt                                auth.JWTOptions
	tlsCert, tlsKey, tlsClientCA       string
	runtimeCA, runtimeCert, runtimeKey string
	// Observability.
	traceEndpoint string
	traceRatio    float64
	logs          logFlags
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
	fs.StringVar(&f.dataDir, "data-dir", "data", "directory for the store (infergate.db), the registry's artifacts, runtime logs and extracted sample models")
	fs.StringVar(&f.store, "store", "", "where the control plane keeps the registry and the desired state: \"\" for <data-dir>/infergate.db (SQLite), sqlite:///PATH, or postgres://... (PostgreSQL, shared by several control planes)")
	fs.StringVar(&f.restAddr, "rest-addr", "", "OIP REST listen address (default 127.0.0.1:8080, or :8080 with authentication configured)")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "", "OIP gRPC listen address (default 127.0.0.1:8081, or :8081 with authentication configured)")
	fs.StringVar(&f.adminAddr, "admin-addr", "", "admin listen address: the control API, /metrics, /debug/pprof (loopback clients only) (default 127.0.0.1:8090, or :8090 with authentication configured)")
	fs.BoolVar(&f.exposeUnauthenticated, "insecure-listen-anywhere", false, "let the ports listen beyond loopback with no authentication configured: anyone who reaches them can call every model and read /metrics and the models' runtime logs")
	fs.IntVar(&f.maxBody, "max-body-bytes", 64<<20, "largest REST body or gRPC message accepted")
	fs.DurationVar(&f.drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long in-flight requests may take to finish; then those still waiting get 503/UNAVAILABLE and, a second later at most, every connection still open is closed")
	fs.IntVar(&f.maxConns, "max-conns", 0, "most open connections on each of the REST and gRPC ports; more wait in the listen backlog (0: a quarter of the open-file limit, at most 16384)")
	fs.IntVar(&f.adminMaxConns, "admin-max-conns", 256, "most open connections on the admin port")
	fs.DurationVar(&f.headerTimeout, "header-timeout", 10*time.Second, "how long a connection may take to send a request's headers (gRPC: its HTTP/2 preface); a silent connection is closed then")
	fs.DurationVar(&f.readTimeout, "read-timeout", 60*time.Second, "how long a request's body (gRPC: its message) may take to arrive after its headers; then 408 / DEADLINE_EXCEEDED")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 75*time.Second, "how long a kept-alive connection (gRPC: one with no call) may stay idle")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 16<<10, "largest request line and headers accepted (REST 431 past it)")
	fs.StringVar(&f.grpcServer, "grpc-server", gateway.GRPCServerInfergate, "the gRPC front door's server: infergate (its own HTTP/2 gRPC server) or grpc-go")
	fs.Int64Var(&f.maxInFlightBytes, "max-inflight-bytes", 0, "most request bytes held at once across all requests; past it a request waits briefly, then gets 503 (gRPC RESOURCE_EXHAUSTED) (0: 1 GiB, or -max-body-bytes if larger)")
	fs.IntVar(&f.gcPercent, "gc-percent", gateway.DefaultGCPercent, "the Go collector's target (GOGC), unless GOGC is set")
	fs.Int64Var(&f.memLimit, "memory-limit", 0, "Go soft memory limit in bytes, unless GOMEMLIMIT is set (0: 90% of the cgroup's memory limit if there is one, else none; -1: none)")
	fs.BoolVar(&f.pprofAnywhere, "pprof-anywhere", false, "serve /debug/pprof to non-loopback clients too")
	fs.BoolVar(&f.changesAnywhere, "api-changes-anywhere", false, "accept apply and rollout actions on the admin API from non-loopback clients too")
	fs.BoolVar(&f.auth, "auth", false, "require an API key or a JWT (Authorization: Bearer) on every model request and on the admin API; tenants, keys and grants are managed with `infergate tenants|keys`")
	fs.StringVar(&f.jwt.JWKS, "jwt-jwks", "", "accept JWT bearer tokens verified against this JWKS (an https:// URL or a file); implies -auth")
	fs.StringVar(&f.jwt.Issuer, "jwt-issuer", "", "the iss a JWT must carry (required with -jwt-jwks)")
	fs.StringVar(&f.jwt.Audience, "jwt-audience", "", "the aud a JWT must carry (required with -jwt-jwks)")
	fs.StringVar(&f.jwt.TenantClaim, "jwt-tenant-claim", "tenant", "the JWT claim naming the caller's tenant")
	fs.DurationVar(&f.jwt.Leeway, "jwt-leeway", time.Minute, "clock skew allowed on a JWT's exp and nbf")
	fs.BoolVar(&f.metricsNeedKey, "metrics-need-key", false, "with -auth, the admin port's /metrics answers only keys granted metrics")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve the REST, gRPC and admin ports over TLS with this certificate (PEM; reloaded when it changes)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the private key of -tls-cert (PEM)")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "require client certificates signed by these CAs (PEM) on the REST and gRPC ports: mutual TLS")
	fs.StringVar(&f.runtimeCA, "runtime-ca", "", "verify runtimes at https:// and grpcs:// endpoints with these CAs (PEM; default: the system's roots)")
	fs.StringVar(&f.runtimeCert, "runtime-cert", "", "client certificate shown to runtimes that require one (PEM)")
	fs.StringVar(&f.runtimeKey, "runtime-key", "", "the private key of -runtime-cert (PEM)")
	fs.StringVar(&f.traceEndpoint, "trace-endpoint", "", "export OpenTelemetry spans by OTLP/HTTP to this collector URL (/v1/traces when it has no path); off when empty")
	fs.Float64Var(&f.traceRatio, "trace-sample-ratio", 1, "share of new traces sampled (a caller's sampled flag is followed)")
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
	gcPercent, gcFrom := gateway.SetGCPercent(f.gcPercent)
	openFiles, _ := netlimit.FileLimit()
	log.Info("process limits", "open_files", openFiles, "memory_limit", memLimit, "memory_limit_from", memFrom,
		"gc_percent", gcPercent, "gc_percent_from", gcFrom)

	var (
		models []config.Model
		// The config's fingerprint before it is read: a change made while
		// infergate starts is applied by the watcher.
		configFP string
	)
	switch {
	case f.config != "":
		configFP = controlplane.ConfigFingerprint(f.config)
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
	// SIGHUP re-reads the config; without one it keeps its default action.
	var reload chan os.Signal
	if f.config != "" {
		reload = make(chan os.Signal, 1)
		signal.Notify(reload, syscall.SIGHUP)
		defer signal.Stop(reload)
	}

	// Without authentication the ports listen on loopback unless told
	// otherwise (serving refuses other addresses then).
	authenticated := f.auth || f.jwt.JWKS != ""
	f.restAddr = listenAddr(f.restAddr, 8080, authenticated)
	f.grpcAddr = listenAddr(f.grpcAddr, 8081, authenticated)
	f.adminAddr = listenAddr(f.adminAddr, 8090, authenticated)
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
	// Certificates, reloaded as they change.
	var (
		certs            []interface{ Run(context.Context) error }
		serverTLS        *tlsconf.ServerConfig
		runtimeTLS       *tls.Config
		restTLS, grpcTLS *tls.Config
		adminTLS         *tls.Config
	)
	if f.tlsCert != "" || f.tlsKey != "" || f.tlsClientCA != "" {
		if serverTLS, err = tlsconf.NewServerConfig(tlsconf.ServerOptions{CertFile: f.tlsCert, KeyFile: f.tlsKey, ClientCAFile: f.tlsClientCA, Logger: log}); err != nil {
			return err
		}
		certs = append(certs, serverTLS)
		registerTLSMetrics(reg, "server", serverTLS)
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "infergate_tls_certificate_expiry_timestamp_seconds",
			Help: "When the front doors' certificate in use expires (Unix time).",
		}, func() float64 { return float64(serverTLS.Certificate().NotAfter.Unix()) }))
		restTLS, grpcTLS = serverTLS.TLSConfigFor("http/1.1"), serverTLS.TLSConfigFor("h2")
		// The admin port asks for no client certificate: its callers (the
		// CLI, scrapers, pipeline steps) show keys.
		adminTLS = serverTLS.TLSConfigWithoutClientCerts("http/1.1")
	}
	if f.runtimeCA != "" || f.runtimeCert != "" || f.runtimeKey != "" {
		rt, err := tlsconf.NewClientConfig(tlsconf.ClientOptions{CAFile: f.runtimeCA, CertFile: f.runtimeCert, KeyFile: f.runtimeKey, Logger: log})
		if err != nil {
			return err
		}
		certs = append(certs, rt)
		registerTLSMetrics(reg, "runtime", rt)
		runtimeTLS = rt.TLSConfig()
	}
	tracer, err := tracing.New(tracing.Options{Endpoint: f.traceEndpoint, SampleRatio: f.traceRatio, ServiceVersion: version, Registerer: reg})
	if err != nil {
		return err
	}
	var authn *auth.Authenticator
	if authenticated {
		opts := auth.Options{Logger: log, Registerer: reg}
		if f.jwt.JWKS != "" {
			opts.JWT = &f.jwt
		}
		if authn, err = auth.New(opts); err != nil {
			return err
		}
	}
	// The store: the model registry, and the desired state that survives
	// restarts.
	modelReg, err := registry.Open(ctx, registry.Options{DataDir: f.dataDir, Store: f.store, Logger: log})
	if err != nil {
		return err
	}
	defer modelReg.Close()
	store, err := controlplane.NewRegistryStore(ctx, modelReg)
	if err != nil {
		return err
	}
	// Changes to the admin API: from loopback unless authenticated (then
	// grants decide) or told otherwise.
	guard := func(h http.HandlerFunc) http.HandlerFunc { return controlplane.Guard(f.changesAnywhere, h) }
	resolver := controlplane.NewRegistryResolver(modelReg, filepath.Join(f.dataDir, "deployed"), log)
	// The registry's API and the event log, on the admin port beside the
	// control API, behind the same change guard.
	regAPI, err := registryapi.New(modelReg, registryapi.Options{
		Guard: guard,
		// Event streams end at SIGTERM rather than hold the drain.
		Done:   ctx.Done(),
		Logger: log,
	})
	if err != nil {
		return err
	}
	adminAPI := make(map[string]http.Handler)
	for _, p := range regAPI.Patterns() {
		adminAPI[p] = regAPI
	}
	// Tenants, keys and grants, and their API.
	tenantStore, err := tenants.Open(ctx, modelReg, tenants.Options{Logger: log})
	if err != nil {
		return err
	}
	tenantAPI, err := tenants.NewHandler(tenantStore, tenants.HandlerOptions{Guard: guard, Logger: log})
	if err != nil {
		return err
	}
	for _, p := range tenantAPI.Patterns() {
		adminAPI[p] = tenantAPI
	}
	// The local user's key (in the data directory, for the CLI) and the
	// pipeline steps' key, made anew at each start.
	systemKeys, stepToken, err := serving.NewSystemKeys(f.dataDir)
	if err != nil {
		return err
	}
	stepEnv := append(os.Environ(), "INFERGATE_ADMIN="+adminURL(adminLn.Addr(), adminTLS != nil), envKey+"="+stepToken)
	// The pipeline engine: runs a killed control plane left are recovered
	// first.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Steps find this control plane's admin API in INFERGATE_ADMIN (the
	// built-in register and deploy steps call it).
	engine, err := pipelines.Open(ctx, pipelines.Options{
		Registry: modelReg, DataDir: f.dataDir, Infergate: self, Logger: log, Registerer: reg,
		Env: stepEnv,
	})
	if err != nil {
		return err
	}
	defer engine.Close()
	if n, err := engine.Recover(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Info("pipeline runs recovered", "runs", n)
	}
	runsAPI, err := pipelinesapi.New(pipelinesapi.Options{
		Engine: engine,
		Guard:  guard,
	})
	if err != nil {
		return err
	}
	adminAPI["/api/v1/runs"], adminAPI["/api/v1/runs/"] = runsAPI, runsAPI

	srv, err := serving.New(serving.Options{
		Models:         models,
		LocalRuntimes:  withRuntimes,
		RuntimeTLS:     runtimeTLS,
		Auth:           authn,
		Tenants:        tenantStore,
		SystemKeys:     systemKeys,
		MetricsNeedKey: f.metricsNeedKey,
		AdminTLS:       adminTLS,
		Certificates:   certs,
		DataDir:        f.dataDir,
		Gateway: gateway.Options{
			MaxBodyBytes:     f.maxBody,
			MaxConns:         f.maxConns,
			HeaderTimeout:    f.headerTimeout,
			ReadTimeout:      f.readTimeout,
			IdleTimeout:      f.idleTimeout,
			MaxHeaderBytes:   f.maxHeaderBytes,
			GRPCServer:       f.grpcServer,
			Tracer:           tracer,
			RESTTLS:          restTLS,
			GRPCTLS:          grpcTLS,
			MaxInFlightBytes: f.maxInFlightBytes,
			DrainTimeout:     f.drain,
			Version:          version,
		},
		AdminMaxConns:         f.adminMaxConns,
		PprofFromAnywhere:     f.pprofAnywhere,
		ChangesFromAnywhere:   f.changesAnywhere,
		ExposeUnauthenticated: f.exposeUnauthenticated,
		ConfigPath:            f.config,
		ConfigFingerprint:     configFP,
		Reload:                reload,
		Registry:              reg,
		Logger:                log,
		Store:                 store,
		ModelRegistry:         resolver,
		AdminAPI:              adminAPI,
	})
	if err != nil {
		return err
	}
	return srv.Serve(ctx, restLn, grpcLn, adminLn)
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

// listenAddr is the address a port listens on: addr, or when it is empty
// port on loopback, or on every interface when requests are
// authenticated.
func listenAddr(addr string, port int, authenticated bool) string {
	switch {
	case addr != "":
		return addr
	case authenticated:
		return ":" + strconv.Itoa(port)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// registerTLSMetrics counts the reloads of a set of TLS files, and the
// reloads that failed (the files in use then stay).
func registerTLSMetrics(reg prometheus.Registerer, files string, c interface {
	Reloads() uint64
	Failures() uint64
}) {
	labels := prometheus.Labels{"files": files}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "infergate_tls_reloads_total", Help: "TLS files reloaded after they changed on disk.", ConstLabels: labels},
			func() float64 { return float64(c.Reloads()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "infergate_tls_reload_failures_total", Help: "Changed TLS files that did not load (the ones in use stayed).", ConstLabels: labels},
			func() float64 { return float64(c.Failures()) }),
	)
}

// adminURL is the admin port's URL for a client on this machine: https
// when it speaks TLS.
func adminURL(addr net.Addr, tls bool) string {
	if tls {
		return "https://" + loopbackAddr(addr)
	}
	return loopbackAddr(addr)
}

// loopbackAddr is addr as a client on this machine dials it: an
// unspecified host (":8090") becomes 127.0.0.1.
func loopbackAddr(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	}
	return addr.String()
}
