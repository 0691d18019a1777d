package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/oip"
)

// keyFixture is an Authenticator on a fake clock with tenant "team-a" and
// keys in every state.
type keyFixture struct {
	a                                *Authenticator
	clock                            *fakeClock
	good, expiring, expired, revoked testKey
	orphan                           testKey // of a tenant the snapshot lacks
	snap                             Snapshot
	failures                         *prometheus.CounterVec
	reg                              *prometheus.Registry
}

func newKeyFixture(t testing.TB) *keyFixture {
	t.Helper()
	f := &keyFixture{clock: newClock(), reg: prometheus.NewRegistry()}
	f.good = mustKey(t, "team-a", time.Time{})
	f.expiring = mustKey(t, "team-a", t0.Add(time.Hour))
	f.expired = mustKey(t, "team-a", t0.Add(-time.Second))
	f.revoked = mustKey(t, "team-a", time.Time{})
	f.revoked.key.Revoked = t0.Add(-time.Hour)
	f.orphan = mustKey(t, "gone", time.Time{})
	f.snap = Snapshot{
		Tenants: []Tenant{{Name: "team-a", Weight: 3}},
		Keys:    []Key{f.good.key, f.expiring.key, f.expired.key, f.revoked.key},
		Grants:  []Grant{{ID: 1, Tenant: "team-a", Actions: ActionInfer, Models: []string{"*"}}},
	}
	a, err := New(Options{Now: f.clock.Now, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(f.snap); err != nil {
		t.Fatal(err)
	}
	f.a = a
	return f
}

func (f *keyFixture) failureCount(t testing.TB, reason string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "infergate_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestAuthenticateAPIKey(t *testing.T) {
	f := newKeyFixture(t)
	secretOf := func(tok string) string { return tok[len(tok)-keySecretLen:] }
	last := "A"
	if strings.HasSuffix(f.good.token, last) {
		last = "B"
	}
	wrongSecret := f.good.token[:len(f.good.token)-1] + last
	unknown := KeyPrefix + "0123456789abcdef_" + secretOf(f.good.token)
	tests := []struct {
		name   string
		header string
		reason string
		want   []string // in the error; empty: success
	}{
		{"good", "Bearer " + f.good.token, "", nil},
		{"scheme in lower case", "bearer " + f.good.token, "", nil},
		{"expiring, not yet", "Bearer " + f.expiring.token, "", nil},
		{"expired", "Bearer " + f.expired.token, "expired", []string{"API key igk_" + f.expired.key.ID, "expired at 2026-05-01T11:59:59Z"}},
		{"revoked", "Bearer " + f.revoked.token, "revoked", []string{"igk_" + f.revoked.key.ID, "revoked"}},
		{"unknown id", "Bearer " + unknown, "unknown_key", []string{"unknown API key igk_0123456789abcdef"}},
		{"tenant not in snapshot", "Bearer " + f.orphan.token, "unknown_key", []string{"unknown API key"}},
		{"wrong secret", "Bearer " + wrongSecret, "wrong_secret", []string{"igk_" + f.good.key.ID, "secret does not match"}},
		{"missing", "", "missing", []string{"no credentials"}},
		{"blank", "   ", "missing", []string{"no credentials"}},
		{"basic", "Basic dXNlcjpwYXNz", "malformed", []string{"Bearer"}},
		{"bare token", f.good.token, "malformed", []string{"Bearer"}},
		{"truncated key", "Bearer " + f.good.token[:50], "malformed", []string{"malformed API key"}},
		{"neither", "Bearer sometoken", "malformed", []string{"neither an API key"}},
		{"jwt without JWKS", "Bearer a.b.c", "malformed", []string{"JWTs are not accepted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := 0.0
			if tc.reason != "" {
				before = f.failureCount(t, tc.reason)
			}
			for _, viaString := range []bool{false, true} {
				var p *Principal
				var err error
				if viaString {
					p, err = f.a.AuthenticateString(tc.header)
				} else {
					p, err = f.a.Authenticate([]byte(tc.header))
				}
				if tc.want == nil {
					if err != nil {
						t.Fatalf("Authenticate: %v", err)
					}
					if p.Tenant != "team-a" || !strings.HasPrefix(tc.header[7:], KeyPrefix+p.ID) || p.TenantConfig().Weight != 3 {
						t.Errorf("principal = %+v", p)
					}
					continue
				}
				if p != nil {
					t.Errorf("principal %+v with an error", p)
				}
				wantKind(t, err, oip.KindUnauthenticated, tc.want...)
				if oip.HTTPStatus(err) != 401 {
					t.Errorf("HTTP status %d, want 401", oip.HTTPStatus(err))
				}
				if i := strings.LastIndexByte(tc.header, '_'); i > 0 && len(tc.header)-i > 10 && strings.Contains(err.Error(), tc.header[i+1:]) {
					t.Errorf("error %q carries the secret", err)
				}
			}
			if tc.reason != "" {
				if got := f.failureCount(t, tc.reason) - before; got != 2 {
					t.Errorf("failures{reason=%q} rose by %v, want 2", tc.reason, got)
				}
			}
		})
	}
	if !errors.Is(must2(f.a.Authenticate(nil)), ErrNoCredentials) {
		t.Error("a missing header is not ErrNoCredentials")
	}
}

func must2(_ *Principal, err error) error { return err }

func TestKeyExpiresWithClock(t *testing.T) {
	f := newKeyFixture(t)
	h := bearerOf(f.expiring.token)
	if _, err := f.a.Authenticate(h); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour) // exactly at Expires: refused
	_, err := f.a.Authenticate(h)
	wantKind(t, err, oip.KindUnauthenticated, "expired at 2026-05-01T13:00:00Z")
}

// TestUpdateRevokesAtOnce proves that a key revoked in a new snapshot is
// refused by the next request.
func TestUpdateRevokesAtOnce(t *testing.T) {
	f := newKeyFixture(t)
	h := bearerOf(f.good.token)
	p, err := f.a.Authenticate(h)
	if err != nil {
		t.Fatal(err)
	}
	snap := f.snap
	snap.Keys = append([]Key(nil), snap.Keys...)
	snap.Keys[0].Revoked = t0
	if err := f.a.Update(snap); err != nil {
		t.Fatal(err)
	}
	_, err = f.a.Authenticate(h)
	wantKind(t, err, oip.KindUnauthenticated, "revoked at 2026-05-01T12:00:00Z")
	// Removing the key altogether makes it unknown.
	snap.Keys = snap.Keys[1:]
	_ = f.a.Update(snap)
	_, err = f.a.Authenticate(h)
	wantKind(t, err, oip.KindUnauthenticated, "unknown API key")
	// The principal handed out before still answers with its grants.
	if !p.Allowed("m", nil, ActionInfer) {
		t.Error("an earlier principal lost its grants")
	}
}

func TestUpdateReportsAndLeavesOut(t *testing.T) {
	k1 := mustKey(t, "a", time.Time{})
	k2 := mustKey(t, "a", time.Time{})
	dup := k2.key
	dup.Name = "copy"
	snap := Snapshot{
		Tenants: []Tenant{{Name: "a"}, {Name: "Bad_Name"}, {Name: "a"}},
		Keys:    []Key{k1.key, k2.key, dup, {ID: "0123456789abcdef", Tenant: "nobody"}, {ID: "short", Tenant: "a"}},
		Grants: []Grant{
			{ID: 1, Tenant: "nobody", Actions: ActionInfer, Models: []string{"*"}},
			{ID: 2, Tenant: "a", Actions: 0},
			{ID: 3, Tenant: "a", Actions: ActionInfer},
			{ID: 4, Tenant: "a", Actions: ActionMetadata | 1<<12, Models: []string{"m"}},
		},
	}
	a, _ := New(Options{})
	err := a.Update(snap)
	if err == nil {
		t.Fatal("Update of a flawed snapshot reported nothing")
	}
	for _, want := range []string{`"Bad_Name" is not a DNS label`, `tenant "a": listed twice`, "key " + k2.key.ID + ": listed twice", `key 0123456789abcdef: unknown tenant "nobody"`, `key "short": id is not 16 hex digits`, `grant 1: unknown tenant "nobody"`, "grant 2: no known action", "grant 3: infer on no model", "grant 4: unknown actions 0x1000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Update error lacks %q:\n%v", want, err)
		}
	}
	if snapErr := snap.Validate(); snapErr == nil || snapErr.Error() != err.Error() {
		t.Errorf("Validate = %v, want Update's report", snapErr)
	}
	// The rest is in force: k1 works, both copies of k2 are refused.
	p, err := a.Authenticate(bearerOf(k1.token))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Allowed("m", nil, ActionMetadata) || p.Allowed("m", nil, ActionInfer) {
		t.Error("grant 4's metadata on m not in force, or grant 3 granted something")
	}
	if _, err := a.Authenticate(bearerOf(k2.token)); err == nil {
		t.Error("a key listed twice is accepted")
	}
}

