package registry

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"strconv"
	"strings"
)

// versionRow is a version as stored, with its model's state.
type versionRow struct {
	id         int64
	modelID    int64
	gen        int64
	modelState State
	v          ModelVersion
}

const versionCols = `v.id, v.model_id, m.name, v.version, v.author, v.description, v.labels, v.custom_properties, v.metrics, v.params,
v.status, v.status_message, v.state, v.source_kind, v.source_id, v.source_name, v.source_actor, v.digest,
v.create_time, v.update_time, v.generation, m.state`

const versionFrom = ` FROM versions v JOIN models m ON m.id = v.model_id`

func scanVersion(sc scanner) (*versionRow, error) {
	r := &versionRow{}
	v := &r.v
	var labels, props, metrics, params, status, state, mstate string
	var ct, ut int64
	if err := sc.Scan(&r.id, &r.modelID, &v.Model, &v.Version, &v.Author, &v.Description, &labels, &props, &metrics, &params,
		&status, &v.StatusMessage, &state, &v.Source.Kind, &v.Source.ID, &v.Source.Name, &v.Source.Actor, &v.Digest,
		&ct, &ut, &r.gen, &mstate); err != nil {
		return nil, err
	}
	v.Status, v.State, r.modelState = Status(status), State(state), State(mstate)
	v.CreateTime, v.UpdateTime = fromMicros(ct), fromMicros(ut)
	v.ETag = strconv.FormatInt(r.gen, 10)
	if err := decodeMap(labels, &v.Labels); err != nil {
		return nil, err
	}
	if err := decodeMap(props, &v.CustomProperties); err != nil {
		return nil, err
	}
	if err := decodeMap(metrics, &v.Metrics); err != nil {
		return nil, err
	}
	if err := decodeMap(params, &v.Params); err != nil {
		return nil, err
	}
	v.Artifacts = []Artifact{}
	return r, nil
}

// inList returns "($n, $m, ...)" for ids. The list is padded to a power
// of two by repeating the last id, so that the queries using it come in a
// few shapes only (the statement cache holds each once).
func inList(b *qb, ids []int64) string {
	n := 1
	for n < len(ids) {
		n *= 2
	}
	var s strings.Builder
	s.WriteByte('(')
	for i := range n {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(b.arg(ids[min(i, len(ids)-1)]))
	}
	s.WriteByte(')')
	return s.String()
}

// fill loads the artifacts and aliases of rows, in two queries.
func fill(ctx context.Context, q querier, rows []*versionRow) error {
	if len(rows) == 0 {
		return nil
	}
	byID := make(map[int64]*versionRow, len(rows))
	ids := make([]int64, 0, len(rows))
	for _, r := range rows {
		byID[r.id] = r
		ids = append(ids, r.id)
	}
	var b qb
	in := inList(&b, ids)
	rs, err := q.QueryContext(ctx, `SELECT version_id, name, digest, size, format, content_type, create_time FROM artifacts
WHERE version_id IN `+in+` ORDER BY version_id, name`, b.args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var vid, ct int64
		var a Artifact
		if err := rs.Scan(&vid, &a.Name, &a.Digest, &a.Size, &a.Format, &a.ContentType, &ct); err != nil {
			return err
		}
		r := byID[vid]
		a.CreateTime = fromMicros(ct)
		a.URI = artifactURI(r.v.Model, r.v.Version, a.Name)
		r.v.Artifacts = append(r.v.Artifacts, a)
	}
	if err := rs.Err(); err != nil {
		return err
	}
	rs.Close()
	as, err := q.QueryContext(ctx, `SELECT version_id, name FROM aliases WHERE version_id IN `+in+` ORDER BY name`, b.args...)
	if err != nil {
		return err
	}
	defer as.Close()
	for as.Next() {
		var vid int64
		var name string
		if err := as.Scan(&vid, &name); err != nil {
			return err
		}
		byID[vid].v.Aliases = append(byID[vid].v.Aliases, name)
	}
	return as.Err()
}

