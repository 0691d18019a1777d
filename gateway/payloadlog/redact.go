package payloadlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Redacted is what a redacted value is replaced with: the JSON string
// "[REDACTED]".
const Redacted = `"[REDACTED]"`

// A redaction path names values inside a JSON payload. It is a list of
// segments separated by '.', each a member name followed by any number of
// selectors in brackets that pick elements of the array the member holds:
//
//	parameters.user_id            member user_id of the top-level parameters object
//	id                            the top-level id
//	inputs[name=ssn].data         the data of every input whose "name" is "ssn"
//	inputs[name=ssn]              the whole tensor (name included)
//	outputs[*].parameters.trace   member trace of every output's parameters
//	inputs[0].data                the first input's data
//	[0].x                         member x of the first element of a top-level array
//
// A selector is "*" (every element), a decimal index, or key=value (every
// element that is an object whose member key is the string value, or a
// number or literal written exactly as value). Member names cannot contain
// '.', '[', ']' or '='; selector values cannot contain ']'. Names and
// values are matched exactly, after JSON unescaping. The value a path names,
// whatever its type, is replaced with Redacted; a path that names nothing
// in a payload changes nothing.
type redactPath []segment

type segment struct {
	key       string // "" only for the first segment: the payload itself
	selectors []selector
}

type selector struct {
	all   bool
	index int // >= 0 when an index
	key   string
	value string
}

// compilePaths parses redaction paths; the error names the bad one.
func compilePaths(paths []string) ([]redactPath, error) {
	out := make([]redactPath, 0, len(paths))
	for _, p := range paths {
		rp, err := compilePath(p)
		if err != nil {
			return nil, fmt.Errorf("redaction path %q: %w", p, err)
		}
		out = append(out, rp)
	}
	return out, nil
}

func compilePath(p string) (redactPath, error) {
	p = strings.TrimSpace(p)
	if p == "" {
		return nil, fmt.Errorf("empty")
	}
	var rp redactPath
	for i, part := range splitOutsideBrackets(p, '.') {
		key, rest, _ := strings.Cut(part, "[")
		if strings.ContainsAny(key, "]=") {
			return nil, fmt.Errorf("member name %q holds ']' or '='", key)
		}
		if key == "" && (i > 0 || rest == "") {
			return nil, fmt.Errorf("empty member name")
		}
		seg := segment{key: key}
		if strings.Contains(part, "[") {
			rest = "[" + rest
		}
		for rest != "" {
			if rest[0] != '[' {
				return nil, fmt.Errorf("%q: a selector is written [*], [index] or [key=value]", part)
			}
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("%q: unclosed '['", part)
			}
			sel, err := parseSelector(rest[1:end])
			if err != nil {
				return nil, fmt.Errorf("%q: %w", part, err)
			}
			seg.selectors = append(seg.selectors, sel)
			rest = rest[end+1:]
		}
		rp = append(rp, seg)
	}
	return rp, nil
}

func parseSelector(s string) (selector, error) {
	switch {
	case s == "*":
		return selector{all: true, index: -1}, nil
	case strings.Contains(s, "["):
		return selector{}, fmt.Errorf("'[' inside a selector")
	case strings.Contains(s, "="):
		k, v, _ := strings.Cut(s, "=")
		if k == "" {
			return selector{}, fmt.Errorf("selector [%s] has no key", s)
		}
		return selector{index: -1, key: k, value: v}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return selector{}, fmt.Errorf("selector [%s] is not *, an index or key=value", s)
	}
	return selector{index: n}, nil
}

