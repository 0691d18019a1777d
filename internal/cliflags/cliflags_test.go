package cliflags

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		json bool
		name string
	}{
		{args: []string{"status", "iris"}, pos: []string{"status", "iris"}},
		{args: []string{"-json", "status", "iris"}, pos: []string{"status", "iris"}, json: true},
		{args: []string{"status", "-json", "iris", "-name", "x"}, pos: []string{"status", "iris"}, json: true, name: "x"},
		{args: []string{"status", "--", "-iris"}, pos: []string{"status", "-iris"}},
		{args: nil, pos: nil},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		js := fs.Bool("json", false, "")
		name := fs.String("name", "", "")
		pos, err := ParseInterspersed(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *js != tc.json || *name != tc.name {
			t.Errorf("%q: %q json=%v name=%q err=%v; want %q json=%v name=%q", tc.args, pos, *js, *name, err, tc.pos, tc.json, tc.name)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := ParseInterspersed(fs, []string{"status", "-nope"}); err == nil {
		t.Error("an unknown flag after a positional argument was accepted")
	}
}

func TestWords(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("admin", "", "")
	words, help, err := Words(fs, []string{"keys", "-admin", "h:1", "create", "-h", "--", "-x"})
	if err != nil || !help || strings.Join(words, " ") != "keys create -x" {
		t.Fatalf("words %q, help %v, err %v", words, help, err)
	}
	if _, help, _ := Words(fs, []string{"list"}); help {
		t.Error("help without -h")
	}
}
