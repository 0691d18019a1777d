package pipelines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// MaxPipelineBytes bounds a pipeline document.
const MaxPipelineBytes = 1 << 20

// ParseFile reads and parses a pipeline file; BaseDir is the file's
// directory and Source its path.
func ParseFile(path string) (*Pipeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errorf(ErrInvalid, "pipelines: %v", err)
	}
	defer f.Close()
	data, err := readAtMost(f, MaxPipelineBytes)
	if err != nil {
		return nil, errorf(ErrInvalid, "pipelines: %s: %v", path, err)
	}
	return ParseSource(path, data, filepath.Dir(path))
}

// Parse parses and validates one pipeline document (YAML or JSON).
func Parse(data []byte) (*Pipeline, error) { return ParseSource("", data, "") }

// ParseSource is Parse with the Source named in errors and the BaseDir of
// relative paths.
func ParseSource(source string, data []byte, baseDir string) (*Pipeline, error) {
	p := &problems{source: source}
	if len(data) > MaxPipelineBytes {
		p.add("", false, "", "the document is larger than %d bytes", MaxPipelineBytes)
		return nil, p.err()
	}
	pl := decodePipeline(data, p)
	if p.len() > 0 {
		return nil, p.err()
	}
	pl.Source, pl.BaseDir = source, baseDir
	if err := pl.Validate(); err != nil {
		return nil, err
	}
	return pl, nil
}

// decodePipeline decodes a document strictly: an unknown field, a
// duplicate key or a value of the wrong type is an error naming the step
// and the field.
func decodePipeline(data []byte, p *problems) *Pipeline {
	top := at{p: p}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		top.addf("", "invalid YAML: %s", strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " "))
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		top.addf("", "invalid YAML: %v", err)
		return nil
	}
	if tree == nil {
		top.addf("", "the document is empty")
		return nil
	}
	if dec.More() {
		top.addf("", "more than one document (one pipeline per document)")
		return nil
	}
	d := decoder{at: top}
	m, ok := d.object(tree, "")
	if !ok {
		return nil
	}
	d.known(m, "", "apiVersion", "kind", "metadata", "spec")
	pl := &Pipeline{}
	pl.APIVersion = d.str(m["apiVersion"], "apiVersion", true)
	pl.Kind = d.str(m["kind"], "kind", true)
	if pl.APIVersion != "" && pl.APIVersion != APIVersion {
		top.addf("apiVersion", "%q is not %s", pl.APIVersion, APIVersion)
	}
	if pl.Kind != "" && pl.Kind != Kind {
		top.addf("kind", "%q is not %s", pl.Kind, Kind)
	}
	if md, ok := d.object(m["metadata"], "metadata"); ok {
		d.known(md, "metadata", "name", "labels", "annotations")
		pl.Metadata.Name = d.str(md["name"], "metadata.name", true)
		pl.Metadata.Labels = d.strMap(md["labels"], "metadata.labels")
		pl.Metadata.Annotations = d.strMap(md["annotations"], "metadata.annotations")
	}
	sp, ok := d.object(m["spec"], "spec")
	if !ok {
		return pl
	}
	d.known(sp, "spec", "params", "steps", "finally")
	pl.Spec.Params = namedObjects(d, sp["params"], "spec.params", []string{"type", "default", "description"},
		func(f string, o map[string]any) ParamSpec {
			ps := ParamSpec{Type: Type(d.str(o["type"], f+".type", true)), Description: d.str(o["description"], f+".description", false)}
			if def, ok := o["default"]; ok && def != nil {
				v, err := canonical(def)
				if err != nil {
					top.addf(f+".default", "%v", err)
				}
				ps.Default = v
			}
			return ps
		})
	pl.Spec.Steps = d.steps(sp["steps"], "spec.steps", false)
	pl.Spec.Finally = d.steps(sp["finally"], "spec.finally", true)
	if _, ok := sp["steps"]; !ok {
		top.addf("spec.steps", "missing: a pipeline has at least one step")
	}
	return pl
}

// decoder reads a decoded JSON tree, reporting problems where it is.
type decoder struct {
	at at
}

func (d decoder) object(v any, field string) (map[string]any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case nil:
		if field != "" {
			d.at.addf(field, "missing")
		} else {
			d.at.addf("", "want a mapping")
		}
		return nil, false
	}
	d.at.addf(field, "want a mapping, got %s", describeRaw(v))
	return nil, false
}

