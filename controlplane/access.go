package controlplane

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/registry"
)

// AdminAccessOptions configure AdminAccess.
type AdminAccessOptions struct {
	// Auth authenticates the admin port's callers. Required.
	Auth *auth.Authenticator
	// MetricsNeedKey makes /metrics answer only callers granted
	// auth.ActionMetrics; without it /metrics is open (to whoever reaches
	// the port).
	MetricsNeedKey bool
	// Anonymous lets requests without a credential through as the local
	// user's (when the gateway does not authenticate: the change guard's
	// loopback rule applies to them), except those that would run a
	// program of the caller's choosing (auth.ActionCommand): those need a
	// key granted command even then, such as the local key the CLI reads
	// from the data directory, which a server-side request forgery or
	// another user's process cannot read.
	Anonymous bool
}

// commandsNeedKeyKey marks a request's context: a declaration of
// infergate.io/command needs a key granted command (see checkCommands).
type commandsNeedKeyKey struct{}

// AdminAccess authenticates the admin port's API: every /api/ request
// needs a credential granted auth.ActionAdmin, and those that make the
// gateway's machine run a program of the caller's choosing (a pipeline
// run; an apply declaring infergate.io/command, checked by the apply
// handler) need auth.ActionCommand too. /metrics needs auth.ActionMetrics
// when MetricsNeedKey; health and readiness need none, nor does
// /debug/pprof from loopback clients (next answers only those, unless told
// otherwise: then others need auth.ActionAdmin). The caller's identity becomes
// the actor of the changes it makes (the X-Infergate-Actor header and
// registry.WithActor), whatever actor the client named. Refusals are
// JSON errors: 401 with WWW-Authenticate, or 403; they name no secret.
func AdminAccess(next http.Handler, opts AdminAccessOptions) (http.Handler, error) {
	if opts.Auth == nil {
		return nil, errors.New("controlplane: AdminAccessOptions.Auth is required")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := adminNeeds(r, opts.MetricsNeedKey)
		if need == 0 {
			next.ServeHTTP(w, r)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), commandsNeedKeyKey{}, true))
		authorization := r.Header.Get("Authorization")
		if opts.Anonymous && authorization == "" && need&auth.ActionCommand == 0 {
			next.ServeHTTP(w, r)
			return
		}
		p, err := opts.Auth.AuthenticateString(authorization)
		if err == nil {
			for _, a := range []auth.Action{auth.ActionAdmin, auth.ActionMetrics, auth.ActionCommand} {
				if need&a != 0 && !p.Allowed("", nil, a) {
					err = auth.Denied("tenant %q is not granted %s: %s %s needs it", p.Tenant, a, r.Method, r.URL.Path)
					break
				}
			}
		}
		if err != nil {
			status := auth.HTTPStatus(err)
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="infergate admin"`)
			}
			writeAPIError(w, status, err)
			return
		}
		if p.TenantConfig().System && !loopbackRemote(r.RemoteAddr) {
			// infergate's own keys (the local user's, the pipeline
			// steps') serve callers on this machine only: one sent
			// elsewhere by mistake is no use to whoever got it.
			writeAPIError(w, http.StatusForbidden, auth.Denied("the key of tenant %q is accepted from this machine only", p.Tenant))
			return
		}
		actor := p.Tenant + "/" + p.ID
		r.Header.Set(ActorHeader, actor)
		next.ServeHTTP(w, r.WithContext(auth.NewContext(registry.WithActor(r.Context(), actor), p)))
	}), nil
}

// adminNeeds returns the actions a request of the admin port needs; 0
// for none.
func adminNeeds(r *http.Request, metricsNeedKey bool) auth.Action {
	switch p := r.URL.Path; {
	case p == "/metrics":
		if metricsNeedKey {
			return auth.ActionMetrics
		}
		return 0
	case strings.HasPrefix(p, "/api/v1/runs") && r.Method != http.MethodGet && r.Method != http.MethodHead:
		// A pipeline's steps are programs of its author's choosing.
		return auth.ActionAdmin | auth.ActionCommand
	case (strings.HasPrefix(p, "/api/v1/tenants") || strings.HasPrefix(p, "/api/v1/keys") || strings.HasPrefix(p, "/api/v1/grants")) &&
		r.Method != http.MethodGet && r.Method != http.MethodHead:
		// Whoever makes keys and grants could make one granted command.
		return auth.ActionAdmin | auth.ActionCommand
	case strings.HasPrefix(p, "/api/"):
		return auth.ActionAdmin
	case strings.HasPrefix(p, "/debug/pprof") && !loopbackRemote(r.RemoteAddr):
		// Only with -pprof-anywhere does pprof answer beyond loopback;
		// then it needs an admin key too.
		return auth.ActionAdmin
	}
	return 0
}

// checkCommands refuses declarations naming a program to run
// (infergate.io/command) unless the caller may have it run: a caller
// authenticated by AdminAccess needs auth.ActionCommand; with no
// authentication, the change guard's loopback rule is the check.
func checkCommands(r *http.Request, models []config.Model) error {
	p := auth.FromContext(r.Context())
	needKey, _ := r.Context().Value(commandsNeedKeyKey{}).(bool)
	if !needKey || (p != nil && p.Allowed("", nil, auth.ActionCommand)) {
		return nil
	}
	for _, m := range models {
		if len(m.Command) == 0 {
			continue
		}
		if p == nil {
			return auth.Denied("%s: model %q declares infergate.io/command, a program to run on the gateway's machine: that takes a key granted command, such as the local key in the data directory (admin.key), which the CLI sends when it runs there or finds it in INFERGATE_KEY or INFERGATE_KEY_FILE", m.Source, m.Name)
		}
		return auth.Denied("%s: model %q declares infergate.io/command, a program to run on the gateway's machine; tenant %q is not granted command (only config files read at start, or admin keys granted command, may declare one)", m.Source, m.Name, p.Tenant)
	}
	return nil
}
