package registry

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"time"
)

// SetAlias points the alias name of model at version, creating the alias or
// moving it, and records the change (from, to, time, actor, reason) in the
// alias's history and the event log, in one transaction. The target must
// exist, be READY and LIVE, in a LIVE model. Setting an alias to the
// version it already points at changes nothing. "latest" is reserved.
func (r *Registry) SetAlias(ctx context.Context, model, name string, version int64, reason string) (*Alias, error) {
	if err := checkName("model name", model); err != nil {
		return nil, err
	}
	if err := checkAliasName(model, name); err != nil {
		return nil, err
	}
	what := "alias " + model + "@" + name
	if version < 1 {
		return nil, errorf(CodeInvalidArgument, "%s: version %d: version numbers start at 1", what, version)
	}
	if err := checkText(what+" reason", reason, maxReason, false); err != nil {
		return nil, err
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	var out Alias
	err = r.st.write(ctx, func(tx *wtx) error {
		m, err := lockModel(ctx, tx, model)
		if err != nil {
			return err
		}
		if m.m.State != StateLive {
			return errorf(CodeConflict, "%s: model %s is ARCHIVED", what, model)
		}
		target, err := loadVersion(ctx, tx, model, version, "")
		if err != nil {
			return errorf(CodeNotFound, "%s: %w", what, err)
		}
		switch {
		case target.v.State != StateLive:
			return errorf(CodeConflict, "%s: version %s is ARCHIVED", what, target.v.Ref())
		case target.v.Status != StatusReady:
			return errorf(CodeConflict, "%s: version %s is %s, not READY", what, target.v.Ref(), target.v.Status)
		}
		cur, err := currentAlias(ctx, tx, m.id, model, name)
		if err != nil {
			return err
		}
		now := r.now()
		if cur != nil && cur.Version == version {
			out = *cur
			return nil
		}
		var from int64
		if cur != nil {
			from = cur.Version
			_, err = tx.ExecContext(ctx, `UPDATE aliases SET version_id = $1, update_time = $2, actor = $3 WHERE model_id = $4 AND name = $5`,
				target.id, micros(now), actor, m.id, name)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO aliases (model_id, name, version_id, update_time, actor) VALUES ($1, $2, $3, $4, $5)`,
				m.id, name, target.id, micros(now), actor)
		}
		if err != nil {
			return err
		}
		if err := r.aliasHistory(ctx, tx, m.id, model, name, from, version, actor, reason, now); err != nil {
			return err
		}
		out = Alias{Model: model, Name: name, Version: version, UpdateTime: now, Actor: actor}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// aliasHistory records an alias change in its history and the event log.
func (r *Registry) aliasHistory(ctx context.Context, tx *wtx, modelID int64, model, name string, from, to int64, actor, reason string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO alias_history (model_id, alias, from_version, to_version, time, actor, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		modelID, name, from, to, micros(now), actor, reason); err != nil {
		return err
	}
	kind, msg := EventAliasMoved, "alias "+model+"@"+name+" "
	switch {
	case to == 0:
		kind, msg = EventAliasDeleted, msg+"deleted (was version "+strconv.FormatInt(from, 10)+")"
	case from == 0:
		msg += "set to version " + strconv.FormatInt(to, 10)
	default:
		msg += "moved from version " + strconv.FormatInt(from, 10) + " to " + strconv.FormatInt(to, 10)
	}
	detail := map[string]any{"alias": name, "from": from, "to": to}
	if reason != "" {
		detail["reason"] = reason
		msg += ": " + reason
	}
	version := to
	if to == 0 {
		version = from
	}
	_, err := r.appendEvent(ctx, tx, kind, model, version, actor, msg, detail)
	return err
}

// currentAlias reads an alias, or nil if it is not set.
func currentAlias(ctx context.Context, q querier, modelID int64, model, name string) (*Alias, error) {
	a := Alias{Model: model, Name: name}
	var t int64
	err := q.QueryRowContext(ctx, `SELECT v.version, a.update_time, a.actor FROM aliases a JOIN versions v ON v.id = a.version_id
WHERE a.model_id = $1 AND a.name = $2`, modelID, name).Scan(&a.Version, &t, &a.Actor)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a.UpdateTime = fromMicros(t)
	return &a, nil
}

// DeleteAlias removes an alias, recording the deletion (To 0) in its
// history and the event log. A missing alias is CodeNotFound.
func (r *Registry) DeleteAlias(ctx context.Context, model, name, reason string) error {
	if err := checkName("model name", model); err != nil {
		return err
	}
	if err := checkAliasName(model, name); err != nil {
		return err
	}
	what := "alias " + model + "@" + name
	if err := checkText(what+" reason", reason, maxReason, false); err != nil {
		return err
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return err
	}
	return r.st.write(ctx, func(tx *wtx) error {
		m, err := lockModel(ctx, tx, model)
		if err != nil {
			return err
		}
		cur, err := currentAlias(ctx, tx, m.id, model, name)
		if err != nil {
			return err
		}
		if cur == nil {
			return errorf(CodeNotFound, "%s not found", what)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM aliases WHERE model_id = $1 AND name = $2`, m.id, name); err != nil {
			return err
		}
		return r.aliasHistory(ctx, tx, m.id, model, name, cur.Version, 0, actor, reason, r.now())
	})
}

// modelID returns the id of a model, or CodeNotFound.
func modelID(ctx context.Context, q querier, model string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM models WHERE name = $1`, model).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, modelNotFound(model)
	}
	return id, err
}

// GetAlias returns one alias of a model.
func (r *Registry) GetAlias(ctx context.Context, model, name string) (*Alias, error) {
	if err := checkName("model name", model); err != nil {
		return nil, err
	}
	if err := checkName("alias name", name); err != nil {
		return nil, err
	}
	var out *Alias
	err := r.st.read(ctx, func(q querier) error {
		id, err := modelID(ctx, q, model)
		if err != nil {
			return err
		}
		out, err = currentAlias(ctx, q, id, model, name)
		if err == nil && out == nil {
			err = errorf(CodeNotFound, "alias %s@%s not found", model, name)
		}
		return err
	})
	return out, err
}

// ListAliases returns a model's aliases, sorted by name.
func (r *Registry) ListAliases(ctx context.Context, model string) ([]Alias, error) {
	if err := checkName("model name", model); err != nil {
		return nil, err
	}
	out := []Alias{}
	err := r.st.read(ctx, func(q querier) error {
		id, err := modelID(ctx, q, model)
		if err != nil {
			return err
		}
		rows, err := q.QueryContext(ctx, `SELECT a.name, v.version, a.update_time, a.actor FROM aliases a JOIN versions v ON v.id = a.version_id
WHERE a.model_id = $1 ORDER BY a.name`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a := Alias{Model: model}
			var t int64
			if err := rows.Scan(&a.Name, &a.Version, &t, &a.Actor); err != nil {
				return err
			}
			a.UpdateTime = fromMicros(t)
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, err
}

// AliasHistory returns the changes of a model's alias name (of all its
// aliases when name is ""), newest first, at most limit of them (0 means
// 100, at most 1000). History outlives the alias: a deleted alias keeps it.
func (r *Registry) AliasHistory(ctx context.Context, model, name string, limit int) ([]AliasChange, error) {
	if err := checkName("model name", model); err != nil {
		return nil, err
	}
	if name != "" {
		if err := checkName("alias name", name); err != nil {
			return nil, err
		}
	}
	n, err := pageSize("alias history limit", limit)
	if err != nil {
		return nil, err
	}
	out := []AliasChange{}
	err = r.st.read(ctx, func(q querier) error {
		id, err := modelID(ctx, q, model)
		if err != nil {
			return err
		}
		var b qb
		b.sql.WriteString(`SELECT id, alias, from_version, to_version, time, actor, reason FROM alias_history WHERE model_id = ` + b.arg(id))
		if name != "" {
			b.sql.WriteString(` AND alias = ` + b.arg(name))
		}
		b.sql.WriteString(` ORDER BY id DESC LIMIT ` + b.arg(n))
		rows, err := q.QueryContext(ctx, b.sql.String(), b.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c := AliasChange{Model: model}
			var t int64
			if err := rows.Scan(&c.ID, &c.Alias, &c.From, &c.To, &t, &c.Actor, &c.Reason); err != nil {
				return err
			}
			c.Time = fromMicros(t)
			out = append(out, c)
		}
		return rows.Err()
	})
	return out, err
}
