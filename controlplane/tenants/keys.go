package tenants

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/registry"
)

// CreateKey makes a key for tenant (ErrNotFound when there is none), with
// a name for people and an expiry (zero: none; else it must be in the
// future, ErrInvalid). It returns the token, the only time it is ever
// shown: the store keeps its secret's SHA-256 alone.
func (s *Store) CreateKey(ctx context.Context, tenant, name string, expires time.Time) (token string, key KeyInfo, err error) {
	if err := CheckTenantName(tenant); err != nil {
		return "", KeyInfo{}, err
	}
	if err := checkKeyName(name); err != nil {
		return "", KeyInfo{}, err
	}
	now := s.now()
	if !expires.IsZero() {
		expires = expires.UTC().Truncate(time.Microsecond)
		if !expires.After(now) {
			return "", KeyInfo{}, errorf(ErrInvalid, "key expiry %s is not in the future", expires.Format(time.RFC3339))
		}
	}
	token, k, err := auth.NewKey(tenant, name, expires)
	if err != nil {
		return "", KeyInfo{}, fmt.Errorf("tenants: make a key: %w", err)
	}
	k.Created = now
	k.Expires = expires
	err = s.update(ctx, func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error) {
		if _, _, err := lockTenant(ctx, tx, tenant); err != nil {
			return nil, err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, tenant, name, hash, created_at, expires_at, revoked_at)
			VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT (id) DO NOTHING`,
			k.ID, tenant, name, hex.EncodeToString(k.Hash[:]), micros(now), nullMicros(expires))
		if err != nil {
			return nil, fmt.Errorf("tenants: create a key for tenant %s: %w", tenant, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 0 {
			// 64 random bits met an existing id: say so rather than
			// replace a key.
			return nil, errorf(ErrConflict, "key id %s exists already: make the key again", k.ID)
		}
		detail := map[string]any{"tenant": tenant, "key": k.ID, "name": name}
		msg := "key " + k.ID + " created for tenant " + tenant
		if !expires.IsZero() {
			detail["expires"] = expires
			msg += ", expires " + expires.Format(time.RFC3339)
		}
		return []registry.Event{event(EventKeyCreated, msg, detail)}, nil
	})
	if err != nil {
		return "", KeyInfo{}, err
	}
	return token, keyInfo(k, now), nil
}

// RevokeKey revokes a key, named by its id (16 hex digits, or igk_ and
// them; see KeyID), and returns it (ErrNotFound when there is none): from
// the next snapshot it is refused. Revoking a revoked key changes nothing
// and returns it as it is.
func (s *Store) RevokeKey(ctx context.Context, id string) (KeyInfo, error) {
	id, err := KeyID(id)
	if err != nil {
		return KeyInfo{}, err
	}
	now := s.now()
	var k auth.Key
	err = s.update(ctx, func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error) {
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx, `SELECT id, tenant, name, hash, created_at, expires_at, revoked_at FROM api_keys WHERE id = $1`+forUpdate(tx), id))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(ErrNotFound, "key %s does not exist", id)
		}
		if err != nil {
			return nil, fmt.Errorf("tenants: read key %s: %w", id, err)
		}
		if !k.Revoked.IsZero() {
			return nil, nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE id = $1`, id, micros(now)); err != nil {
			return nil, fmt.Errorf("tenants: revoke key %s: %w", id, err)
		}
		k.Revoked = now
		return []registry.Event{event(EventKeyRevoked, "key "+id+" of tenant "+k.Tenant+" revoked",
			map[string]any{"tenant": k.Tenant, "key": id, "name": k.Name})}, nil
	})
	if err != nil {
		return KeyInfo{}, err
	}
	return keyInfo(k, now), nil
}

// ListKeys returns the keys of tenant (ErrNotFound when there is no such
// tenant), or every key for "", by tenant and creation time. It never
// returns a hash.
func (s *Store) ListKeys(ctx context.Context, tenant string) ([]KeyInfo, error) {
	if tenant != "" {
		if _, err := s.GetTenant(ctx, tenant); err != nil {
			return nil, err
		}
	}
	now := s.now()
	var out []KeyInfo
	err := s.read(ctx, func(tx *sql.Tx) error {
		keys, err := queryKeys(ctx, tx, tenant)
		for _, k := range keys {
			out = append(out, keyInfo(k, now))
		}
		return err
	})
	return out, err
}

// queryKeys reads the keys of tenant, or all for "".
func queryKeys(ctx context.Context, tx *sql.Tx, tenant string) ([]auth.Key, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, tenant, name, hash, created_at, expires_at, revoked_at FROM api_keys
		WHERE $1 = '' OR tenant = $1 ORDER BY tenant, created_at, id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("tenants: list keys: %w", err)
	}
	defer rows.Close()
	var out []auth.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("tenants: list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// scanKey reads a row of id, tenant, name, hash, created_at, expires_at,
// revoked_at.
func scanKey(row interface{ Scan(...any) error }) (auth.Key, error) {
	var k auth.Key
	var hash string
	var created int64
	var expires, revoked sql.NullInt64
	if err := row.Scan(&k.ID, &k.Tenant, &k.Name, &hash, &created, &expires, &revoked); err != nil {
		return k, err
	}
	h, err := hex.DecodeString(hash)
	if err != nil || len(h) != len(k.Hash) {
		return k, fmt.Errorf("key %s: the stored hash is not 64 hex digits", k.ID)
	}
	copy(k.Hash[:], h)
	k.Created, k.Expires, k.Revoked = fromMicros(created), fromNullMicros(expires), fromNullMicros(revoked)
	return k, nil
}

// keyInfo shows k as of now, without its hash.
func keyInfo(k auth.Key, now time.Time) KeyInfo {
	state := KeyActive
	switch {
	case !k.Revoked.IsZero():
		state = KeyRevoked
	case !k.Expires.IsZero() && !k.Expires.After(now):
		state = KeyExpired
	}
	return KeyInfo{ID: k.ID, Tenant: k.Tenant, Name: k.Name, Created: k.Created, Expires: k.Expires, Revoked: k.Revoked, State: state}
}
