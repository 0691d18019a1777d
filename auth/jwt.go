package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTOptions configures the verification of JWT bearer tokens. JWKS,
// Issuer and Audience are required; the other fields default as their
// comments say.
type JWTOptions struct {
	// JWKS is where the verification keys are: a file path, or an
	// https:// URL (http:// only from a loopback host, unless
	// InsecureHTTP).
	JWKS string
	// Issuer must equal a token's "iss".
	Issuer string
	// Audience must be among a token's "aud": without it a token minted
	// by the same identity provider for another service would be
	// accepted here.
	Audience string
	// Algorithms are the signature algorithms accepted ("alg"); default
	// RS256, ES256 and EdDSA. "none" is never accepted; HMAC (HS256,
	// HS384, HS512) only when listed here, and then with the JWKS's
	// symmetric ("oct") keys.
	Algorithms []string
	// Leeway is the clock skew allowed on "exp", "nbf" and "iat";
	// 0 means 60 s, a negative value none.
	Leeway time.Duration
	// TenantClaim names the claim that holds the tenant's name (a
	// string); default "tenant". A token without it is refused.
	TenantClaim string
	// RefreshInterval is how often the JWKS is reloaded (by Run, or by
	// the first token verified after the keys grew older than it);
	// default 5 minutes.
	RefreshInterval time.Duration
	// MinRefetchInterval spaces the reloads that tokens signed by an
	// unknown key ask for, so that a flood of them costs one load per
	// interval; default 10 s.
	MinRefetchInterval time.Duration
	// FetchTimeout bounds one load of the JWKS; default 10 s.
	FetchTimeout time.Duration
	// HTTPClient fetches a JWKS URL; default a client of its own.
	HTTPClient *http.Client
	// InsecureHTTP allows an http:// JWKS URL from a host that is not
	// loopback. Anyone on the path could then sign tokens.
	InsecureHTTP bool
	// CacheSize bounds the verified tokens remembered so that a repeated
	// token costs a map lookup, not a signature check; default 4096,
	// negative for none. An entry holds until the token's exp (plus
	// Leeway), the next Authenticator.Update, or a change of the keys.
	CacheSize int
}

// defaultAlgorithms are the asymmetric algorithms identity providers sign
// with.
var defaultAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

var knownAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.HS256, jose.HS384, jose.HS512,
}

