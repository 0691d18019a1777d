package tenants

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/registry"
)

// AddGrant gives g.Tenant (ErrNotFound when there is none) g.Actions on
// the models g selects, and returns the grant with its ID (never reused).
// A grant with a model action (infer, metadata) names models ("*" for
// every model) or a selector, not both; one of only global actions
// (admin, command, metrics) names neither (ErrInvalid).
func (s *Store) AddGrant(ctx context.Context, g auth.Grant) (auth.Grant, error) {
	if err := CheckTenantName(g.Tenant); err != nil {
		return auth.Grant{}, err
	}
	g.Models = slices.Clone(g.Models)
	g.Selector = maps.Clone(g.Selector)
	if err := checkGrant(&g); err != nil {
		return auth.Grant{}, err
	}
	models, selector := marshalSelection(g)
	err := s.update(ctx, func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error) {
		if _, _, err := lockTenant(ctx, tx, g.Tenant); err != nil {
			return nil, err
		}
		if err := tx.QueryRowContext(ctx, `UPDATE auth_version SET next_grant = next_grant + 1 WHERE id = 1 RETURNING next_grant - 1`).Scan(&g.ID); err != nil {
			return nil, fmt.Errorf("tenants: number a grant: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO grants (id, tenant, actions, models, selector) VALUES ($1, $2, $3, $4, $5)`,
			g.ID, g.Tenant, int64(g.Actions), models, selector); err != nil {
			return nil, fmt.Errorf("tenants: add a grant for tenant %s: %w", g.Tenant, err)
		}
		return []registry.Event{event(EventGrantAdded,
			fmt.Sprintf("grant %d added: tenant %s may %s", g.ID, g.Tenant, eventDescription(g)), grantDetail(g))}, nil
	})
	if err != nil {
		return auth.Grant{}, err
	}
	return g, nil
}

// RemoveGrant removes a grant (ErrNotFound when there is none) and
// returns it.
func (s *Store) RemoveGrant(ctx context.Context, id int64) (auth.Grant, error) {
	if id <= 0 {
		return auth.Grant{}, errorf(ErrInvalid, "grant id %d: want a positive number, as grants are listed", id)
	}
	var g auth.Grant
	err := s.update(ctx, func(ctx context.Context, tx *registry.Tx) ([]registry.Event, error) {
		var err error
		g, err = scanGrant(tx.QueryRowContext(ctx, `SELECT id, tenant, actions, models, selector FROM grants WHERE id = $1`+forUpdate(tx), id))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(ErrNotFound, "grant %d does not exist", id)
		}
		if err != nil {
			return nil, fmt.Errorf("tenants: read grant %d: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM grants WHERE id = $1`, id); err != nil {
			return nil, fmt.Errorf("tenants: remove grant %d: %w", id, err)
		}
		return []registry.Event{event(EventGrantRemoved,
			fmt.Sprintf("grant %d removed: tenant %s may no longer %s", g.ID, g.Tenant, eventDescription(g)), grantDetail(g))}, nil
	})
	return g, err
}

// ListGrants returns the grants of tenant (ErrNotFound when there is no
// such tenant), or every grant for "", by id.
func (s *Store) ListGrants(ctx context.Context, tenant string) ([]auth.Grant, error) {
	if tenant != "" {
		if _, err := s.GetTenant(ctx, tenant); err != nil {
			return nil, err
		}
	}
	var out []auth.Grant
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = queryGrants(ctx, tx, tenant)
		return err
	})
	return out, err
}

func queryGrants(ctx context.Context, tx *sql.Tx, tenant string) ([]auth.Grant, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, tenant, actions, models, selector FROM grants WHERE $1 = '' OR tenant = $1 ORDER BY id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("tenants: list grants: %w", err)
	}
	defer rows.Close()
	var out []auth.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, fmt.Errorf("tenants: list grants: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// scanGrant reads a row of id, tenant, actions, models, selector.
func scanGrant(row interface{ Scan(...any) error }) (auth.Grant, error) {
	var g auth.Grant
	var actions int64
	var models, selector string
	if err := row.Scan(&g.ID, &g.Tenant, &actions, &models, &selector); err != nil {
		return g, err
	}
	g.Actions = auth.Action(actions)
	if err := json.Unmarshal([]byte(models), &g.Models); err != nil {
		return g, fmt.Errorf("grant %d: stored models %.40q: %w", g.ID, models, err)
	}
	if err := json.Unmarshal([]byte(selector), &g.Selector); err != nil {
		return g, fmt.Errorf("grant %d: stored selector %.40q: %w", g.ID, selector, err)
	}
	if len(g.Models) == 0 {
		g.Models = nil
	}
	if len(g.Selector) == 0 {
		g.Selector = nil
	}
	return g, nil
}

// marshalSelection returns g's models and selector as stored: a JSON
// array and a JSON object, empty ones when unset.
func marshalSelection(g auth.Grant) (models, selector string) {
	m, _ := json.Marshal(nonNil(g.Models))
	sel := g.Selector
	if sel == nil {
		sel = map[string]string{}
	}
	s, _ := json.Marshal(sel)
	return string(m), string(s)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// DescribeGrant says what a grant allows in words: "infer,metadata on
// models iris,digits", "infer on every model", "infer on models labelled
// team=search", "admin".
func DescribeGrant(g auth.Grant) string {
	s := FormatActions(g.Actions)
	switch {
	case g.Actions&modelActions == 0:
	case len(g.Models) == 1 && g.Models[0] == "*":
		s += " on every model"
	case len(g.Models) > 0:
		s += " on models " + strings.Join(g.Models, ",")
	case len(g.Selector) > 0:
		s += " on models labelled " + FormatSelector(g.Selector)
	}
	return s
}

// eventDescription is DescribeGrant naming at most eventModels bytes of
// models.
func eventDescription(g auth.Grant) string {
	if head := eventModelList(g.Models); len(head) < len(g.Models) {
		g.Models = append(head, fmt.Sprintf("... (%d models in all)", len(g.Models)))
	}
	return DescribeGrant(g)
}

// FormatSelector returns a selector as k=v pairs joined by commas, sorted
// by key.
func FormatSelector(sel map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
}

// eventModels bounds the bytes of model names an event names (the log
// bounds an event's message and detail); past it, the rest are counted.
const eventModels = 1000

// eventModelList is the head of models that fits in eventModels bytes.
func eventModelList(models []string) []string {
	n, size := 0, 0
	for n < len(models) && size+len(models[n]) <= eventModels {
		size += len(models[n]) + 1
		n++
	}
	return models[:n:n]
}

func grantDetail(g auth.Grant) map[string]any {
	d := map[string]any{"tenant": g.Tenant, "grant": g.ID, "actions": ActionNames(g.Actions)}
	if len(g.Models) > 0 {
		d["models"] = eventModelList(g.Models)
		d["modelCount"] = len(g.Models)
	}
	if len(g.Selector) > 0 {
		d["selector"] = g.Selector
	}
	return d
}
