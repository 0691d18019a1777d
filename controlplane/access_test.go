package controlplane

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/auth"
)

// TestAdminAccess: with authentication on, the admin API answers only
// keys granted admin; applying a command, or running a pipeline, needs
// command too; /metrics needs metrics when asked; health needs nothing;
// the actor is the key's, not the header's.
func TestAdminAccess(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	a, err := NewAPI(APIOptions{
		Deployments: d,
		Base: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("base " + r.URL.Path))
		}),
		Extra: map[string]http.Handler{"/api/v1/runs": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"actor":"` + r.Header.Get(ActorHeader) + `"}`))
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	var snap auth.Snapshot
	for i, tc := range []struct {
		tenant  string
		actions auth.Action
	}{
		{"infer", auth.ActionInfer},
		{"admin", auth.ActionAdmin},
		{"root", auth.ActionAdmin | auth.ActionCommand},
		{"scraper", auth.ActionMetrics},
	} {
		tok, k, err := auth.NewKey(tc.tenant, "test", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		keys[tc.tenant] = tok
		snap.Tenants = append(snap.Tenants, auth.Tenant{Name: tc.tenant})
		snap.Keys = append(snap.Keys, k)
		g := auth.Grant{ID: int64(i + 1), Tenant: tc.tenant, Actions: tc.actions}
		if tc.actions&auth.ActionInfer != 0 {
			g.Models = []string{"*"}
		}
		snap.Grants = append(snap.Grants, g)
	}
	if err := authn.Update(snap); err != nil {
		t.Fatal(err)
	}
	h, err := AdminAccess(a, AdminAccessOptions{Auth: authn, MetricsNeedKey: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	commandYAML := isvcYAML("cmd", "file:///models/cmd") + "" // a command is an annotation:
	commandYAML = strings.Replace(commandYAML, "metadata:\n  name: cmd\n", "metadata:\n  name: cmd\n  annotations:\n    infergate.io/command: \"sh -c 'rm -rf /tmp/x'\"\n", 1)
	for _, tc := range []struct {
		name, method, path, key, body string
		want                          int
		wantBody                      string
	}{
		{"models, no key", "GET", "/api/v1/models", "", "", 401, "no credentials"},
		{"models, bad key", "GET", "/api/v1/models", "igk_0123456789abcdef_" + strings.Repeat("x", 43), "", 401, "unknown API key"},
		{"models, infer key", "GET", "/api/v1/models", "infer", "", 403, "not granted admin"},
		{"models, admin key", "GET", "/api/v1/models", "admin", "", 200, ""},
		{"apply a command, infer key", "POST", "/api/v1/apply", "infer", applyBody(t, commandYAML), 403, "admin"},
		{"apply a command, admin key", "POST", "/api/v1/apply", "admin", applyBody(t, commandYAML), 403, "not granted command"},
		{"apply a command, admin+command key", "POST", "/api/v1/apply", "root", applyBody(t, commandYAML), 200, ""},
		{"apply without a command, admin key", "POST", "/api/v1/apply", "admin", applyBody(t, isvcYAML("plain", "file:///models/plain")), 200, ""},
		{"run a pipeline, admin key", "POST", "/api/v1/runs", "admin", "{}", 403, "command"},
		{"run a pipeline, admin+command key", "POST", "/api/v1/runs", "root", "{}", 200, `"actor":"root/`},
		{"list runs, admin key", "GET", "/api/v1/runs", "admin", "", 200, `"actor":"admin/`},
		{"metrics, no key", "GET", "/metrics", "", "", 401, ""},
		{"metrics, admin key", "GET", "/metrics", "admin", "", 403, "metrics"},
		{"metrics, scraper key", "GET", "/metrics", "scraper", "", 200, "base /metrics"},
		{"health, no key", "GET", "/healthz", "", "", 200, "base /healthz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := map[string]string{ActorHeader: "someone-else"}
			if tc.key != "" {
				tok := keys[tc.key]
				if tok == "" {
					tok = tc.key
				}
				header["Authorization"] = "Bearer " + tok
			}
			ctype := ""
			if tc.method == "POST" {
				ctype = "application/json"
			}
			code, body := call(t, tc.method, srv.URL+tc.path, ctype, tc.body, header)
			if code != tc.want || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.want, tc.wantBody)
			}
			for _, tok := range keys {
				if strings.Contains(body, tok[len(tok)-43:]) {
					t.Fatalf("the answer carries a secret: %s", body)
				}
			}
		})
	}
	if _, ok := d.State().Model("cmd"); !ok {
		t.Error("the admin+command key's apply did not take")
	}
}