// splitOutsideBrackets splits s at sep where sep is not inside [...].
func splitOutsideBrackets(s string, sep byte) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case sep:
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// redact returns doc with the values paths name replaced with Redacted,
// and whether doc is JSON that could be redacted. doc is returned as it is
// when no path names anything in it; it is never modified.
func redact(doc []byte, paths []redactPath) ([]byte, bool) {
	if !json.Valid(doc) {
		return nil, false
	}
	if len(paths) == 0 {
		return doc, true
	}
	var spans [][2]int
	root := skipSpace(doc, 0)
	for _, p := range paths {
		spans = collect(doc, root, p, spans)
	}
	if len(spans) == 0 {
		return doc, true
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out bytes.Buffer
	out.Grow(len(doc))
	at := 0
	for _, s := range spans {
		if s[0] < at {
			continue // inside a value already replaced
		}
		out.Write(doc[at:s[0]])
		out.WriteString(Redacted)
		at = s[1]
	}
	out.Write(doc[at:])
	return out.Bytes(), true
}

// collect appends to spans the [start, end) of every value path p names
// in the value that starts at i in valid JSON doc.
func collect(doc []byte, i int, p redactPath, spans [][2]int) [][2]int {
	if len(p) == 0 {
		return append(spans, [2]int{i, skipValue(doc, i)})
	}
	seg := p[0]
	starts := []int{i}
	if seg.key != "" {
		starts = starts[:0]
		if v, ok := member(doc, i, seg.key); ok {
			starts = append(starts, v)
		}
	}
	for _, sel := range seg.selectors {
		var next []int
		for _, s := range starts {
			next = selectElements(doc, s, sel, next)
		}
		starts = next
	}
	for _, s := range starts {
		spans = collect(doc, s, p[1:], spans)
	}
	return spans
}

// member returns where the value of member key of the object at i starts.
func member(doc []byte, i int, key string) (int, bool) {
	if doc[i] != '{' {
		return 0, false
	}
	found := -1
	eachMember(doc, i, func(k []byte, v int) bool {
		if stringIs(k, key) {
			found = v
			return false
		}
		return true
	})
	return found, found >= 0
}

// selectElements appends the starts of the elements of the array at i
// that sel picks.
func selectElements(doc []byte, i int, sel selector, out []int) []int {
	if doc[i] != '[' {
		return out
	}
	n := 0
	eachElement(doc, i, func(v int) bool {
		switch {
		case sel.all:
			out = append(out, v)
		case sel.key != "":
			if m, ok := member(doc, v, sel.key); ok && valueIs(doc, m, sel.value) {
				out = append(out, v)
			}
		case n == sel.index:
			out = append(out, v)
			return false
		}
		n++
		return true
	})
	return out
}

// valueIs reports whether the value at i is the string s, or a number or
// literal written as s.
func valueIs(doc []byte, i int, s string) bool {
	end := skipValue(doc, i)
	if doc[i] == '"' {
		return stringIs(doc[i:end], s)
	}
	return string(doc[i:end]) == s
}

// stringIs reports whether the JSON string literal lit (quotes included)
// is s.
func stringIs(lit []byte, s string) bool {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body) == s
	}
	var u string
	return json.Unmarshal(lit, &u) == nil && u == s
}

// eachMember calls fn with each member's key literal and value start of
// the object at i, until fn returns false.
func eachMember(doc []byte, i int, fn func(key []byte, value int) bool) {
	i = skipSpace(doc, i+1)
	if doc[i] == '}' {
		return
	}
	for {
		kEnd := skipValue(doc, i)
		key := doc[i:kEnd]
		v := skipSpace(doc, skipSpace(doc, kEnd)+1) // past ':'
		if !fn(key, v) {
			return
		}
		i = skipSpace(doc, skipValue(doc, v))
		if doc[i] == '}' {
			return
		}
		i = skipSpace(doc, i+1) // past ','
	}
}

// eachElement calls fn with each element's start of the array at i, until
// fn returns false.
func eachElement(doc []byte, i int, fn func(value int) bool) {
	i = skipSpace(doc, i+1)
	if doc[i] == ']' {
		return
	}
	for {
		if !fn(i) {
			return
		}
		i = skipSpace(doc, skipValue(doc, i))
		if doc[i] == ']' {
			return
		}
		i = skipSpace(doc, i+1)
	}
}

func skipSpace(doc []byte, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\n' || doc[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the value that starts at i in valid JSON.
func skipValue(doc []byte, i int) int {
	switch doc[i] {
	case '"':
		return skipString(doc, i)
	case '{', '[':
		depth := 0
		for ; i < len(doc); i++ {
			switch doc[i] {
			case '"':
				i = skipString(doc, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(doc)
	}
	for i < len(doc) {
		switch doc[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// skipString returns the end of the string literal at i.
func skipString(doc []byte, i int) int {
	for i++; i < len(doc); i++ {
		switch doc[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(doc)
}