// loadVersion reads one version with its artifacts and aliases; lock
// locks its row (in a write transaction).
func loadVersion(ctx context.Context, q querier, model string, version int64, lock string) (*versionRow, error) {
	r, err := scanVersion(q.QueryRowContext(ctx, `SELECT `+versionCols+versionFrom+` WHERE m.name = $1 AND v.version = $2`+lock, model, version))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, versionNotFound(model, version)
	}
	if err != nil {
		return nil, err
	}
	return r, fill(ctx, q, []*versionRow{r})
}

// checkVersionArgs validates a model name and a version number.
func checkVersionArgs(model string, version int64) error {
	if err := checkName("model name", model); err != nil {
		return err
	}
	if version < 1 {
		return errorf(CodeInvalidArgument, "version %s/%d: version numbers start at 1", model, version)
	}
	return nil
}

// CreateVersion registers a new version of a LIVE model, PENDING, with the
// next number (1, 2, ...: dense, unique, never reused, whatever the
// concurrency). Upload its artifacts with AddArtifact, then MarkReady (or
// MarkFailed).
func (r *Registry) CreateVersion(ctx context.Context, model string, c VersionCreate) (*ModelVersion, error) {
	if err := checkName("model name", model); err != nil {
		return nil, err
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	if c.Author == "" {
		c.Author = actor
	}
	if c.Source.Kind == "" {
		c.Source.Kind = "user"
	}
	if c.Source.Actor == "" {
		c.Source.Actor = actor
	}
	what := "version of " + model
	if err := checkText(what+" author", c.Author, maxShortText, false); err != nil {
		return nil, err
	}
	if err := checkText(what+" description", c.Description, maxText, true); err != nil {
		return nil, err
	}
	if err := checkLabels(what, c.Labels); err != nil {
		return nil, err
	}
	if err := checkProps(what, c.CustomProperties); err != nil {
		return nil, err
	}
	if err := checkMetrics(what, c.Metrics); err != nil {
		return nil, err
	}
	if err := checkParams(what, c.Params); err != nil {
		return nil, err
	}
	if err := checkSource(what, c.Source); err != nil {
		return nil, err
	}
	var enc [4]string
	for i, f := range []func() (string, error){
		func() (string, error) { return encodeMap(c.Labels) },
		func() (string, error) { return encodeMap(c.CustomProperties) },
		func() (string, error) { return encodeMap(c.Metrics) },
		func() (string, error) { return encodeMap(c.Params) },
	} {
		if enc[i], err = f(); err != nil {
			return nil, errorf(CodeInvalidArgument, "%s: %w", what, err)
		}
	}
	var out *ModelVersion
	err = r.st.write(ctx, func(tx *wtx) error {
		m, err := lockModel(ctx, tx, model)
		if err != nil {
			return err
		}
		if m.m.State != StateLive {
			return errorf(CodeConflict, "model %s is ARCHIVED: restore it (state LIVE) before registering versions", model)
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `UPDATE models SET next_version = next_version + 1 WHERE id = $1 RETURNING next_version - 1`, m.id).Scan(&n); err != nil {
			return err
		}
		now := micros(r.now())
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO versions (model_id, version, author, description, labels, custom_properties, metrics, params,
status, status_message, state, source_kind, source_id, source_name, source_actor, digest, create_time, update_time, generation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '', $10, $11, $12, $13, $14, '', $15, $15, 1) RETURNING id`,
			m.id, n, c.Author, c.Description, enc[0], enc[1], enc[2], enc[3], string(StatusPending), string(StateLive),
			c.Source.Kind, c.Source.ID, c.Source.Name, c.Source.Actor, now).Scan(&id); err != nil {
			return err
		}
		if err := replaceLabels(ctx, tx, "version_labels", "version_id", id, c.Labels); err != nil {
			return err
		}
		ref := VersionRef{model, n}
		if _, err := r.appendEvent(ctx, tx, EventVersionCreated, model, n, actor, "version "+ref.String()+" registered (PENDING)",
			map[string]any{"source": c.Source}); err != nil {
			return err
		}
		row, err := loadVersion(ctx, tx, model, n, "")
		if err != nil {
			return err
		}
		out = &row.v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetVersion returns a version with its artifacts and aliases.
func (r *Registry) GetVersion(ctx context.Context, model string, version int64) (*ModelVersion, error) {
	if err := checkVersionArgs(model, version); err != nil {
		return nil, err
	}
	var out *ModelVersion
	err := r.st.read(ctx, func(q querier) error {
		row, err := loadVersion(ctx, q, model, version, "")
		if err != nil {
			return err
		}
		out = &row.v
		return nil
	})
	return out, err
}

// ListVersions returns one page of a model's versions (with their
// artifacts and aliases), filtered and ordered by o.
func (r *Registry) ListVersions(ctx context.Context, model string, o ListOptions) (*VersionPage, error) {
	if err := checkName("model name", model); err != nil {
		return nil, err
	}
	if o.Name != "" {
		return nil, errorf(CodeInvalidArgument, "name filter %q: versions have numbers, not names", o.Name)
	}
	if o.Status != "" && !o.Status.valid() {
		return nil, errorf(CodeInvalidArgument, "status filter %q: want PENDING, READY or FAILED", o.Status)
	}
	var page *VersionPage
	err := r.st.read(ctx, func(q querier) error {
		var mid int64
		if err := q.QueryRowContext(ctx, `SELECT id FROM models WHERE name = $1`, model).Scan(&mid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return modelNotFound(model)
			}
			return err
		}
		var b qb
		b.sql.WriteString(`SELECT ` + versionCols + versionFrom + ` WHERE v.model_id = ` + b.arg(mid))
		if o.Status != "" {
			b.sql.WriteString(` AND v.status = ` + b.arg(string(o.Status)))
		}
		list := "versions:" + model
		n, err := listClauses(&b, o, list, "v", "version_labels", "version_id")
		if err != nil {
			return err
		}
		rows, err := q.QueryContext(ctx, b.sql.String(), b.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		got := make([]*versionRow, 0, min(n, 128))
		more := false
		for rows.Next() {
			if len(got) == n {
				more = true
				break
			}
			row, err := scanVersion(rows)
			if err != nil {
				return err
			}
			got = append(got, row)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		if err := fill(ctx, q, got); err != nil {
			return err
		}
		page = &VersionPage{PageSize: n, Size: len(got), Items: make([]ModelVersion, len(got))}
		for i, g := range got {
			page.Items[i] = g.v
		}
		if more {
			last := got[len(got)-1]
			page.NextPageToken = nextToken(true, list, o.Order, micros(last.v.CreateTime), last.id)
		}
		return nil
	})
	return page, err
}

// UpdateVersion changes what u sets, if ifMatch is "" or the version's
// current ETag (else CodeFailedPrecondition). Metrics and Params are
// refused (CodeConflict) once the version is READY. Setting State to
// ARCHIVED archives it as ArchiveVersion does; LIVE restores it. An update
// that changes nothing returns the version as it is.
func (r *Registry) UpdateVersion(ctx context.Context, model string, version int64, u VersionUpdate, ifMatch string) (*ModelVersion, error) {
	if err := checkVersionArgs(model, version); err != nil {
		return nil, err
	}
	ref := VersionRef{model, version}
	what := "version " + ref.String()
	if u.Description != nil {
		if err := checkText(what+" description", *u.Description, maxText, true); err != nil {
			return nil, err
		}
	}
	if err := checkLabels(what, u.Labels); err != nil {
		return nil, err
	}
	if err := checkProps(what, u.CustomProperties); err != nil {
		return nil, err
	}
	if err := checkMetrics(what, u.Metrics); err != nil {
		return nil, err
	}
	if err := checkParams(what, u.Params); err != nil {
		return nil, err
	}
	if u.State != nil && !u.State.valid() {
		return nil, errorf(CodeInvalidArgument, "%s state %q: want LIVE or ARCHIVED", what, *u.State)
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	var out *ModelVersion
	err = r.st.write(ctx, func(tx *wtx) error {
		if _, err := lockModel(ctx, tx, model); err != nil {
			return err
		}
		row, err := loadVersion(ctx, tx, model, version, "")
		if err != nil {
			return err
		}
		if err := checkETag(what, ifMatch, row.gen); err != nil {
			return err
		}
		v := row.v
		var fields []string
		if u.Description != nil && *u.Description != v.Description {
			v.Description, fields = *u.Description, append(fields, "description")
		}
		labelsChanged := u.Labels != nil && !maps.Equal(u.Labels, v.Labels)
		if labelsChanged {
			v.Labels, fields = nilIfEmpty(maps.Clone(u.Labels)), append(fields, "labels")
		}
		if u.CustomProperties != nil && !maps.Equal(u.CustomProperties, v.CustomProperties) {
			v.CustomProperties, fields = nilIfEmpty(maps.Clone(u.CustomProperties)), append(fields, "customProperties")
		}
		frozen := func(f string) error {
			return errorf(CodeConflict, "%s is READY: its %s are frozen (register a new version to change them)", what, f)
		}
		if u.Metrics != nil && !maps.Equal(u.Metrics, v.Metrics) {
			if v.Status == StatusReady {
				return frozen("metrics")
			}
			v.Metrics, fields = nilIfEmpty(maps.Clone(u.Metrics)), append(fields, "metrics")
		}
		if u.Params != nil && !maps.Equal(u.Params, v.Params) {
			if v.Status == StatusReady {
				return frozen("params")
			}
			v.Params, fields = nilIfEmpty(maps.Clone(u.Params)), append(fields, "params")
		}
		kind := EventVersionUpdated
		if u.State != nil && *u.State != v.State {
			if *u.State == StateArchived {
				if err := guardVersionArchive(ctx, tx, row); err != nil {
					return err
				}
				kind = EventVersionArchived
			} else {
				kind = EventVersionRestored
			}
			v.State, fields = *u.State, append(fields, "state")
		}
		if len(fields) == 0 {
			out = &v
			return nil
		}
		var enc [4]string
		for i, m := range []func() (string, error){
			func() (string, error) { return encodeMap(v.Labels) },
			func() (string, error) { return encodeMap(v.CustomProperties) },
			func() (string, error) { return encodeMap(v.Metrics) },
			func() (string, error) { return encodeMap(v.Params) },
		} {
			if enc[i], err = m(); err != nil {
				return err
			}
		}
		v.UpdateTime = r.now()
		v.ETag = strconv.FormatInt(row.gen+1, 10)
		if _, err := tx.ExecContext(ctx, `UPDATE versions SET description = $1, labels = $2, custom_properties = $3, metrics = $4, params = $5,
state = $6, update_time = $7, generation = generation + 1 WHERE id = $8`,
			v.Description, enc[0], enc[1], enc[2], enc[3], string(v.State), micros(v.UpdateTime), row.id); err != nil {
			return err
		}
		if labelsChanged {
			if err := replaceLabels(ctx, tx, "version_labels", "version_id", row.id, v.Labels); err != nil {
				return err
			}
		}
		msg := what + " " + strings.TrimPrefix(kind, "version.")
		if _, err := r.appendEvent(ctx, tx, kind, model, version, actor, msg, map[string]any{"fields": fields}); err != nil {
			return err
		}
		out = &v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func nilIfEmpty[V any](m map[string]V) map[string]V {
	if len(m) == 0 {
		return nil
	}
	return m
}

// ArchiveVersion archives a version: it is kept and listed but never
// resolved. It is refused with CodeConflict, naming them, while an alias
// points at it or a user (SetUses) uses it. Archiving an archived version
// does nothing.
func (r *Registry) ArchiveVersion(ctx context.Context, model string, version int64) (*ModelVersion, error) {
	s := StateArchived
	return r.UpdateVersion(ctx, model, version, VersionUpdate{State: &s}, "")
}

// guardVersionArchive refuses to archive a version an alias or a user uses.
func guardVersionArchive(ctx context.Context, tx *wtx, row *versionRow) error {
	var users []string
	for _, a := range row.v.Aliases {
		users = append(users, "alias "+a)
	}
	us, err := usersOf(ctx, tx, row.id)
	if err != nil {
		return err
	}
	users = append(users, us...)
	if len(users) > 0 {
		return errorf(CodeConflict, "version %s cannot be archived: in use by %s (move or delete those first)", row.v.Ref(), strings.Join(users, ", "))
	}
	return nil
}

// MarkReady makes a PENDING version READY: it needs at least one artifact,
// checks that every artifact's file is in the store, and freezes the
// artifact set, the manifest digest (ModelVersion.Digest), the metrics and
// the params. Marking a READY version READY again returns it as it is; a
// FAILED or ARCHIVED version is CodeConflict.
func (r *Registry) MarkReady(ctx context.Context, model string, version int64) (*ModelVersion, error) {
	if err := checkVersionArgs(model, version); err != nil {
		return nil, err
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	ref := VersionRef{model, version}
	var out *ModelVersion
	err = r.st.write(ctx, func(tx *wtx) error {
		if _, err := lockModel(ctx, tx, model); err != nil {
			return err
		}
		row, err := loadVersion(ctx, tx, model, version, "")
		if err != nil {
			return err
		}
		v := row.v
		switch {
		case v.Status == StatusReady:
			out = &v
			return nil
		case v.Status == StatusFailed:
			return errorf(CodeConflict, "version %s is FAILED (%s): register a new version", ref, v.StatusMessage)
		case v.State == StateArchived:
			return errorf(CodeConflict, "version %s is ARCHIVED: restore it before marking it READY", ref)
		case len(v.Artifacts) == 0:
			return errorf(CodeConflict, "version %s has no artifact: upload at least one before marking it READY", ref)
		}
		var total int64
		for _, a := range v.Artifacts {
			if err := r.blobs.check(a.Digest, a.Size); err != nil {
				return errorf(CodeDataLoss, "version %s artifact %s: %w", ref, a.Name, err)
			}
			total += a.Size
		}
		v.Digest = ManifestDigest(v.Artifacts)
		v.Status, v.StatusMessage = StatusReady, ""
		v.UpdateTime = r.now()
		v.ETag = strconv.FormatInt(row.gen+1, 10)
		if _, err := tx.ExecContext(ctx, `UPDATE versions SET status = $1, status_message = '', digest = $2, update_time = $3, generation = generation + 1 WHERE id = $4`,
			string(StatusReady), v.Digest, micros(v.UpdateTime), row.id); err != nil {
			return err
		}
		if _, err := r.appendEvent(ctx, tx, EventVersionReady, model, version, actor, "version "+ref.String()+" READY, "+v.Digest,
			map[string]any{"digest": v.Digest, "artifacts": len(v.Artifacts), "size": total}); err != nil {
			return err
		}
		out = &v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// MarkFailed makes a PENDING version FAILED with message (what went
// wrong; "" becomes "failed"). It never becomes READY. Marking a FAILED
// version FAILED again returns it as it is; a READY version is
// CodeConflict.
func (r *Registry) MarkFailed(ctx context.Context, model string, version int64, message string) (*ModelVersion, error) {
	if err := checkVersionArgs(model, version); err != nil {
		return nil, err
	}
	ref := VersionRef{model, version}
	if err := checkText("version "+ref.String()+" status message", message, maxMessage, true); err != nil {
		return nil, err
	}
	if message == "" {
		message = "failed"
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	var out *ModelVersion
	err = r.st.write(ctx, func(tx *wtx) error {
		if _, err := lockModel(ctx, tx, model); err != nil {
			return err
		}
		row, err := loadVersion(ctx, tx, model, version, "")
		if err != nil {
			return err
		}
		v := row.v
		switch v.Status {
		case StatusFailed:
			out = &v
			return nil
		case StatusReady:
			return errorf(CodeConflict, "version %s is READY: a READY version cannot fail (archive it instead)", ref)
		}
		v.Status, v.StatusMessage = StatusFailed, message
		v.UpdateTime = r.now()
		v.ETag = strconv.FormatInt(row.gen+1, 10)
		if _, err := tx.ExecContext(ctx, `UPDATE versions SET status = $1, status_message = $2, update_time = $3, generation = generation + 1 WHERE id = $4`,
			string(StatusFailed), message, micros(v.UpdateTime), row.id); err != nil {
			return err
		}
		if _, err := r.appendEvent(ctx, tx, EventVersionFailed, model, version, actor, "version "+ref.String()+" FAILED: "+message, nil); err != nil {
			return err
		}
		out = &v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