// TestAdminNeeds: what each admin request needs, by path, method and
// client (no socket: a request's RemoteAddr as the server sets it).
func TestAdminNeeds(t *testing.T) {
	for _, tc := range []struct {
		method, path, remote string
		metricsKey           bool
		want                 auth.Action
	}{
		{"GET", "/healthz", "192.0.2.1:1234", false, 0},
		{"GET", "/metrics", "192.0.2.1:1234", false, 0},
		{"GET", "/metrics", "127.0.0.1:1234", true, auth.ActionMetrics},
		{"GET", "/api/v1/models", "127.0.0.1:1234", false, auth.ActionAdmin},
		{"GET", "/api/v1/runs", "127.0.0.1:1234", false, auth.ActionAdmin},
		{"POST", "/api/v1/runs", "127.0.0.1:1234", false, auth.ActionAdmin | auth.ActionCommand},
		{"POST", "/api/v1/runs/r-1/retry", "127.0.0.1:1234", false, auth.ActionAdmin | auth.ActionCommand},
		{"GET", "/debug/pprof/heap", "127.0.0.1:1234", false, 0},
		{"GET", "/debug/pprof/heap", "[::1]:1234", false, 0},
		{"GET", "/debug/pprof/heap", "192.0.2.1:1234", false, auth.ActionAdmin},
		{"GET", "/api/v1/tenants", "127.0.0.1:1234", false, auth.ActionAdmin},
		{"POST", "/api/v1/tenants", "127.0.0.1:1234", false, auth.ActionAdmin | auth.ActionCommand},
		{"POST", "/api/v1/tenants/a/grants", "127.0.0.1:1234", false, auth.ActionAdmin | auth.ActionCommand},
		{"POST", "/api/v1/tenants/a/keys", "127.0.0.1:1234", false, auth.ActionAdmin | auth.ActionCommand},
		{"DELETE", "/api/v1/keys/0123", "127.0.0.1:1234", false, auth.ActionAdmin | auth.ActionCommand},
		{"DELETE", "/api/v1/grants/3", "127.0.0.1:1234", false, auth.ActionAdmin | auth.ActionCommand},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		r.RemoteAddr = tc.remote
		if got := adminNeeds(r, tc.metricsKey); got != tc.want {
			t.Errorf("%s %s from %s: needs %v, want %v", tc.method, tc.path, tc.remote, got, tc.want)
		}
	}
}

// TestSystemKeysFromThisMachineOnly: a key of a System tenant is refused
// to a client beyond loopback, a tenant's key is not.
func TestSystemKeysFromThisMachineOnly(t *testing.T) {
	authn, err := auth.New(auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sysTok, sysKey, _ := auth.NewKey("infergate-local", "local", time.Time{})
	userTok, userKey, _ := auth.NewKey("ops", "laptop", time.Time{})
	if err := authn.Update(auth.Snapshot{
		Tenants: []auth.Tenant{{Name: "infergate-local", System: true}, {Name: "ops"}},
		Keys:    []auth.Key{sysKey, userKey},
		Grants:  []auth.Grant{{ID: 1, Tenant: "infergate-local", Actions: auth.ActionAdmin}, {ID: 2, Tenant: "ops", Actions: auth.ActionAdmin}},
	}); err != nil {
		t.Fatal(err)
	}
	h, err := AdminAccess(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), AdminAccessOptions{Auth: authn})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tok, remote string
		want        int
	}{
		{sysTok, "127.0.0.1:5000", 200},
		{sysTok, "192.0.2.7:5000", 403},
		{userTok, "192.0.2.7:5000", 200},
	} {
		r := httptest.NewRequest("GET", "/api/v1/models", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("Authorization", "Bearer "+tc.tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s from %s: %d %s, want %d", tc.tok[:20], tc.remote, w.Code, w.Body, tc.want)
		}
	}
}
