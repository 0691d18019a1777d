package payloadlog

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const oipRequest = `{
  "id": "req-7",
  "parameters": {"user_id": "u-123", "tenant": "acme", "nested": {"user_id": "keep"}},
  "inputs": [
    {"name": "ssn", "shape": [1, 1], "datatype": "BYTES", "data": ["123-45-6789"]},
    {"name": "age", "shape": [1], "datatype": "INT32", "data": [42], "parameters": {"user_id": "u-9"}},
    {"name": "ssn", "shape": [1, 1], "datatype": "BYTES", "data": ["987-65-4321"]}
  ],
  "outputs": [{"name": "score"}]
}`

func TestRedact(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		paths []string
		want  string // compared as JSON values
	}{
		{
			name:  "top-level parameter",
			doc:   `{"parameters":{"user_id":"u-1","b":2},"inputs":[]}`,
			paths: []string{"parameters.user_id"},
			want:  `{"parameters":{"user_id":"[REDACTED]","b":2},"inputs":[]}`,
		},
		{
			name:  "tensor data by name, every match",
			doc:   oipRequest,
			paths: []string{"inputs[name=ssn].data"},
			want: `{"id":"req-7","parameters":{"user_id":"u-123","tenant":"acme","nested":{"user_id":"keep"}},"inputs":[
				{"name":"ssn","shape":[1,1],"datatype":"BYTES","data":"[REDACTED]"},
				{"name":"age","shape":[1],"datatype":"INT32","data":[42],"parameters":{"user_id":"u-9"}},
				{"name":"ssn","shape":[1,1],"datatype":"BYTES","data":"[REDACTED]"}],"outputs":[{"name":"score"}]}`,
		},
		{
			name:  "several paths, wildcard and id",
			doc:   oipRequest,
			paths: []string{"id", "parameters.user_id", "inputs[*].parameters.user_id"},
			want: `{"id":"[REDACTED]","parameters":{"user_id":"[REDACTED]","tenant":"acme","nested":{"user_id":"keep"}},"inputs":[
				{"name":"ssn","shape":[1,1],"datatype":"BYTES","data":["123-45-6789"]},
				{"name":"age","shape":[1],"datatype":"INT32","data":[42],"parameters":{"user_id":"[REDACTED]"}},
				{"name":"ssn","shape":[1,1],"datatype":"BYTES","data":["987-65-4321"]}],"outputs":[{"name":"score"}]}`,
		},
		{
			name:  "whole tensor and its data: the outer wins",
			doc:   `{"inputs":[{"name":"a","data":[1]},{"name":"b","data":[2]}]}`,
			paths: []string{"inputs[name=a].data", "inputs[name=a]"},
			want:  `{"inputs":["[REDACTED]",{"name":"b","data":[2]}]}`,
		},
		{
			name:  "index",
			doc:   `{"outputs":[{"name":"a","data":[1,2]},{"name":"b","data":[3]}]}`,
			paths: []string{"outputs[1].data"},
			want:  `{"outputs":[{"name":"a","data":[1,2]},{"name":"b","data":"[REDACTED]"}]}`,
		},
		{
			name:  "top-level array",
			doc:   `[{"x":1},{"x":2}]`,
			paths: []string{"[0].x"},
			want:  `[{"x":"[REDACTED]"},{"x":2}]`,
		},
		{
			name:  "escaped member name and selector value",
			doc:   `{"param\u0065ters":{"us\"er":1},"inputs":[{"name":"s\u0073n","data":[1]}]}`,
			paths: []string{`parameters.us"er`, "inputs[name=ssn].data"},
			want:  `{"parameters":{"us\"er":"[REDACTED]"},"inputs":[{"name":"ssn","data":"[REDACTED]"}]}`,
		},
		{
			name:  "number selector",
			doc:   `{"rows":[{"k":1,"v":"a"},{"k":2,"v":"b"}]}`,
			paths: []string{"rows[k=2].v"},
			want:  `{"rows":[{"k":1,"v":"a"},{"k":2,"v":"[REDACTED]"}]}`,
		},
		{
			name:  "nested arrays of objects with strings holding brackets",
			doc:   `{"a":{"b":[{"c":"]}\"[{","d":[[1],[2]]}]},"e":"x"}`,
			paths: []string{"a.b[*].d", "e"},
			want:  `{"a":{"b":[{"c":"]}\"[{","d":"[REDACTED]"}]},"e":"[REDACTED]"}`,
		},
		{
			name:  "no match changes nothing",
			doc:   `{"parameters":5,"inputs":{"name":"ssn"}}`,
			paths: []string{"parameters.user_id", "inputs[name=ssn].data", "missing", "inputs[3]"},
			want:  `{"parameters":5,"inputs":{"name":"ssn"}}`,
		},
		{
			name:  "whole payload",
			doc:   ` {"a":1} `,
			paths: []string{"[*]", "a"},
			want:  `{"a":"[REDACTED]"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			paths, err := compilePaths(tc.paths)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := redact([]byte(tc.doc), paths)
			if !ok {
				t.Fatal("valid JSON not redactable")
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("output %s is not JSON: %v", got, err)
			}
			if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("(-want +got):\n%s\ngot %s", diff, got)
			}
		})
	}
}

func TestRedactNotJSON(t *testing.T) {
	paths, _ := compilePaths([]string{"a"})
	for _, doc := range []string{"", "{", `{"a":1}{"a":2}`, "\x00\x01binary", `{"a":1,}`} {
		if _, ok := redact([]byte(doc), paths); ok {
			t.Errorf("%q redacted as JSON", doc)
		}
	}
	doc := []byte(`{"b":1}`)
	if got, ok := redact(doc, paths); !ok || &got[0] != &doc[0] {
		t.Error("a payload with nothing to redact was copied")
	}
}

func TestCompilePathErrors(t *testing.T) {
	for _, p := range []string{"", " ", "a..b", ".a", "a.", "a[", "a[]", "a[-1]", "a[x]", "a[=v]", "a[1]b", "a]b", "a=b", "[", "a[[1]]", "a.[0]"} {
		if _, err := compilePath(p); err == nil {
			t.Errorf("path %q compiled", p)
		}
	}
	for _, p := range []string{"a", "a.b", "a[*]", "a[0][1].b", "inputs[name=a.b].data", "[0]", "a[name=]"} {
		if _, err := compilePath(p); err != nil {
			t.Errorf("path %q: %v", p, err)
		}
	}
}

func FuzzRedact(f *testing.F) {
	f.Add([]byte(oipRequest), "inputs[name=ssn].data")
	f.Add([]byte(`{"a":[{"b":"c"}]}`), "a[*].b")
	f.Add([]byte(`[1,[2,{"x":"\"]"}]]`), "[1][1].x")
	f.Add([]byte(`"x"`), "[0]")
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		p, err := compilePath(path)
		if err != nil {
			return
		}
		out, ok := redact(doc, []redactPath{p})
		if ok != json.Valid(doc) {
			t.Fatalf("redactable %v, valid JSON %v", ok, json.Valid(doc))
		}
		if ok && !json.Valid(out) {
			t.Fatalf("%s with %q gave invalid JSON %s", doc, path, out)
		}
	})
}

func BenchmarkRedact(b *testing.B) {
	paths, _ := compilePaths([]string{"parameters.user_id", "inputs[name=ssn].data"})
	doc := []byte(oipRequest)
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		redact(doc, paths)
	}
}
