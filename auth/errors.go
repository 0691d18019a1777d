package auth

import (
	"fmt"
	"time"

	"github.com/infergate/infergate/oip"
)

// ErrNoCredentials is Authenticate's error for an empty or absent
// Authorization value. A caller that lets anonymous requests through
// somewhere (a loopback-only port) tells this one from the others with
// errors.Is.
var ErrNoCredentials error = &oip.Error{Kind: oip.KindUnauthenticated, Msg: "no credentials: send Authorization: Bearer <API key or JWT>"}

// The refusals that name nothing of the request are made once, so that
// refusing a flood of garbage allocates nothing.
var (
	errNotBearer    error = &oip.Error{Kind: oip.KindUnauthenticated, Msg: `the Authorization value is not "Bearer <API key or JWT>"`}
	errMalformedKey error = &oip.Error{Kind: oip.KindUnauthenticated, Msg: "malformed API key: want igk_<16 hex digits>_<43 base64url characters>"}
	errNotAToken    error = &oip.Error{Kind: oip.KindUnauthenticated, Msg: "the bearer token is neither an API key (igk_...) nor a JWT"}
	errNoJWT        error = &oip.Error{Kind: oip.KindUnauthenticated, Msg: "the bearer token is not an API key (igk_...), and JWTs are not accepted here"}
)

// reason is why authentication failed, as the failures metric labels it.
type reason uint8

const (
	reasonMissing reason = iota
	reasonMalformed
	reasonUnknownKey
	reasonWrongSecret
	reasonExpired
	reasonRevoked
	reasonInvalidJWT
	reasonUnknownTenant
	numReasons
)

var reasonNames = [numReasons]string{"missing", "malformed", "unknown_key", "wrong_secret", "expired", "revoked", "invalid_jwt", "unknown_tenant"}

func unauthenticated(format string, args ...any) error {
	return oip.Errorf(oip.KindUnauthenticated, format, args...)
}

// keyError is the refusal of API key id for reason. It names the key's
// public id, never its secret.
func keyError(r reason, id string, at time.Time) error {
	switch r {
	case reasonUnknownKey:
		return unauthenticated("unknown API key %s%s", KeyPrefix, id)
	case reasonExpired:
		return unauthenticated("API key %s%s expired at %s", KeyPrefix, id, at.UTC().Format(time.RFC3339))
	case reasonRevoked:
		return unauthenticated("API key %s%s was revoked at %s", KeyPrefix, id, at.UTC().Format(time.RFC3339))
	case reasonWrongSecret:
		return unauthenticated("API key %s%s: the secret does not match", KeyPrefix, id)
	}
	return unauthenticated("API key %s%s refused (%s)", KeyPrefix, id, reasonNames[r])
}

// jwtError is the refusal of a JWT. Its text names claims, key ids and
// algorithms, never the token.
func jwtError(format string, args ...any) error {
	return &oip.Error{Kind: oip.KindUnauthenticated, Msg: "JWT refused: " + fmt.Sprintf(format, args...)}
}

// unavailable is a failure of the gateway's own, not the caller's: 503,
// UNAVAILABLE.
func unavailable(format string, args ...any) error {
	return oip.Errorf(oip.KindUnavailable, format, args...)
}

// Denied is a refusal of an authenticated caller: 403, PERMISSION_DENIED.
// Its text must name no secret.
func Denied(format string, args ...any) error {
	return oip.Errorf(oip.KindPermissionDenied, format, args...)
}

// HTTPStatus is the HTTP status that answers an error of this package
// (401, 403 or 503; 500 for another error), for HTTP servers that do not
// speak OIP (the admin port).
func HTTPStatus(err error) int { return oip.HTTPStatus(err) }
