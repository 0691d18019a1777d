package registry

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
)

// Resolve returns the version a model reference names (see Ref and
// ParseRef), with its artifacts, aliases and digest:
//
//	registry://iris                 the highest-numbered READY, LIVE version
//	registry://iris/3               version 3
//	registry://iris@prod            the version alias prod points at
//	registry://iris@sha256:<hex>    the highest-numbered READY, LIVE version with that manifest digest
//
// A missing model, version or alias is CodeNotFound; a target that is not
// READY, is ARCHIVED, or belongs to an ARCHIVED model is CodeConflict. The
// message names the reference and why.
func (r *Registry) Resolve(ctx context.Context, ref string) (*ModelVersion, error) {
	p, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	s := p.String()
	var out *ModelVersion
	err = r.st.read(ctx, func(q querier) error {
		var mid int64
		var mstate string
		err := q.QueryRowContext(ctx, `SELECT id, state FROM models WHERE name = $1`, p.Model).Scan(&mid, &mstate)
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(CodeNotFound, "%s: model %s not found", s, p.Model)
		}
		if err != nil {
			return err
		}
		if State(mstate) != StateLive {
			return errorf(CodeConflict, "%s: model %s is ARCHIVED", s, p.Model)
		}
		var row *versionRow
		switch {
		case p.Version > 0:
			row, err = scanVersion(q.QueryRowContext(ctx, `SELECT `+versionCols+versionFrom+` WHERE v.model_id = $1 AND v.version = $2`, mid, p.Version))
			if errors.Is(err, sql.ErrNoRows) {
				return errorf(CodeNotFound, "%s: version %d not found", s, p.Version)
			}
		case p.Alias != "":
			a, aerr := currentAlias(ctx, q, mid, p.Model, p.Alias)
			if aerr != nil {
				return aerr
			}
			if a == nil {
				return errorf(CodeNotFound, "%s: alias %s not found", s, p.Alias)
			}
			row, err = scanVersion(q.QueryRowContext(ctx, `SELECT `+versionCols+versionFrom+` WHERE v.model_id = $1 AND v.version = $2`, mid, a.Version))
		case p.Digest != "":
			row, err = scanVersion(q.QueryRowContext(ctx, `SELECT `+versionCols+versionFrom+` WHERE v.model_id = $1 AND v.digest = $2
ORDER BY CASE WHEN v.status = 'READY' AND v.state = 'LIVE' THEN 0 ELSE 1 END, v.version DESC LIMIT 1`, mid, p.Digest))
			if errors.Is(err, sql.ErrNoRows) {
				return errorf(CodeNotFound, "%s: no version of %s has that digest", s, p.Model)
			}
		default:
			row, err = scanVersion(q.QueryRowContext(ctx, `SELECT `+versionCols+versionFrom+` WHERE v.model_id = $1 AND v.status = 'READY' AND v.state = 'LIVE'
ORDER BY v.version DESC LIMIT 1`, mid))
			if errors.Is(err, sql.ErrNoRows) {
				return errorf(CodeNotFound, "%s: model %s has no READY, LIVE version", s, p.Model)
			}
		}
		if err != nil {
			return err
		}
		switch {
		case row.v.State != StateLive:
			return errorf(CodeConflict, "%s: version %s is ARCHIVED", s, row.v.Ref())
		case row.v.Status != StatusReady:
			why := ""
			if row.v.StatusMessage != "" {
				why = " (" + row.v.StatusMessage + ")"
			}
			return errorf(CodeConflict, "%s: version %s is %s%s, not READY", s, row.v.Ref(), row.v.Status, why)
		}
		if err := fill(ctx, q, []*versionRow{row}); err != nil {
			return err
		}
		out = &row.v
		return nil
	})
	return out, err
}

