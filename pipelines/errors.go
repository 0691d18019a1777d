package pipelines

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds of error the engine returns; errors.Is matches them. The API
// maps each to one HTTP status (see pipelinesapi).
var (
	// ErrInvalid: a pipeline, a parameter or a request is wrong (400). A
	// pipeline's problems are *Error values joined with errors.Join.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: no such run, step, iteration or attempt (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the run's state does not allow it: cancelling an ended
	// run, retrying one that runs or succeeded (409).
	ErrConflict = errors.New("conflict")
	// ErrTooManyRuns: Options.MaxActiveRuns runs are active already (429).
	ErrTooManyRuns = errors.New("too many active runs")
	// ErrClosed: the engine is closed (503).
	ErrClosed = errors.New("engine closed")
)

// kindError is an error of one of the kinds above with its own message.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Error is one problem with a pipeline document or its parameters. Parse
// and Validate report every problem they find (up to 20), each an *Error,
// joined with errors.Join; errors.As finds the first, errors.Is(err,
// ErrInvalid) holds.
type Error struct {
	// Source is the pipeline's Source (a file name), if any.
	Source string
	// Step is the step at fault, "" for the pipeline's own fields.
	Step string
	// Finally says Step is a finally step.
	Finally bool
	// Field is the field's path within the step (retry.limit,
	// inputs.model.from, command[2]) or the document (metadata.name,
	// spec.params.epochs.default).
	Field string
	// Msg says what is wrong, quoting the bad value.
	Msg string
}

// Error formats as "SOURCE: step NAME: FIELD: MSG" (or "finally step
// NAME"), leaving out the parts that are not set.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Step != "" {
		if e.Finally {
			b.WriteString("finally ")
		}
		b.WriteString("step ")
		b.WriteString(e.Step)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// maxErrors bounds the problems reported at once.
const maxErrors = 20

// problems collects the errors of one Parse or Validate.
type problems struct {
	source  string
	errs    []error
	dropped int
}

func (p *problems) add(step string, finally bool, field, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		p.dropped++
		return
	}
	p.errs = append(p.errs, &Error{Source: p.source, Step: step, Finally: finally, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) len() int { return len(p.errs) + p.dropped }

func (p *problems) err() error {
	if p.dropped > 0 {
		return errors.Join(append(p.errs, errorf(ErrInvalid, "pipelines: and %d more problems", p.dropped))...)
	}
	return errors.Join(p.errs...)
}

// at is a problems scoped to one step (or to none).
type at struct {
	p       *problems
	step    string
	finally bool
}

func (a at) addf(field, format string, args ...any) {
	a.p.add(a.step, a.finally, field, format, args...)
}
