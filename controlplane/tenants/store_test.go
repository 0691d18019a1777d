package tenants

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/registry"
)

func TestTenants(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		created := e.clock.Now()
		got := must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search", Weight: 3, RatePerSecond: 2.5, MaxInFlight: 8}))
		// A rate with no burst gets ceil(rate).
		want := TenantInfo{Name: "search", Weight: 3, RatePerSecond: 2.5, Burst: 3, MaxInFlight: 8, Created: created}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("CreateTenant (-want +got):\n%s", diff)
		}
		// Weight 0 is 1; no limits.
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "ads"}))
		_, err := e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search"})
		wantErr(t, err, ErrConflict, `tenant "search" already exists`)

		list := must[[]TenantInfo](t)(e.s.ListTenants(e.ctx))
		if diff := cmp.Diff([]TenantInfo{{Name: "ads", Weight: 1, Created: created}, want}, list); diff != "" {
			t.Errorf("ListTenants (-want +got):\n%s", diff)
		}

		// An update changes what it names; a new rate without a burst
		// takes its own default burst.
		up := must[TenantInfo](t)(e.s.UpdateTenant(e.ctx, "search", TenantUpdate{RatePerSecond: ptr(10.0), MaxInFlight: ptr(0)}))
		want.RatePerSecond, want.Burst, want.MaxInFlight = 10, 10, 0
		if diff := cmp.Diff(want, up); diff != "" {
			t.Errorf("UpdateTenant (-want +got):\n%s", diff)
		}
		v := e.version()
		must[TenantInfo](t)(e.s.UpdateTenant(e.ctx, "search", TenantUpdate{Weight: ptr(3)}))
		if e.version() != v {
			t.Errorf("an update that changes nothing bumped the version")
		}
		_, err = e.s.UpdateTenant(e.ctx, "nobody", TenantUpdate{Weight: ptr(2)})
		wantErr(t, err, ErrNotFound, `tenant "nobody" does not exist`)
		_, err = e.s.UpdateTenant(e.ctx, "search", TenantUpdate{Weight: ptr(-1)})
		wantErr(t, err, ErrInvalid, "weight -1")

		res := must[DeleteResult](t)(e.s.DeleteTenant(e.ctx, "ads"))
		if res != (DeleteResult{Tenant: "ads"}) {
			t.Errorf("DeleteTenant = %+v", res)
		}
		_, err = e.s.DeleteTenant(e.ctx, "ads")
		wantErr(t, err, ErrNotFound)
		_, err = e.s.GetTenant(e.ctx, "ads")
		wantErr(t, err, ErrNotFound)

		var kinds []string
		for _, ev := range e.events() {
			kinds = append(kinds, ev.Kind)
			if ev.Actor != "tester" {
				t.Errorf("event %s: actor %q, want tester", ev.Kind, ev.Actor)
			}
		}
		slices.Sort(kinds)
		if diff := cmp.Diff([]string{"tenant.created", "tenant.created", "tenant.deleted", "tenant.updated"}, kinds); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

func TestTenantValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			name   string
			tenant auth.Tenant
			subs   []string
		}{
			{"empty name", auth.Tenant{}, []string{`tenant name ""`, "DNS label"}},
			{"upper case", auth.Tenant{Name: "Search"}, []string{`"Search"`}},
			{"trailing dash", auth.Tenant{Name: "search-"}, []string{`"search-"`}},
			{"too long", auth.Tenant{Name: strings.Repeat("a", 64)}, []string{"1-63"}},
			{"negative weight", auth.Tenant{Name: "a", Weight: -2}, []string{"weight -2"}},
			{"huge weight", auth.Tenant{Name: "a", Weight: 2_000_000}, []string{"weight 2000000"}},
			{"negative rate", auth.Tenant{Name: "a", RatePerSecond: -1}, []string{"rate -1"}},
			{"NaN rate", auth.Tenant{Name: "a", RatePerSecond: math.NaN()}, []string{"rate NaN"}},
			{"infinite rate", auth.Tenant{Name: "a", RatePerSecond: math.Inf(1)}, []string{"rate +Inf"}},
			{"negative burst", auth.Tenant{Name: "a", RatePerSecond: 1, Burst: -1}, []string{"burst -1"}},
			{"burst without rate", auth.Tenant{Name: "a", Burst: 5}, []string{"burst 5 without a rate"}},
			{"negative in flight", auth.Tenant{Name: "a", MaxInFlight: -3}, []string{"max in flight -3"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := e.s.CreateTenant(e.ctx, tc.tenant)
				wantErr(t, err, ErrInvalid, tc.subs...)
			})
		}
		if n := len(must[[]TenantInfo](t)(e.s.ListTenants(e.ctx))); n != 0 {
			t.Errorf("%d tenants stored after refusals", n)
		}
		if v := e.version(); v != 0 {
			t.Errorf("version %d after refusals, want 0", v)
		}
	})
}

func TestKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search"}))
		created := e.clock.Now()
		token, k, err := e.s.CreateKey(e.ctx, "search", "ci", created.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		id, secret, err := auth.ParseKey(token)
		if err != nil || id != k.ID {
			t.Fatalf("token %q: id %q, %v; key id %q", token, id, err, k.ID)
		}
		want := KeyInfo{ID: k.ID, Tenant: "search", Name: "ci", Created: created, Expires: created.Add(time.Hour), State: KeyActive}
		if diff := cmp.Diff(want, k); diff != "" {
			t.Errorf("CreateKey (-want +got):\n%s", diff)
		}
		// The store keeps the SHA-256 of the secret, nothing else of it.
		snap, _, err := e.s.Snapshot(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Keys) != 1 || snap.Keys[0].Hash != sha256.Sum256([]byte(secret)) {
			t.Fatalf("snapshot keys %+v: want one with the secret's SHA-256", snap.Keys)
		}
		db, _ := e.reg.DB()
		var stored string
		if err := db.QueryRow(`SELECT hash FROM api_keys WHERE id = $1`, k.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256([]byte(secret)); stored != hex.EncodeToString(h[:]) {
			t.Errorf("stored hash %q", stored)
		}

		e.clock.Add(time.Second) // keys list by creation time
		token2, k2 := must2(t)(e.s.CreateKey(e.ctx, "search", "", time.Time{}))
		if token2 == token || k2.ID == k.ID {
			t.Fatal("two keys alike")
		}

		// Expiry is judged on the store's clock.
		e.clock.Add(2 * time.Hour)
		keys := must[[]KeyInfo](t)(e.s.ListKeys(e.ctx, "search"))
		if len(keys) != 2 || keys[0].State != KeyExpired || keys[1].State != KeyActive {
			t.Fatalf("ListKeys: %+v", keys)
		}
		if ts := must[TenantInfo](t)(e.s.GetTenant(e.ctx, "search")); ts.ActiveKeys != 1 {
			t.Errorf("active keys %d, want 1", ts.ActiveKeys)
		}

		revokedAt := e.clock.Now()
		r := must[KeyInfo](t)(e.s.RevokeKey(e.ctx, auth.KeyPrefix+k2.ID))
		if r.State != KeyRevoked || !r.Revoked.Equal(revokedAt) {
			t.Errorf("RevokeKey: %+v", r)
		}
		// Again: no change, the first time kept.
		v := e.version()
		e.clock.Add(time.Minute)
		r = must[KeyInfo](t)(e.s.RevokeKey(e.ctx, k2.ID))
		if !r.Revoked.Equal(revokedAt) || e.version() != v {
			t.Errorf("second RevokeKey: %+v, version %d -> %d", r, v, e.version())
		}

		_, err = e.s.RevokeKey(e.ctx, "0123456789abcdef")
		wantErr(t, err, ErrNotFound, "key 0123456789abcdef does not exist")
		// A whole token given as an id is refused without repeating it.
		_, err = e.s.RevokeKey(e.ctx, token)
		wantErr(t, err, ErrInvalid, "never its secret")
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error repeats the secret: %v", err)
		}
		_, _, err = e.s.CreateKey(e.ctx, "nobody", "", time.Time{})
		wantErr(t, err, ErrNotFound, `tenant "nobody"`)
		_, _, err = e.s.CreateKey(e.ctx, "search", "", e.clock.Now().Add(-time.Second))
		wantErr(t, err, ErrInvalid, "not in the future")
		_, _, err = e.s.CreateKey(e.ctx, "search", "a\nb", time.Time{})
		wantErr(t, err, ErrInvalid, "key name")
		_, err = e.s.ListKeys(e.ctx, "nobody")
		wantErr(t, err, ErrNotFound)

		// No event carries a secret or a hash.
		for _, ev := range e.events() {
			b, _ := json.Marshal(ev)
			for _, s := range []string{secret, token2[len(token2)-43:], stored} {
				if strings.Contains(string(b), s) {
					t.Errorf("event %s holds a secret or hash: %s", ev.Kind, b)
				}
			}
		}
	})
}