// known reports the keys of m that are not in allowed.
func (d decoder) known(m map[string]any, field string, allowed ...string) {
	for _, k := range keys(m) {
		if !slices.Contains(allowed, k) {
			d.at.addf(join(field, k), "unknown field%s", suggest(k, allowed))
		}
	}
}

func join(field, k string) string {
	if field == "" {
		return k
	}
	return field + "." + k
}

// boolKey reports a name that YAML 1.1 turned into a boolean: the YAML
// library reads an unquoted key y, n, yes, no, on, off (any case) as true
// or false.
func (d decoder) boolKey(field, k string) {
	if k == "true" || k == "false" {
		d.at.addf(field, "YAML reads an unquoted key y, n, yes, no, on, off, true or false as the boolean %s: quote the name (\"n\": ...)", k)
	}
}

func (d decoder) str(v any, field string, required bool) string {
	switch x := v.(type) {
	case string:
		if required && x == "" {
			d.at.addf(field, "missing")
		}
		return x
	case nil:
		if required {
			d.at.addf(field, "missing")
		}
		return ""
	}
	d.at.addf(field, "want a string, got %s (quote it)", describeRaw(v))
	return ""
}

func (d decoder) strMap(v any, field string) map[string]string {
	if v == nil {
		return nil
	}
	m, ok := d.object(v, field)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range keys(m) {
		d.boolKey(field+"."+k, k)
		out[k] = d.str(m[k], field+"."+k, false)
	}
	return out
}

// namedObjects decodes a mapping of names to mappings (spec.params,
// inputs, outputs.params) at field: each name in sorted order is checked
// for a YAML boolean, its value must be a mapping with only the allowed
// keys, and decode turns it into the entry, given the entry's field
// path. An entry whose value is not a mapping is reported and left out.
// A missing or null v is nil; a v that is not a mapping is reported and
// nil.
func namedObjects[T any](d decoder, v any, field string, allowed []string, decode func(f string, o map[string]any) T) map[string]T {
	if v == nil {
		return nil
	}
	m, ok := d.object(v, field)
	if !ok {
		return nil
	}
	out := make(map[string]T, len(m))
	for _, name := range keys(m) {
		f := field + "." + name
		d.boolKey(f, name)
		o, ok := d.object(m[name], f)
		if !ok {
			continue
		}
		d.known(o, f, allowed...)
		out[name] = decode(f, o)
	}
	return out
}

func (d decoder) strList(v any, field string) []string {
	if v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		d.at.addf(field, "want a list of strings, got %s", describeRaw(v))
		return nil
	}
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = d.str(e, fmt.Sprintf("%s[%d]", field, i), false)
	}
	return out
}

func (d decoder) int(v any, field string) int {
	n, ok := v.(json.Number)
	if !ok {
		d.at.addf(field, "want an integer, got %s", describeRaw(v))
		return 0
	}
	i, err := strconv.Atoi(string(n))
	if err != nil {
		d.at.addf(field, "want an integer, got %s", n)
		return 0
	}
	return i
}

func (d decoder) float(v any, field string) float64 {
	n, ok := v.(json.Number)
	if !ok {
		d.at.addf(field, "want a number, got %s", describeRaw(v))
		return 0
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		d.at.addf(field, "want a number, got %s", n)
		return 0
	}
	return f
}

func (d decoder) bool(v any, field string) bool {
	b, ok := v.(bool)
	if !ok {
		d.at.addf(field, "want true or false, got %s", describeRaw(v))
	}
	return b
}

func (d decoder) duration(v any, field string) Duration {
	s, ok := v.(string)
	if !ok {
		d.at.addf(field, "want a duration such as \"30s\" or \"5m\", got %s", describeRaw(v))
		return 0
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		d.at.addf(field, "want a duration such as \"30s\" or \"5m\", got %q", s)
		return 0
	}
	return Duration(t)
}

// steps decodes a list of steps.
func (d decoder) steps(v any, field string, finally bool) []Step {
	if v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		d.at.addf(field, "want a list of steps, got %s", describeRaw(v))
		return nil
	}
	out := make([]Step, 0, len(l))
	for i, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			d.at.addf(fmt.Sprintf("%s[%d]", field, i), "want a step (a mapping), got %s", describeRaw(e))
			continue
		}
		name, _ := m["name"].(string)
		sd := decoder{at: at{p: d.at.p, step: name, finally: finally}}
		if name == "" {
			sd.at.step = fmt.Sprintf("%s[%d]", field, i)
			sd.at.finally = false
			if _, ok := m["name"]; ok {
				sd.at.addf("name", "want a non-empty string, got %s", describeRaw(m["name"]))
			} else {
				sd.at.addf("name", "missing")
			}
		}
		out = append(out, sd.step(m))
	}
	return out
}

