package auth

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures an Authenticator. The zero value accepts API keys
// only.
type Options struct {
	// JWT, when set, accepts JWT bearer tokens as well.
	JWT *JWTOptions
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives JWKS load failures; nothing is logged per request.
	// Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the metrics listed in the package
	// documentation.
	Registerer prometheus.Registerer
}

// Authenticator turns an Authorization value into a Principal: an API key
// checked against the current Snapshot, or a JWT checked against a JWKS.
// It is safe for concurrent use; Update swaps the snapshot atomically
// under requests in flight.
type Authenticator struct {
	now   func() time.Time
	snap  atomic.Pointer[compiled]
	jwt   *jwtVerifier // nil without JWT
	cache *tokenCache  // nil without JWT or with caching off

	failures      [numReasons]prometheus.Counter
	jwksRefreshes *prometheus.CounterVec
}

// New returns an Authenticator that knows no tenant until the first
// Update. It does no I/O: the JWKS is loaded by Run, Refresh, or the
// first JWT to need it.
func New(opts Options) (*Authenticator, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Authenticator{now: opts.Now}
	a.snap.Store(&compiled{keys: map[string]*keyEntry{}, tenants: map[string]*tenantPolicy{}})
	if opts.JWT != nil {
		v, err := newJWTVerifier(*opts.JWT, opts.Now, opts.Logger)
		if err != nil {
			return nil, err
		}
		a.jwt = v
		a.cache = newTokenCache(v.opts.CacheSize)
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "infergate_auth_failures_total",
		Help: "Requests refused authentication, by reason (missing, malformed, unknown_key, wrong_secret, expired, revoked, invalid_jwt, unknown_tenant).",
	}, []string{"reason"})
	for r, name := range reasonNames {
		a.failures[r] = failures.WithLabelValues(name)
	}
	a.jwksRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "infergate_auth_jwks_loads_total",
		Help: "Loads of the JWT verification keys (JWKS), by result (ok, error).",
	}, []string{"result"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{failures, a.jwksRefreshes} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if a.jwt != nil {
		a.jwt.src.onLoad = func(err error) {
			if err != nil {
				a.jwksRefreshes.WithLabelValues("error").Inc()
			} else {
				a.jwksRefreshes.WithLabelValues("ok").Inc()
			}
		}
	}
	return a, nil
}

// Update puts s in force for every request that starts after it returns;
// a key revoked or removed in s is refused from then on, and tokens
// verified before are checked again. Entries that Snapshot.Validate
// reports are left out, so they grant nothing; Update returns that report
// but applies the rest of s all the same.
func (a *Authenticator) Update(s Snapshot) error {
	c, err := compile(&s)
	a.snap.Store(c)
	if a.cache != nil {
		a.cache.clear()
	}
	return err
}

// Authenticate reads an Authorization value, "Bearer <token>" with the
// scheme in any case, as fasthttp's Request.Header.Peek("Authorization")
// gives it. A token starting igk_ is an API key; one with dots, a JWT (when
// Options.JWT is set). It does not retain authorization.
//
// The error is an *oip.Error of kind oip.KindUnauthenticated (401,
// UNAUTHENTICATED) saying what is wrong with the credential and naming at
// most its public part (an API key's id, a JWT's claims); ErrNoCredentials
// when authorization is empty. A JWT for a tenant the snapshot does not
// hold is refused as unauthenticated too: the gateway does not know who
// the caller is. Only a JWKS that was never loaded is the gateway's own
// failure, of kind oip.KindUnavailable.
//
// An API key, and a JWT already verified, cost no allocation.
func (a *Authenticator) Authenticate(authorization []byte) (*Principal, error) {
	return authenticate(a, authorization)
}

// AuthenticateString is Authenticate for a string, as gRPC metadata
// ("authorization") carries it.
func (a *Authenticator) AuthenticateString(authorization string) (*Principal, error) {
	return authenticate(a, authorization)
}

