package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/infergate/infergate/registry"
)

// RegistryStore is the Store of `infergate serve`: the desired state in
// the registry's store (the SQLite file under the data directory, or
// PostgreSQL), in a table of the control plane's own, one row per model,
// and the events in the registry's event log, each change in one
// transaction.
type RegistryStore struct {
	reg *registry.Registry
}

// deploymentsTable holds one record per model (see modelRecord); portable
// SQL, for SQLite and PostgreSQL alike.
const deploymentsTable = `CREATE TABLE IF NOT EXISTS controlplane_models (
	name TEXT PRIMARY KEY,
	record TEXT NOT NULL,
	updated_at BIGINT NOT NULL
)`

// NewRegistryStore makes the control plane's table in reg's store if it
// is not there yet.
func NewRegistryStore(ctx context.Context, reg *registry.Registry) (*RegistryStore, error) {
	err := reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		_, err := tx.ExecContext(ctx, deploymentsTable)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("controlplane: the desired state's table: %w", err)
	}
	return &RegistryStore{reg: reg}, nil
}

// SaveDeployments implements Store.
func (s *RegistryStore) SaveDeployments(ctx context.Context, records map[string][]byte, events []Event) error {
	now := time.Now().UnixNano()
	return s.reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		for name, rec := range records {
			if _, err := tx.ExecContext(ctx, `INSERT INTO controlplane_models (name, record, updated_at) VALUES ($1, $2, $3)
				ON CONFLICT (name) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
				name, string(rec), now); err != nil {
				return err
			}
		}
		for _, e := range events {
			detail, err := json.Marshal(eventDetail{Revision: e.Revision, Detail: e.Detail})
			if err != nil {
				return err
			}
			if _, err := tx.AppendEvent(registry.Event{Kind: e.Kind, Model: e.Model, Actor: e.Actor, Message: e.Message, Detail: detail}); err != nil {
				return err
			}
		}
		return nil
	})
}

// eventDetail is the detail of a control-plane event in the registry's
// log.
type eventDetail struct {
	Revision string `json:"revision,omitempty"`
	Detail   any    `json:"detail,omitempty"`
}

// LoadDeployments implements Store.
func (s *RegistryStore) LoadDeployments(ctx context.Context) (map[string][]byte, error) {
	out := make(map[string][]byte)
	// A read in a write transaction: the store has no other read API to
	// give, and a load happens once, at start.
	err := s.reg.Update(ctx, func(ctx context.Context, tx *registry.Tx) error {
		clear(out)
		rows, err := tx.QueryContext(ctx, `SELECT name, record FROM controlplane_models`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name, rec string
			if err := rows.Scan(&name, &rec); err != nil {
				return err
			}
			out[name] = []byte(rec)
		}
		return rows.Err()
	})
	return out, err
}
