package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestControlAPIChangesFromLoopbackOnly: apply and rollout actions from a
// non-loopback client are refused unless the gateway allows them; reads
// are not.
func TestControlAPIChangesFromLoopbackOnly(t *testing.T) {
	called := 0
	ok := func(w http.ResponseWriter, _ *http.Request) { called++ }
	for _, tc := range []struct {
		remote   string
		anywhere bool
		want     int
	}{
		{"192.0.2.7:4000", false, http.StatusForbidden},
		{"192.0.2.7:4000", true, http.StatusOK},
		{"127.0.0.1:4000", false, http.StatusOK},
		{"[::1]:4000", false, http.StatusOK},
	} {
		a := &controlAPI{changesFromAnywhere: tc.anywhere}
		req := httptest.NewRequest("POST", "/api/v1/apply", strings.NewReader("{}"))
		req.RemoteAddr = tc.remote
		rec := httptest.NewRecorder()
		before := called
		a.guard(ok)(rec, req)
		if rec.Code != tc.want || (tc.want == http.StatusOK) != (called == before+1) {
			t.Errorf("%s (anywhere %v): status %d, handler called %v", tc.remote, tc.anywhere, rec.Code, called > before)
		}
		if rec.Code == http.StatusForbidden && !strings.Contains(rec.Body.String(), "-api-changes-anywhere") {
			t.Errorf("the refusal does not say how to allow it: %s", rec.Body)
		}
	}
}