func must2(t testing.TB) func(string, KeyInfo, error) (string, KeyInfo) {
	return func(s string, k KeyInfo, err error) (string, KeyInfo) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s, k
	}
}

func TestGrants(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search"}))
		ok := []struct {
			name string
			in   auth.Grant
			want auth.Grant
		}{
			{"models sorted, repeats dropped",
				auth.Grant{Actions: auth.ActionInfer | auth.ActionMetadata, Models: []string{"iris", "digits", "iris"}},
				auth.Grant{Actions: auth.ActionInfer | auth.ActionMetadata, Models: []string{"digits", "iris"}}},
			{"every model", auth.Grant{Actions: auth.ActionInfer, Models: []string{"iris", "*"}}, auth.Grant{Actions: auth.ActionInfer, Models: []string{"*"}}},
			{"selector", auth.Grant{Actions: auth.ActionMetadata, Selector: map[string]string{"team": "search", "infergate.io/tier": ""}},
				auth.Grant{Actions: auth.ActionMetadata, Selector: map[string]string{"team": "search", "infergate.io/tier": ""}}},
			{"global only", auth.Grant{Actions: auth.ActionAdmin | auth.ActionCommand}, auth.Grant{Actions: auth.ActionAdmin | auth.ActionCommand}},
		}
		var added []auth.Grant
		for i, tc := range ok {
			t.Run(tc.name, func(t *testing.T) {
				tc.in.Tenant, tc.want.Tenant, tc.want.ID = "search", "search", int64(i+1)
				got := must[auth.Grant](t)(e.s.AddGrant(e.ctx, tc.in))
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("AddGrant (-want +got):\n%s", diff)
				}
				added = append(added, got)
			})
		}
		if diff := cmp.Diff(added, must[[]auth.Grant](t)(e.s.ListGrants(e.ctx, "search"))); diff != "" {
			t.Errorf("ListGrants (-want +got):\n%s", diff)
		}
		for _, tc := range []struct {
			name string
			in   auth.Grant
			code error
			subs []string
		}{
			{"no tenant", auth.Grant{Tenant: "nobody", Actions: auth.ActionAdmin}, ErrNotFound, []string{`tenant "nobody"`}},
			{"no action", auth.Grant{Tenant: "search", Models: []string{"*"}}, ErrInvalid, []string{"no action"}},
			{"unknown bits", auth.Grant{Tenant: "search", Actions: 1 << 9}, ErrInvalid, []string{"unknown action bits 0x200"}},
			{"no models", auth.Grant{Tenant: "search", Actions: auth.ActionInfer}, ErrInvalid, []string{"name the models that infer applies to"}},
			{"both", auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Models: []string{"iris"}, Selector: map[string]string{"a": "b"}}, ErrInvalid, []string{"not both"}},
			{"global with models", auth.Grant{Tenant: "search", Actions: auth.ActionAdmin, Models: []string{"iris"}}, ErrInvalid, []string{"admin are not about a model"}},
			{"bad model", auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Models: []string{"ir is"}}, ErrInvalid, []string{`model "ir is"`}},
			{"bad selector key", auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Selector: map[string]string{"-a": "b"}}, ErrInvalid, []string{`selector key "-a"`}},
			{"bad selector value", auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Selector: map[string]string{"a": "b c"}}, ErrInvalid, []string{`selector a="b c"`}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := e.s.AddGrant(e.ctx, tc.in)
				wantErr(t, err, tc.code, tc.subs...)
			})
		}

		// A removed grant's id is not given again.
		last := added[len(added)-1]
		if got := must[auth.Grant](t)(e.s.RemoveGrant(e.ctx, last.ID)); !cmp.Equal(got, last) {
			t.Errorf("RemoveGrant = %+v, want %+v", got, last)
		}
		_, err := e.s.RemoveGrant(e.ctx, last.ID)
		wantErr(t, err, ErrNotFound, fmt.Sprintf("grant %d does not exist", last.ID))
		if g := must[auth.Grant](t)(e.s.AddGrant(e.ctx, auth.Grant{Tenant: "search", Actions: auth.ActionMetrics})); g.ID != last.ID+1 {
			t.Errorf("grant id %d after removing %d, want %d", g.ID, last.ID, last.ID+1)
		}
		_, err = e.s.RemoveGrant(e.ctx, 0)
		wantErr(t, err, ErrInvalid)

		// The most models a grant may name, each as long as may be: the
		// event names what fits in the log's bounds and counts the rest.
		many := make([]string, maxGrantModels)
		for i := range many {
			many[i] = fmt.Sprintf("m%04d", i) + strings.Repeat("x", 248)
		}
		big := must[auth.Grant](t)(e.s.AddGrant(e.ctx, auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Models: many}))
		must[auth.Grant](t)(e.s.RemoveGrant(e.ctx, big.ID))
		evs, err := e.reg.QueryEvents(e.ctx, registry.EventQuery{Kind: EventGrantRemoved, SinceID: 0, Limit: 1000})
		if err != nil || len(evs) == 0 || !strings.Contains(evs[len(evs)-1].Message, "(1000 models in all)") {
			t.Errorf("the big grant's event: %v, %v", evs, err)
		}
		_, err = e.s.AddGrant(e.ctx, auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Models: append(many, "one-more")})
		wantErr(t, err, ErrInvalid, "1001 models")
	})
}

