package pipelines

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The condition language of `when`:
//
//	expr    = or
//	or      = and { "||" and }
//	and     = unary { "&&" unary }
//	unary   = "!" unary | compare
//	compare = primary [ ("==" | "!=" | "<" | "<=" | ">" | ">=") primary ]
//	primary = NUMBER | STRING | "true" | "false" | REF | "(" expr ")"
//
// NUMBER is a decimal (-3, 0.9, 1e-3); STRING is double-quoted with Go
// escapes or single-quoted without escapes; REF is params.NAME,
// steps.STEP.outputs.NAME or (finally steps only) run.status. Types are
// checked before a run: && || ! take booleans; == and != compare two
// numbers, strings or booleans; < <= > >= two numbers or two strings; an
// int and a double compare as numbers. The whole must be a boolean.

// maxExprLen bounds a condition's length.
const maxExprLen = 1024

type exprNode interface{ pos() int }

type (
	litExpr struct {
		at int
		v  any
	}
	refExpr struct {
		at   int
		path []string
		text string
	}
	notExpr struct {
		at int
		x  exprNode
	}
	binExpr struct {
		at   int
		op   string
		l, r exprNode
	}
)

func (e *litExpr) pos() int { return e.at }
func (e *refExpr) pos() int { return e.at }
func (e *notExpr) pos() int { return e.at }
func (e *binExpr) pos() int { return e.at }

type token struct {
	kind byte // 'n' number, 's' string, 'i' identifier/ref, 'o' operator, '(' ')', 0 end
	text string
	val  any
	at   int
}

type exprParser struct {
	src  string
	toks []token
	i    int
}

// parseExpr parses a condition.
func parseExpr(src string) (exprNode, error) {
	if len(src) > maxExprLen {
		return nil, fmt.Errorf("longer than %d bytes", maxExprLen)
	}
	if !utf8.ValidString(src) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &exprParser{src: src, toks: toks}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != 0 {
		return nil, fmt.Errorf("at %d: unexpected %q after a complete condition", t.at+1, t.text)
	}
	return n, nil
}

// maxDepth bounds nesting, so that a hostile condition cannot exhaust
// the stack.
const maxDepth = 64

func (p *exprParser) peek() token { return p.toks[p.i] }
func (p *exprParser) next() token {
	t := p.toks[p.i]
	if t.kind != 0 {
		p.i++
	}
	return t
}

func (p *exprParser) or(depth int) (exprNode, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.peek().kind == 'o' && p.peek().text == "||" {
		t := p.next()
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &binExpr{at: t.at, op: "||", l: l, r: r}
	}
	return l, nil
}

func (p *exprParser) and(depth int) (exprNode, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.peek().kind == 'o' && p.peek().text == "&&" {
		t := p.next()
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &binExpr{at: t.at, op: "&&", l: l, r: r}
	}
	return l, nil
}

func (p *exprParser) unary(depth int) (exprNode, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxDepth)
	}
	if t := p.peek(); t.kind == 'o' && t.text == "!" {
		p.next()
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &notExpr{at: t.at, x: x}, nil
	}
	return p.compare(depth)
}

func (p *exprParser) compare(depth int) (exprNode, error) {
	l, err := p.primary(depth)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == 'o' {
		switch t.text {
		case "==", "!=", "<", "<=", ">", ">=":
			p.next()
			r, err := p.primary(depth)
			if err != nil {
				return nil, err
			}
			if n := p.peek(); n.kind == 'o' {
				switch n.text {
				case "==", "!=", "<", "<=", ">", ">=":
					return nil, fmt.Errorf("at %d: comparisons do not chain; use && (a < b && b < c)", n.at+1)
				}
			}
			return &binExpr{at: t.at, op: t.text, l: l, r: r}, nil
		}
	}
	return l, nil
}

