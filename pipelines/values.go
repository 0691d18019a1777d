package pipelines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Values are held in a canonical form: string, int64, float64, bool,
// []any (a list) and map[string]any (an object, inside lists only), the
// elements canonical too. JSON numbers written without a fraction or an
// exponent are int64, the others float64.

// canonical turns a tree decoded with json.Decoder.UseNumber (or built in
// Go) into the canonical form.
func canonical(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string, bool, int64, float64:
		return x, nil
	case int:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, nil
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("number %s is out of range", s)
		}
		return f, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := canonical(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := canonical(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

// typeOfValue returns the type of a canonical value ("" for nil or an
// object, which are not parameter values).
func typeOfValue(v any) Type {
	switch v.(type) {
	case string:
		return TypeString
	case int64:
		return TypeInt
	case float64:
		return TypeDouble
	case bool:
		return TypeBool
	case []any:
		return TypeList
	}
	return ""
}

// describe names a canonical value and its type for messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string " + strconv.Quote(x)
	case int64:
		return "int " + strconv.FormatInt(x, 10)
	case float64:
		return "double " + formatDouble(x)
	case bool:
		return "bool " + strconv.FormatBool(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// conform checks a canonical value against a type, widening an int to a
// double.
func conform(v any, t Type) (any, error) {
	switch t {
	case TypeDouble:
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		}
	case TypeString, TypeInt, TypeBool, TypeList:
		if typeOfValue(v) == t {
			return v, nil
		}
	}
	hint := ""
	if t == TypeString && v != nil {
		hint = " (quote it)"
	}
	return nil, fmt.Errorf("want a %s, got %s%s", t, describe(v), hint)
}

// parseText reads a value of type t from text: a submitted parameter or an
// output parameter file. A string is taken as it is; an int, double or
// bool as Go parses them, surrounding white space ignored; a list as a
// JSON array.
func parseText(s string, t Type) (any, error) {
	switch t {
	case TypeString:
		return s, nil
	case TypeInt:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an int, got %q", clip(s, 64))
		}
		return i, nil
	case TypeDouble:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("want a finite double, got %q", clip(s, 64))
		}
		return f, nil
	case TypeBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("want a bool (true or false), got %q", clip(s, 64))
		}
		return b, nil
	case TypeList:
		if !strings.HasPrefix(strings.TrimSpace(s), "[") {
			return nil, fmt.Errorf("want a JSON array, got %q", clip(s, 64))
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("want a JSON array, got %q: %v", clip(s, 64), err)
		}
		if dec.More() {
			return nil, fmt.Errorf("want one JSON array, got more after it in %q", clip(s, 64))
		}
		if _, ok := v.([]any); !ok {
			return nil, fmt.Errorf("want a JSON array, got %q", clip(s, 64))
		}
		return canonical(v)
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

// format renders a canonical value as commands, environment variables and
// templates see it: a string as it is, numbers in Go's shortest form,
// booleans as true/false, lists and objects as JSON.
func format(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return formatDouble(x)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return jsonString(v)
}

func formatDouble(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// jsonString marshals without HTML escaping.
func jsonString(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// decodeJSON decodes stored JSON into the canonical form.
func decodeJSON(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return canonical(v)
}

// clip shortens s to n bytes for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// tmplValue wraps a canonical value for text/template: lists and objects
// print as JSON, and objects' fields stay reachable ({{.Item.lr}}).
func tmplValue(v any) any {
	switch x := v.(type) {
	case []any:
		out := make(listValue, len(x))
		for i, e := range x {
			out[i] = tmplValue(e)
		}
		return out
	case map[string]any:
		out := make(objectValue, len(x))
		for k, e := range x {
			out[k] = tmplValue(e)
		}
		return out
	case float64:
		return doubleValue(x)
	}
	return v
}

type (
	listValue   []any
	objectValue map[string]any
	doubleValue float64
)

func (l listValue) String() string   { return jsonString(untmpl(l)) }
func (o objectValue) String() string { return jsonString(untmpl(o)) }
func (d doubleValue) String() string { return formatDouble(float64(d)) }

// untmpl undoes tmplValue.
func untmpl(v any) any {
	switch x := v.(type) {
	case listValue:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = untmpl(e)
		}
		return out
	case objectValue:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = untmpl(e)
		}
		return out
	case doubleValue:
		return float64(x)
	}
	return v
}

// typed wraps the doubles of a canonical value so that they encode with a
// fraction or an exponent (42.0): stored values then decode to the same
// types (42 would come back an int).
func typed(v any) any {
	switch x := v.(type) {
	case float64:
		return jsonDouble(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = typed(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = typed(e)
		}
		return out
	}
	return v
}

type jsonDouble float64

func (d jsonDouble) MarshalJSON() ([]byte, error) {
	f := float64(d)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%g is not a JSON number", f)
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return []byte(s), nil
}
