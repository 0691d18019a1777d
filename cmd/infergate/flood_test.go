package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestGatewaySurvivesDescriptorFlood runs `infergate gateway` with 128
// open files: idle connections to its admin port use its descriptors up,
// so that accepting on the REST port fails with EMFILE, which made
// fasthttp's Serve, and with it the gateway, exit 1. Now the accept is
// retried: once the flood goes, the waiting REST client is answered. Then
// SIGTERM ends the gateway with exit 0 within its drain timeout, although
// a gRPC connection never sent its HTTP/2 preface (grpc-go waits for it
// 120s by default, even in Stop).
func TestGatewaySurvivesDescriptorFlood(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs sh's ulimit on Linux")
	}
	const waitLimit = 30 * time.Second
	cfg := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: m
  annotations:
    infergate.io/endpoints: "http://127.0.0.1:1"
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := new(floodLog)
	// The admin port may take more connections than the process has
	// descriptors for; silent connections are kept open (a long header
	// timeout) until the test closes them.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 128 && exec "$0" "$@"`, binPath, "gateway", "-config", cfg,
		"-rest-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0",
		"-admin-max-conns", "1000", "-header-timeout", "10m", "-drain-timeout", "500ms", "-data-dir", t.TempDir())
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("infergate gateway log:\n%s", logs.String())
		}
	})
	addrs := waitListening(t, logs, exited, waitLimit)

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.DialTimeout("tcp", addrs.admin, waitLimit)
		if err != nil {
			t.Fatalf("dialing the admin port: %v", err)
		}
		flood = append(flood, c)
	}
	waitLog(t, logs, `listener=admin`, waitLimit)

	rest, err := net.DialTimeout("tcp", addrs.rest, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer rest.Close()
	io.WriteString(rest, "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
	waitLog(t, logs, `listener=rest`, waitLimit)
	select {
	case err := <-exited:
		t.Fatalf("the gateway exited (%v) when it ran out of descriptors", err)
	default:
	}

	for _, c := range flood {
		c.Close()
	}
	flood = nil
	_ = rest.SetReadDeadline(time.Now().Add(waitLimit))
	resp, err := http.ReadResponse(bufio.NewReader(rest), nil)
	if err != nil {
		t.Fatalf("the REST client waiting through the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the REST client waiting through the flood: status %d", resp.StatusCode)
	}

	silent, err := net.DialTimeout("tcp", addrs.grpc, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("infergate gateway exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("infergate gateway did not exit after SIGTERM and its 500ms drain")
	}
}

// floodLog keeps a child process's stderr for the test to read.
type floodLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *floodLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *floodLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitListening waits for the process's "infergate listening" log line
// (text format) and returns the addresses it names.
func waitListening(t *testing.T, logs *floodLog, exited <-chan error, limit time.Duration) (addrs struct{ rest, grpc, admin string }) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			if !strings.Contains(line, `msg="infergate listening"`) {
				continue
			}
			for _, f := range strings.Fields(line) {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "rest":
					addrs.rest = v
				case "grpc":
					addrs.grpc = v
				case "admin":
					addrs.admin = v
				}
			}
			return addrs
		}
		select {
		case err := <-exited:
			t.Fatalf("infergate gateway exited before listening: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("infergate gateway did not log its listening addresses")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the process has logged an accept error on a
// listener (want names it), failing the test at limit.
func waitLog(t *testing.T, logs *floodLog, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "accept failed") && strings.Contains(line, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no accept error logged for %s within %s", want, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
