package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{name: "empty", in: "", want: nil},
		{name: "spaces only", in: " \t\n ", want: nil},
		{name: "words", in: "  a  b\tc\nd ", want: []string{"a", "b", "c", "d"}},
		{name: "single quotes keep all", in: `a 'b c\ "d"' e`, want: []string{"a", `b c\ "d"`, "e"}},
		{name: "double quotes escape", in: `a "b \"c\" \\ \n"`, want: []string{"a", `b "c" \ \n`}},
		{name: "quotes join a word", in: `--x='a b'"c d"e`, want: []string{"--x=a bc de"}},
		{name: "empty quoted word", in: `a '' ""`, want: []string{"a", "", ""}},
		{name: "backslash outside quotes", in: `a\ b c\`, want: []string{"a b", `c\`}},
		{name: "action kept whole", in: `x {{printf "%s %s" .Model .Host}} y`, want: []string{"x", `{{printf "%s %s" .Model .Host}}`, "y"}},
		{name: "action inside double quotes", in: `"--name={{printf "%s" .Model}} v"`, want: []string{`--name={{printf "%s" .Model}} v`}},
		{name: "action inside single quotes is text", in: `'{{ .Model }}'`, want: []string{"{{ .Model }}"}},
		{name: "shell syntax is literal", in: `a $HOME | b > c; d`, want: []string{"a", "$HOME", "|", "b", ">", "c;", "d"}},
		{name: "open single", in: `a 'b`, err: "unterminated single quote"},
		{name: "open double", in: `a "b`, err: "unterminated double quote"},
		{name: "open action", in: `a {{.Model`, err: "unterminated {{ action"},
		{name: "open action in double quotes", in: `"{{.Model"`, err: "unterminated {{ action"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splitCommand(tc.in)
			if err != tc.err {
				t.Fatalf("splitCommand(%q) error %q, want %q", tc.in, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("splitCommand(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestTemplateFields(t *testing.T) {
	tests := []struct {
		word string
		want []string
		err  string
	}{
		{word: "plain", want: nil},
		{word: "{{.Model}}={{.ModelPath}}", want: []string{"Model", "ModelPath"}},
		{word: "{{.HTTPPort}}{{.HTTPPort}}", want: []string{"HTTPPort"}},
		{word: "{{with .DataDir}}{{.}}/x{{end}}", want: []string{"DataDir"}},
		{word: `{{range $i, $e := .Host}}{{end}}{{$.GRPCPort}}`, want: []string{"Host", "GRPCPort"}},
		{word: `{{define "t"}}{{.ModelDir}}{{end}}{{template "t" .}}`, want: []string{"ModelDir"}},
		{word: "{{(.Model)}}", want: []string{"Model"}},
		{word: "{{.Nope}}", err: "unknown field .Nope (known: .Model, .ModelPath, .ModelDir, .HTTPPort, .GRPCPort, .Host, .DataDir)"},
		{word: "{{nofunc .Model}}", err: `function "nofunc" not defined`},
	}
	for _, tc := range tests {
		t.Run(tc.word, func(t *testing.T) {
			got, err := templateFields(tc.word)
			if err != tc.err {
				t.Fatalf("templateFields(%q) error %q, want %q", tc.word, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("templateFields(%q) (-want +got):\n%s", tc.word, diff)
			}
		})
	}
}