func (p *exprParser) primary(depth int) (exprNode, error) {
	t := p.next()
	switch t.kind {
	case 'n', 's':
		return &litExpr{at: t.at, v: t.val}, nil
	case 'i':
		switch t.text {
		case "true":
			return &litExpr{at: t.at, v: true}, nil
		case "false":
			return &litExpr{at: t.at, v: false}, nil
		}
		return &refExpr{at: t.at, path: strings.Split(t.text, "."), text: t.text}, nil
	case '(':
		if depth > maxDepth {
			return nil, fmt.Errorf("nested deeper than %d", maxDepth)
		}
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != ')' {
			return nil, fmt.Errorf("at %d: want ) to close the ( at %d", c.at+1, t.at+1)
		}
		return n, nil
	case 0:
		return nil, fmt.Errorf("at %d: the condition ends where a value was expected", t.at+1)
	}
	return nil, fmt.Errorf("at %d: unexpected %q where a value was expected", t.at+1, t.text)
}

// lex splits a condition into tokens; the last is the end token.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, token{kind: c, text: string(c), at: i})
			i++
		case strings.HasPrefix(src[i:], "&&") || strings.HasPrefix(src[i:], "||") ||
			strings.HasPrefix(src[i:], "==") || strings.HasPrefix(src[i:], "!=") ||
			strings.HasPrefix(src[i:], "<=") || strings.HasPrefix(src[i:], ">="):
			toks = append(toks, token{kind: 'o', text: src[i : i+2], at: i})
			i += 2
		case c == '<' || c == '>' || c == '!':
			toks = append(toks, token{kind: 'o', text: string(c), at: i})
			i++
		case c == '=' || c == '&' || c == '|':
			return nil, fmt.Errorf("at %d: %q is not an operator (want ==, &&, ||)", i+1, string(c))
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' && c == '"' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("at %d: string not terminated", i+1)
			}
			raw := src[i : j+1]
			var s string
			if c == '"' {
				var err error
				if s, err = strconv.Unquote(raw); err != nil {
					return nil, fmt.Errorf("at %d: bad string %s: %v", i+1, raw, err)
				}
			} else {
				s = raw[1 : len(raw)-1]
			}
			toks = append(toks, token{kind: 's', text: raw, val: s, at: i})
			i = j + 1
		case c == '-' || c == '.' || (c >= '0' && c <= '9'):
			j := i
			if src[j] == '-' {
				j++
			}
			for j < len(src) && (isDigit(src[j]) || src[j] == '.' || src[j] == 'e' || src[j] == 'E' ||
				((src[j] == '+' || src[j] == '-') && (src[j-1] == 'e' || src[j-1] == 'E'))) {
				j++
			}
			text := src[i:j]
			var v any
			if !strings.ContainsAny(text, ".eE") {
				n, err := strconv.ParseInt(text, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("at %d: bad number %q", i+1, text)
				}
				v = n
			} else {
				f, err := strconv.ParseFloat(text, 64)
				if err != nil {
					return nil, fmt.Errorf("at %d: bad number %q", i+1, text)
				}
				v = f
			}
			toks = append(toks, token{kind: 'n', text: text, val: v, at: i})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(src) && (isIdentPart(src[j]) || src[j] == '.' || src[j] == '-') {
				j++
			}
			text := src[i:j]
			if strings.HasSuffix(text, ".") || strings.Contains(text, "..") {
				return nil, fmt.Errorf("at %d: bad reference %q", i+1, text)
			}
			toks = append(toks, token{kind: 'i', text: text, at: i})
			i = j
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, fmt.Errorf("at %d: unexpected character %q", i+1, r)
		}
	}
	return append(toks, token{at: len(src)}), nil
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// checkExpr types a condition; refType gives a reference's type or says
// why it is wrong.
func checkExpr(n exprNode, refType func(path []string) (Type, error)) (Type, error) {
	switch e := n.(type) {
	case *litExpr:
		return typeOfValue(e.v), nil
	case *refExpr:
		t, err := refType(e.path)
		if err != nil {
			return "", fmt.Errorf("at %d: %s: %v", e.at+1, e.text, err)
		}
		return t, nil
	case *notExpr:
		t, err := checkExpr(e.x, refType)
		if err != nil {
			return "", err
		}
		if t != TypeBool {
			return "", fmt.Errorf("at %d: ! wants a bool, got a %s", e.at+1, t)
		}
		return TypeBool, nil
	case *binExpr:
		l, err := checkExpr(e.l, refType)
		if err != nil {
			return "", err
		}
		r, err := checkExpr(e.r, refType)
		if err != nil {
			return "", err
		}
		numeric := func(t Type) bool { return t == TypeInt || t == TypeDouble }
		switch e.op {
		case "&&", "||":
			if l != TypeBool || r != TypeBool {
				return "", fmt.Errorf("at %d: %s wants two bools, got %s and %s", e.at+1, e.op, l, r)
			}
		case "==", "!=":
			if !(numeric(l) && numeric(r)) && (l != r || (l != TypeString && l != TypeBool)) {
				return "", fmt.Errorf("at %d: type mismatch: %s compares %s with %s (want two numbers, strings or bools)", e.at+1, e.op, l, r)
			}
		default:
			if !(numeric(l) && numeric(r)) && !(l == TypeString && r == TypeString) {
				return "", fmt.Errorf("at %d: type mismatch: %s compares %s with %s (want two numbers or two strings)", e.at+1, e.op, l, r)
			}
		}
		return TypeBool, nil
	}
	return "", fmt.Errorf("unknown node %T", n)
}

