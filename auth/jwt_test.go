package auth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/infergate/infergate/oip"
)

var tenantA = Snapshot{
	Tenants: []Tenant{{Name: "team-a"}},
	Grants:  []Grant{{ID: 1, Tenant: "team-a", Actions: ActionInfer, Models: []string{"*"}}},
}

// noneToken is an unsigned JWT ("alg": "none").
func noneToken(kid string, c map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "."
}

func TestJWT(t *testing.T) {
	clock := newClock()
	rs := rsaSigner("k1", 0)
	es := ecSigner(t, "e1")
	ed := edSigner(t, "d1")
	hs := hmacSigner("h1", []byte("0123456789abcdef0123456789abcdef"))
	a, _ := newFileAuth(t, clock, tenantA, nil, rs, es, ed, hs)

	good := claims("team-a", nil)
	tests := []struct {
		name string
		tok  string
		want []string // in the error; nil: accepted
	}{
		{"RS256", rs.sign(t, good), nil},
		{"ES256", es.sign(t, good), nil},
		{"EdDSA", ed.sign(t, good), nil},
		{"audience as a string", rs.sign(t, claims("team-a", map[string]any{"aud": "infergate"})), nil},
		{"expired within leeway", rs.sign(t, claims("team-a", map[string]any{"exp": t0.Add(-30 * time.Second).Unix()})), nil},
		{"wrong audience", rs.sign(t, claims("team-a", map[string]any{"aud": []string{"other", "x"}})), []string{`audience ["other" "x"] does not include "infergate"`}},
		{"no audience", rs.sign(t, claims("team-a", map[string]any{"aud": nil})), []string{"audience"}},
		{"wrong issuer", rs.sign(t, claims("team-a", map[string]any{"iss": "https://evil.test"})), []string{`issuer "https://evil.test" is not "https://idp.test"`}},
		{"expired", rs.sign(t, claims("team-a", map[string]any{"exp": t0.Add(-2 * time.Minute).Unix()})), []string{"expired at 2026-05-01T11:58:00Z"}},
		{"not yet valid", rs.sign(t, claims("team-a", map[string]any{"nbf": t0.Add(2 * time.Minute).Unix()})), []string{"not valid before 2026-05-01T12:02:00Z"}},
		{"issued in the future", rs.sign(t, claims("team-a", map[string]any{"iat": t0.Add(5 * time.Minute).Unix()})), []string{"issued in the future"}},
		{"no expiry", rs.sign(t, claims("team-a", map[string]any{"exp": nil})), []string{"no expiry"}},
		{"no tenant", rs.sign(t, claims("team-a", map[string]any{"tenant": nil})), []string{`claim "tenant" is missing`}},
		{"tenant not a string", rs.sign(t, claims("team-a", map[string]any{"tenant": 7})), []string{`claim "tenant"`}},
		{"unknown tenant", rs.sign(t, claims("team-b", nil)), []string{`tenant "team-b" is not known`}},
		{"unknown signing key", rsaSigner("k9", 1).sign(t, good), []string{`unknown key "k9"`}},
		{"bad signature", rsaSigner("k1", 1).sign(t, good), []string{`signature does not verify with key "k1"`}},
		{"alg none", noneToken("k1", good), []string{"JWT refused", "none"}},
		{"HS256 not configured", hs.sign(t, good), []string{"JWT refused", "HS256"}},
		{"no kid, several keys", jwtSigner{alg: jose.RS256, priv: rsaKeys()[0]}.sign(t, good), []string{"names no signing key (kid)"}},
		{"tampered payload", tamper(rs.sign(t, good)), []string{"signature does not verify"}},
		{"garbage", "a.b.c", []string{"JWT refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(bearerOf(tc.tok))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if p.Tenant != "team-a" || p.ID != "jwt:alice" || !p.Allowed("m", nil, ActionInfer) {
					t.Errorf("principal = %+v", p)
				}
				return
			}
			wantKind(t, err, oip.KindUnauthenticated, tc.want...)
			sig := tc.tok[strings.LastIndexByte(tc.tok, '.')+1:]
			if strings.Contains(err.Error(), tc.tok) || len(sig) > 8 && strings.Contains(err.Error(), sig) {
				t.Errorf("error %q repeats the token", err)
			}
		})
	}
}