func (d decoder) step(m map[string]any) Step {
	d.known(m, "", "name", "command", "env", "inputs", "outputs", "dependsOn", "when", "retry", "timeout", "parallelFor", "cache")
	s := Step{Name: d.at.step}
	if n, ok := m["name"].(string); ok {
		s.Name = n
	}
	s.Command = d.strList(m["command"], "command")
	s.Env = d.strMap(m["env"], "env")
	s.Inputs = namedObjects(d, m["inputs"], "inputs", []string{"from", "value", "file", "type"},
		func(f string, o map[string]any) Input {
			in := Input{From: d.str(o["from"], f+".from", false), File: d.str(o["file"], f+".file", false), Type: Type(d.str(o["type"], f+".type", false))}
			if val, ok := o["value"]; ok {
				if val == nil {
					d.at.addf(f+".value", "null is not a value")
				} else if c, err := canonical(val); err != nil {
					d.at.addf(f+".value", "%v", err)
				} else {
					in.Value = c
				}
			}
			return in
		})
	if raw, ok := m["outputs"]; ok && raw != nil {
		if om, ok := d.object(raw, "outputs"); ok {
			d.known(om, "outputs", "params", "artifacts")
			s.Outputs.Params = namedObjects(d, om["params"], "outputs.params", []string{"type", "artifact", "key"},
				func(f string, o map[string]any) OutputParam {
					return OutputParam{Type: Type(d.str(o["type"], f+".type", true)),
						Artifact: d.str(o["artifact"], f+".artifact", false), Key: d.str(o["key"], f+".key", false)}
				})
			s.Outputs.Artifacts = d.strList(om["artifacts"], "outputs.artifacts")
		}
	}
	s.DependsOn = d.strList(m["dependsOn"], "dependsOn")
	s.When = d.str(m["when"], "when", false)
	if raw, ok := m["retry"]; ok && raw != nil {
		if rm, ok := d.object(raw, "retry"); ok {
			d.known(rm, "retry", "limit", "backoff", "factor", "maxBackoff")
			r := &RetryPolicy{}
			if v, ok := rm["limit"]; ok {
				r.Limit = d.int(v, "retry.limit")
			} else {
				d.at.addf("retry.limit", "missing")
			}
			if v, ok := rm["backoff"]; ok {
				r.Backoff = d.duration(v, "retry.backoff")
			}
			if v, ok := rm["factor"]; ok {
				r.Factor = d.float(v, "retry.factor")
			}
			if v, ok := rm["maxBackoff"]; ok {
				r.MaxBackoff = d.duration(v, "retry.maxBackoff")
			}
			s.Retry = r
		}
	}
	if v, ok := m["timeout"]; ok && v != nil {
		s.Timeout = d.duration(v, "timeout")
	}
	if raw, ok := m["parallelFor"]; ok && raw != nil {
		if pm, ok := d.object(raw, "parallelFor"); ok {
			d.known(pm, "parallelFor", "items", "parallelism")
			pf := &ParallelFor{}
			switch it := pm["items"].(type) {
			case string:
				pf.Items = it
			case []any:
				c, err := canonical(it)
				if err != nil {
					d.at.addf("parallelFor.items", "%v", err)
				}
				pf.Items = c
			case nil:
				d.at.addf("parallelFor.items", "missing: a reference to a list (params.NAME, steps.STEP.outputs.NAME) or a list")
			default:
				d.at.addf("parallelFor.items", "want a reference to a list or a list, got %s", describeRaw(it))
			}
			if v, ok := pm["parallelism"]; ok {
				pf.Parallelism = d.int(v, "parallelFor.parallelism")
			}
			s.ParallelFor = pf
		}
	}
	if v, ok := m["cache"]; ok && v != nil {
		b := d.bool(v, "cache")
		s.Cache = &b
	}
	return s
}

// describeRaw names a decoded JSON value for messages.
func describeRaw(v any) string {
	switch x := v.(type) {
	case json.Number:
		return "number " + string(x)
	case string:
		return "string " + strconv.Quote(clip(x, 64))
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// readAtMost reads r, failing past limit bytes.
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}
