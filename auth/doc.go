// Package auth owns who a caller is and what it may do: API keys (made by
// NewKey, stored hashed, refused once expired or revoked), JWT bearer
// tokens verified against a JWKS file or URL (issuer, audience, expiry
// with clock skew, keys rotated without restart), and the grants that let
// a tenant call models by name, "*" or label selector, per action, with
// admin, command and metrics as global actions.
//
// The gateway builds one Authenticator, feeds it the control plane's
// Snapshot with Update (swapped atomically, so a revocation holds from the
// next request on), and asks it for a Principal per request with
// Authenticate (REST: the Authorization header's bytes) or
// AuthenticateString (gRPC: the "authorization" metadata). The Principal
// then answers Allowed or Authorize for each model and action. Refusals
// are *oip.Error values of kind oip.KindUnauthenticated (401,
// UNAUTHENTICATED) or oip.KindPermissionDenied (403, PERMISSION_DENIED),
// written by the gateway's usual error writers; no message carries a
// secret or a token, only an API key's public id or a JWT's claims.
//
// The request path is cheap: an API key costs a map lookup and one
// SHA-256 of its 43-character secret, a JWT seen before a map lookup, a
// grant check a map lookup or two; none allocates. Only a JWT's first
// sight pays a signature check, and a token signed by a key the JWKS does
// not hold yet reloads it (at most once per JWTOptions.MinRefetchInterval).
//
// auth never reads the control plane's store, serves nothing and starts no
// goroutine: Run reloads the JWKS periodically when cmd runs it.
//
// Metrics, on Options.Registerer:
//   - infergate_auth_failures_total{reason}: missing, malformed,
//     unknown_key, wrong_secret, expired, revoked, invalid_jwt,
//     unknown_tenant
//   - infergate_auth_jwks_loads_total{result}: ok, error
package auth
