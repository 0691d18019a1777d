package tenants

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/registry"
)

// schema is the package's tables in the registry's store: portable SQL for
// SQLite and PostgreSQL alike (see the package doc).
var schema = []string{
	`CREATE TABLE IF NOT EXISTS tenants (
	name TEXT PRIMARY KEY,
	weight INTEGER NOT NULL,
	rate_per_second DOUBLE PRECISION NOT NULL,
	burst INTEGER NOT NULL,
	max_in_flight INTEGER NOT NULL,
	created_at BIGINT NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS api_keys (
	id TEXT PRIMARY KEY,
	tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
	name TEXT NOT NULL,
	hash TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT,
	revoked_at BIGINT
)`,
	`CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant)`,
	`CREATE TABLE IF NOT EXISTS grants (
	id BIGINT PRIMARY KEY,
	tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
	actions INTEGER NOT NULL,
	models TEXT NOT NULL,
	selector TEXT NOT NULL
)`,
	`CREATE INDEX IF NOT EXISTS grants_by_tenant ON grants (tenant)`,
	`CREATE TABLE IF NOT EXISTS auth_version (
	id INTEGER PRIMARY KEY,
	version BIGINT NOT NULL,
	next_grant BIGINT NOT NULL
)`,
	`INSERT INTO auth_version (id, version, next_grant) VALUES (1, 0, 1) ON CONFLICT (id) DO NOTHING`,
}

// The kinds of event a change appends to the registry's log.
const (
	EventTenantCreated = "tenant.created"
	EventTenantUpdated = "tenant.updated"
	EventTenantDeleted = "tenant.deleted"
	EventKeyCreated    = "key.created"
	EventKeyRevoked    = "key.revoked"
	EventGrantAdded    = "grant.added"
	EventGrantRemoved  = "grant.removed"
)

// Options configure Open. Every zero value has a documented default.
type Options struct {
	// Now is the clock: creation and revocation times, and whether a key
	// has expired. nil means time.Now. Times are kept in UTC to the
	// microsecond.
	Now func() time.Time
	// Logger gets Watch's failures to read the store (it keeps the last
	// snapshot and tries again). nil discards them.
	Logger *slog.Logger
}

// Store keeps tenants, keys and grants in the registry's store. Its
// methods are safe for concurrent use, by any number of goroutines and of
// processes sharing the store.
type Store struct {
	reg     *registry.Registry
	db      *sql.DB
	dialect string
	now     func() time.Time
	log     *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed, and replaced, by each change committed here
}

// Open makes the package's tables in reg's store if they are not there
// yet and returns a Store on them. It starts no goroutine.
func Open(ctx context.Context, reg *registry.Registry, opts Options) (*Store, error) {
	if reg == nil {
		return nil, errors.New("tenants: a registry is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	err := reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		for _, st := range schema {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tenants: the tables of tenants, keys and grants: %w", err)
	}
	db, dialect := reg.DB()
	return &Store{reg: reg, db: db, dialect: dialect, log: opts.Logger, changed: make(chan struct{}),
		now: func() time.Time { return opts.Now().UTC().Truncate(time.Microsecond) }}, nil
}

// TenantInfo is a tenant as the store lists it: its settings, when it was
// made, and how many keys and grants it has.
type TenantInfo struct {
	Name string `json:"name"`
	// Weight is the tenant's share of a saturated model (1 or more).
	Weight int `json:"weight"`
	// RatePerSecond and Burst bound its requests (a token bucket); 0 means
	// no bound.
	RatePerSecond float64 `json:"ratePerSecond"`
	Burst         int     `json:"burst"`
	// MaxInFlight bounds its requests in flight; 0 means no bound.
	MaxInFlight int       `json:"maxInFlight"`
	Created     time.Time `json:"created"`
	// ActiveKeys counts its keys neither revoked nor expired; Grants, its
	// grants.
	ActiveKeys int `json:"activeKeys"`
	Grants     int `json:"grants"`
}

