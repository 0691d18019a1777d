package config_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/infergate/infergate/config"
)

// TestExamplesLoad loads every YAML file under examples/ as users do with
// `infergate serve -config FILE`: each must parse, declare a model, and
// point its storageUri at something that exists in the repository.
func TestExamplesLoad(t *testing.T) {
	var files []string
	err := filepath.WalkDir("../examples", func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "pipelines" {
			return fs.SkipDir // Pipeline files: package pipelines reads them
		}
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have found the examples the README walks through.
	for _, want := range []string{"canary/iris.yaml", "canary/iris-v2.yaml", "scale-to-zero/iris.yaml", "registry/iris.yaml"} {
		if !containsPath(files, filepath.Join("../examples", want)) {
			t.Errorf("examples/%s not found among %q", want, files)
		}
	}
	for _, f := range files {
		t.Run(strings.TrimPrefix(filepath.ToSlash(f), "../"), func(t *testing.T) {
			models, err := config.LoadPath(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(models) == 0 {
				t.Fatal("no model declared")
			}
			for _, m := range models {
				if m.Path == "" {
					continue // a model at runtimes' URLs, or a command that needs no files
				}
				if _, err := os.Stat(m.Path); err != nil {
					t.Errorf("model %s: storageUri resolves to %s, which does not exist: %v", m.Name, m.Path, err)
				}
			}
		})
	}
}

// TestREADMEExamplesExist checks that every file under examples/ that
// README.md has users pass to a command (-config, -f, -input-data, curl's
// @FILE) or links to is in the repository. (Paths in sample error
// messages are not files to find.)
func TestREADMEExamplesExist(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	uses, missing := missingExamples(string(readme))
	if len(uses) == 0 {
		t.Fatal("README.md uses no file under examples/")
	}
	for _, m := range missing {
		t.Errorf("README.md uses %s, which is not in the repository", m)
	}
	// The check itself finds a missing file.
	if _, m := missingExamples("bin/infergate serve -config examples/nope/iris.yaml\n"); len(m) != 1 {
		t.Errorf("a README using examples/nope/iris.yaml: missing %q, want it", m)
	}
}

var exampleUse = regexp.MustCompile(`(?:-config |-f |-input-data |@|\]\()(examples/[A-Za-z0-9_.\-/]*[A-Za-z0-9_\-])`)

// missingExamples returns the files under examples/ that readme uses, and
// those of them that do not exist.
func missingExamples(readme string) (uses, missing []string) {
	for _, u := range exampleUse.FindAllStringSubmatch(readme, -1) {
		uses = append(uses, u[1])
		if _, err := os.Stat(filepath.Join("..", u[1])); err != nil {
			missing = append(missing, u[1])
		}
	}
	return uses, missing
}

func containsPath(paths []string, p string) bool {
	for _, q := range paths {
		if filepath.Clean(q) == filepath.Clean(p) {
			return true
		}
	}
	return false
}
