package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// document is one YAML document of a file.
type document struct {
	data []byte
	// line is the file line (1-based) where data starts, to report YAML
	// syntax errors by file line.
	line int
}

// splitDocuments splits a YAML stream at its document markers: a line that
// starts with "---" or "..." followed by a space, a tab or the end of the
// line. YAML allows content after "---" on the same line ("--- {a: 1}"), so
// the marker is blanked and the rest of the line kept. Splitting here rather
// than in the YAML library means no document is silently dropped: the
// library's Unmarshal reads the first document of what it is given.
func splitDocuments(data []byte) []document {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var docs []document
	var cur []byte
	start := 1
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i+1], data[i+1:]
		} else {
			l, data = data, nil
		}
		marker := isMarker(l, "---")
		if marker || isMarker(l, "...") {
			docs = append(docs, document{data: cur, line: start})
			cur, start = nil, line
			if marker {
				// Keep what follows "---" on its line, columns intact.
				cur = append(cur, "   "...)
				cur = append(cur, l[3:]...)
			} else {
				cur, start = nil, line+1
			}
			continue
		}
		cur = append(cur, l...)
	}
	return append(docs, document{data: cur, line: start})
}

func isMarker(line []byte, m string) bool {
	if !bytes.HasPrefix(line, []byte(m)) {
		return false
	}
	rest := line[len(m):]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r'
}

// yamlLine matches the line numbers in the YAML library's messages.
var yamlLine = regexp.MustCompile(`line (\d+):`)

// yamlError rewrites a YAML library error to name file lines rather than
// lines of the document, on one line.
func yamlError(err error, firstLine int) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = yamlLine.ReplaceAllStringFunc(msg, func(s string) string {
		n, convErr := strconv.Atoi(s[len("line ") : len(s)-1])
		if convErr != nil {
			return s
		}
		return fmt.Sprintf("line %d:", n+firstLine-1)
	})
	// "unmarshal errors:\n  line 4: ...\n  line 9: ..." becomes one line.
	var b strings.Builder
	for l := range strings.Lines(msg) {
		l = strings.Join(strings.Fields(l), " ")
		if l == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

// decodeDocument decodes one document strictly: a YAML syntax error, a
// duplicate key, an unknown field or a value of the wrong type is reported
// with its path, and nothing is decoded then. It returns nil and no problem
// for an empty document (only comments or whitespace); the caller must then
// not count the document.
func decodeDocument(doc document, d *docProblems) (isvc *InferenceService, empty bool) {
	j, err := yaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		d.addf("", "invalid YAML: %s", yamlError(err, doc.line))
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		d.addf("", "invalid YAML: %v", err)
		return nil, false
	}
	if tree == nil {
		return nil, true
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		d.addf("", "want a mapping (an %s), got %s", Kind, describe(tree))
		return nil, false
	}
	if !checkKind(obj, d) {
		return nil, false
	}
	before := d.n
	checkShape(tree, reflect.TypeFor[InferenceService](), "", d)
	if d.n > before {
		return nil, false
	}
	isvc = new(InferenceService)
	strict := json.NewDecoder(bytes.NewReader(j))
	strict.DisallowUnknownFields()
	if err := strict.Decode(isvc); err != nil {
		// checkShape accepts only what decodes; this is a bug if reached.
		d.addf("", "decode: %v", err)
		return nil, false
	}
	return isvc, false
}

// checkKind reports a document that is not a v1beta1 InferenceService. It
// runs before the field check, so that a Deployment is reported as a
// Deployment and not as a list of unknown fields.
func checkKind(obj map[string]any, d *docProblems) bool {
	kind, kindOK := obj["kind"].(string)
	switch {
	case obj["kind"] == nil:
		d.addf("kind", "required (want %s)", Kind)
		return false
	case !kindOK:
		d.addf("kind", "want a string, got %s", describe(obj["kind"]))
		return false
	case kind != Kind:
		d.addf("kind", "%s is not supported: infergate reads %s %s", quote(kind), APIVersion, Kind)
		return false
	}
	api, apiOK := obj["apiVersion"].(string)
	switch {
	case obj["apiVersion"] == nil:
		d.addf("apiVersion", "required (want %s)", APIVersion)
		return false
	case !apiOK:
		d.addf("apiVersion", "want a string, got %s", describe(obj["apiVersion"]))
		return false
	case api != APIVersion:
		d.addf("apiVersion", "%s is not supported: infergate reads %s", quote(api), APIVersion)
		return false
	}
	return true
}

var quantityType = reflect.TypeFor[Quantity]()

// checkShape walks a decoded JSON tree against the Go type it will be decoded
// into and reports, with their paths, the fields the type does not have and
// the values of the wrong type. encoding/json reports an unknown field
// without its path and matches field names case-insensitively; this walk
// matches them exactly, as Kubernetes does. A null value is always accepted:
// it leaves the field unset.
func checkShape(v any, t reflect.Type, path string, d *docProblems) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == quantityType {
		switch v.(type) {
		case string, json.Number:
		default:
			d.addf(path, "want a quantity (a string or a number), got %s", describe(v))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			d.addf(path, "want a mapping, got %s", describe(v))
			return
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(obj) {
			f, ok := fields[k]
			if !ok {
				d.addf(join(path, k), "unknown field")
				continue
			}
			checkShape(obj[k], f.Type, join(path, k), d)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			d.addf(path, "want a mapping, got %s", describe(v))
			return
		}
		for _, k := range sortedKeys(obj) {
			checkShape(obj[k], t.Elem(), path+"["+k+"]", d)
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			d.addf(path, "want a list, got %s", describe(v))
			return
		}
		for i, e := range list {
			checkShape(e, t.Elem(), path+"["+strconv.Itoa(i)+"]", d)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			hint := ""
			switch v.(type) {
			case json.Number, bool:
				hint = " (quote it to make it a string)"
			}
			d.addf(path, "want a string, got %s%s", describe(v), hint)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			d.addf(path, "want true or false, got %s", describe(v))
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			d.addf(path, "want an integer, got %s", describe(v))
			return
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				d.addf(path, "%s is out of range", n)
			} else {
				d.addf(path, "want an integer, got %s", n)
			}
		}
	default:
		// The types in types.go use only the kinds above.
		panic(fmt.Sprintf("config: checkShape: unexpected kind %s at %s", t.Kind(), path))
	}
}

// jsonFields maps the JSON names of a struct's fields to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f
	}
	return fields
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// describe names a decoded JSON value for a message: scalars by value,
// mappings and lists by kind.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return quote(v)
	case json.Number:
		return string(v)
	case bool:
		return strconv.FormatBool(v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// maxQuoted bounds the length of a value quoted in a message.
const maxQuoted = 100

// quote quotes a value for a message, shortened if long.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}