// Tenant returns the auth.Tenant of t.
func (t TenantInfo) Tenant() auth.Tenant {
	return auth.Tenant{Name: t.Name, Weight: t.Weight, RatePerSecond: t.RatePerSecond, Burst: t.Burst, MaxInFlight: t.MaxInFlight}
}

// TenantUpdate changes the settings of a tenant that are set (non-nil);
// the others keep their values. The result is checked as CreateTenant
// checks a new tenant's.
type TenantUpdate struct {
	Weight        *int     `json:"weight,omitempty"`
	RatePerSecond *float64 `json:"ratePerSecond,omitempty"`
	Burst         *int     `json:"burst,omitempty"`
	MaxInFlight   *int     `json:"maxInFlight,omitempty"`
}

// KeyInfo is a key as the store shows it: never its secret nor its hash.
type KeyInfo struct {
	// ID is the public part of the token (the 16 hex digits after igk_).
	ID      string    `json:"id"`
	Tenant  string    `json:"tenant"`
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
	// Expires, when set, is when the key stops being accepted; Revoked,
	// when set, is when it was revoked.
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
	// State is "active", "expired" or "revoked", as of the read.
	State string `json:"state"`
}

// The states of a key.
const (
	KeyActive  = "active"
	KeyExpired = "expired"
	KeyRevoked = "revoked"
)

// DeleteResult says what DeleteTenant removed with the tenant.
type DeleteResult struct {
	Tenant string `json:"tenant"`
	Keys   int    `json:"keys"`
	Grants int    `json:"grants"`
}

// update runs fn in one write transaction; when fn returns events (a
// change), it also bumps the version and appends them, and Watch is woken
// once the transaction commits. fn may run more than once (PostgreSQL
// retries a serialization failure): it must have no effect outside tx.
func (s *Store) update(ctx context.Context, fn func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error)) error {
	changed := false
	err := s.reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		changed = false
		evs, err := fn(ctx, tx)
		if err != nil || len(evs) == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE auth_version SET version = version + 1 WHERE id = 1`); err != nil {
			return fmt.Errorf("tenants: bump the version: %w", err)
		}
		for _, e := range evs {
			if _, err := tx.AppendEvent(e); err != nil {
				return err
			}
		}
		changed = true
		return nil
	})
	if err == nil && changed {
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	return err
}

// changes returns a channel closed at the next change committed through s.
func (s *Store) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// forUpdate is the suffix that locks the rows a SELECT reads, on the
// stores that lock rows (SQLite has one writer at a time).
func forUpdate(tx *registry.Tx) string {
	if tx.Dialect() == "postgres" {
		return " FOR UPDATE"
	}
	return ""
}

// lockTenant reads a tenant's row in tx, locking it; ErrNotFound when
// there is none.
func lockTenant(ctx context.Context, tx *registry.Tx, name string) (auth.Tenant, time.Time, error) {
	t := auth.Tenant{Name: name}
	var created int64
	err := tx.QueryRowContext(ctx, `SELECT weight, rate_per_second, burst, max_in_flight, created_at FROM tenants WHERE name = $1`+forUpdate(tx), name).
		Scan(&t.Weight, &t.RatePerSecond, &t.Burst, &t.MaxInFlight, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return t, time.Time{}, errorf(ErrNotFound, "tenant %q does not exist", name)
	}
	if err != nil {
		return t, time.Time{}, fmt.Errorf("tenants: read tenant %s: %w", name, err)
	}
	return t, fromMicros(created), nil
}

// event returns an event of kind with a detail object.
func event(kind, message string, detail map[string]any) registry.Event {
	b, _ := json.Marshal(detail)
	return registry.Event{Kind: kind, Message: message, Detail: b}
}

func micros(t time.Time) int64 { return t.UTC().UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullMicros is t in microseconds, or NULL when t is zero.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(t), Valid: true}
}

func fromNullMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMicros(n.Int64)
}

// read runs fn in a read-only transaction: one snapshot of the store
// across its queries.
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.dialect == "postgres" {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("tenants: read the store: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
