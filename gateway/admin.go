package gateway

import (
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
