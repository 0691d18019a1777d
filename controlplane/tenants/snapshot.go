package tenants

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/infergate/infergate/auth"
)

// DefaultPollInterval is how often Watch reads the version when given
// none: how long a change made by another process takes to be seen.
const DefaultPollInterval = 2 * time.Second

// Version returns the store's version: a number that grows with every
// change of tenants, keys or grants, whichever process made it.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, `SELECT version FROM auth_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("tenants: read the version: %w", err)
	}
	return v, nil
}

// Snapshot reads every tenant, key (revoked and expired ones included,
// for authentication to tell them apart) and grant in one read
// transaction, with the version they are at.
func (s *Store) Snapshot(ctx context.Context) (auth.Snapshot, int64, error) {
	var snap auth.Snapshot
	var version int64
	err := s.read(ctx, func(tx *sql.Tx) error {
		snap = auth.Snapshot{}
		if err := tx.QueryRowContext(ctx, `SELECT version FROM auth_version WHERE id = 1`).Scan(&version); err != nil {
			return fmt.Errorf("tenants: read the version: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT name, weight, rate_per_second, burst, max_in_flight FROM tenants ORDER BY name`)
		if err != nil {
			return fmt.Errorf("tenants: read tenants: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t auth.Tenant
			if err := rows.Scan(&t.Name, &t.Weight, &t.RatePerSecond, &t.Burst, &t.MaxInFlight); err != nil {
				return fmt.Errorf("tenants: read tenants: %w", err)
			}
			snap.Tenants = append(snap.Tenants, t)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("tenants: read tenants: %w", err)
		}
		if snap.Keys, err = queryKeys(ctx, tx, ""); err != nil {
			return err
		}
		snap.Grants, err = queryGrants(ctx, tx, "")
		return err
	})
	if err != nil {
		return auth.Snapshot{}, 0, err
	}
	return snap, version, nil
}

// Watch calls fn with the store's snapshot once, then again after every
// change, until ctx is done (it then returns nil). A change made through
// this Store wakes it at once; one made by another process (the CLI
// writing the store directly, another control plane on the same
// PostgreSQL) is seen within interval (0 means DefaultPollInterval), by
// reading the version. fn runs in Watch's goroutine, one call at a time;
// changes made while it runs are folded into the next call.
//
// If the first read fails, Watch returns its error without calling fn, so
// that a server can refuse to start without its keys; later failures are
// logged and the read tried again at the next interval, fn keeping the
// last snapshot meanwhile.
func (s *Store) Watch(ctx context.Context, interval time.Duration, fn func(auth.Snapshot)) error {
	if interval < 0 {
		return fmt.Errorf("tenants: Watch interval %s is negative", interval)
	}
	if interval == 0 {
		interval = DefaultPollInterval
	}
	changed := s.changes()
	snap, seen, err := s.Snapshot(ctx)
	if err != nil {
		return err
	}
	fn(snap)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
			v, err := s.Version(ctx)
			if err != nil {
				failing = s.readFailed(ctx, failing, err)
				continue
			}
			if v == seen {
				failing = s.readWorks(failing, v)
				continue
			}
		}
		// Taken before the read, so that a change committed after it
		// wakes the next round.
		changed = s.changes()
		snap, v, err := s.Snapshot(ctx)
		if err != nil {
			failing = s.readFailed(ctx, failing, err)
			continue
		}
		failing = s.readWorks(failing, v)
		if v == seen {
			continue
		}
		seen = v
		fn(snap)
	}
}

// readFailed logs a failed read once per run of failures (a store gone
// for minutes should not log every interval); it returns true.
func (s *Store) readFailed(ctx context.Context, failing bool, err error) bool {
	if ctx.Err() == nil && !failing {
		s.log.Warn("tenants: reading the store failed; the last snapshot stays until it works again", "err", err)
	}
	return true
}

// readWorks logs the end of a run of failures; it returns false.
func (s *Store) readWorks(failing bool, version int64) bool {
	if failing {
		s.log.Info("tenants: the store is readable again", "version", version)
	}
	return false
}
