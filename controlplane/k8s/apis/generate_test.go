package apis_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// crdDir is where `make generate` writes the CRDs, relative to the module.
const crdDir = "deploy/crds"

// apisDir holds the API packages, relative to the module.
const apisDir = "controlplane/k8s/apis"

// TestGeneratedFilesUpToDate runs `make generate` in a copy of what it
// reads (go.mod, go.sum, the Makefile and the API packages, without their
// generated files) and compares what it writes with the committed files:
// a marker or a type changed without regenerating fails here. controller-gen
// comes from the module cache; a machine that has never built it fetches
// it from the module proxy once (about 30 s); after that the test takes a
// few seconds.
func TestGeneratedFilesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: does not run controller-gen")
	}
	makeCmd, err := exec.LookPath("make")
	if err != nil {
		t.Skipf("make is needed to run the generate target: %v", err)
	}
	root := moduleRoot(t)
	work := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum", "Makefile"} {
		copyFile(t, filepath.Join(root, f), filepath.Join(work, f))
	}
	copyTree(t, filepath.Join(root, apisDir), filepath.Join(work, apisDir), func(rel string) bool {
		return !isGeneratedGo(rel)
	})
	if err := os.MkdirAll(filepath.Join(work, crdDir), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, makeCmd, "--no-print-directory", "generate")
	cmd.Dir = work
	cmd.Env = append(cleanEnv(), "GOWORK=off")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make generate in a copy of the tree: %v\n%s", err, out)
	}
	t.Logf("make generate took %v", time.Since(start).Round(time.Millisecond))

	generated := generatedFiles(t, work)
	if len(generated) == 0 {
		t.Fatal("make generate wrote no file")
	}
	committed := generatedFiles(t, root)
	for rel := range generated {
		if _, ok := committed[rel]; !ok {
			t.Errorf("%s is generated but not in the tree: run make generate and commit it", rel)
			continue
		}
		want, got := read(t, filepath.Join(work, rel)), read(t, filepath.Join(root, rel))
		if !bytes.Equal(want, got) {
			t.Errorf("%s is out of date with the types' markers: run make generate and commit it (-committed +generated):\n%s",
				rel, cmp.Diff(strings.Split(string(got), "\n"), strings.Split(string(want), "\n")))
		}
	}
	for rel := range committed {
		if _, ok := generated[rel]; !ok {
			t.Errorf("%s is no longer generated (its type is gone?): remove it", rel)
		}
	}
}

// generatedFiles lists, relative to root, the deep-copy files of the API
// packages and the CRDs controller-gen wrote to crdDir (other files there,
// a kustomization.yaml say, are not its).
func generatedFiles(t *testing.T, root string) map[string]bool {
	t.Helper()
	files := make(map[string]bool)
	err := filepath.WalkDir(filepath.Join(root, apisDir), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isGeneratedGo(d.Name()) {
			return err
		}
		rel, err := filepath.Rel(root, path)
		files[filepath.ToSlash(rel)] = true
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, crdDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		rel := crdDir + "/" + e.Name()
		if bytes.Contains(read(t, filepath.Join(root, rel)), []byte("controller-gen.kubebuilder.io/version:")) {
			files[rel] = true
		}
	}
	return files
}

func isGeneratedGo(name string) bool {
	base := filepath.Base(name)
	return strings.HasPrefix(base, "zz_generated.") && strings.HasSuffix(base, ".go")
}

// cleanEnv is the test's environment without a calling make's variables,
// which would tie the child make to the parent's jobserver.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES":
		default:
			env = append(env, kv)
		}
	}
	return env
}

// moduleRoot is the directory of the module's go.mod, above the test's.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, read(t, from), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files under from for which keep, given the
// path relative to from, is true.
func copyTree(t *testing.T, from, to string, keep func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil || !d.Type().IsRegular() || !keep(rel) {
			return err
		}
		copyFile(t, path, filepath.Join(to, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
