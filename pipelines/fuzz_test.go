package pipelines

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any document either parses to a pipeline that validates and
// survives its stored form, or fails with *Error values; never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{dagYAML, cacheYAML, sleeperYAML, doc("", "- {name: a, command: [\"true\"], when: 'params.x > 1'}", ""), "", "{", "apiVersion: [", "- 1\n- 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse([]byte(s))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		b, err := jsonMarshal(p)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := Parse(b); err != nil {
			t.Fatalf("the stored form of a valid pipeline does not parse: %v\n%s", err, b)
		}
	})
}

// FuzzExpr: a condition parses or fails with a message; a parsed one is
// checked and evaluated against fixed values without a panic.
func FuzzExpr(f *testing.F) {
	for _, s := range []string{"a.b >= 1 && !(x.y == 'z') || true", "((((1))))", "-1.5e3 < 2", `"a\"b" != 'c'`, "!!!true", "params.x", "1 ==", "(", "a..b"} {
		f.Add(s)
	}
	types := map[string]Type{"params.i": TypeInt, "params.d": TypeDouble, "params.s": TypeString, "params.b": TypeBool}
	values := map[string]any{"params.i": int64(3), "params.d": 0.5, "params.s": "x", "params.b": true}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseExpr(s)
		if err != nil {
			return
		}
		typ, err := checkExpr(n, func(path []string) (Type, error) {
			if t, ok := types[strings.Join(path, ".")]; ok {
				return t, nil
			}
			return "", errors.New("unknown")
		})
		if err != nil || typ != TypeBool {
			return
		}
		v, err := evalExpr(n, func(path []string) (any, error) { return values[strings.Join(path, ".")], nil })
		if err != nil {
			t.Fatalf("a checked condition %q failed: %v", s, err)
		}
		if _, ok := v.(bool); !ok {
			t.Fatalf("condition %q evaluated to %v", s, v)
		}
	})
}

// FuzzParseText: submitted parameters and output files either parse to
// their type or fail with a message.
func FuzzParseText(f *testing.F) {
	for _, s := range []string{"1", "1.5", "true", "[1, \"a\", {\"b\": [2]}]", "[", " 7 \n", "1e400", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, typ := range []Type{TypeString, TypeInt, TypeDouble, TypeBool, TypeList} {
			v, err := parseText(s, typ)
			if err != nil {
				continue
			}
			if _, err := conform(v, typ); err != nil {
				t.Fatalf("parseText(%q, %s) = %v, which is not a %s: %v", s, typ, v, typ, err)
			}
			if typ != TypeString {
				if _, err := parseText(format(v), typ); err != nil && typ != TypeList {
					t.Fatalf("format(%v) = %q does not parse back as %s: %v", v, format(v), typ, err)
				}
			}
		}
	})
}

func TestExprEval(t *testing.T) {
	vals := map[string]any{"params.i": int64(3), "params.d": 0.5, "params.s": "abc", "params.b": false}
	cases := map[string]bool{
		"params.i > 2":                      true,
		"params.i >= 3.0":                   true,
		"params.d < params.i":               true,
		"params.s == \"abc\" && !params.b":  true,
		"params.s < 'abd'":                  true,
		"params.b || params.i != 3":         false,
		"!(params.i == 3) || params.d > -1": true,
		"1e-3 < 0.01":                       true,
	}
	for s, want := range cases {
		n, err := parseExpr(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		v, err := evalExpr(n, func(path []string) (any, error) { return vals[strings.Join(path, ".")], nil })
		if err != nil || v != want {
			t.Errorf("%s = %v, %v; want %v", s, v, err, want)
		}
	}
	for s, want := range map[string]string{
		"a < b < c": "at 7: comparisons do not chain; use && (a < b && b < c)",
		"(a":        "at 3: want ) to close the ( at 1",
		"a &":       `at 3: "&" is not an operator (want ==, &&, ||)`,
		"'open":     "at 1: string not terminated",
		"a ==":      "at 5: the condition ends where a value was expected",
		"a # b":     `at 3: unexpected character '#'`,
		"a b":       `at 3: unexpected "b" after a complete condition`,
		strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100): "nested deeper than 64",
	} {
		if _, err := parseExpr(s); err == nil || err.Error() != want {
			t.Errorf("parseExpr(%q) = %v, want %q", s, err, want)
		}
	}
}
