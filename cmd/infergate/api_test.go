package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestControlAPIChangesFromLoopbackOnly: apply and rollout actions come
// only as JSON without an Origin (no web page can send them), and from
// loopback to a loopback host unless the gateway allows any client.
func TestControlAPIChangesFromLoopbackOnly(t *testing.T) {
	called := 0
	ok := func(w http.ResponseWriter, _ *http.Request) { called++ }
	for _, tc := range []struct {
		name, remote, host, ctype, origin string
		anywhere                          bool
		want                              int
	}{
		{"remote client", "192.0.2.7:4000", "192.0.2.1:8090", "application/json", "", false, http.StatusForbidden},
		{"remote client allowed", "192.0.2.7:4000", "192.0.2.1:8090", "application/json", "", true, http.StatusOK},
		{"loopback", "127.0.0.1:4000", "127.0.0.1:8090", "application/json", "", false, http.StatusOK},
		{"loopback v6", "[::1]:4000", "[::1]:8090", "application/json; charset=utf-8", "", false, http.StatusOK},
		{"localhost", "127.0.0.1:4000", "localhost:8090", "application/json", "", false, http.StatusOK},
		{"DNS rebinding", "127.0.0.1:4000", "evil.example:8090", "application/json", "", false, http.StatusForbidden},
		{"web form", "127.0.0.1:4000", "127.0.0.1:8090", "text/plain", "", false, http.StatusUnsupportedMediaType},
		{"no content type", "127.0.0.1:4000", "127.0.0.1:8090", "", "", true, http.StatusUnsupportedMediaType},
		{"web page", "127.0.0.1:4000", "127.0.0.1:8090", "application/json", "http://evil.example", true, http.StatusForbidden},
	} {
		a := &controlAPI{changesFromAnywhere: tc.anywhere}
		req := httptest.NewRequest("POST", "/api/v1/apply", strings.NewReader("{}"))
		req.RemoteAddr, req.Host = tc.remote, tc.host
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		rec := httptest.NewRecorder()
		before := called
		a.guard(ok)(rec, req)
		if rec.Code != tc.want || (tc.want == http.StatusOK) != (called == before+1) {
			t.Errorf("%s: status %d, handler called %v, want %d", tc.name, rec.Code, called > before, tc.want)
		}
	}
}