func TestParseActions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want auth.Action
		err  string
	}{
		{"infer", auth.ActionInfer, ""},
		{"infer,metadata", auth.ActionInfer | auth.ActionMetadata, ""},
		{" admin , command,metrics ", auth.ActionAdmin | auth.ActionCommand | auth.ActionMetrics, ""},
		{"", 0, "no action"},
		{"infer,write", 0, `unknown action "write"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseActions(tc.in)
			if tc.err != "" {
				wantErr(t, err, ErrInvalid, tc.err)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseActions(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if back := must[auth.Action](t)(ParseActions(FormatActions(got))); back != got {
				t.Errorf("FormatActions round trip: %q -> %v", FormatActions(got), back)
			}
		})
	}
}

// TestDeleteTenantTakesKeysAndGrants: a tenant's keys and grants go with
// it, in one change, and its keys stop authenticating.
func TestDeleteTenantTakesKeysAndGrants(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		for _, n := range []string{"search", "ads"} {
			must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: n}))
			must2(t)(e.s.CreateKey(e.ctx, n, "a", time.Time{}))
			must2(t)(e.s.CreateKey(e.ctx, n, "b", time.Time{}))
			must[auth.Grant](t)(e.s.AddGrant(e.ctx, auth.Grant{Tenant: n, Actions: auth.ActionInfer, Models: []string{"*"}}))
		}
		v := e.version()
		res := must[DeleteResult](t)(e.s.DeleteTenant(e.ctx, "search"))
		if res != (DeleteResult{Tenant: "search", Keys: 2, Grants: 1}) {
			t.Errorf("DeleteTenant = %+v", res)
		}
		if e.version() != v+1 {
			t.Errorf("version %d -> %d, want one change", v, e.version())
		}
		snap, _ := must2s(t)(e.s.Snapshot(e.ctx))
		if len(snap.Tenants) != 1 || len(snap.Keys) != 2 || len(snap.Grants) != 1 {
			t.Fatalf("snapshot after delete: %+v", snap)
		}
		for _, k := range snap.Keys {
			if k.Tenant != "ads" {
				t.Errorf("key %s of %s left", k.ID, k.Tenant)
			}
		}
		evs, err := e.reg.QueryEvents(e.ctx, registry.EventQuery{Kind: EventTenantDeleted})
		if err != nil || len(evs) != 1 || !strings.Contains(evs[0].Message, "2 keys and 1 grant") {
			t.Errorf("tenant.deleted events: %+v, %v", evs, err)
		}
	})
}

func must2s(t testing.TB) func(auth.Snapshot, int64, error) (auth.Snapshot, int64) {
	return func(s auth.Snapshot, v int64, err error) (auth.Snapshot, int64) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s, v
	}
}

// TestSnapshot: the snapshot holds everything, is valid for the
// authenticator, and its version grows by one with every change.
func TestSnapshot(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		snap, v := must2s(t)(e.s.Snapshot(e.ctx))
		if v != 0 || len(snap.Tenants)+len(snap.Keys)+len(snap.Grants) != 0 {
			t.Fatalf("empty store: %+v at %d", snap, v)
		}
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search", Weight: 2, RatePerSecond: 5, Burst: 10, MaxInFlight: 4}))
		_, k := must2(t)(e.s.CreateKey(e.ctx, "search", "ci", e.clock.Now().Add(time.Hour)))
		g := must[auth.Grant](t)(e.s.AddGrant(e.ctx, auth.Grant{Tenant: "search", Actions: auth.ActionInfer, Selector: map[string]string{"team": "search"}}))
		must[KeyInfo](t)(e.s.RevokeKey(e.ctx, k.ID))
		snap, v = must2s(t)(e.s.Snapshot(e.ctx))
		if v != 4 {
			t.Errorf("version %d after 4 changes", v)
		}
		want := auth.Snapshot{
			Tenants: []auth.Tenant{{Name: "search", Weight: 2, RatePerSecond: 5, Burst: 10, MaxInFlight: 4}},
			Keys:    []auth.Key{{ID: k.ID, Tenant: "search", Name: "ci", Created: k.Created, Expires: k.Expires, Revoked: e.clock.Now()}},
			Grants:  []auth.Grant{g},
		}
		snap.Keys[0].Hash = [32]byte{}
		if diff := cmp.Diff(want, snap); diff != "" {
			t.Errorf("Snapshot (-want +got):\n%s", diff)
		}
		if err := snap.Validate(); err != nil {
			t.Errorf("the authenticator refuses the snapshot: %v", err)
		}
	})
}

// TestConcurrentChanges: changes from many goroutines and two "processes"
// (two registries on one store) each bump the version once, and grant ids
// stay distinct.
func TestConcurrentChanges(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		_, other := e.open()
		must[TenantInfo](t)(e.s.CreateTenant(e.ctx, auth.Tenant{Name: "search"}))
		const workers, each = 6, 5
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		ids := make(chan int64, workers*each)
		for w := range workers {
			s := e.s
			if w%2 == 1 {
				s = other
			}
			wg.Go(func() {
				for range each {
					g, err := s.AddGrant(e.ctx, auth.Grant{Tenant: "search", Actions: auth.ActionAdmin})
					if err != nil {
						errs <- err
						return
					}
					ids <- g.ID
				}
			})
		}
		wg.Wait()
		close(errs)
		close(ids)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[int64]bool{}
		for id := range ids {
			if seen[id] {
				t.Errorf("grant id %d given twice", id)
			}
			seen[id] = true
		}
		if v := e.version(); v != 1+workers*each {
			t.Errorf("version %d, want %d", v, 1+workers*each)
		}
	})
}
