package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/autoscaler/activator"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/controlplane/tenants"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/gateway/payloadlog"
)

// DefaultRolloutInterval is how often, by default, the Server judges the
// running rollouts: a failing canary is rolled back soon after it has a
// step's requests.
const DefaultRolloutInterval = 250 * time.Millisecond

// Options configure a Server.
type Options struct {
	// Models are the declarations served from the start: a config's, or
	// the built-in samples. Serve applies them whole (with prune) before
	// it serves, and fails if they are wrong.
	Models []config.Model
	// LocalRuntimes runs the models that name no endpoint as local
	// processes (`infergate serve`); without it every model must name its
	// runtimes' URLs (`infergate gateway`). See ManagerOptions.
	LocalRuntimes bool
	// RuntimeTLS verifies the runtimes at https:// and grpcs:// endpoints;
	// see ManagerOptions.
	RuntimeTLS *tls.Config
	// DataDir holds the local runtimes' logs (default DefaultDataDir).
	DataDir string
	// Gateway configures the REST and gRPC front doors; its Routes must be
	// empty (the Reconciler makes them), and its Registerer and Logger are
	// the Server's. Its DrainTimeout also bounds the admin port's drain
	// and how long a retired revision's requests may take.
	Gateway gateway.Options
	// AdminMaxConns bounds the admin port's open connections (default:
	// gateway.AdminServerOptions's). The admin port takes its other
	// limits from Gateway.
	AdminMaxConns int
	// PprofFromAnywhere serves /debug/pprof to non-loopback clients too.
	PprofFromAnywhere bool
	// ChangesFromAnywhere accepts apply and rollout actions on the admin
	// API from non-loopback clients too (see controlplane.APIOptions).
	// Without authentication it needs ExposeUnauthenticated as well.
	ChangesFromAnywhere bool
	// Auth, when set, authenticates the front doors' model requests (it
	// is also Gateway.Auth) and the admin port's API (see
	// controlplane.AdminAccess). nil: nothing is authenticated, and the
	// ports must listen on loopback (see ExposeUnauthenticated).
	Auth *auth.Authenticator
	// Tenants, when set, is where the tenants, keys and grants live:
	// Serve loads them before it serves and follows their changes into
	// Auth and the gateway's quotas. Required with Auth.
	Tenants *tenants.Store
	// SystemKeys are keys of infergate's own, added to the tenants'
	// (each with its tenant and grant) and kept in memory only: the
	// pipeline steps' (PipelineTenant) and the local user's
	// (LocalTenant), whose token the CLI reads from the data directory.
	// With them and no Auth, the admin API still authenticates the
	// changes that would run a program (infergate.io/command, pipeline
	// runs): they need a key granted command, so that a local process
	// that cannot read the data directory (another user's, a server-side
	// request forgery) cannot run one.
	SystemKeys []SystemKey
	// MetricsNeedKey makes the admin port's /metrics answer only keys
	// granted metrics (with Auth).
	MetricsNeedKey bool
	// AdminTLS, when set, serves the admin port over TLS.
	AdminTLS *tls.Config
	// Certificates are reloaded while Serve runs (their Run methods:
	// internal/tlsconf's server and client configurations).
	Certificates []interface{ Run(context.Context) error }
	// ExposeUnauthenticated lets the ports listen beyond loopback with no
	// authentication configured (FlagExposeUnauthenticated); without it
	// Serve refuses such listeners.
	ExposeUnauthenticated bool
	// ConfigPath, when set, is the config Models came from: Serve watches
	// it and applies its changes (see controlplane.WatchConfig).
	ConfigPath string
	// ConfigFingerprint is controlplane.ConfigFingerprint(ConfigPath)
	// taken before Models were read from it.
	ConfigFingerprint string
	// Reload re-reads ConfigPath at once when it receives (SIGHUP); nil:
	// never.
	Reload <-chan os.Signal
	// Store keeps the desired state (revisions, traffic, rollouts and
	// their decisions) across restarts: Serve loads it before it applies
	// Models. nil: the state lives in memory only.
	Store controlplane.Store
	// ModelRegistry resolves registry:// storageUris, and Serve keeps the
	// deployments that name an alias on the alias's version. nil: such
	// declarations are refused.
	ModelRegistry controlplane.ModelRegistry
	// AdminAPI are more handlers of the admin port's API, by ServeMux
	// pattern (see controlplane.APIOptions.Extra).
	AdminAPI map[string]http.Handler
	// RolloutInterval is how often rollouts are judged (default
	// DefaultRolloutInterval).
	RolloutInterval time.Duration
	// Registry receives every metric and is what the admin port's
	// /metrics serves (default: a new registry).
	Registry *prometheus.Registry
	// Logger receives the process's logs (default slog.Default()).
	Logger *slog.Logger
}

