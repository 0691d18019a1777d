package tenants

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/internal/jsonhttp"
)

// FuzzAPIBodies: whatever body a change carries, the API answers a
// status of its own with a JSON error, never a 5xx or a panic.
func FuzzAPIBodies(f *testing.F) {
	for _, seed := range []struct{ path, body string }{
		{"/api/v1/tenants", `{"name": "a", "weight": 2, "ratePerSecond": 1.5, "burst": 3, "maxInFlight": 4}`},
		{"/api/v1/tenants", `{"name": "a", "ratePerSecond": 1e309}`},
		{"/api/v1/tenants", `{"name": "a", "weight": 99999999999999999999}`},
		{"/api/v1/tenants/search/keys", `{"name": "ci", "expiresIn": "720h"}`},
		{"/api/v1/tenants/search/keys", `{"expires": "not a time"}`},
		{"/api/v1/tenants/search/grants", `{"actions": ["infer"], "models": ["*"]}`},
		{"/api/v1/tenants/search/grants", `{"actions": ["admin"], "selector": {"a": "b"}}`},
		{"/api/v1/tenants/search/grants", `{"actions": "infer"}`},
		{"/api/v1/tenants/search", `{"weight": null}`},
		{"/api/v1/tenants", `[`},
	} {
		f.Add(seed.path, seed.body)
	}
	e := newEnv(f, backends[0])
	if _, err := e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search"}); err != nil {
		f.Fatal(err)
	}
	h, err := NewHandler(e.s, HandlerOptions{})
	if err != nil {
		f.Fatal(err)
	}
	// Mounted as the admin port mounts it: other paths are not its own.
	mux := http.NewServeMux()
	for _, p := range h.Patterns() {
		mux.Handle(p, h)
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		method := http.MethodPost
		if strings.Count(path, "/") == 4 && !strings.HasSuffix(path, "/keys") && !strings.HasSuffix(path, "/grants") {
			method = http.MethodPatch
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		if _, pattern := mux.Handler(req); pattern == "" {
			return
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e jsonhttp.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s %q: %d with a body that is no JSON error: %s", method, path, body, w.Code, w.Body)
			}
		}
	})
}
