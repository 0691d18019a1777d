package config

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one problem with one declaration. Parse and LoadPath report every
// problem they find (up to maxErrors), each an *Error, joined with
// errors.Join; errors.As finds the first.
type Error struct {
	// Source is the file as given to Parse or LoadPath.
	Source string
	// Document is the 1-based index of the document among the file's
	// non-empty documents; 0 when the problem is with the file itself.
	Document int
	// Field is the path of the field at fault, as
	// spec.predictor.minReplicas or metadata.annotations[infergate.io/endpoints];
	// "" when the problem is with the document as a whole.
	Field string
	// Msg says what is wrong, quoting the bad value.
	Msg string
}

// Error formats as "SOURCE: document N: FIELD: MSG", leaving out the parts
// that are not set.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Document > 0 {
		fmt.Fprintf(&b, "document %d: ", e.Document)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxErrors bounds the problems reported at once, so that a large bad input
// yields a readable error of bounded size.
const maxErrors = 20

// problems collects the errors of one Parse or LoadPath.
type problems struct {
	errs    []error
	dropped int
}

func (p *problems) add(e *Error) {
	if len(p.errs) >= maxErrors {
		p.dropped++
		return
	}
	p.errs = append(p.errs, e)
}

func (p *problems) len() int { return len(p.errs) + p.dropped }

func (p *problems) err() error {
	if p.dropped > 0 {
		return errors.Join(append(p.errs, fmt.Errorf("config: and %d more problems", p.dropped))...)
	}
	return errors.Join(p.errs...)
}

// docProblems collects the errors of one document, filling in its place.
type docProblems struct {
	p      *problems
	source string
	doc    int
	n      int
}

func (d *docProblems) addf(field, format string, args ...any) {
	d.n++
	d.p.add(&Error{Source: d.source, Document: d.doc, Field: field, Msg: fmt.Sprintf(format, args...)})
}