// authenticated reports whether requests are authenticated.
func (o *Options) authenticated() bool { return o.Auth != nil }

// PayloadLogDir is the directory under the data directory that file
// sinks of payload logs are kept in (infergate.io/payload-log:
// "file:iris.jsonl" is DATADIR/payload-logs/iris.jsonl).
const PayloadLogDir = "payload-logs"

// The tenants of Options.SystemKeys.
const (
	PipelineTenant = "infergate-pipelines"
	LocalTenant    = "infergate-local"
)

// SystemKey is a key of infergate's own, granted Actions (global ones).
type SystemKey struct {
	Key     auth.Key
	Actions auth.Action
}

// withSystemKeys adds the system keys, their tenants (marked System) and
// grants to s, in place of anything of s under those tenants' names
// (which the store refuses: tenants.ReservedPrefix).
func withSystemKeys(s auth.Snapshot, keys []SystemKey) auth.Snapshot {
	system := make(map[string]bool, len(keys))
	for _, k := range keys {
		system[k.Key.Tenant] = true
	}
	s.Tenants = slices.DeleteFunc(slices.Clone(s.Tenants), func(t auth.Tenant) bool { return system[t.Name] })
	s.Keys = slices.DeleteFunc(slices.Clone(s.Keys), func(k auth.Key) bool { return system[k.Tenant] })
	s.Grants = slices.DeleteFunc(slices.Clone(s.Grants), func(g auth.Grant) bool { return system[g.Tenant] })
	for i, k := range keys {
		s.Tenants = append(s.Tenants, auth.Tenant{Name: k.Key.Tenant, System: true})
		s.Keys = append(s.Keys, k.Key)
		s.Grants = append(s.Grants, auth.Grant{ID: -1 - int64(i), Tenant: k.Key.Tenant, Actions: k.Actions})
	}
	return s
}

// Server is the assembly of `infergate serve` and `infergate gateway`: the
// gateway's front doors, the admin port with the control API, the
// deployed state with its rollouts, and the revisions' runtimes. New
// builds it; Serve runs it once.
type Server struct {
	opts       Options
	log        *slog.Logger
	gw         *gateway.Gateway
	act        *activator.Activator
	scaler     *autoscaler.Autoscaler
	dep        *controlplane.Deployments
	manager    *Manager
	reconciler *Reconciler
	payloads   *payloadlog.Logger
	// adminAuth authenticates the admin API: Options.Auth, or without
	// it one that knows the system keys (see Options.SystemKeys).
	adminAuth *auth.Authenticator
	admin     gateway.AdminServerOptions
}

