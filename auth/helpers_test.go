package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/infergate/infergate/oip"
)

// t0 is the tests' now.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKey is a key made for a test, with its token.
type testKey struct {
	token string
	key   Key
}

func mustKey(t testing.TB, tenant string, expires time.Time) testKey {
	t.Helper()
	tok, k, err := NewKey(tenant, "test", expires)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{tok, k}
}

// wantKind fails the test unless err is an *oip.Error of kind k whose
// message contains every one of want.
func wantKind(t testing.TB, err error, k oip.Kind, want ...string) {
	t.Helper()
	var e *oip.Error
	if !errors.As(err, &e) || e.Kind != k {
		t.Fatalf("err = %v (%T), want an *oip.Error of kind %v", err, err, k)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %q, want it to mention %q", err, w)
		}
	}
}

// jwtSigner signs tokens with one key of a JWKS.
type jwtSigner struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
	pub  jose.JSONWebKey
}

var (
	rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
		var ks []*rsa.PrivateKey
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			ks = append(ks, k)
		}
		return ks
	})
)

// rsaSigner returns an RS256 signer with the i-th shared RSA key (0 to 2).
func rsaSigner(kid string, i int) jwtSigner {
	k := rsaKeys()[i]
	return jwtSigner{kid: kid, alg: jose.RS256, priv: k, pub: jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Use: "sig", Algorithm: "RS256"}}
}

func ecSigner(t testing.TB, kid string) jwtSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jwtSigner{kid: kid, alg: jose.ES256, priv: k, pub: jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Use: "sig"}}
}

func edSigner(t testing.TB, kid string) jwtSigner {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jwtSigner{kid: kid, alg: jose.EdDSA, priv: priv, pub: jose.JSONWebKey{Key: pub, KeyID: kid}}
}

func hmacSigner(kid string, secret []byte) jwtSigner {
	return jwtSigner{kid: kid, alg: jose.HS256, priv: secret, pub: jose.JSONWebKey{Key: secret, KeyID: kid, Algorithm: "HS256"}}
}

// sign returns a compact JWT of claims with s's key and kid.
func (s jwtSigner) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), s.kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims are a good token's claims at t0 for tenant, merged with over (a
// nil value deletes the claim).
func claims(tenant string, over map[string]any) map[string]any {
	c := map[string]any{
		"iss":    "https://idp.test",
		"aud":    []string{"infergate"},
		"sub":    "alice",
		"tenant": tenant,
		"iat":    t0.Add(-time.Minute).Unix(),
		"exp":    t0.Add(time.Hour).Unix(),
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func jwksDoc(t testing.TB, signers ...jwtSigner) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, s := range signers {
		set.Keys = append(set.Keys, s.pub)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeJWKS writes the signers' public keys to path, atomically.
func writeJWKS(t testing.TB, path string, signers ...jwtSigner) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, jwksDoc(t, signers...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// jwtOptions are options for a JWKS at loc that the claims helper's tokens
// satisfy.
func jwtOptions(loc string) *JWTOptions {
	return &JWTOptions{JWKS: loc, Issuer: "https://idp.test", Audience: "infergate"}
}

// newFileAuth returns an Authenticator on clock with a JWKS file holding
// signers, and the file's path; snap is applied.
func newFileAuth(t testing.TB, clock *fakeClock, snap Snapshot, mod func(*JWTOptions), signers ...jwtSigner) (*Authenticator, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, path, signers...)
	o := jwtOptions(path)
	if mod != nil {
		mod(o)
	}
	a, err := New(Options{JWT: o, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(snap); err != nil {
		t.Fatal(err)
	}
	return a, path
}

func bearerOf(tok string) []byte { return []byte("Bearer " + tok) }