// evalExpr evaluates a checked condition; ref gives a reference's value.
func evalExpr(n exprNode, ref func(path []string) (any, error)) (any, error) {
	switch e := n.(type) {
	case *litExpr:
		return e.v, nil
	case *refExpr:
		v, err := ref(e.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.text, err)
		}
		return v, nil
	case *notExpr:
		v, err := evalExpr(e.x, ref)
		if err != nil {
			return nil, err
		}
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("! of %s", describe(v))
		}
		return !b, nil
	case *binExpr:
		l, err := evalExpr(e.l, ref)
		if err != nil {
			return nil, err
		}
		if e.op == "&&" || e.op == "||" {
			lb, ok := l.(bool)
			if !ok {
				return nil, fmt.Errorf("%s of %s", e.op, describe(l))
			}
			if (e.op == "&&" && !lb) || (e.op == "||" && lb) {
				return lb, nil
			}
			r, err := evalExpr(e.r, ref)
			if err != nil {
				return nil, err
			}
			rb, ok := r.(bool)
			if !ok {
				return nil, fmt.Errorf("%s of %s", e.op, describe(r))
			}
			return rb, nil
		}
		r, err := evalExpr(e.r, ref)
		if err != nil {
			return nil, err
		}
		return compareValues(e.op, l, r)
	}
	return nil, fmt.Errorf("unknown node %T", n)
}

// compareValues applies a comparison operator.
func compareValues(op string, l, r any) (bool, error) {
	c, ok := 0, false
	lf, lnum := toFloat(l)
	rf, rnum := toFloat(r)
	switch {
	case lnum && rnum:
		li, lint := l.(int64)
		ri, rint := r.(int64)
		switch {
		case lint && rint:
			c, ok = cmp3(li, ri), true
		default:
			c, ok = cmp3(lf, rf), true
		}
	default:
		switch lv := l.(type) {
		case string:
			if rv, is := r.(string); is {
				c, ok = strings.Compare(lv, rv), true
			}
		case bool:
			if rv, is := r.(bool); is && (op == "==" || op == "!=") {
				if lv == rv {
					c = 0
				} else {
					c = 1
				}
				ok = true
			}
		}
	}
	if !ok {
		return false, fmt.Errorf("type mismatch: %s compares %s with %s", op, describe(l), describe(r))
	}
	switch op {
	case "==":
		return c == 0, nil
	case "!=":
		return c != 0, nil
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("unknown operator %s", op)
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func cmp3[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
