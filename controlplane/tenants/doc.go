// Package tenants owns the control plane's record of who may call the
// gateway: tenants (with their weight and quotas), their API keys, and the
// grants that say which actions they may take on which models. It keeps
// them in the registry's store (the SQLite file of `infergate serve`, or
// PostgreSQL shared by several control planes), serves them over the
// admin API (/api/v1/tenants, /api/v1/keys, /api/v1/grants; see Handler,
// and Client for its callers), and hands the whole of it to
// authentication as one auth.Snapshot (Store.Snapshot, Store.Watch feeding
// auth.Authenticator.Update).
//
// # Tables
//
// Four tables of its own, made at Open if missing, in portable SQL ($1
// parameters; times as BIGINT UTC microseconds, NULL for unset):
//
//	tenants       name PK, weight, rate_per_second, burst, max_in_flight, created_at
//	api_keys      id PK, tenant, name, hash (hex SHA-256 of the secret), created_at, expires_at, revoked_at
//	grants        id PK, tenant, actions (auth.Action bits), models (JSON array), selector (JSON object)
//	auth_version  one row: version (bumped by every change) and next_grant (grant ids are never reused)
//
// Every change is one transaction that also bumps auth_version.version and
// appends its event to the registry's event log (tenant.created,
// tenant.updated, tenant.deleted, key.created, key.revoked, grant.added,
// grant.removed; an event never holds a secret or a hash). Another
// process writing the same store (the CLI's `-data-dir`/`-store` mode, or
// another control plane on the same PostgreSQL) is noticed by Watch
// polling that counter; changes made through this Store wake Watch at
// once.
//
// # Decisions
//
//   - A key's secret is shown once, by CreateKey; the store keeps only its
//     SHA-256. A key is revoked, not deleted (revoking twice is not an
//     error and keeps the first time), so that the record of who had
//     access stays; only deleting its tenant removes it.
//   - DeleteTenant removes the tenant with its keys and grants in one
//     transaction: its callers are refused from the next snapshot on. The
//     event names how many keys and grants went with it.
//   - Weight 0 is stored as 1. A rate with no burst is stored with a burst
//     of ceil(rate) (at least 1); a burst without a rate is refused.
//   - A grant names models (a list; "*" is every model) or a label
//     selector, not both, when it holds a model action (infer,
//     metadata). A grant of only global actions (admin, command, metrics)
//     names neither.
//
// Errors are *Error values whose Code (ErrInvalid, ErrNotFound,
// ErrConflict; errors.Is works) the API maps to 400, 404 and 409 in one
// place; the store's own failures pass through as the registry's errors.
//
// # What it never does
//
// It never stores or logs a secret, serves nothing but its own paths, and
// starts no goroutine: Watch runs in the caller's.
//
// # Metrics
//
// None of its own; changes are visible in the event log.
package tenants
