package tenants

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/infergate/infergate/auth"
)

// manager is what the CLI calls, on the Store or through the Client.
type manager interface {
	CreateTenant(context.Context, auth.Tenant) (TenantInfo, error)
	UpdateTenant(context.Context, string, TenantUpdate) (TenantInfo, error)
	DeleteTenant(context.Context, string) (DeleteResult, error)
	GetTenant(context.Context, string) (TenantInfo, error)
	ListTenants(context.Context) ([]TenantInfo, error)
	CreateKey(context.Context, string, string, time.Time) (string, KeyInfo, error)
	RevokeKey(context.Context, string) (KeyInfo, error)
	ListKeys(context.Context, string) ([]KeyInfo, error)
	AddGrant(context.Context, auth.Grant) (auth.Grant, error)
	RemoveGrant(context.Context, int64) (auth.Grant, error)
	ListGrants(context.Context, string) ([]auth.Grant, error)
}

var (
	_ manager = (*Store)(nil)
	_ manager = (*Client)(nil)
)

// scenario runs the same changes on m and returns what it saw, errors
// as their codes, for the Store and the Client to be compared.
func scenario(t *testing.T, e *env, m manager) []any {
	t.Helper()
	ctx := e.ctx
	var out []any
	record := func(v any, err error) {
		t.Helper()
		if err != nil {
			code := "other: " + err.Error()
			for _, c := range []error{ErrInvalid, ErrNotFound, ErrConflict} {
				if te, ok := err.(*Error); ok && te.Code == c {
					code = c.Error()
				}
			}
			out = append(out, code)
			return
		}
		out = append(out, v)
	}
	record(m.CreateTenant(ctx, auth.Tenant{Name: "search", Weight: 2, RatePerSecond: 1.5}))
	record(m.CreateTenant(ctx, auth.Tenant{Name: "search"}))
	record(m.CreateTenant(ctx, auth.Tenant{Name: "Bad"}))
	record(m.UpdateTenant(ctx, "search", TenantUpdate{MaxInFlight: ptr(3)}))
	record(m.UpdateTenant(ctx, "nobody", TenantUpdate{MaxInFlight: ptr(3)}))
	record(m.GetTenant(ctx, "search"))
	record(m.ListTenants(ctx))
	token, k, err := m.CreateKey(ctx, "search", "ci", e.clock.Now().Add(time.Hour))
	record(k, err)
	if !strings.HasPrefix(token, auth.KeyPrefix+k.ID+"_") {
		t.Errorf("token %q for key %s", token, k.ID)
	}
	_, _, err = m.CreateKey(ctx, "nobody", "", time.Time{})
	record(nil, err)
	record(m.ListKeys(ctx, "search"))
	record(m.ListKeys(ctx, "nobody"))
	record(m.AddGrant(ctx, auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Models: []string{"iris", "digits"}}))
	record(m.AddGrant(ctx, auth.Grant{Tenant: "search", Actions: auth.ActionAdmin}))
	record(m.AddGrant(ctx, auth.Grant{Tenant: "search", Actions: auth.ActionInfer}))
	record(m.ListGrants(ctx, "search"))
	record(m.ListGrants(ctx, ""))
	record(m.RemoveGrant(ctx, 2))
	record(m.RemoveGrant(ctx, 2))
	record(m.RevokeKey(ctx, k.ID))
	record(m.RevokeKey(ctx, "nope"))
	record(m.DeleteTenant(ctx, "search"))
	record(m.DeleteTenant(ctx, "search"))
	record(m.ListTenants(ctx))
	return out
}

// TestClientIsTheStore: the Client answers as the Store does, errors
// included, so that the CLI behaves alike through the API or on the
// store.
func TestClientIsTheStore(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		direct := scenario(t, e, e.s)
		// A fresh store for the client, on the same clock.
		b := backends[0]
		if e.store != "" {
			b = backends[1]
		}
		e2 := newEnv(t, b)
		e2.clock, e2.s.now = e.clock, e.s.now
		srv := apiServer(t, e2)
		c, err := NewClient(srv.URL, ClientOptions{Actor: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		viaAPI := scenario(t, e2, c)
		// Key ids and creation times differ; the rest must not.
		norm := cmp.Transformer("norm", func(k KeyInfo) KeyInfo { k.ID = "ID"; return k })
		if diff := cmp.Diff(direct, viaAPI, norm, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Store (-) and Client (+) differ:\n%s", diff)
		}
	})
}

func TestClientSendsKeyAndActor(t *testing.T) {
	got := make(chan http.Header, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error": "no key"}`))
	}))
	defer srv.Close()
	c, err := NewClient(strings.TrimPrefix(srv.URL, "http://"), ClientOptions{Key: "igk_k", Actor: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateTenant(context.Background(), auth.Tenant{Name: "a"})
	if err == nil || !strings.Contains(err.Error(), "no key") || !strings.Contains(err.Error(), "INFERGATE_KEY") {
		t.Errorf("401: %v", err)
	}
	h := <-got
	if h.Get("Authorization") != "Bearer igk_k" || h.Get(ActorHeader) != "bob" {
		t.Errorf("headers %v", h)
	}
	for _, bad := range []string{"ftp://x", "http://x/path", "http://"} {
		if _, err := NewClient(bad, ClientOptions{}); err == nil {
			t.Errorf("NewClient(%q): no error", bad)
		}
	}
}
