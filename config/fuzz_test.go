package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/infergate/infergate/config"
)

// FuzzParse checks that Parse never panics, and that what it accepts keeps
// the Model's documented invariants. The seeds are the files under testdata.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*", "*.y*ml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(doc(irisMeta, "batcher: {}, canaryTrafficPercent: 5,", onnxModel) + "--- {kind: InferenceService}\n...\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		models, err := config.Parse("fuzz.yaml", data, "/base")
		if err != nil {
			if models != nil {
				t.Fatalf("Parse returned models and error %v", err)
			}
			return
		}
		seen := make(map[string]bool)
		for _, m := range models {
			if m.Name == "" || seen[m.Name] {
				t.Fatalf("bad or duplicate name %q", m.Name)
			}
			seen[m.Name] = true
			if m.MinReplicas < 0 || (m.MaxReplicas != 0 && m.MaxReplicas < m.MinReplicas) {
				t.Fatalf("replicas %d..%d", m.MinReplicas, m.MaxReplicas)
			}
			if m.Timeout <= 0 || m.Protocol == "" || m.ScaleMetric == "" {
				t.Fatalf("defaults not applied: %+v", m)
			}
			if (m.Path == "") == (len(m.Endpoints) == 0) {
				t.Fatalf("want exactly one of Path %q and Endpoints %v", m.Path, m.Endpoints)
			}
			if b := m.Batcher; b != nil && (b.MaxBatchSize <= 0 || b.MaxLatency <= 0 || b.Timeout <= 0) {
				t.Fatalf("batcher %+v", *b)
			}
		}
	})
}
