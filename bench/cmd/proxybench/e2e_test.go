package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as the trivial runtime: the driver
// re-executes itself (os.Executable) with -upstream.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-upstream" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestEndToEnd runs a short comparison of the runtime direct and behind
// nginx and haproxy, REST and gRPC, with every generator installed, and
// checks the tables: every row measured without an error, and the goals
// printed. The gateway joins when PROXYBENCH_INFERGATE names its binary.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and loads them for about ten seconds")
	}
	var outside []string
	for _, g := range []string{genWrk, genH2load} {
		if _, err := exec.LookPath(g); err == nil {
			outside = append(outside, g)
		}
	}
	if len(outside) == 0 {
		t.Skip("neither wrk nor h2load is installed (apt-get install wrk nghttp2-client)")
	}
	targets := []string{tDirectREST, tHAProxy, tDirectGRPC, tNginxGRPC, tHAProxyGRPC}
	infergate := os.Getenv("PROXYBENCH_INFERGATE")
	if infergate != "" {
		targets = append(targets, tGatewayREST, tGatewayGRPC)
	}
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	args := []string{"-infergate", infergate, "-targets", strings.Join(targets, ","),
		"-generators", strings.Join(append([]string{genInfergate}, outside...), ","),
		"-concurrency", "4", "-rounds", "1", "-window", "1s", "-warmup", "0", "-window-warmup", "100ms",
		"-memory-window", "0", "-json", jsonPath}
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, s := range []string{"== REST, 4 connections", "== gRPC, 4 concurrent streams", "== goals of issue 14"} {
		if !strings.Contains(out, s) {
			t.Errorf("the output lacks %q:\n%s", s, out)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rep.Rows {
		seen[r.Generator] = true
		if r.Errors > 0 || r.Requests == 0 || r.RPS <= 0 {
			t.Errorf("%s with %s: %d requests, %d errors (%s), %.0f/s", r.Target, r.Generator, r.Requests, r.Errors, r.FirstError, r.RPS)
		}
		if !strings.HasPrefix(r.Key, "direct") && r.ProxyCPUus <= 0 {
			t.Errorf("%s with %s: no proxy CPU measured", r.Target, r.Generator)
		}
		if r.Generator != genInfergate && r.GeneratorCPUus <= 0 {
			t.Errorf("%s with %s: no generator CPU measured", r.Target, r.Generator)
		}
	}
	for _, g := range append([]string{genInfergate}, outside...) {
		if !seen[g] {
			t.Errorf("no row of %s:\n%s", g, out)
		}
	}
}