// newJWTVerifier checks o, fills in its defaults and makes the verifier.
// Errors name the field.
func newJWTVerifier(o JWTOptions, now func() time.Time, log *slog.Logger) (*jwtVerifier, error) {
	switch {
	case o.JWKS == "":
		return nil, errors.New("auth: JWT.JWKS: empty (a file path or an https:// URL)")
	case o.Issuer == "":
		return nil, errors.New("auth: JWT.Issuer: empty (tokens must name their issuer)")
	case o.Audience == "":
		return nil, errors.New("auth: JWT.Audience: empty (tokens must be minted for this gateway)")
	}
	isURL, err := jwksIsURL(o.JWKS, o.InsecureHTTP)
	if err != nil {
		return nil, err
	}
	// go-jose verifies with the algorithm the token names, checked
	// against algs, and by the key's type: HMAC only with the JWKS's
	// symmetric keys, which are loaded only when an HMAC algorithm is
	// allowed. A public key is thus never used as an HMAC secret.
	algs := defaultAlgorithms
	symmetric := false
	if len(o.Algorithms) > 0 {
		algs = nil
		for _, name := range o.Algorithms {
			alg := jose.SignatureAlgorithm(name)
			if !slices.Contains(knownAlgorithms, alg) {
				return nil, fmt.Errorf("auth: JWT.Algorithms: %q is not a signature algorithm this gateway accepts (want one of %v)", name, knownAlgorithms)
			}
			symmetric = symmetric || strings.HasPrefix(name, "HS")
			algs = append(algs, alg)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RefreshInterval", &o.RefreshInterval, 5 * time.Minute},
		{"MinRefetchInterval", &o.MinRefetchInterval, 10 * time.Second},
		{"FetchTimeout", &o.FetchTimeout, 10 * time.Second},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("auth: JWT.%s: %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.Leeway == 0 {
		o.Leeway = time.Minute
	}
	o.Leeway = max(o.Leeway, 0)
	if o.TenantClaim == "" {
		o.TenantClaim = "tenant"
	}
	if o.CacheSize == 0 {
		o.CacheSize = 4096
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.FetchTimeout}
	}
	return &jwtVerifier{
		opts:     o,
		algs:     algs,
		expected: jwt.Expected{Issuer: o.Issuer, AnyAudience: jwt.Audience{o.Audience}},
		src: &jwksSource{
			loc:        o.JWKS,
			isURL:      isURL,
			client:     o.HTTPClient,
			timeout:    o.FetchTimeout,
			symmetric:  symmetric,
			now:        now,
			log:        log,
			minRefetch: o.MinRefetchInterval,
			every:      o.RefreshInterval,
		},
	}, nil
}

// jwksIsURL tells a JWKS URL from a path, refusing plain http from a host
// that is not loopback unless insecure.
func jwksIsURL(loc string, insecure bool) (bool, error) {
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false, nil // a file path
	}
	if u.Host == "" {
		return false, fmt.Errorf("auth: JWT.JWKS: %q has no host", loc)
	}
	if u.Scheme == "http" && !insecure && !isLoopbackHost(u.Hostname()) {
		return false, fmt.Errorf("auth: JWT.JWKS: %q is plain http to a host that is not loopback, so anyone on the path could sign tokens; use https:// (or set InsecureHTTP)", loc)
	}
	return true, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// jwtVerifier checks JWTs against the JWKS.
type jwtVerifier struct {
	opts     JWTOptions
	algs     []jose.SignatureAlgorithm
	expected jwt.Expected
	src      *jwksSource
}

// verifiedJWT is what a good token says.
type verifiedJWT struct {
	tenant, subject string
	expiry          time.Time
	// keysGen is the generation of the keys that verified it.
	keysGen uint64
}

// verify checks token's signature, issuer, audience and times at now, and
// reads its tenant. Its errors are of kind KindUnauthenticated and name
// no part of the token but claims and key ids.
func (v *jwtVerifier) verify(token string, now time.Time) (verifiedJWT, error) {
	tok, err := jwt.ParseSigned(token, v.algs)
	if err != nil {
		return verifiedJWT{}, jwtError("%s", strings.TrimPrefix(err.Error(), "go-jose/go-jose: "))
	}
	h := tok.Headers[0]
	v.refreshIfStale(now)
	set := v.src.current()
	keys := set.candidates(h.KeyID, h.Algorithm)
	if len(keys) == 0 && h.KeyID != "" {
		// The keys may have been rotated since the last load.
		if err := v.src.refreshIfDue(now, true); err != nil {
			v.src.log.Warn("auth: JWKS refresh failed; keeping the keys already loaded", "err", err)
		}
		set = v.src.current()
		keys = set.candidates(h.KeyID, h.Algorithm)
	}
	if set == nil {
		return verifiedJWT{}, unavailable("JWT signing keys could not be loaded from %s", v.opts.JWKS)
	}
	if len(keys) == 0 {
		if h.KeyID == "" {
			return verifiedJWT{}, jwtError("it names no signing key (kid) and the JWKS holds %d keys", set.n)
		}
		return verifiedJWT{}, jwtError("signed by unknown key %q (alg %s)", h.KeyID, h.Algorithm)
	}
	var (
		std   jwt.Claims
		extra map[string]any
	)
	verified := false
	for _, k := range keys {
		if err := tok.Claims(k.Key, &std, &extra); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return verifiedJWT{}, jwtError("signature does not verify with key %q (alg %s)", h.KeyID, h.Algorithm)
	}
	e := v.expected
	e.Time = now
	if err := std.ValidateWithLeeway(e, v.opts.Leeway); err != nil {
		return verifiedJWT{}, v.claimsError(err, &std)
	}
	if std.Expiry == nil {
		return verifiedJWT{}, jwtError("it has no expiry (exp)")
	}
	tenant, _ := extra[v.opts.TenantClaim].(string)
	if tenant == "" {
		return verifiedJWT{}, jwtError("no tenant: claim %q is missing or not a string", v.opts.TenantClaim)
	}
	return verifiedJWT{tenant: tenant, subject: std.Subject, expiry: std.Expiry.Time(), keysGen: set.gen}, nil
}

// refreshIfStale reloads the keys if they are older than RefreshInterval
// (and a load is not in progress, nor was tried within
// MinRefetchInterval); it logs a failure, keeping the keys loaded.
func (v *jwtVerifier) refreshIfStale(now time.Time) {
	if err := v.src.refreshIfDue(now, false); err != nil {
		v.src.log.Warn("auth: JWKS refresh failed; keeping the keys already loaded", "err", err)
	}
}

func (v *jwtVerifier) claimsError(err error, c *jwt.Claims) error {
	at := func(d *jwt.NumericDate) string { return d.Time().UTC().Format(time.RFC3339) }
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return jwtError("issuer %q is not %q", clip(c.Issuer), v.opts.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return jwtError("audience %q does not include %q", clipAll(c.Audience), v.opts.Audience)
	case errors.Is(err, jwt.ErrExpired):
		return jwtError("expired at %s", at(c.Expiry))
	case errors.Is(err, jwt.ErrNotValidYet):
		return jwtError("not valid before %s", at(c.NotBefore))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return jwtError("issued in the future, at %s", at(c.IssuedAt))
	}
	return jwtError("%s", strings.TrimPrefix(err.Error(), "go-jose/go-jose/jwt: "))
}

// clip shortens a claim from the token for an error message.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

func clipAll(ss []string) []string {
	if len(ss) > 5 {
		ss = ss[:5]
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clip(s)
	}
	return out
}
