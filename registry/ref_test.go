package registry

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRef(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in    string
		want  Ref
		canon string
	}{
		{"registry://iris", Ref{Model: "iris"}, "registry://iris"},
		{"iris", Ref{Model: "iris"}, "registry://iris"},
		{"registry://iris@latest", Ref{Model: "iris"}, "registry://iris"},
		{"registry://iris/3", Ref{Model: "iris", Version: 3}, "registry://iris/3"},
		{"registry://my.model-2/12", Ref{Model: "my.model-2", Version: 12}, "registry://my.model-2/12"},
		{"registry://iris@prod", Ref{Model: "iris", Alias: "prod"}, "registry://iris@prod"},
		{"registry://iris@sha256:" + hex, Ref{Model: "iris", Digest: "sha256:" + hex}, "registry://iris@sha256:" + hex},
	} {
		got, err := ParseRef(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.in, diff)
		}
		if got.String() != tc.canon {
			t.Errorf("%s: String %s, want %s", tc.in, got.String(), tc.canon)
		}
	}
	for _, tc := range []struct{ in, sub string }{
		{"", "no model name"},
		{"registry://", "no model name"},
		{"registry://Iris", `model name "Iris"`},
		{"registry://iris/0", `version "0"`},
		{"registry://iris/-1", `version "-1"`},
		{"registry://iris/v3", `version "v3"`},
		{"registry://iris/3/model.onnx", `version "3/model.onnx"`},
		{"registry://iris@", "alias"},
		{"registry://iris@Prod", `alias "Prod"`},
		{"registry://iris@sha256:xyz", "digest"},
		{"registry://iris@sha256:" + strings.ToUpper(hex), "digest"},
		{"registry://iris@prod/3", `alias "prod/3"`},
		{"s3://bucket/model", "not a registry:// reference"},
	} {
		_, err := ParseRef(tc.in)
		wantCode(t, err, CodeInvalidArgument, tc.sub, `"`+tc.in+`"`)
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"registry://iris", "iris/3", "registry://iris@prod", "registry://iris@sha256:" + strings.Repeat("0", 64), "registry://a@b/c", "registry://x/09"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if CodeOf(err) != CodeInvalidArgument {
				t.Fatalf("%q: %v is not InvalidArgument", s, err)
			}
			return
		}
		// A parsed reference prints to a canonical form that parses back to it.
		again, err := ParseRef(r.String())
		if err != nil || again != r {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, r, r.String(), again, err)
		}
		set := 0
		for _, b := range []bool{r.Version > 0, r.Alias != "", r.Digest != ""} {
			if b {
				set++
			}
		}
		if set > 1 || !nameRE.MatchString(r.Model) {
			t.Fatalf("%q parsed to %+v", s, r)
		}
	})
}

func TestValueJSON(t *testing.T) {
	for _, tc := range []struct {
		v    Value
		json string
	}{
		{StringValue("x\"y"), `{"stringValue":"x\"y"}`},
		{IntValue(math.MinInt64), `{"intValue":"-9223372036854775808"}`},
		{DoubleValue(0.9), `{"doubleValue":0.9}`},
		{DoubleValue(1e300), `{"doubleValue":1e+300}`},
		{BoolValue(true), `{"boolValue":true}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.json {
			t.Errorf("%+v: %s, %v; want %s", tc.v, b, err, tc.json)
		}
		var back Value
		if err := json.Unmarshal(b, &back); err != nil || back != tc.v {
			t.Errorf("%s: back to %+v, %v", b, back, err)
		}
	}
	for _, tc := range []struct{ in, sub string }{
		{`{}`, "exactly one"},
		{`null`, "exactly one"},
		{`{"stringValue":"a","intValue":"1"}`, "exactly one"},
		{`{"intValue":3}`, "decimal string"},
		{`{"intValue":"3.5"}`, "not a 64-bit integer"},
		{`{"intValue":"99999999999999999999"}`, "not a 64-bit integer"},
		{`{"doubleValue":"x"}`, "want a number"},
		{`{"boolValue":1}`, "true or false"},
		{`{"stringValue":1}`, "want a string"},
		{`{"structValue":{}}`, `unknown field "structValue"`},
		{`[1]`, "want an object"},
	} {
		var v Value
		err := json.Unmarshal([]byte(tc.in), &v)
		if err == nil || !strings.Contains(err.Error(), tc.sub) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.in, err, tc.sub)
		}
	}
	if _, err := json.Marshal(Value{}); err == nil {
		t.Error("the zero Value marshalled")
	}
	if _, err := json.Marshal(DoubleValue(math.NaN())); err == nil {
		t.Error("NaN marshalled")
	}
}

func FuzzValueJSON(f *testing.F) {
	for _, s := range []string{`{"stringValue":"x"}`, `{"intValue":"3"}`, `{"doubleValue":0.9}`, `{"boolValue":true}`, `{}`, `{"intValue":"-0"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v Value
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%q decoded to %+v, which does not encode: %v", s, v, err)
		}
		var back Value
		if err := json.Unmarshal(b, &back); err != nil || back != v {
			t.Fatalf("%q -> %+v -> %s -> %+v, %v", s, v, b, back, err)
		}
	})
}

func TestStatements(t *testing.T) {
	got := statements("-- a comment; with a semicolon\nCREATE TABLE a (\n  x INT -- not split\n);\n\nCREATE INDEX i ON a (x);\nSELECT 1")
	want := []string{"CREATE TABLE a (\n  x INT -- not split\n);", "CREATE INDEX i ON a (x);", "SELECT 1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, d := range []dialect{sqliteDialect{}, postgresDialect{}} {
		ms, err := migrations(d)
		if err != nil || len(ms) == 0 || strings.Contains(ms[0].sql, "{{id}}") {
			t.Errorf("%s migrations: %v %v", d.name(), len(ms), err)
		}
	}
}

func TestErrors(t *testing.T) {
	err := errorf(CodeNotFound, "model %s not found", "iris")
	if !isErr(err, ErrNotFound) || isErr(err, ErrConflict) || CodeOf(err) != CodeNotFound || err.Error() != "model iris not found" {
		t.Errorf("%v", err)
	}
	cause := errorf(CodeConflict, "inner")
	wrapped := errorf(CodeUnavailable, "store x: %w", cause)
	if wrapped.Error() != "store x: inner" || CodeOf(wrapped) != CodeUnavailable || !isErr(wrapped, cause) {
		t.Errorf("%v", wrapped)
	}
	if CodeOf(nil) != CodeInternal || CodeUnavailable.String() != "Unavailable" || Code(200).String() != "Code(200)" {
		t.Error("codes")
	}
}

func isErr(err, target error) bool { return errors.Is(err, target) }