// TestAuthenticateWhileUpdate runs authentication against snapshots being
// swapped (run it with -race): every answer is one of the two snapshots'.
func TestAuthenticateWhileUpdate(t *testing.T) {
	clock := newClock()
	s1 := rsaSigner("k1", 0)
	k := mustKey(t, "team-a", time.Time{})
	live := Snapshot{Tenants: []Tenant{{Name: "team-a"}}, Keys: []Key{k.key}}
	revoked := live
	revoked.Keys = []Key{k.key}
	revoked.Keys[0].Revoked = t0
	a, _ := newFileAuth(t, clock, live, nil, s1)
	jwtHeader := bearerOf(s1.sign(t, claims("team-a", nil)))
	keyHeader := bearerOf(k.token)

	const readers, rounds = 4, 2000
	var wg sync.WaitGroup
	var accepted, refused atomic.Int64
	stop := make(chan struct{})
	for i := range readers {
		wg.Go(func() {
			for range rounds {
				h := keyHeader
				if i%2 == 1 {
					h = jwtHeader
				}
				p, err := a.Authenticate(h)
				switch {
				case err == nil && p.Tenant == "team-a":
					accepted.Add(1)
				case err != nil && strings.Contains(err.Error(), "revoked"):
					refused.Add(1)
				default:
					t.Errorf("unexpected answer %+v, %v", p, err)
					return
				}
			}
		})
	}
	updates := make(chan struct{})
	go func() {
		defer close(updates)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				_ = a.Update(revoked)
			} else {
				_ = a.Update(live)
			}
			if i > 100_000 {
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-updates
	if accepted.Load() == 0 {
		t.Error("nothing was accepted")
	}
	t.Logf("accepted %d, refused %d", accepted.Load(), refused.Load())
}

func TestAPIKeyPathAllocatesNothing(t *testing.T) {
	f := newKeyFixture(t)
	h := bearerOf(f.expiring.token)
	s := string(h)
	if n := testing.AllocsPerRun(200, func() {
		if _, err := f.a.Authenticate(h); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Authenticate(API key) allocates %v times", n)
	}
	if n := testing.AllocsPerRun(200, func() {
		if _, err := f.a.AuthenticateString(s); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("AuthenticateString(API key) allocates %v times", n)
	}
	// Refusing garbage allocates nothing either.
	for _, bad := range []string{"", "Basic x", "Bearer igk_short", "Bearer nodots"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = f.a.AuthenticateString(bad) }); n != 0 {
			t.Errorf("refusing %q allocates %v times", bad, n)
		}
	}
}

// FuzzAuthenticate feeds arbitrary Authorization values to an
// Authenticator that takes both API keys and JWTs: it never panics,
// refuses with a 401 error, and never echoes the token.
func FuzzAuthenticate(f *testing.F) {
	clock := newClock()
	s1 := rsaSigner("k1", 0)
	k := mustKey(f, "team-a", time.Time{})
	a, _ := newFileAuth(f, clock, Snapshot{Tenants: []Tenant{{Name: "team-a"}}, Keys: []Key{k.key}}, func(o *JWTOptions) {
		o.MinRefetchInterval = time.Hour // one JWKS load, not one per input
	}, s1)
	good := s1.sign(f, claims("team-a", nil))
	parts := strings.Split(good, ".")
	for _, s := range []string{
		"Bearer " + k.token, "Bearer " + good, "Bearer " + parts[0] + "." + parts[1] + ".",
		"Bearer " + parts[0] + ".." + parts[2], "Bearer ...", "Bearer a.b.c.d.e", "bearer igk_", "Bearer eyJ.eyJ.x",
		"Bearer " + noneToken("k1", claims("team-a", nil)), "", "Bearer", "\x00", "Bearer \xff\xfe.\x80.",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		p, err := a.Authenticate(header)
		if err == nil {
			if p == nil || p.Tenant != "team-a" {
				t.Fatalf("accepted %q as %+v", header, p)
			}
			return
		}
		if k := oip.KindOf(err); k != oip.KindUnauthenticated {
			t.Fatalf("Authenticate(%q): kind %v: %v", header, k, err)
		}
		if tok, ok := BearerToken(header); ok && len(tok) > 40 && strings.Contains(err.Error(), string(tok)) {
			t.Fatalf("error %q repeats the token", err)
		}
	})
}

func BenchmarkAuthenticateAPIKey(b *testing.B) {
	// The real clock, and a key with an expiry, so that the clock is read.
	k := mustKey(b, "team-a", time.Now().Add(time.Hour))
	a, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	snap := Snapshot{Tenants: []Tenant{{Name: "team-a"}}, Keys: []Key{k.key}}
	for i := range 10000 { // a realistic number of keys
		other := mustKey(b, "team-a", time.Time{})
		other.key.Name = fmt.Sprint(i)
		snap.Keys = append(snap.Keys, other.key)
	}
	if err := a.Update(snap); err != nil {
		b.Fatal(err)
	}
	f := struct{ a *Authenticator }{a}
	h := bearerOf(k.token)
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.a.Authenticate(h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f.a.Authenticate(h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("string", func(b *testing.B) {
		s := string(h)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.a.AuthenticateString(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
