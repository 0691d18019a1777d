package onnx

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// engineChildEnv makes the test binary build the engine and exit, for
// TestEngineQuiet, which reads what it wrote on stdout.
const engineChildEnv = "ONNX_TEST_ENGINE_CHILD"

// TestEngineQuiet: building the engine writes nothing on stdout (a model
// server's stdout carries its announce line alone) and leaves SimpleGo's
// worker parallelism at 0. The engine is built once per process, so a
// fresh process of this test binary builds it.
func TestEngineQuiet(t *testing.T) {
	if os.Getenv(engineChildEnv) != "" {
		b := engine()
		f, ok := maxParallelism(b)
		if !ok {
			t.Fatal("SimpleGo's backend has no workers.maxParallelism int field any more: engine falls back to the option that prints")
		}
		if got := f.Int(); got != 0 {
			t.Fatalf("maxParallelism = %d, want 0", got)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEngineQuiet$", "-test.count=1")
	cmd.Env = append(os.Environ(), engineChildEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.Bytes(), stderr.Bytes())
	}
	// The test framework's own verdict is the only line allowed.
	if out := bytes.TrimSpace(stdout.Bytes()); string(out) != "PASS" {
		t.Errorf("building the engine wrote on stdout:\n%s", out)
	}
}
