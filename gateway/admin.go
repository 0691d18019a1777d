package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infergate/infergate/gateway/netlimit"
)

// AdminOptions configures the admin handler.
type AdminOptions struct {
	// Gatherer is scraped by /metrics. Required.
	Gatherer prometheus.Gatherer
	// PprofFromAnywhere serves /debug/pprof to any client; by default only
	// loopback clients get it, since profiles expose the process's insides.
	PprofFromAnywhere bool
	// Ready, when set, answers /readyz.
	Ready func() bool
}

// AdminHandler returns the handler of the admin port: /metrics,
// /debug/pprof/ and /healthz, /readyz.
func AdminHandler(opts AdminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready != nil && !opts.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	pp := http.NewServeMux()
	pp.HandleFunc("/debug/pprof/", pprof.Index)
	pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
	pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !opts.PprofFromAnywhere && !IsLoopback(r.RemoteAddr) {
			http.Error(w, "pprof is served to loopback clients only", http.StatusForbidden)
			return
		}
		pp.ServeHTTP(w, r)
	}))
	return mux
}

// IsLoopback reports whether an http.Request's RemoteAddr is a loopback
// address (127.0.0.0/8, ::1).
func IsLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AdminServerOptions configures ServeAdmin. Zero fields take the
// documented defaults.
type AdminServerOptions struct {
	// Handler answers the admin port's requests. Required.
	Handler http.Handler
	// MaxConns bounds the open connections (default 256: scrapers, the
	// CLI and the dashboard need few).
	MaxConns int
	// HeaderTimeout bounds the wait for a request's headers, from the
	// connection's opening or, on a kept-alive connection, from the
	// request's first bytes (default 10s).
	HeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection idle that long (default
	// 75s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (default 16 KiB).
	MaxHeaderBytes int
	// DrainTimeout bounds the drain at shutdown (default 30s): once it is
	// over, the connections still open are closed.
	DrainTimeout time.Duration
	// TLS, when set, serves the port over TLS (ALPN http/1.1).
	TLS *tls.Config
	// Registerer receives the listener's metrics (default: none kept).
	Registerer prometheus.Registerer
	// Logger receives the server's errors (default slog.Default()).
	Logger *slog.Logger
}

// ServeAdmin serves opts.Handler on ln, capped and timed as AdminServerOptions
// say, until ctx is done; then it drains within DrainTimeout and returns
// nil, or an error if the server fails. It closes ln.
func ServeAdmin(ctx context.Context, ln net.Listener, opts AdminServerOptions) error {
	if opts.Handler == nil {
		return errors.New("gateway: admin server: a handler is required")
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 256
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 75 * time.Second
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 16 << 10
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
	lm, err := netlimit.NewMetrics(opts.Registerer)
	if err != nil {
		return fmt.Errorf("gateway: admin server: metrics: %w", err)
	}
	// A connection holds its place under the cap only once a request of
	// it reached the handler: a flood of half-sent requests cannot lock an
	// operator out for the header timeout of each.
	l, err := netlimit.New(ln, netlimit.Options{MaxConns: opts.MaxConns, Name: "admin", Metrics: lm, Logger: opts.Logger, UntilServed: true})
	if err != nil {
		return fmt.Errorf("gateway: admin listener: %w", err)
	}
	handler := opts.Handler
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, ok := r.Context().Value(adminConnKey{}).(net.Conn); ok {
				netlimit.MarkServed(c)
			}
			handler.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, adminConnKey{}, c)
		},
		ReadHeaderTimeout: opts.HeaderTimeout,
		// No ReadTimeout: net/http cancels a request's context when it
		// passes, which would cut /debug/pprof/profile?seconds=N short.
		// The admin port's bodies are small (apply), and its cap bounds
		// what slow ones can hold.
		IdleTimeout:    opts.IdleTimeout,
		MaxHeaderBytes: opts.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	serve := srv.Serve
	if opts.TLS != nil {
		serve = func(ln net.Listener) error { return srv.Serve(tls.NewListener(ln, opts.TLS)) }
	}
	return serveFronts(ctx, opts.DrainTimeout, []front{{
		name:  "admin",
		ln:    l,
		serve: serve,
		drain: func(ctx context.Context) bool {
			_ = srv.Shutdown(ctx)
			return ctx.Err() == nil
		},
		stop: func() { _ = srv.Close() },
	}})
}

// adminConnKey keys the admin request's connection in its context, so that
// the handler can tell the listener a request of it was served.
type adminConnKey struct{}