// New builds a Server from opts and registers its metrics; it starts no
// goroutine and no runtime.
func New(opts Options) (*Server, error) {
	if len(opts.Gateway.Routes) > 0 {
		return nil, errors.New("serving: Options.Gateway.Routes must be empty: routes come from the deployed state")
	}
	if opts.ChangesFromAnywhere && !opts.ExposeUnauthenticated && !opts.authenticated() {
		return nil, fmt.Errorf("serving: accepting changes from any client with no authentication configured lets anyone who reaches the admin port run programs here (infergate.io/command); configure API keys or JWT, or pass %s as well", FlagExposeUnauthenticated)
	}
	if opts.Auth != nil && opts.Tenants == nil {
		return nil, errors.New("serving: Options.Auth needs Options.Tenants, where the keys live")
	}
	if opts.RolloutInterval < 0 {
		return nil, fmt.Errorf("serving: Options.RolloutInterval %v is negative", opts.RolloutInterval)
	}
	if opts.RolloutInterval == 0 {
		opts.RolloutInterval = DefaultRolloutInterval
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log, reg := opts.Logger, opts.Registry
	s := &Server{opts: opts, log: log}
	var err error
	// The activator holds requests for supervised revisions with no ready
	// replica and pokes the autoscaler, which is made after it (it reads
	// the activator's concurrency); poke forwards to it.
	if s.act, err = activator.New(activator.Options{
		Poke:       func(rev string) { s.scaler.Poke(rev) },
		Registerer: reg,
	}); err != nil {
		return nil, err
	}
	gwOpts := opts.Gateway
	gwOpts.Registerer, gwOpts.Logger = reg, log
	gwOpts.Auth = opts.Auth
	// Payload logs: nothing is logged until a model asks for it.
	plm, err := payloadlog.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("serving: payload-log metrics: %w", err)
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	if s.payloads, err = payloadlog.New(payloadlog.Options{Metrics: plm, FileRoot: filepath.Join(dataDir, PayloadLogDir)}); err != nil {
		return nil, err
	}
	gwOpts.Payloads = s.payloads
	if s.gw, err = gateway.New(gwOpts); err != nil {
		return nil, err
	}
	if s.dep, err = controlplane.New(controlplane.Options{Store: opts.Store}); err != nil {
		return nil, err
	}
	if s.manager, err = NewManager(ManagerOptions{
		Gateway:       s.gw,
		Activator:     s.act,
		Status:        s.dep,
		LocalRuntimes: opts.LocalRuntimes,
		RuntimeTLS:    opts.RuntimeTLS,
		DataDir:       opts.DataDir,
		DrainTimeout:  opts.Gateway.DrainTimeout,
		Registerer:    reg,
		Logger:        log,
	}); err != nil {
		return nil, err
	}
	if s.scaler, err = autoscaler.New(autoscaler.Options{
		Scaler:     s.manager,
		Observer:   s.act,
		Ready:      s.manager,
		Registerer: reg,
		Logger:     log,
	}); err != nil {
		return nil, err
	}
	if s.reconciler, err = NewReconciler(ReconcilerOptions{
		Deployments: s.dep,
		Manager:     s.manager,
		Gateway:     s.gw,
		Autoscaler:  s.scaler,
		Registry:    opts.ModelRegistry,
		Logger:      log,
	}); err != nil {
		return nil, err
	}
	if err := reg.Register(controlplane.NewCollector(s.dep)); err != nil {
		return nil, fmt.Errorf("serving: deployment metrics: %w", err)
	}
	api, err := controlplane.NewAPI(controlplane.APIOptions{
		Deployments:         s.dep,
		Applier:             s.reconciler,
		Syncer:              s.reconciler,
		Runtimes:            s.manager,
		Scaling:             s.scaler,
		Base:                gateway.AdminHandler(gateway.AdminOptions{Gatherer: reg, PprofFromAnywhere: opts.PprofFromAnywhere, Ready: s.gw.Ready}),
		ChangesFromAnywhere: opts.ChangesFromAnywhere,
		Extra:               opts.AdminAPI,
	})
	if err != nil {
		return nil, err
	}
	var admin http.Handler = api
	s.adminAuth = opts.Auth
	if s.adminAuth == nil && len(opts.SystemKeys) > 0 && opts.Tenants != nil {
		// Nothing is authenticated but what runs programs.
		if s.adminAuth, err = auth.New(auth.Options{Logger: log}); err != nil {
			return nil, err
		}
	}
	if s.adminAuth != nil {
		if admin, err = controlplane.AdminAccess(api, controlplane.AdminAccessOptions{
			Auth: s.adminAuth, MetricsNeedKey: opts.MetricsNeedKey, Anonymous: opts.Auth == nil,
		}); err != nil {
			return nil, err
		}
	}
	s.admin = gateway.AdminServerOptions{
		Handler:        admin,
		TLS:            opts.AdminTLS,
		MaxConns:       opts.AdminMaxConns,
		HeaderTimeout:  opts.Gateway.HeaderTimeout,
		IdleTimeout:    opts.Gateway.IdleTimeout,
		MaxHeaderBytes: opts.Gateway.MaxHeaderBytes,
		DrainTimeout:   opts.Gateway.DrainTimeout,
		Registerer:     reg,
		Logger:         log,
	}
	return s, nil
}

// updateAccess gives the gateway and the admin API the tenants, keys and
// grants of snap, and the system keys.
func (s *Server) updateAccess(snap auth.Snapshot) {
	snap = withSystemKeys(snap, s.opts.SystemKeys)
	if err := s.gw.UpdateAccess(snap); err != nil {
		s.log.Warn("tenants: some entries were left out", "err", err)
	}
	if s.adminAuth != nil && s.adminAuth != s.opts.Auth {
		_ = s.adminAuth.Update(snap) // the same report as above
	}
}

// Serve applies Options.Models, logs "infergate listening" with the
// listeners' addresses, and serves OIP REST on rest, gRPC on grpc and the
// admin port on admin while it runs the autoscaler, the reconciler, the
// rollout judge and the config watcher, until ctx ends or one of them
// fails. Then the front doors drain (Gateway.DrainTimeout), the
// revisions' runtimes stop, and Serve returns the first error, nil after
// a clean shutdown. All three listeners are required; Serve closes them.
// Call it once.
func (s *Server) Serve(ctx context.Context, rest, grpc, admin net.Listener) error {
	lns := []net.Listener{rest, grpc, admin}
	closeAll := func() {
		for _, ln := range lns {
			if ln != nil {
				ln.Close()
			}
		}
	}
	if rest == nil || grpc == nil || admin == nil {
		closeAll()
		return errors.New("serving: Serve needs the REST, gRPC and admin listeners")
	}
	if err := checkExposure(s.opts.authenticated(), s.opts.ExposeUnauthenticated,
		map[string]net.Addr{"REST": rest.Addr(), "gRPC": grpc.Addr(), "admin": admin.Addr()}); err != nil {
		closeAll()
		return err
	}
	// Revisions' runtimes and batchers run until the gateway has drained,
	// so that requests in flight finish on them.
	defer s.manager.Close()
	// The stored state first: the config's declarations then apply to it
	// as they would to the state before the restart.
	if err := s.dep.Load(ctx); err != nil {
		closeAll()
		return err
	}
	if _, err := s.reconciler.Apply(s.opts.Models, true); err != nil {
		closeAll()
		return err
	}
	// The keys before the first request: a key made before the start
	// works from the start.
	if s.opts.Tenants != nil {
		snap, _, err := s.opts.Tenants.Snapshot(ctx)
		if err != nil {
			closeAll()
			return err
		}
		s.updateAccess(snap)
	}
	s.log.Info("infergate listening", "rest", rest.Addr().String(), "grpc", grpc.Addr().String(), "admin", admin.Addr().String(), "models", len(s.opts.Models))
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return s.scaler.Run(gctx) })
	eg.Go(func() error { return s.reconciler.Run(gctx) })
	// Rollout decisions change the state, which the reconciler turns
	// into routes.
	eg.Go(func() error {
		return s.dep.Run(gctx, s.opts.RolloutInterval, s.gw.RevisionCounts, controlplane.LogDecision(s.log))
	})
	if s.opts.ConfigPath != "" {
		eg.Go(func() error {
			return controlplane.WatchConfig(gctx, controlplane.ConfigWatchOptions{
				Path:    s.opts.ConfigPath,
				Last:    s.opts.ConfigFingerprint,
				Applier: s.reconciler,
				Reload:  s.opts.Reload,
				Logger:  s.log,
			})
		})
	}
	if s.opts.ModelRegistry != nil {
		eg.Go(func() error { return s.opts.ModelRegistry.Follow(gctx, s.dep, s.reconciler) })
	}
	if s.opts.Tenants != nil {
		eg.Go(func() error {
			return s.opts.Tenants.Watch(gctx, 0, s.updateAccess)
		})
	}
	if s.opts.Auth != nil {
		eg.Go(func() error { return s.opts.Auth.Run(gctx) })
	}
	eg.Go(func() error { return s.payloads.Run(gctx) })
	for _, c := range s.opts.Certificates {
		eg.Go(func() error { return c.Run(gctx) })
	}
	eg.Go(func() error { return s.gw.Serve(gctx, rest, grpc) })
	eg.Go(func() error { return gateway.ServeAdmin(gctx, admin, s.admin) })
	err := eg.Wait()
	if t := s.opts.Gateway.Tracer; t != nil {
		// The spans of the last requests.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := t.Shutdown(sctx); serr != nil {
			s.log.Warn("tracing: spans not exported at shutdown", "err", serr)
		}
		cancel()
	}
	s.manager.Close() // before the last line, which says all has stopped
	s.log.Info("infergate stopped")
	return err
}