func authenticate[T ~string | ~[]byte](a *Authenticator, v T) (*Principal, error) {
	if len(trimSpace(v)) == 0 {
		return nil, a.fail(reasonMissing, ErrNoCredentials)
	}
	tok, ok := bearer(v)
	if !ok {
		return nil, a.fail(reasonMalformed, errNotBearer)
	}
	if len(tok) >= len(KeyPrefix) && string(tok[:len(KeyPrefix)]) == KeyPrefix {
		return apiKey(a, tok)
	}
	if !hasDot(tok) {
		return nil, a.fail(reasonMalformed, errNotAToken)
	}
	if a.jwt == nil {
		return nil, a.fail(reasonMalformed, errNoJWT)
	}
	return bearerJWT(a, tok)
}

func apiKey[T ~string | ~[]byte](a *Authenticator, tok T) (*Principal, error) {
	id, secret, ok := splitKey(tok)
	if !ok {
		return nil, a.fail(reasonMalformed, errMalformedKey)
	}
	e := a.snap.Load().keys[string(id)]
	if e == nil {
		return nil, a.fail(reasonUnknownKey, keyError(reasonUnknownKey, string(id), time.Time{}))
	}
	// The secret is checked before the key's state, so that a caller
	// without it learns nothing of whether the key is still good.
	h, _ := hashSecret(secret)
	if subtle.ConstantTimeCompare(h[:], e.hash[:]) != 1 {
		return nil, a.fail(reasonWrongSecret, keyError(reasonWrongSecret, string(id), time.Time{}))
	}
	if !e.revoked.IsZero() {
		return nil, a.fail(reasonRevoked, keyError(reasonRevoked, string(id), e.revoked))
	}
	if !e.expires.IsZero() && !a.now().Before(e.expires) {
		return nil, a.fail(reasonExpired, keyError(reasonExpired, string(id), e.expires))
	}
	return &e.principal, nil
}

func bearerJWT[T ~string | ~[]byte](a *Authenticator, tok T) (*Principal, error) {
	now := a.now()
	snap := a.snap.Load()
	if a.cache != nil {
		// An entry holds while its token is unexpired and the snapshot
		// and keys it was checked against are in force. Keys due for a
		// reload are reloaded first (without Run, requests do it).
		if e, ok := cacheGet(a.cache, tok); ok && e.snap == snap && now.Before(e.until) {
			a.jwt.refreshIfStale(now)
			if a.jwt.src.current().gen == e.keysGen {
				return e.p, nil
			}
		}
	}
	s := string(tok)
	v, err := a.jwt.verify(s, now)
	if err != nil {
		if a.cache != nil {
			a.cache.drop(s)
		}
		return nil, a.fail(reasonInvalidJWT, err)
	}
	t := snap.tenants[v.tenant]
	if t == nil || t.tenant.System {
		return nil, a.fail(reasonUnknownTenant, jwtError("tenant %q is not known to this gateway", clip(v.tenant)))
	}
	p := &Principal{Tenant: v.tenant, ID: "jwt:" + v.subject, t: t}
	if a.cache != nil {
		a.cache.put(s, cacheEntry{p: p, until: v.expiry.Add(a.jwt.opts.Leeway), snap: snap, keysGen: v.keysGen})
	}
	return p, nil
}

func hasDot[T ~string | ~[]byte](tok T) bool {
	for i := range len(tok) {
		if tok[i] == '.' {
			return true
		}
	}
	return false
}

func (a *Authenticator) fail(r reason, err error) error {
	a.failures[r].Inc()
	return err
}

// Refresh loads the JWKS now. cmd may call it at start to fail early on a
// JWKS that cannot be read; without JWT it does nothing.
func (a *Authenticator) Refresh(ctx context.Context) error {
	if a.jwt == nil {
		return nil
	}
	return a.jwt.src.refresh(ctx)
}

// Run loads the JWKS at once and then every JWTOptions.RefreshInterval,
// until ctx is done, and returns nil then. A failed load keeps the keys
// already loaded and is logged. Without JWT, Run only waits for ctx.
func (a *Authenticator) Run(ctx context.Context) error {
	if a.jwt == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(a.jwt.opts.RefreshInterval)
	defer t.Stop()
	for {
		if err := a.jwt.src.refresh(ctx); err != nil && ctx.Err() == nil {
			a.jwt.src.log.Warn("auth: JWKS refresh failed; keeping the keys already loaded", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
