package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// modelRow is a model as stored.
type modelRow struct {
	id  int64
	gen int64
	m   RegisteredModel
}

const modelCols = `m.id, m.name, m.description, m.owner, m.labels, m.state, m.create_time, m.update_time, m.generation`

func scanModel(sc scanner) (modelRow, error) {
	var r modelRow
	var labels, state string
	var ct, ut int64
	if err := sc.Scan(&r.id, &r.m.Name, &r.m.Description, &r.m.Owner, &labels, &state, &ct, &ut, &r.gen); err != nil {
		return r, err
	}
	r.m.State = State(state)
	r.m.CreateTime, r.m.UpdateTime = fromMicros(ct), fromMicros(ut)
	r.m.ETag = strconv.FormatInt(r.gen, 10)
	if err := decodeMap(labels, &r.m.Labels); err != nil {
		return r, err
	}
	return r, nil
}

// encodeMap stores a map as a JSON object ("{}" when empty).
func encodeMap[V any](m map[string]V) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// decodeMap reads a stored JSON object; an empty one leaves *m nil.
func decodeMap[V any](s string, m *map[string]V) error {
	if s == "" || s == "{}" {
		*m = nil
		return nil
	}
	return json.Unmarshal([]byte(s), m)
}

// replaceLabels rewrites the label rows of one model or version.
func replaceLabels(ctx context.Context, tx *wtx, table, owner string, id int64, labels map[string]string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE `+owner+` = $1`, id); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (`+owner+`, key, value) VALUES ($1, $2, $3)`, id, k, labels[k]); err != nil {
			return err
		}
	}
	return nil
}

// lockModel reads a model for change (locking its row on PostgreSQL: every
// change to a model, its versions and its aliases takes this lock first).
func lockModel(ctx context.Context, tx *wtx, name string) (modelRow, error) {
	row, err := scanModel(tx.QueryRowContext(ctx, `SELECT `+modelCols+` FROM models m WHERE m.name = $1`+tx.s.d.forUpdate(), name))
	if errors.Is(err, sql.ErrNoRows) {
		return row, modelNotFound(name)
	}
	return row, err
}

// checkETag compares an If-Match value with the current generation; ""
// means unconditional. Quotes and a weak W/ prefix are accepted.
func checkETag(what, ifMatch string, gen int64) error {
	if ifMatch == "" || ifMatch == "*" {
		return nil
	}
	tag := strings.Trim(strings.TrimPrefix(ifMatch, "W/"), `"`)
	if tag != strconv.FormatInt(gen, 10) {
		return errorf(CodeFailedPrecondition, "%s: etag %q is stale (current %q): read it again and retry", what, tag, strconv.FormatInt(gen, 10))
	}
	return nil
}

