package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/oip"
)

// principals authenticates one key per tenant of snap and returns their
// principals by tenant.
func principals(t testing.TB, snap Snapshot) map[string]*Principal {
	t.Helper()
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, tn := range snap.Tenants {
		k := mustKey(t, tn.Name, time.Time{})
		snap.Keys = append(snap.Keys, k.key)
		tokens[tn.Name] = k.token
	}
	if err := a.Update(snap); err != nil {
		t.Fatal(err)
	}
	ps := map[string]*Principal{}
	for tn, tok := range tokens {
		p, err := a.Authenticate(bearerOf(tok))
		if err != nil {
			t.Fatal(err)
		}
		ps[tn] = p
	}
	return ps
}

var policySnap = Snapshot{
	Tenants: []Tenant{{Name: "infer-all"}, {Name: "named"}, {Name: "labelled"}, {Name: "admin"}, {Name: "ops"}, {Name: "nothing"}},
	Grants: []Grant{
		{ID: 1, Tenant: "infer-all", Actions: ActionInfer, Models: []string{"*"}},
		{ID: 2, Tenant: "named", Actions: ActionInfer | ActionMetadata, Models: []string{"resnet", "bert"}},
		{ID: 3, Tenant: "named", Actions: ActionMetadata, Models: []string{"gpt"}},
		{ID: 4, Tenant: "labelled", Actions: ActionInfer, Selector: map[string]string{"team": "vision", "tier": "prod"}},
		{ID: 5, Tenant: "labelled", Actions: ActionMetadata, Selector: map[string]string{"team": "vision"}},
		{ID: 6, Tenant: "admin", Actions: ActionAdmin | ActionMetrics},
		{ID: 7, Tenant: "ops", Actions: ActionAdmin | ActionCommand | ActionInfer, Models: []string{"tools"}},
	},
}

func TestAllowed(t *testing.T) {
	ps := principals(t, policySnap)
	vision := map[string]string{"team": "vision", "tier": "prod", "x": "y"}
	visionDev := map[string]string{"team": "vision", "tier": "dev"}
	tests := []struct {
		tenant string
		model  string
		labels map[string]string
		a      Action
		want   bool
	}{
		{"infer-all", "anything", nil, ActionInfer, true},
		{"infer-all", "anything", nil, ActionMetadata, false},
		{"infer-all", "anything", nil, ActionInfer | ActionMetadata, false},
		// An infer grant never permits the global actions.
		{"infer-all", "", nil, ActionAdmin, false},
		{"infer-all", "", nil, ActionCommand, false},
		{"infer-all", "", nil, ActionMetrics, false},
		{"infer-all", "anything", nil, ActionInfer | ActionAdmin, false},
		{"named", "resnet", nil, ActionInfer, true},
		{"named", "resnet", nil, ActionInfer | ActionMetadata, true},
		{"named", "gpt", nil, ActionMetadata, true},
		{"named", "gpt", nil, ActionInfer, false},
		{"named", "resnet2", nil, ActionInfer, false},
		{"named", "*", nil, ActionInfer, false}, // a model named "*" is not "every model"
		{"named", "", nil, ActionAdmin, false},
		{"labelled", "m", vision, ActionInfer, true},
		{"labelled", "m", vision, ActionInfer | ActionMetadata, true}, // two selector grants together
		{"labelled", "m", visionDev, ActionInfer, false},
		{"labelled", "m", visionDev, ActionMetadata, true},
		{"labelled", "m", map[string]string{"team": "vision", "tier": ""}, ActionInfer, false},
		{"labelled", "m", nil, ActionMetadata, false},
		{"admin", "", nil, ActionAdmin, true},
		{"admin", "m", nil, ActionMetrics, true},
		{"admin", "", nil, ActionAdmin | ActionMetrics, true},
		// Admin does not imply command, nor any model action.
		{"admin", "", nil, ActionCommand, false},
		{"admin", "m", nil, ActionInfer, false},
		{"ops", "", nil, ActionAdmin | ActionCommand, true},
		{"ops", "anything", nil, ActionCommand, true}, // global: the grant's models do not matter
		{"ops", "tools", nil, ActionInfer, true},
		{"ops", "other", nil, ActionInfer, false},
		{"nothing", "m", nil, ActionInfer, false},
		{"infer-all", "m", nil, 0, false},
		{"infer-all", "m", nil, 1 << 12, false},
	}
	for _, tc := range tests {
		p := ps[tc.tenant]
		if got := p.Allowed(tc.model, tc.labels, tc.a); got != tc.want {
			t.Errorf("%s.Allowed(%q, %v, %v) = %v, want %v", tc.tenant, tc.model, tc.labels, tc.a, got, tc.want)
		}
		err := p.Authorize(tc.model, tc.labels, tc.a)
		if (err == nil) != tc.want {
			t.Errorf("%s.Authorize(%q, %v) = %v, want allowed %v", tc.tenant, tc.model, tc.a, err, tc.want)
		}
	}
	var nilP *Principal
	if nilP.Allowed("m", nil, ActionInfer) {
		t.Error("a nil principal is allowed")
	}
}

func TestAuthorizeError(t *testing.T) {
	ps := principals(t, policySnap)
	err := ps["infer-all"].Authorize("resnet", nil, ActionMetadata)
	wantKind(t, err, oip.KindPermissionDenied, `tenant "infer-all" is not granted metadata on model "resnet"`)
	if oip.HTTPStatus(err) != 403 || oip.GRPCCode(err).String() != "PermissionDenied" {
		t.Errorf("status %d, code %v", oip.HTTPStatus(err), oip.GRPCCode(err))
	}
	err = ps["admin"].Authorize("", nil, ActionCommand)
	wantKind(t, err, oip.KindPermissionDenied, `tenant "admin" is not granted command`)
	if strings.Contains(err.Error(), "model") {
		t.Errorf("a global denial names a model: %v", err)
	}
}

func TestAllowedAllocatesNothing(t *testing.T) {
	ps := principals(t, policySnap)
	labels := map[string]string{"team": "vision", "tier": "prod"}
	for name, f := range map[string]func() bool{
		"every":    func() bool { return ps["infer-all"].Allowed("m", nil, ActionInfer) },
		"by name":  func() bool { return ps["named"].Allowed("bert", nil, ActionInfer) },
		"selector": func() bool { return ps["labelled"].Allowed("m", labels, ActionInfer) },
		"admin":    func() bool { return ps["admin"].Allowed("", nil, ActionAdmin) },
		"authorize": func() bool {
			return ps["named"].Authorize("bert", nil, ActionInfer) == nil
		},
	} {
		if n := testing.AllocsPerRun(200, func() {
			if !f() {
				t.Fatalf("%s: denied", name)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

func BenchmarkAllowed(b *testing.B) {
	ps := principals(b, policySnap)
	labels := map[string]string{"team": "vision", "tier": "prod", "app": "x"}
	for _, bc := range []struct {
		name   string
		p      *Principal
		model  string
		labels map[string]string
		a      Action
	}{
		{"every", ps["infer-all"], "m", nil, ActionInfer},
		{"by-name", ps["named"], "bert", labels, ActionInfer},
		{"selector", ps["labelled"], "m", labels, ActionInfer},
		{"admin", ps["admin"], "", nil, ActionAdmin},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !bc.p.Allowed(bc.model, bc.labels, bc.a) {
					b.Fatal("denied")
				}
			}
		})
	}
}
