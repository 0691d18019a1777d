package registry

import (
	"context"
	"database/sql"
)

// Tx is a write transaction of the registry's store, given to Update: the
// control plane writes its own tables (declarations, revisions, rollouts)
// through it and appends the events of that change in the same
// transaction, so that a change and its event are committed together or
// not at all.
//
// SQL is shared by both stores: use $1-style parameters and portable SQL
// (Dialect tells which store it is when that is not enough). The registry's
// own tables are the registry's: change them only through its methods.
type Tx struct {
	ctx context.Context
	r   *Registry
	w   *wtx
}

// Dialect returns "sqlite" or "postgres".
func (t *Tx) Dialect() string { return t.w.s.d.name() }

// ExecContext runs a statement in the transaction.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.w.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the transaction.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.w.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a one-row query in the transaction.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.w.QueryRowContext(ctx, query, args...)
}

// AppendEvent appends an event as Registry.AppendEvent does, in this
// transaction: it is stored and published only if the transaction
// commits.
func (t *Tx) AppendEvent(e Event) (Event, error) {
	return t.r.appendUserEvent(t.ctx, t.w, e)
}

// Update runs fn in one write transaction and commits it if fn returns nil;
// otherwise (or if the commit fails) nothing fn wrote is kept and no event
// it appended is published. fn's error is returned as it is; a failure to
// begin or commit is an *Error. With SQLite, fn holds the store's only write
// slot: it must not call other Registry methods that write (they would wait
// for it forever). With PostgreSQL, fn may be run again (at most three
// times in all) after a deadlock or serialization failure, so it must not
// have effects outside tx.
func (r *Registry) Update(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	var fnErr error
	err := r.st.write(ctx, func(w *wtx) error {
		fnErr = fn(ctx, &Tx{ctx: ctx, r: r, w: w})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}