// CreateModel registers a model. Its name follows NameRule and never
// changes; Owner defaults to the context's actor. A model of that name
// existing already is CodeAlreadyExists.
func (r *Registry) CreateModel(ctx context.Context, c ModelCreate) (*RegisteredModel, error) {
	if err := checkName("model name", c.Name); err != nil {
		return nil, err
	}
	what := "model " + c.Name
	if err := checkText(what+" description", c.Description, maxText, true); err != nil {
		return nil, err
	}
	if err := checkText(what+" owner", c.Owner, maxShortText, false); err != nil {
		return nil, err
	}
	if err := checkLabels(what, c.Labels); err != nil {
		return nil, err
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	if c.Owner == "" {
		c.Owner = actor
	}
	labels, err := encodeMap(c.Labels)
	if err != nil {
		return nil, err
	}
	now := r.now()
	m := &RegisteredModel{Name: c.Name, Description: c.Description, Owner: c.Owner, Labels: maps.Clone(c.Labels),
		State: StateLive, CreateTime: now, UpdateTime: now, ETag: "1"}
	if len(m.Labels) == 0 {
		m.Labels = nil
	}
	err = r.st.write(ctx, func(tx *wtx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO models (name, description, owner, labels, state, create_time, update_time, generation)
VALUES ($1, $2, $3, $4, $5, $6, $6, 1) RETURNING id`, c.Name, c.Description, c.Owner, labels, string(StateLive), micros(now)).Scan(&id)
		if err != nil {
			if tx.s.d.isUnique(err) {
				return errorf(CodeAlreadyExists, "model %s already exists", c.Name)
			}
			return err
		}
		if err := replaceLabels(ctx, tx, "model_labels", "model_id", id, c.Labels); err != nil {
			return err
		}
		_, err = r.appendEvent(ctx, tx, EventModelCreated, c.Name, 0, actor, "model "+c.Name+" created", nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// GetModel returns the model of that name.
func (r *Registry) GetModel(ctx context.Context, name string) (*RegisteredModel, error) {
	if err := checkName("model name", name); err != nil {
		return nil, err
	}
	var row modelRow
	err := r.st.read(ctx, func(q querier) error {
		var err error
		row, err = scanModel(q.QueryRowContext(ctx, `SELECT `+modelCols+` FROM models m WHERE m.name = $1`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return modelNotFound(name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &row.m, nil
}

// namePrefixRE is what a model name prefix filter may hold.
var namePrefixRE = regexp.MustCompile(`^[a-z0-9._-]{0,63}$`)

// ListModels returns one page of models, filtered and ordered by o.
func (r *Registry) ListModels(ctx context.Context, o ListOptions) (*ModelPage, error) {
	if !namePrefixRE.MatchString(o.Name) {
		return nil, errorf(CodeInvalidArgument, "name filter %q: a model name prefix holds only lowercase letters, digits, '.', '_', '-' (at most 63)", o.Name)
	}
	if o.Status != "" {
		return nil, errorf(CodeInvalidArgument, "status filter %q: models have no status (versions do)", o.Status)
	}
	var b qb
	b.sql.WriteString(`SELECT ` + modelCols + ` FROM models m WHERE 1 = 1`)
	if o.Name != "" {
		b.sql.WriteString(` AND m.name LIKE ` + b.arg(likePrefix(o.Name)) + ` ESCAPE '!'`)
	}
	n, err := listClauses(&b, o, "models", "m", "model_labels", "model_id")
	if err != nil {
		return nil, err
	}
	page := &ModelPage{PageSize: n, Items: make([]RegisteredModel, 0, min(n, 128))}
	var last modelRow
	more := false
	err = r.st.read(ctx, func(q querier) error {
		rows, err := q.QueryContext(ctx, b.sql.String(), b.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if len(page.Items) == n {
				more = true
				break
			}
			row, err := scanModel(rows)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, row.m)
			last = row
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	page.Size = len(page.Items)
	page.NextPageToken = nextToken(more, "models", o.Order, micros(last.m.CreateTime), last.id)
	return page, nil
}

// UpdateModel changes what u sets, if ifMatch is "" or the model's current
// ETag (else CodeFailedPrecondition). Setting State to ARCHIVED archives it
// as ArchiveModel does; LIVE restores it. An update that changes nothing
// returns the model as it is.
func (r *Registry) UpdateModel(ctx context.Context, name string, u ModelUpdate, ifMatch string) (*RegisteredModel, error) {
	if err := checkName("model name", name); err != nil {
		return nil, err
	}
	what := "model " + name
	if u.Description != nil {
		if err := checkText(what+" description", *u.Description, maxText, true); err != nil {
			return nil, err
		}
	}
	if u.Owner != nil {
		if err := checkText(what+" owner", *u.Owner, maxShortText, false); err != nil {
			return nil, err
		}
	}
	if err := checkLabels(what, u.Labels); err != nil {
		return nil, err
	}
	if u.State != nil && !u.State.valid() {
		return nil, errorf(CodeInvalidArgument, "%s state %q: want LIVE or ARCHIVED", what, *u.State)
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	var out RegisteredModel
	err = r.st.write(ctx, func(tx *wtx) error {
		row, err := lockModel(ctx, tx, name)
		if err != nil {
			return err
		}
		if err := checkETag(what, ifMatch, row.gen); err != nil {
			return err
		}
		m := row.m
		var fields []string
		if u.Description != nil && *u.Description != m.Description {
			m.Description, fields = *u.Description, append(fields, "description")
		}
		if u.Owner != nil && *u.Owner != m.Owner {
			m.Owner, fields = *u.Owner, append(fields, "owner")
		}
		labelsChanged := u.Labels != nil && !maps.Equal(u.Labels, m.Labels)
		if labelsChanged {
			m.Labels, fields = maps.Clone(u.Labels), append(fields, "labels")
			if len(m.Labels) == 0 {
				m.Labels = nil
			}
		}
		kind := EventModelUpdated
		if u.State != nil && *u.State != m.State {
			if *u.State == StateArchived {
				if err := guardModelArchive(ctx, tx, row); err != nil {
					return err
				}
				kind = EventModelArchived
			} else {
				kind = EventModelRestored
			}
			m.State, fields = *u.State, append(fields, "state")
		}
		if len(fields) == 0 {
			out = m
			return nil
		}
		labels, err := encodeMap(m.Labels)
		if err != nil {
			return err
		}
		m.UpdateTime = r.now()
		m.ETag = strconv.FormatInt(row.gen+1, 10)
		if _, err := tx.ExecContext(ctx, `UPDATE models SET description = $1, owner = $2, labels = $3, state = $4, update_time = $5, generation = generation + 1 WHERE id = $6`,
			m.Description, m.Owner, labels, string(m.State), micros(m.UpdateTime), row.id); err != nil {
			return err
		}
		if labelsChanged {
			if err := replaceLabels(ctx, tx, "model_labels", "model_id", row.id, m.Labels); err != nil {
				return err
			}
		}
		msg := "model " + name + " " + strings.TrimPrefix(kind, "model.")
		if _, err := r.appendEvent(ctx, tx, kind, name, 0, actor, msg, map[string]any{"fields": fields}); err != nil {
			return err
		}
		out = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ArchiveModel archives a model: it stays listed (with State ARCHIVED) but
// none of its versions resolves or can be deployed. It is refused with
// CodeConflict, naming them, while a user (SetUses) uses any of its
// versions. Archiving an archived model does nothing.
func (r *Registry) ArchiveModel(ctx context.Context, name string) (*RegisteredModel, error) {
	s := StateArchived
	return r.UpdateModel(ctx, name, ModelUpdate{State: &s}, "")
}

// guardModelArchive refuses to archive a model whose versions are in use.
func guardModelArchive(ctx context.Context, tx *wtx, row modelRow) error {
	rows, err := tx.QueryContext(ctx, `SELECT u.user_name, v.version FROM uses u JOIN versions v ON v.id = u.version_id
WHERE v.model_id = $1 ORDER BY u.user_name, v.version`, row.id)
	if err != nil {
		return err
	}
	defer rows.Close()
	var users []string
	for rows.Next() {
		var u string
		var v int64
		if err := rows.Scan(&u, &v); err != nil {
			return err
		}
		users = append(users, u+" (version "+strconv.FormatInt(v, 10)+")")
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(users) > 0 {
		return errorf(CodeConflict, "model %s cannot be archived: in use by %s", row.m.Name, strings.Join(users, ", "))
	}
	return nil
}
