package tenants

import (
	"errors"
	"fmt"
)

// The codes of an *Error: errors.Is(err, ErrNotFound) tells them apart.
var (
	// ErrInvalid is input the store refuses: a bad name, a negative
	// limit, an unknown action, a grant that selects no model.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound is a tenant, key or grant that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is a change the store's state refuses: a tenant that
	// already exists.
	ErrConflict = errors.New("conflict")
)

// Error is an error of this package: Code is one of ErrInvalid,
// ErrNotFound and ErrConflict, and the message names the entity, the
// field and the value (never a secret).
type Error struct {
	Code error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the code, so that errors.Is(err, ErrNotFound) holds.
func (e *Error) Unwrap() error { return e.Code }

func errorf(code error, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
