package tenants

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/registry"
)

// CreateTenant adds a tenant. Its name must be a DNS label; weight 0 is
// stored as 1, a rate without a burst gets a burst of ceil(rate), and no
// limit may be negative (ErrInvalid). A tenant of that name already there
// is ErrConflict.
func (s *Store) CreateTenant(ctx context.Context, t auth.Tenant) (TenantInfo, error) {
	if err := CheckTenantName(t.Name); err != nil {
		return TenantInfo{}, err
	}
	if err := checkLimits("tenant "+t.Name, &t); err != nil {
		return TenantInfo{}, err
	}
	now := s.now()
	err := s.update(ctx, func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error) {
		res, err := tx.ExecContext(ctx, `INSERT INTO tenants (name, weight, rate_per_second, burst, max_in_flight, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING`,
			t.Name, t.Weight, t.RatePerSecond, t.Burst, t.MaxInFlight, micros(now))
		if err != nil {
			return nil, fmt.Errorf("tenants: create tenant %s: %w", t.Name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 0 {
			return nil, errorf(ErrConflict, "tenant %q already exists", t.Name)
		}
		return []registry.Event{event(EventTenantCreated, "tenant "+t.Name+" created: "+describeLimits(t), limitsDetail(t))}, nil
	})
	if err != nil {
		return TenantInfo{}, err
	}
	return TenantInfo{Name: t.Name, Weight: t.Weight, RatePerSecond: t.RatePerSecond, Burst: t.Burst, MaxInFlight: t.MaxInFlight, Created: now}, nil
}

// UpdateTenant changes the weight and limits of a tenant (ErrNotFound when
// there is none), checked as CreateTenant checks them. An update that
// changes nothing records nothing.
func (s *Store) UpdateTenant(ctx context.Context, name string, u TenantUpdate) (TenantInfo, error) {
	if err := CheckTenantName(name); err != nil {
		return TenantInfo{}, err
	}
	err := s.update(ctx, func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error) {
		old, _, err := lockTenant(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		t := old
		if u.Weight != nil {
			t.Weight = *u.Weight
		}
		if u.RatePerSecond != nil {
			t.RatePerSecond = *u.RatePerSecond
			if u.Burst == nil {
				// A new rate with no burst given takes the default burst
				// of its own, not the old rate's.
				t.Burst = 0
			}
		}
		if u.Burst != nil {
			t.Burst = *u.Burst
		}
		if u.MaxInFlight != nil {
			t.MaxInFlight = *u.MaxInFlight
		}
		if err := checkLimits("tenant "+name, &t); err != nil {
			return nil, err
		}
		if t == old {
			return nil, nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tenants SET weight = $2, rate_per_second = $3, burst = $4, max_in_flight = $5 WHERE name = $1`,
			name, t.Weight, t.RatePerSecond, t.Burst, t.MaxInFlight); err != nil {
			return nil, fmt.Errorf("tenants: update tenant %s: %w", name, err)
		}
		return []registry.Event{event(EventTenantUpdated, "tenant "+name+" updated: "+describeLimits(t), limitsDetail(t))}, nil
	})
	if err != nil {
		return TenantInfo{}, err
	}
	return s.GetTenant(ctx, name)
}

// DeleteTenant removes a tenant with its keys and grants, in one
// transaction (ErrNotFound when there is none): from the next snapshot,
// none of its keys is accepted.
func (s *Store) DeleteTenant(ctx context.Context, name string) (DeleteResult, error) {
	if err := CheckTenantName(name); err != nil {
		return DeleteResult{}, err
	}
	var out DeleteResult
	err := s.update(ctx, func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error) {
		if _, _, err := lockTenant(ctx, tx, name); err != nil {
			return nil, err
		}
		out = DeleteResult{Tenant: name}
		for _, d := range []struct {
			query string
			n     *int
		}{
			{`DELETE FROM api_keys WHERE tenant = $1`, &out.Keys},
			{`DELETE FROM grants WHERE tenant = $1`, &out.Grants},
			{`DELETE FROM tenants WHERE name = $1`, nil},
		} {
			res, err := tx.ExecContext(ctx, d.query, name)
			if err != nil {
				return nil, fmt.Errorf("tenants: delete tenant %s: %w", name, err)
			}
			if d.n != nil {
				n, err := res.RowsAffected()
				if err != nil {
					return nil, err
				}
				*d.n = int(n)
			}
		}
		return []registry.Event{event(EventTenantDeleted,
			"tenant "+name+" deleted with "+DescribeDeleted(out),
			map[string]any{"tenant": name, "keys": out.Keys, "grants": out.Grants})}, nil
	})
	return out, err
}

// GetTenant returns one tenant (ErrNotFound when there is none).
func (s *Store) GetTenant(ctx context.Context, name string) (TenantInfo, error) {
	if err := CheckTenantName(name); err != nil {
		return TenantInfo{}, err
	}
	ts, err := s.listTenants(ctx, name)
	if err != nil {
		return TenantInfo{}, err
	}
	if len(ts) == 0 {
		return TenantInfo{}, errorf(ErrNotFound, "tenant %q does not exist", name)
	}
	return ts[0], nil
}

// ListTenants returns every tenant, by name.
func (s *Store) ListTenants(ctx context.Context) ([]TenantInfo, error) {
	return s.listTenants(ctx, "")
}

// listTenants lists the tenant named, or every tenant for "".
func (s *Store) listTenants(ctx context.Context, name string) ([]TenantInfo, error) {
	var out []TenantInfo
	now := micros(s.now())
	err := s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT t.name, t.weight, t.rate_per_second, t.burst, t.max_in_flight, t.created_at,
			(SELECT COUNT(*) FROM api_keys k WHERE k.tenant = t.name AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2)),
			(SELECT COUNT(*) FROM grants g WHERE g.tenant = t.name)
			FROM tenants t WHERE $1 = '' OR t.name = $1 ORDER BY t.name`, name, now)
		if err != nil {
			return fmt.Errorf("tenants: list tenants: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t TenantInfo
			var created int64
			if err := rows.Scan(&t.Name, &t.Weight, &t.RatePerSecond, &t.Burst, &t.MaxInFlight, &created, &t.ActiveKeys, &t.Grants); err != nil {
				return fmt.Errorf("tenants: list tenants: %w", err)
			}
			t.Created = fromMicros(created)
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// DescribeDeleted says what went with a deleted tenant: "2 keys and 1
// grant".
func DescribeDeleted(r DeleteResult) string {
	return plural(r.Keys, "key") + " and " + plural(r.Grants, "grant")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// describeLimits says a tenant's weight and limits in words, for events
// and the CLI.
func describeLimits(t auth.Tenant) string {
	s := fmt.Sprintf("weight %d", t.Weight)
	if t.RatePerSecond > 0 {
		s += fmt.Sprintf(", %g requests/s (burst %d)", t.RatePerSecond, t.Burst)
	} else {
		s += ", no rate limit"
	}
	if t.MaxInFlight > 0 {
		s += fmt.Sprintf(", at most %d in flight", t.MaxInFlight)
	} else {
		s += ", no bound in flight"
	}
	return s
}

// DescribeLimits says a tenant's weight and limits in words.
func DescribeLimits(t TenantInfo) string { return describeLimits(t.Tenant()) }

func limitsDetail(t auth.Tenant) map[string]any {
	return map[string]any{"tenant": t.Name, "weight": t.Weight, "ratePerSecond": t.RatePerSecond, "burst": t.Burst, "maxInFlight": t.MaxInFlight}
}
