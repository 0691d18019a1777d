package serving

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/auth"
)

// TestNewSystemKeys: the local key's token is in the data directory, for
// its owner only, and is granted command, as is the steps' key; a new
// start makes new keys.
func TestNewSystemKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	keys, stepToken, err := NewSystemKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, LocalKeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	a, err := auth.New(auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(withSystemKeys(auth.Snapshot{}, keys)); err != nil {
		t.Fatal(err)
	}
	local, err := a.AuthenticateString("Bearer " + strings.TrimSpace(string(b)))
	if err != nil || local.Tenant != LocalTenant || !local.Allowed("", nil, auth.ActionCommand) {
		t.Fatalf("the local key: %v %+v", err, local)
	}
	steps, err := a.AuthenticateString("Bearer " + stepToken)
	if err != nil || steps.Tenant != PipelineTenant || !steps.Allowed("", nil, auth.ActionAdmin) || !steps.Allowed("", nil, auth.ActionCommand) || steps.Allowed("", nil, auth.ActionMetrics) {
		t.Fatalf("the steps' key: %v %+v", err, steps)
	}
	// The next start's keys replace these.
	again, _, err := NewSystemKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(withSystemKeys(auth.Snapshot{}, again)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthenticateString("Bearer " + strings.TrimSpace(string(b))); err == nil {
		t.Error("the last run's local key is still accepted")
	}
}

// TestSystemKeysReplaceLookalikes: a store entry under a system tenant's
// name (which the store refuses, but an older store may hold) grants
// nothing and does not make the tenants' list hold a name twice.
func TestSystemKeysReplaceLookalikes(t *testing.T) {
	keys, _, err := NewSystemKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fakeTok, fake, _ := auth.NewKey(LocalTenant, "lookalike", time.Time{})
	snap := withSystemKeys(auth.Snapshot{
		Tenants: []auth.Tenant{{Name: LocalTenant}, {Name: "ops"}},
		Keys:    []auth.Key{fake},
		Grants:  []auth.Grant{{ID: 7, Tenant: LocalTenant, Actions: auth.ActionAdmin}},
	}, keys)
	names := map[string]int{}
	for _, tn := range snap.Tenants {
		names[tn.Name]++
	}
	if names[LocalTenant] != 1 || names["ops"] != 1 {
		t.Errorf("tenants %v", snap.Tenants)
	}
	a, _ := auth.New(auth.Options{})
	if err := a.Update(snap); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthenticateString("Bearer " + fakeTok); err == nil {
		t.Error("a store key under the local tenant's name is accepted")
	}
}
