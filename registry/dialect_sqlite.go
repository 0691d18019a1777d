package registry

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDialect is the embedded store: one file, WAL, foreign keys on,
// write transactions that take the write lock at BEGIN (IMMEDIATE), so two
// writers never deadlock upgrading a read lock.
type sqliteDialect struct{}

func (sqliteDialect) name() string      { return "sqlite" }
func (sqliteDialect) idColumn() string  { return "INTEGER PRIMARY KEY" }
func (sqliteDialect) forUpdate() string { return "" }

func (sqliteDialect) lockEvents(context.Context, *sql.Tx) error     { return nil }
func (sqliteDialect) lockMigrations(context.Context, *sql.Tx) error { return nil }

// readTx is a deferred transaction: modernc's _txlock=immediate applies to
// read-write transactions only.
func (sqliteDialect) readTx() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

func (sqliteDialect) retryable(error) bool { return false }

func (sqliteDialect) busy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && (e.Code()&0xff == sqlite3.SQLITE_BUSY || e.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

func (sqliteDialect) isUnique(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func (sqliteDialect) classify(err error, s *store) *Error {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return nil
	}
	switch e.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return errorf(CodeUnavailable, "store %s is locked by another process or connection (waited %s): %w", s.desc, s.busyTimeout, err)
	case sqlite3.SQLITE_FULL:
		return errorf(CodeInsufficientStorage, "store %s: the disk is full: %w", s.desc, err)
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return errorf(CodeDataLoss, "store %s is not an SQLite database or is corrupt (restore it from a backup): %w", s.desc, err)
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM:
		return errorf(CodeUnavailable, "store %s cannot be opened for writing: %w", s.desc, err)
	case sqlite3.SQLITE_IOERR:
		return errorf(CodeInternal, "store %s: I/O error: %w", s.desc, err)
	}
	return nil
}

// openSQLite opens (creating it if need be) the SQLite file at path.
func openSQLite(path string, busy time.Duration) (*sql.DB, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit is on disk when it returns, power loss included.
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, "", err
	}
	// Readers run in parallel under WAL; writers queue on writeSem.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	return db, abs, nil
}
