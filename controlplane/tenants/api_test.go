package tenants

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/infergate/infergate/registry"
)

// apiServer serves the API of e's store on loopback, mounted by its
// Patterns as the admin port mounts it, with a guard on changes that
// refuses requests carrying X-Refuse.
func apiServer(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	h, err := NewHandler(e.s, HandlerOptions{
		MaxBodyBytes: 1024,
		Guard: func(next http.HandlerFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Refuse") != "" {
					http.Error(w, `{"error": "guarded"}`, http.StatusForbidden)
					return
				}
				next(w, r)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range h.Patterns() {
		mux.Handle(p, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not the tenants API", http.StatusTeapot) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type apiStep struct {
	name         string
	method, path string
	body         string
	header       map[string]string
	status       int
	want         []string // substrings of the answer
	wantNot      []string
}

func (s apiStep) run(t *testing.T, base string) (string, http.Header) {
	t.Helper()
	var body io.Reader
	if s.body != "" {
		body = strings.NewReader(s.body)
	}
	req, err := http.NewRequest(s.method, base+s.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if s.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range s.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != s.status {
		t.Fatalf("%s %s: status %d, want %d: %s", s.method, s.path, resp.StatusCode, s.status, b)
	}
	if s.status != http.StatusForbidden && resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s: Content-Type %q", s.method, s.path, resp.Header.Get("Content-Type"))
	}
	for _, w := range s.want {
		if !strings.Contains(string(b), w) {
			t.Errorf("%s %s: answer does not hold %q:\n%s", s.method, s.path, w, b)
		}
	}
	for _, w := range s.wantNot {
		if strings.Contains(string(b), w) {
			t.Errorf("%s %s: answer holds %q:\n%s", s.method, s.path, w, b)
		}
	}
	return string(b), resp.Header
}

func TestAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		srv := apiServer(t, e)
		step := func(s apiStep) (string, http.Header) {
			t.Helper()
			var out string
			var hdr http.Header
			t.Run(s.name, func(t *testing.T) { out, hdr = s.run(t, srv.URL) })
			return out, hdr
		}
		_, hdr := step(apiStep{name: "create a tenant", method: "POST", path: "/api/v1/tenants",
			body: `{"name": "search", "weight": 2, "ratePerSecond": 5}`, header: map[string]string{ActorHeader: "alice"},
			status: 201, want: []string{`"name": "search"`, `"weight": 2`, `"burst": 5`}})
		if hdr.Get("Location") != "/api/v1/tenants/search" {
			t.Errorf("Location %q", hdr.Get("Location"))
		}
		for _, s := range []apiStep{
			{name: "create it again", method: "POST", path: "/api/v1/tenants", body: `{"name": "search"}`,
				status: 409, want: []string{`"code": "CONFLICT"`, `tenant \"search\" already exists`}},
			{name: "a bad name", method: "POST", path: "/api/v1/tenants", body: `{"name": "Search!"}`,
				status: 400, want: []string{`"code": "INVALID_ARGUMENT"`, "DNS label"}},
			{name: "an unknown field", method: "POST", path: "/api/v1/tenants", body: `{"name": "a", "wieght": 2}`,
				status: 400, want: []string{`unknown field \"wieght\"`}},
			{name: "two objects", method: "POST", path: "/api/v1/tenants", body: `{"name": "a"} {}`,
				status: 400, want: []string{"data after the request object"}},
			{name: "not JSON", method: "POST", path: "/api/v1/tenants", body: `{"name": "a"}`, header: map[string]string{"Content-Type": "text/plain"},
				status: 415, want: []string{"UNSUPPORTED_MEDIA_TYPE"}},
			{name: "too large", method: "POST", path: "/api/v1/tenants", body: `{"name": "` + strings.Repeat("a", 2000) + `"}`,
				status: 413, want: []string{"TOO_LARGE", "1024 bytes"}},
			{name: "guarded change", method: "POST", path: "/api/v1/tenants", body: `{"name": "b"}`, header: map[string]string{"X-Refuse": "1"},
				status: 403, want: []string{"guarded"}},
			{name: "unguarded read", method: "GET", path: "/api/v1/tenants", header: map[string]string{"X-Refuse": "1"},
				status: 200, want: []string{`"items"`, `"name": "search"`, `"activeKeys": 0`}},
			{name: "update", method: "PATCH", path: "/api/v1/tenants/search", body: `{"maxInFlight": 4}`,
				status: 200, want: []string{`"maxInFlight": 4`, `"weight": 2`}},
			{name: "update nobody", method: "PATCH", path: "/api/v1/tenants/nobody", body: `{"weight": 4}`,
				status: 404, want: []string{"NOT_FOUND", `tenant \"nobody\" does not exist`}},
			{name: "a key for nobody", method: "POST", path: "/api/v1/tenants/nobody/keys", body: `{}`, status: 404},
			{name: "expires twice", method: "POST", path: "/api/v1/tenants/search/keys", body: `{"expires": "2030-01-01T00:00:00Z", "expiresIn": "1h"}`,
				status: 400, want: []string{"not both"}},
			{name: "bad expiresIn", method: "POST", path: "/api/v1/tenants/search/keys", body: `{"expiresIn": "-1h"}`,
				status: 400, want: []string{"positive duration"}},
			{name: "an unknown action", method: "POST", path: "/api/v1/tenants/search/grants", body: `{"actions": ["write"]}`,
				status: 400, want: []string{`unknown action \"write\"`}},
			{name: "a grant on no model", method: "POST", path: "/api/v1/tenants/search/grants", body: `{"actions": ["infer"]}`,
				status: 400, want: []string{"name the models"}},
		} {
			step(s)
		}

		out, hdr := step(apiStep{name: "create a key", method: "POST", path: "/api/v1/tenants/search/keys",
			body: `{"name": "ci", "expiresIn": "720h"}`, status: 201, want: []string{`"token": "igk_`, `"state": "active"`, `"expires"`}})
		var created KeyCreated
		if err := json.Unmarshal([]byte(out), &created); err != nil {
			t.Fatal(err)
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q on the answer with a token", hdr.Get("Cache-Control"))
		}
		if want := e.clock.Now().Add(720 * 3600e9); !created.Key.Expires.Equal(want) {
			t.Errorf("expires %s, want %s", created.Key.Expires, want)
		}
		secret := created.Token[len(created.Token)-43:]
		id := created.Key.ID

		step(apiStep{name: "add a grant", method: "POST", path: "/api/v1/tenants/search/grants",
			body:   `{"actions": ["infer", "metadata"], "models": ["iris"]}`,
			status: 201, want: []string{`"id": 1`, `"description": "infer,metadata on models iris"`}})
		for _, s := range []apiStep{
			{name: "the tenant in full", method: "GET", path: "/api/v1/tenants/search",
				status: 200, want: []string{`"activeKeys": 1`, `"grants": [`, `"id": "` + id + `"`, `"models": [`}, wantNot: []string{secret, "token", "hash"}},
			{name: "its keys", method: "GET", path: "/api/v1/tenants/search/keys", status: 200, want: []string{id}, wantNot: []string{secret, "token"}},
			{name: "every key", method: "GET", path: "/api/v1/keys", status: 200, want: []string{id}, wantNot: []string{secret}},
			{name: "keys of nobody", method: "GET", path: "/api/v1/keys?tenant=nobody", status: 404},
			{name: "its grants", method: "GET", path: "/api/v1/tenants/search/grants", status: 200, want: []string{`"infer"`, `"metadata"`}},
			{name: "every grant", method: "GET", path: "/api/v1/grants?tenant=search", status: 200, want: []string{`"tenant": "search"`}},
			{name: "revoke the key", method: "DELETE", path: "/api/v1/keys/" + id, status: 200, want: []string{`"state": "revoked"`, `"revoked"`}},
			{name: "revoke a bad id", method: "DELETE", path: "/api/v1/keys/xyz", status: 400, want: []string{"16 hex digits"}},
			{name: "revoke by token", method: "DELETE", path: "/api/v1/keys/" + created.Token, status: 400, wantNot: []string{secret}},
			{name: "revoke nothing", method: "DELETE", path: "/api/v1/keys/0000000000000000", status: 404},
			{name: "remove the grant", method: "DELETE", path: "/api/v1/grants/1", status: 200, want: []string{`"id": 1`}},
			{name: "remove it again", method: "DELETE", path: "/api/v1/grants/1", status: 404},
			{name: "remove a bad id", method: "DELETE", path: "/api/v1/grants/one", status: 400},
			{name: "a wrong method", method: "PUT", path: "/api/v1/tenants", body: `{}`, status: 405, want: []string{"use GET, POST"}},
			{name: "a wrong path", method: "GET", path: "/api/v1/tenants/search/nothing", status: 404, want: []string{"no tenants API"}},
			{name: "delete the tenant", method: "DELETE", path: "/api/v1/tenants/search", status: 200, want: []string{`"keys": 1`, `"grants": 0`}},
			{name: "get it", method: "GET", path: "/api/v1/tenants/search", status: 404},
		} {
			step(s)
		}

		evs, err := e.reg.QueryEvents(e.ctx, registry.EventQuery{Kind: EventTenantCreated})
		if err != nil || len(evs) != 1 || evs[0].Actor != "alice" {
			t.Errorf("tenant.created events: %+v, %v; want one by alice", evs, err)
		}
		evs, err = e.reg.QueryEvents(e.ctx, registry.EventQuery{Kind: EventKeyRevoked})
		if err != nil || len(evs) != 1 || evs[0].Actor != "127.0.0.1" {
			t.Errorf("key.revoked events: %+v, %v; want one by 127.0.0.1 (no header)", evs, err)
		}
	})
}

func TestNewHandlerOptions(t *testing.T) {
	if _, err := NewHandler(nil, HandlerOptions{}); err == nil {
		t.Error("no store: no error")
	}
	e := newEnv(t, backends[0])
	if _, err := NewHandler(e.s, HandlerOptions{MaxBodyBytes: -1}); err == nil {
		t.Error("negative MaxBodyBytes: no error")
	}
}
