package supervisor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCommandExpand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v := Vars{Model: "iris", HTTPPort: 8000, GRPCPort: 8001, Host: "127.0.0.1", DataDir: "/data dir"}
	tests := []struct {
		name      string
		words     []string
		modelPath string
		want      []string
	}{
		{
			name:      "triton",
			words:     []string{"tritonserver", "--model-repository={{.ModelDir}}", "--http-port={{.HTTPPort}}", "--grpc-port={{.GRPCPort}}"},
			modelPath: dir,
			want:      []string{"tritonserver", "--model-repository=" + dir, "--http-port=8000", "--grpc-port=8001"},
		},
		{
			name:      "a model file's directory",
			words:     []string{"srv", "{{.ModelDir}}", "{{.ModelPath}}"},
			modelPath: file,
			want:      []string{"srv", dir, file},
		},
		{
			name:      "a path that does not exist counts as a directory",
			words:     []string{"srv", "{{.ModelDir}}"},
			modelPath: "/no/such/model",
			want:      []string{"srv", "/no/such/model"},
		},
		{
			name:  "a value with spaces stays one word",
			words: []string{"srv", "--logs", "{{.DataDir}}/logs", "{{.Host}}:{{.HTTPPort}}", "{{printf \"%s-%d\" .Model .GRPCPort}}"},
			want:  []string{"srv", "--logs", "/data dir/logs", "127.0.0.1:8000", "iris-8001"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseCommand(tc.words)
			if err != nil {
				t.Fatal(err)
			}
			v := v
			v.ModelPath, v.ModelDir = tc.modelPath, modelDir(tc.modelPath)
			path, args, err := c.expand(v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, append([]string{path}, args...)); diff != "" {
				t.Errorf("expand (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseCommandErrors(t *testing.T) {
	tests := []struct {
		name  string
		words []string
		want  string
	}{
		{name: "empty", words: nil, want: "supervisor: command is empty"},
		{name: "syntax", words: []string{"srv", "{{.Model"}, want: `supervisor: command word 1 "{{.Model": template: word 1:1: unclosed action`},
		{name: "unknown field", words: []string{"srv", "{{.Port}}"}, want: `can't evaluate field Port`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCommand(tc.words)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseCommand(%q) = %v, want an error containing %q", tc.words, err, tc.want)
			}
		})
	}
}

func TestVarNames(t *testing.T) {
	want := []string{"Model", "ModelPath", "ModelDir", "HTTPPort", "GRPCPort", "Host", "DataDir"}
	if got := VarNames(); !slices.Equal(got, want) {
		t.Errorf("VarNames() = %q, want %q", got, want)
	}
}

func TestFreePortsDiffer(t *testing.T) {
	ports, err := freePorts("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0] == ports[1] || ports[0] == 0 {
		t.Errorf("freePorts = %v, want two distinct ports", ports)
	}
}
