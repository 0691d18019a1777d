package main

import (
	"debug/elf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageBinary: what the Dockerfile builds (CGO off) is one static
// binary, with no dynamic loader to find in a distroless image, and it
// serves the built-in model server's models with nothing else present.
// It builds the whole tree a second time (CGO off), about two minutes on
// 2 cores with a cold cache: it runs with make test-long
// (INFERGATE_TEST_IMAGE=1).
func TestImageBinary(t *testing.T) {
	if os.Getenv("INFERGATE_TEST_IMAGE") == "" {
		t.Skip("set INFERGATE_TEST_IMAGE=1 (make test-long does)")
	}
	bin := filepath.Join(t.TempDir(), "infergate")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): a distroless static image could not run it", p.Type)
		}
	}
	f.Close()
	// Run as the image runs it, from an empty directory, serving the
	// samples shipped in the binary.
	dir := t.TempDir()
	p := startBinary(t, bin, "serve", "-data-dir", filepath.Join(dir, "data"))
	waitHTTP(t, "http://"+p.rest+"/v2/models/iris/ready", 3*time.Minute)
	resp, err := http.Post("http://"+p.rest+"/v2/models/iris/infer", "application/json",
		strings.NewReader(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"probabilities"`) {
		t.Fatalf("the static binary's answer: %d %s", resp.StatusCode, b)
	}
}

// TestDockerfile pins what makes the image safe to run: a non-root user,
// a final stage with nothing but the binary, a CGO-free build.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var final []string // the last stage's instructions
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			final = nil
		}
		final = append(final, line)
	}
	if len(final) == 0 || !strings.HasPrefix(final[0], "FROM gcr.io/distroless/static") || !strings.HasSuffix(final[0], ":nonroot") {
		t.Errorf("the final stage is %q, want distroless static, nonroot", final[0])
	}
	has := func(prefix string) bool {
		for _, l := range final {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		return false
	}
	if !has("USER nonroot") {
		t.Error("the final stage does not run as nonroot")
	}
	if has("RUN ") {
		t.Error("the final stage runs commands: it should hold the binary only")
	}
	if !strings.Contains(string(b), "CGO_ENABLED=0 go build") {
		t.Error("the build is not CGO-free")
	}
}