// SetUses replaces the set of versions user (a deployment, such as
// "inferenceservice/iris") uses; nil or empty clears it. Every version must
// exist and be READY and LIVE in a LIVE model. While a version is used,
// ArchiveVersion (and ArchiveModel of its model) is refused, naming the
// user.
func (r *Registry) SetUses(ctx context.Context, user string, refs []VersionRef) error {
	if err := checkUser(user); err != nil {
		return err
	}
	seen := map[VersionRef]bool{}
	var uniq []VersionRef
	for _, ref := range refs {
		if err := checkVersionArgs(ref.Model, ref.Version); err != nil {
			return err
		}
		if !seen[ref] {
			seen[ref] = true
			uniq = append(uniq, ref)
		}
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return err
	}
	// Models are locked in name order, so that two SetUses never deadlock.
	sortRefs(uniq)
	return r.st.write(ctx, func(tx *wtx) error {
		var ids []int64
		locked := ""
		for _, ref := range uniq {
			if ref.Model != locked {
				m, err := lockModel(ctx, tx, ref.Model)
				if err != nil {
					return errorf(CodeNotFound, "user %s: %w", user, err)
				}
				if m.m.State != StateLive {
					return errorf(CodeConflict, "user %s: model %s is ARCHIVED", user, ref.Model)
				}
				locked = ref.Model
			}
			var id int64
			var status, state string
			err := tx.QueryRowContext(ctx, `SELECT v.id, v.status, v.state`+versionFrom+` WHERE m.name = $1 AND v.version = $2`, ref.Model, ref.Version).Scan(&id, &status, &state)
			if errors.Is(err, sql.ErrNoRows) {
				return errorf(CodeNotFound, "user %s: %w", user, versionNotFound(ref.Model, ref.Version))
			}
			if err != nil {
				return err
			}
			if State(state) != StateLive || Status(status) != StatusReady {
				return errorf(CodeConflict, "user %s: version %s is %s and %s: only READY, LIVE versions can be used", user, ref, status, state)
			}
			ids = append(ids, id)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM uses WHERE user_name = $1`, user); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `INSERT INTO uses (user_name, version_id) VALUES ($1, $2)`, user, id); err != nil {
				return err
			}
		}
		names := make([]string, len(uniq))
		msg := user + " uses"
		for i, ref := range uniq {
			names[i] = ref.String()
			msg += " " + names[i]
		}
		if len(uniq) == 0 {
			msg = user + " uses no version"
		}
		_, err := r.appendEvent(ctx, tx, EventUsesSet, "", 0, actor, msg, map[string]any{"user": user, "versions": names})
		return err
	})
}

func sortRefs(refs []VersionRef) {
	slices.SortFunc(refs, func(a, b VersionRef) int {
		return cmp.Or(strings.Compare(a.Model, b.Model), cmp.Compare(a.Version, b.Version))
	})
}

// Uses returns the versions user uses, sorted.
func (r *Registry) Uses(ctx context.Context, user string) ([]VersionRef, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	out := []VersionRef{}
	err := r.st.read(ctx, func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT m.name, v.version FROM uses u JOIN versions v ON v.id = u.version_id JOIN models m ON m.id = v.model_id
WHERE u.user_name = $1 ORDER BY m.name, v.version`, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ref VersionRef
			if err := rows.Scan(&ref.Model, &ref.Version); err != nil {
				return err
			}
			out = append(out, ref)
		}
		return rows.Err()
	})
	return out, err
}

// UsersOf returns the users of a version, sorted.
func (r *Registry) UsersOf(ctx context.Context, ref VersionRef) ([]string, error) {
	if err := checkVersionArgs(ref.Model, ref.Version); err != nil {
		return nil, err
	}
	var out []string
	err := r.st.read(ctx, func(q querier) error {
		var id int64
		err := q.QueryRowContext(ctx, `SELECT v.id`+versionFrom+` WHERE m.name = $1 AND v.version = $2`, ref.Model, ref.Version).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return versionNotFound(ref.Model, ref.Version)
		}
		if err != nil {
			return err
		}
		out, err = usersOf(ctx, q, id)
		return err
	})
	if out == nil && err == nil {
		out = []string{}
	}
	return out, err
}

func usersOf(ctx context.Context, q querier, versionID int64) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT user_name FROM uses WHERE version_id = $1 ORDER BY user_name`, versionID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