// tamper rewrites a token's payload to name another subject, keeping the
// signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	p = []byte(strings.Replace(string(p), `"alice"`, `"mallory"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

func TestJWTHMACWhenConfigured(t *testing.T) {
	hs := hmacSigner("h1", []byte("0123456789abcdef0123456789abcdef"))
	a, _ := newFileAuth(t, newClock(), tenantA, func(o *JWTOptions) {
		o.Algorithms = []string{"HS256"}
		o.TenantClaim = "org"
	}, hs)
	p, err := a.Authenticate(bearerOf(hs.sign(t, claims("", map[string]any{"tenant": nil, "org": "team-a"}))))
	if err != nil {
		t.Fatal(err)
	}
	if p.Tenant != "team-a" {
		t.Errorf("tenant %q", p.Tenant)
	}
	// RS256 is not listed now.
	_, err = a.Authenticate(bearerOf(rsaSigner("k1", 0).sign(t, claims("team-a", nil))))
	wantKind(t, err, oip.KindUnauthenticated, "RS256")
}

// TestJWTKeyConfusion signs an HS256 token with an RSA public key's bytes
// as the HMAC secret, naming the RSA key: with both algorithms allowed it
// must still be refused.
func TestJWTKeyConfusion(t *testing.T) {
	rs := rsaSigner("k1", 0)
	a, _ := newFileAuth(t, newClock(), tenantA, func(o *JWTOptions) {
		o.Algorithms = []string{"RS256", "HS256"}
	}, rs)
	der, err := x509.MarshalPKIXPublicKey(&rsaKeys()[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	forged := jwtSigner{kid: "k1", alg: jose.HS256, priv: der}.sign(t, claims("team-a", nil))
	_, err = a.Authenticate(bearerOf(forged))
	wantKind(t, err, oip.KindUnauthenticated, "JWT refused")
	if _, err := a.Authenticate(bearerOf(rs.sign(t, claims("team-a", nil)))); err != nil {
		t.Fatalf("the genuine token: %v", err)
	}
}

func TestJWTOptionsChecked(t *testing.T) {
	base := func(mod func(*JWTOptions)) *JWTOptions {
		o := jwtOptions("/etc/jwks.json")
		mod(o)
		return o
	}
	tests := []struct {
		name string
		o    *JWTOptions
		want string
	}{
		{"no JWKS", base(func(o *JWTOptions) { o.JWKS = "" }), "JWT.JWKS: empty"},
		{"no issuer", base(func(o *JWTOptions) { o.Issuer = "" }), "JWT.Issuer: empty"},
		{"no audience", base(func(o *JWTOptions) { o.Audience = "" }), "JWT.Audience: empty"},
		{"alg none", base(func(o *JWTOptions) { o.Algorithms = []string{"RS256", "none"} }), `JWT.Algorithms: "none"`},
		{"unknown alg", base(func(o *JWTOptions) { o.Algorithms = []string{"RS1"} }), `JWT.Algorithms: "RS1"`},
		{"negative refresh", base(func(o *JWTOptions) { o.RefreshInterval = -time.Second }), "JWT.RefreshInterval: -1s is negative"},
		{"plain http afar", base(func(o *JWTOptions) { o.JWKS = "http://idp.example.com/jwks" }), "plain http"},
		{"no host", base(func(o *JWTOptions) { o.JWKS = "https:///jwks" }), "has no host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{JWT: tc.o})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error with %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{"http://127.0.0.1:1/jwks", "http://localhost/jwks", "http://[::1]:9/jwks", "https://idp.example.com/jwks", "relative/jwks.json"} {
		if _, err := New(Options{JWT: jwtOptions(ok)}); err != nil {
			t.Errorf("JWKS %q: %v", ok, err)
		}
	}
	o := jwtOptions("http://idp.example.com/jwks")
	o.InsecureHTTP = true
	if _, err := New(Options{JWT: o}); err != nil {
		t.Errorf("InsecureHTTP: %v", err)
	}
}

// TestJWTRotationFile proves that a key added to the JWKS file is accepted
// without restart once the refetch interval allows a reload, and that a
// key removed from it is refused after the next refresh, even for a token
// already cached.
func TestJWTRotationFile(t *testing.T) {
	clock := newClock()
	k1, k2 := rsaSigner("k1", 0), rsaSigner("k2", 1)
	a, path := newFileAuth(t, clock, tenantA, nil, k1)
	tok1 := bearerOf(k1.sign(t, claims("team-a", nil)))
	tok2 := bearerOf(k2.sign(t, claims("team-a", nil)))

	if _, err := a.Authenticate(tok1); err != nil {
		t.Fatal(err)
	}
	writeJWKS(t, path, k1, k2)
	// The file was read a moment ago: an unknown kid does not reread it
	// before MinRefetchInterval.
	_, err := a.Authenticate(tok2)
	wantKind(t, err, oip.KindUnauthenticated, `unknown key "k2"`)
	clock.Advance(10 * time.Second)
	if _, err := a.Authenticate(tok2); err != nil {
		t.Fatalf("rotated-in key: %v", err)
	}

	writeJWKS(t, path, k2)
	clock.Advance(time.Minute)
	if _, err := a.Authenticate(tok1); err != nil {
		t.Fatalf("k1 before the refresh is due: %v", err)
	}
	clock.Advance(5 * time.Minute) // RefreshInterval
	// The request that finds the keys old starts a refresh in the
	// background and goes on with the keys it has, or the new ones if the
	// refresh was quicker: either answer is right.
	_, _ = a.Authenticate(tok1)
	awaitRefresh(a)
	_, err = a.Authenticate(tok1)
	wantKind(t, err, oip.KindUnauthenticated, `unknown key "k1"`)
	if _, err := a.Authenticate(tok2); err != nil {
		t.Fatalf("k2 after the refresh: %v", err)
	}
}

// jwksServer serves a JWKS on a loopback socket and counts its requests.
type jwksServer struct {
	*httptest.Server
	doc  atomic.Pointer[[]byte]
	hits atomic.Int64
	fail atomic.Bool
	hold atomic.Pointer[chan struct{}] // when set, answers wait for it to close
}

func newJWKSServer(t *testing.T, signers ...jwtSigner) *jwksServer {
	s := &jwksServer{}
	s.set(t, signers...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if hold := s.hold.Load(); hold != nil {
			<-*hold
		}
		if s.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(*s.doc.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(t *testing.T, signers ...jwtSigner) {
	d := jwksDoc(t, signers...)
	s.doc.Store(&d)
}

func TestJWTRotationURL(t *testing.T) {
	clock := newClock()
	k1, k2 := rsaSigner("k1", 0), rsaSigner("k2", 1)
	srv := newJWKSServer(t, k1)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s, want loopback", srv.URL)
	}
	a, err := New(Options{JWT: jwtOptions(srv.URL + "/jwks"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Update(tenantA)
	tok1 := bearerOf(k1.sign(t, claims("team-a", nil)))
	tok2 := bearerOf(k2.sign(t, claims("team-a", nil)))
	tok9 := bearerOf(rsaSigner("k9", 2).sign(t, claims("team-a", nil)))

	if _, err := a.Authenticate(tok1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(tok1); err != nil { // cached
		t.Fatal(err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for the first token, want 1", n)
	}
	srv.set(t, k1, k2)
	for range 50 {
		_, err := a.Authenticate(tok2)
		wantKind(t, err, oip.KindUnauthenticated, `unknown key "k2"`)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches within MinRefetchInterval, want 1", n)
	}
	clock.Advance(10 * time.Second)
	if _, err := a.Authenticate(tok2); err != nil {
		t.Fatalf("rotated-in key: %v", err)
	}
	// A flood of tokens signed by unknown keys costs one fetch per
	// MinRefetchInterval.
	clock.Advance(time.Second)
	for range 50 {
		_, err := a.Authenticate(tok9)
		wantKind(t, err, oip.KindUnauthenticated, `unknown key "k9"`)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}
	// Removal: k1 leaves the set; it is refused once a refresh is due.
	srv.set(t, k2)
	clock.Advance(5 * time.Minute)
	// The request that finds the keys old starts a refresh in the
	// background and goes on with the keys it has, or the new ones if the
	// refresh was quicker: either answer is right.
	_, _ = a.Authenticate(tok1)
	awaitRefresh(a)
	_, err = a.Authenticate(tok1)
	wantKind(t, err, oip.KindUnauthenticated, `unknown key "k1"`)
	if n := srv.hits.Load(); n != 3 {
		t.Fatalf("%d JWKS fetches, want 3", n)
	}
	// A failed refresh keeps the keys known.
	srv.fail.Store(true)
	clock.Advance(5 * time.Minute)
	if _, err := a.Authenticate(tok2); err != nil {
		t.Fatalf("k2 while the JWKS server fails: %v", err)
	}
	awaitRefresh(a)
	for range 20 {
		if _, err := a.Authenticate(tok2); err != nil {
			t.Fatalf("k2 while the JWKS server fails: %v", err)
		}
	}
	if n := srv.hits.Load(); n != 4 {
		t.Fatalf("%d JWKS fetches, want 4 (one per MinRefetchInterval)", n)
	}
	clock.Advance(10 * time.Second)
	if _, err := a.Authenticate(tok2); err != nil {
		t.Fatal(err)
	}
	awaitRefresh(a)
	if n := srv.hits.Load(); n != 5 {
		t.Fatalf("%d JWKS fetches, want 5", n)
	}
}

func TestJWKSNeverLoaded(t *testing.T) {
	srv := newJWKSServer(t, rsaSigner("k1", 0))
	srv.fail.Store(true)
	a, err := New(Options{JWT: jwtOptions(srv.URL), Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Update(tenantA)
	_, err = a.Authenticate(bearerOf(rsaSigner("k1", 0).sign(t, claims("team-a", nil))))
	wantKind(t, err, oip.KindUnavailable, "JWT signing keys could not be loaded")
	if err := a.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "answered HTTP 500") {
		t.Errorf("Refresh = %v, want the server's 500", err)
	}
}

func TestParseJWKSSkipsWhatItCannotUse(t *testing.T) {
	rs := rsaSigner("k1", 0)
	doc := `{"keys":[` +
		`{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},` +
		`{"kty":"XYZ","kid":"odd"},` +
		`{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},` +
		string(jwksDoc(t, rs)[len(`{"keys":[`):])
	set, skipped, err := parseJWKS([]byte(doc), false)
	if err != nil {
		t.Fatal(err)
	}
	if set.n != 1 || len(set.byKID["k1"]) != 1 || len(skipped) != 1 {
		t.Errorf("set of %d keys %v, skipped %v; want k1 alone and the odd key skipped", set.n, set.byKID, skipped)
	}
	for _, bad := range []string{``, `[]`, `{"keys":[]}`, `{"keys":[{"kty":"XYZ"}]}`} {
		if _, _, err := parseJWKS([]byte(bad), false); err == nil {
			t.Errorf("parseJWKS(%q) succeeded", bad)
		}
	}
}

// TestJWTCache checks that a verified token is answered from the cache,
// and that the cache holds no longer than the token, the snapshot and the
// keys.
func TestJWTCache(t *testing.T) {
	clock := newClock()
	rs := rsaSigner("k1", 0)
	a, _ := newFileAuth(t, clock, tenantA, nil, rs)
	tok := bearerOf(rs.sign(t, claims("team-a", map[string]any{"exp": t0.Add(2 * time.Minute).Unix()})))
	p1, err := a.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.AuthenticateString(string(tok))
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 || a.cache.len() != 1 {
		t.Errorf("second sight not from the cache (%p, %p, %d entries)", p1, p2, a.cache.len())
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := a.Authenticate(tok); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a cached JWT allocates %v times", n)
	}

	// An Update drops the tenant: the cached token is refused.
	_ = a.Update(Snapshot{Tenants: []Tenant{{Name: "team-b"}}})
	_, err = a.Authenticate(tok)
	wantKind(t, err, oip.KindUnauthenticated, `tenant "team-a" is not known`)
	_ = a.Update(tenantA)
	p3, err := a.Authenticate(tok)
	if err != nil || p3 == p1 {
		t.Fatalf("after the tenant's return: %v (same principal %v)", err, p3 == p1)
	}
	// Past exp plus leeway the cached token is refused.
	clock.Advance(3*time.Minute + time.Second)
	_, err = a.Authenticate(tok)
	wantKind(t, err, oip.KindUnauthenticated, "expired")
	if a.cache.len() != 0 {
		t.Errorf("%d entries after the token expired", a.cache.len())
	}

	// The cache is bounded.
	small, _ := newFileAuth(t, clock, tenantA, func(o *JWTOptions) { o.CacheSize = 3 }, rs)
	for i := range 10 {
		c := claims("team-a", map[string]any{"sub": string(rune('a' + i)), "exp": clock.Now().Add(time.Hour).Unix()})
		if _, err := small.Authenticate(bearerOf(rs.sign(t, c))); err != nil {
			t.Fatal(err)
		}
	}
	if n := small.cache.len(); n != 3 {
		t.Errorf("cache of size 3 holds %d", n)
	}
}

// TestRunRefreshes proves that Run reloads the JWKS each RefreshInterval
// on its own, so a removed key is refused without a request asking.
func TestRunRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k1, k2 := rsaSigner("k1", 0), rsaSigner("k2", 1)
		path := filepath.Join(t.TempDir(), "jwks.json")
		writeJWKS(t, path, k1)
		o := jwtOptions(path)
		o.RefreshInterval = time.Minute
		a, err := New(Options{JWT: o})
		if err != nil {
			t.Fatal(err)
		}
		_ = a.Update(tenantA)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		synctest.Wait()
		first := a.jwt.src.current()
		if first == nil {
			t.Fatal("Run did not load the JWKS at once")
		}
		now := time.Now()
		c := claims("team-a", map[string]any{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		tok1, tok2 := bearerOf(k1.sign(t, c)), bearerOf(k2.sign(t, c))
		if _, err := a.Authenticate(tok1); err != nil {
			t.Fatal(err)
		}

		writeJWKS(t, path, k2)
		time.Sleep(time.Minute) // fake time: one RefreshInterval
		synctest.Wait()
		if cur := a.jwt.src.current(); cur.gen == first.gen || !cur.loaded.Equal(time.Now()) {
			t.Fatalf("Run did not reload the changed JWKS (gen %d -> %d)", first.gen, cur.gen)
		}
		_, err = a.Authenticate(tok1)
		wantKind(t, err, oip.KindUnauthenticated, `unknown key "k1"`)
		if _, err := a.Authenticate(tok2); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

func BenchmarkAuthenticateJWT(b *testing.B) {
	clock := newClock()
	rs, es := rsaSigner("k1", 0), ecSigner(b, "e1")
	for _, s := range []jwtSigner{rs, es} {
		b.Run(string(s.alg)+"/cached", func(b *testing.B) {
			a, _ := newFileAuth(b, clock, tenantA, nil, s)
			h := bearerOf(s.sign(b, claims("team-a", nil)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(h); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(s.alg)+"/uncached", func(b *testing.B) {
			a, _ := newFileAuth(b, clock, tenantA, func(o *JWTOptions) { o.CacheSize = -1 }, s)
			h := bearerOf(s.sign(b, claims("team-a", nil)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("RS256/cached/parallel", func(b *testing.B) {
		a, _ := newFileAuth(b, clock, tenantA, nil, rs)
		h := bearerOf(rs.sign(b, claims("team-a", nil)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.Authenticate(h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// TestFirstLoadShared starts several requests before the JWKS was ever
// loaded: they all wait for the one load rather than being refused while
// it is in progress.
func TestFirstLoadShared(t *testing.T) {
	const n = 8
	k1 := rsaSigner("k1", 0)
	var ready atomic.Int32
	allIn := make(chan struct{})
	srv := newJWKSServer(t, k1)
	srv.hold.Store(&allIn) // answer once every request has started
	a, err := New(Options{JWT: jwtOptions(srv.URL), Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Update(tenantA)
	h := bearerOf(k1.sign(t, claims("team-a", nil)))
	errs := make(chan error, n)
	for range n {
		go func() {
			if ready.Add(1) == n {
				close(allIn)
			}
			_, err := a.Authenticate(h)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("%d loads, want 1", got)
	}
}

// TestJWTNeverNamesASystemTenant: infergate's own tenants (System) are
// reached by their keys only, never by a JWT's tenant claim.
func TestJWTNeverNamesASystemTenant(t *testing.T) {
	clock := newClock()
	signer := rsaSigner("k1", 0)
	snap := Snapshot{
		Tenants: []Tenant{{Name: "infergate-local", System: true}},
		Grants:  []Grant{{ID: 1, Tenant: "infergate-local", Actions: ActionAdmin | ActionCommand}},
	}
	a, _ := newFileAuth(t, clock, snap, nil, signer)
	_, err := a.Authenticate(bearerOf(signer.sign(t, claims("infergate-local", nil))))
	wantKind(t, err, oip.KindUnauthenticated, "infergate-local")
}

// awaitRefresh waits for a background refresh of a's keys, if one runs:
// it holds the source's lock until it ends.
func awaitRefresh(a *Authenticator) {
	a.jwt.src.mu.Lock()
	a.jwt.src.mu.Unlock() //nolint:staticcheck // an empty critical section: waiting is the point
}

// TestStaleKeysDoNotHoldRequests: when the keys are due for a refresh and
// the identity provider does not answer, requests with known keys go on
// with the keys they have instead of waiting for it.
func TestStaleKeysDoNotHoldRequests(t *testing.T) {
	clock := newClock()
	k1 := rsaSigner("k1", 0)
	srv := newJWKSServer(t, k1)
	snap := Snapshot{Tenants: []Tenant{{Name: "acme"}}}
	o := jwtOptions(srv.URL)
	o.FetchTimeout = 10 * time.Minute // a provider that hangs rather than fails
	a, err := New(Options{JWT: o, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(snap); err != nil {
		t.Fatal(err)
	}
	tok := bearerOf(k1.sign(t, claims("acme", nil)))
	if _, err := a.Authenticate(tok); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	srv.hold.Store(&hold)
	clock.Advance(6 * time.Minute) // past RefreshInterval
	done := make(chan error, 2)
	go func() {
		_, err := a.Authenticate(tok) // cached: starts the refresh
		done <- err
	}()
	go func() {
		_, err := a.Authenticate(bearerOf(k1.sign(t, claims("acme", map[string]any{"sub": "bob"})))) // not cached
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("a request with a known key: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("a request waited for the unanswered JWKS refresh")
		}
	}
	close(hold)
	awaitRefresh(a)
}
