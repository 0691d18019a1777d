package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitDocuments(t *testing.T) {
	type doc struct {
		Data string
		Line int
	}
	tests := []struct {
		name string
		in   string
		want []doc
	}{
		{name: "empty", in: "", want: []doc{{"", 1}}},
		{name: "one", in: "a: 1\nb: 2\n", want: []doc{{"a: 1\nb: 2\n", 1}}},
		{name: "leading marker", in: "---\na: 1\n", want: []doc{{"", 1}, {"   \na: 1\n", 1}}},
		{name: "two", in: "a: 1\n---\nb: 2", want: []doc{{"a: 1\n", 1}, {"   \nb: 2", 2}}},
		{name: "marker with comment and CRLF", in: "a: 1\r\n--- # x\r\nb: 2\r\n", want: []doc{{"a: 1\r\n", 1}, {"    # x\r\nb: 2\r\n", 2}}},
		{name: "content after marker", in: "--- {a: 1}\n", want: []doc{{"", 1}, {"    {a: 1}\n", 1}}},
		{name: "document end", in: "a: 1\n...\nb: 2\n", want: []doc{{"a: 1\n", 1}, {"b: 2\n", 3}}},
		{name: "not markers", in: "a: ---\n----\n--x\n ---\n", want: []doc{{"a: ---\n----\n--x\n ---\n", 1}}},
		{name: "byte order mark", in: "\ufeffa: 1\n", want: []doc{{"a: 1\n", 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []doc
			for _, d := range splitDocuments([]byte(tc.in)) {
				got = append(got, doc{string(d.data), d.line})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("splitDocuments(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}
