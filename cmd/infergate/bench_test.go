package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/bench"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/runtimes"
)

// benchGateway is the gateway on loopback in front of the built-in runtime
// serving iris, with the registry that counts the infer calls the runtime
// receives.
type benchGateway struct {
	*testGateway
	reg *prometheus.Registry
}

func startBenchGateway(t *testing.T) benchGateway {
	t.Helper()
	ms := startModelServer(t, "iris")
	reg := prometheus.NewRegistry()
	g := startGateway(t, gateway.Options{Registerer: reg}, map[string][]runtimes.Client{"iris": {restClient(t, ms.RESTAddr)}})
	return benchGateway{testGateway: g, reg: reg}
}

// infers returns the inference calls the gateway made to runtimes so far.
func (g benchGateway) infers(t *testing.T) float64 {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "infergate_runtime_upstream_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

// runBenchBinary runs the built binary's bench subcommand, bounded in time.
func runBenchBinary(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"bench"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func readBenchReport(t *testing.T, path string) *bench.Report {
	t.Helper()
	rep, err := bench.ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestBenchAgainstGateway runs `infergate bench` against the gateway on
// loopback over each protocol and loop, and checks what it reports and
// what the runtime received.
func TestBenchAgainstGateway(t *testing.T) {
	g := startBenchGateway(t)
	grpcURL := "grpc://" + g.grpcAddr
	tests := []struct {
		name       string
		args       []string
		wantPoints int
		wantReqs   int64 // per point
		wantInfers float64
	}{
		{"REST closed loop", []string{"-u", g.restURL, "-n", "200", "-c", "4"}, 1, 200, 201},
		{"REST binary tensors", []string{"-u", g.restURL, "-n", "50", "-c", "2", "-binary", "-batch", "3"}, 1, 50, 51},
		{"gRPC typed contents", []string{"-u", grpcURL, "-n", "100", "-c", "2"}, 1, 100, 101},
		{"gRPC raw", []string{"-u", grpcURL, "-n", "100", "-c", "2", "-raw"}, 1, 100, 101},
		{"open loop", []string{"-u", g.restURL, "-n", "100", "-rate", "500", "-arrivals", "poisson"}, 1, 100, 101},
		{"sweep", []string{"-u", g.restURL, "-n", "40", "-concurrency-range", "1:4:x2"}, 3, 40, 121},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			jsonPath, csvPath, htmlPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.csv"), filepath.Join(dir, "out.html")
			before := g.infers(t)
			args := append([]string{"-m", "iris", "-warmup", "0", "-json", jsonPath, "-csv", csvPath, "-html", htmlPath}, tc.args...)
			stdout, stderr, err := runBenchBinary(t, args...)
			if err != nil {
				t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr = %q: the progress line must stay quiet when stderr is not a terminal", stderr)
			}
			rep := readBenchReport(t, jsonPath)
			if len(rep.Points) != tc.wantPoints {
				t.Fatalf("%d points, want %d", len(rep.Points), tc.wantPoints)
			}
			for _, p := range rep.Points {
				if p.Requests != tc.wantReqs || p.Errors != 0 {
					t.Errorf("point %s: %d requests, %d errors (%v); want %d and 0", rep.Load(p), p.Requests, p.Errors, p.ErrorKinds, tc.wantReqs)
				}
				if p.P50 <= 0 || p.P50 > p.P99 || p.P99 > p.Max || p.BytesSent <= 0 || p.BytesReceived <= 0 {
					t.Errorf("point %s: p50 %v p99 %v max %v, bytes %d/%d", rep.Load(p), p.P50, p.P99, p.Max, p.BytesSent, p.BytesReceived)
				}
			}
			// Every measured request, and the one checked first, reached
			// the runtime; nothing more.
			if got := g.infers(t) - before; got != tc.wantInfers {
				t.Errorf("the runtime got %v infer calls, want %v", got, tc.wantInfers)
			}
			if rep.Model != "iris" || !strings.Contains(stdout, "p99.9") || !strings.Contains(stdout, "model iris at ") {
				t.Errorf("stdout:\n%s", stdout)
			}
			for _, p := range []string{csvPath, htmlPath} {
				if b, err := os.ReadFile(p); err != nil || len(b) == 0 {
					t.Errorf("%s: %v, %d bytes", p, err, len(b))
				}
			}
		})
	}
}

// TestBenchRefusesBadInputBeforeLoad checks that each kind of bad input
// ends with one line on stderr and a non-zero exit, and that the runtime
// received no inference.
func TestBenchRefusesBadInputBeforeLoad(t *testing.T) {
	g := startBenchGateway(t)
	dir := t.TempDir()
	wrongShape := filepath.Join(dir, "wrong.json")
	if err := os.WriteFile(wrongShape, []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	closed := listen(t)
	closedAddr := closed.Addr().String()
	closed.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown model", []string{"-u", g.restURL, "-m", "nope"}, `model "nope" not found at ` + g.restURL},
		{"unknown model over gRPC", []string{"-u", "grpc://" + g.grpcAddr, "-m", "nope"}, `model "nope" not found at grpc://`},
		{"input file that does not fit", []string{"-u", g.restURL, "-m", "iris", "-input-data", wrongShape},
			`request 1 does not fit model "iris" (inputs input FP32 [-1,4]): input "input": shape [1,3], model expects [-1,4]`},
		{"missing input file", []string{"-u", g.restURL, "-m", "iris", "-input-data", filepath.Join(dir, "none.json")}, "no such file"},
		{"shape of an unknown input", []string{"-u", g.restURL, "-m", "iris", "-shape", "x:1,4"}, `no such input (inputs: "input")`},
		{"target that does not answer", []string{"-u", "http://" + closedAddr, "-m", "iris"}, "cannot reach http://" + closedAddr + ": connection refused"},
		{"gRPC target that does not answer", []string{"-u", "grpc://" + closedAddr, "-m", "iris"}, "cannot reach grpc://" + closedAddr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runBenchBinary(t, append(tc.args, "-d", "1s", "-warmup", "0")...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit: %v, want a non-zero exit code\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr = %q, want one line containing %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
	if n := g.infers(t); n != 0 {
		t.Errorf("the runtime received %v infer calls; bad input must send none", n)
	}
}

// TestBenchInterrupted sends SIGINT during a long run: the run stops at
// once and prints and writes what it measured so far.
func TestBenchInterrupted(t *testing.T) {
	g := startBenchGateway(t)
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "bench", "-progress", "off", "-u", g.restURL, "-m", "iris", "-c", "2", "-d", "1m", "-warmup", "0", "-json", jsonPath)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until load flows (the first call is the check before it).
	deadline := time.Now().Add(30 * time.Second)
	for g.infers(t) < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("no load after 30s; stderr: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopping took %v", took)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("exit: %v, want non-zero after an interruption", err)
	}
	if !strings.Contains(out.String(), "interrupted") || !strings.Contains(out.String(), "p99") {
		t.Errorf("stdout = %q, want the partial table", out.String())
	}
	rep := readBenchReport(t, jsonPath)
	if !rep.Interrupted || len(rep.Points) != 1 || rep.Points[0].Requests < 10 {
		t.Errorf("report: interrupted %v, %d points, requests %d", rep.Interrupted, len(rep.Points), rep.Points[0].Requests)
	}
}

func TestBenchFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"-m", "iris"}, "give the server with -u"},
		{"no model", []string{"-u", "http://127.0.0.1:1"}, "give the server with -u"},
		{"TLS", []string{"-u", "https://x:1", "-m", "iris"}, "TLS is not supported"},
		{"a path in the URL", []string{"-u", "http://x:1/v2", "-m", "iris"}, "no path"},
		{"binary over gRPC", []string{"-u", "grpc://x:1", "-m", "iris", "-binary"}, "over gRPC use -raw"},
		{"raw over REST", []string{"-u", "http://x:1", "-m", "iris", "-raw"}, "over REST use -binary"},
		{"both ranges", []string{"-u", "http://x:1", "-m", "iris", "-concurrency-range", "1:4", "-rate-range", "1:4"}, "not both"},
		{"concurrency in an open loop", []string{"-u", "http://x:1", "-m", "iris", "-rate", "100", "-c", "4"}, "-max-inflight"},
		{"bad range", []string{"-u", "http://x:1", "-m", "iris", "-concurrency-range", "8:1"}, "below start"},
		{"bad stat", []string{"-u", "http://x:1", "-m", "iris", "-concurrency-range", "1:2", "-latency-limit", "1ms", "-latency-stat", "p42"}, `"p42"`},
		{"limit without a sweep", []string{"-u", "http://x:1", "-m", "iris", "-latency-limit", "1ms"}, "stop a sweep"},
		{"longer than allowed", []string{"-u", "http://x:1", "-m", "iris", "-concurrency-range", "1:64:x2", "-d", "2m"}, "more than -max-duration"},
		{"bad arrivals", []string{"-u", "http://x:1", "-m", "iris", "-rate", "10", "-arrivals", "bursty"}, "constant or poisson"},
		{"bad shape", []string{"-u", "http://x:1", "-m", "iris", "-shape", "input"}, "NAME:D1,D2"},
		{"input data with a batch", []string{"-u", "http://x:1", "-m", "iris", "-input-data", "f.json", "-batch", "2"}, "do not apply"},
		{"bad header", []string{"-u", "http://x:1", "-m", "iris", "-H", "nocolon"}, "'Name: value'"},
		{"stray argument", []string{"-u", "http://x:1", "-m", "iris", "extra"}, `unexpected argument "extra"`},
		{"compare needs two", []string{"-compare", "a.json"}, "takes two reports"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runBench(tc.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("runBench(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout = %q", stdout.String())
			}
		})
	}
}

func TestBenchHelpListsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	if err := runBench([]string{"-h"}, new(bytes.Buffer), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var f benchFlags
	f.register(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(stderr.String(), "-"+f.Name+" ") && !strings.Contains(stderr.String(), "-"+f.Name+",") {
			t.Errorf("-h does not document -%s", f.Name)
		}
	})
}

func TestBenchCompare(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rps float64, p99 time.Duration) string {
		rep := &bench.Report{Tool: "infergate bench", URL: "http://x:1", Model: "iris", Protocol: "rest", Encoding: "json", Batch: 1, Mode: bench.ModeClosed,
			Points: []*bench.Result{{Mode: bench.ModeClosed, Concurrency: 8, Requests: 100, RPS: rps, P50: p99 / 2, P99: p99, Max: 2 * p99}}}
		var b bytes.Buffer
		if err := rep.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old, cur := write("old.json", 1000, 4*time.Millisecond), write("new.json", 1500, 2*time.Millisecond)
	var stdout bytes.Buffer
	if err := runBench([]string{"-compare", old, cur}, &stdout, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"concurrency 8", "infer/s", "1000.0", "1500.0", "1.50", "p99", "4.00ms", "2.00ms", "0.50"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("compare output lacks %q:\n%s", want, stdout.String())
		}
	}
	if err := runBench([]string{"-compare", old, filepath.Join(dir, "missing.json")}, new(bytes.Buffer), new(bytes.Buffer)); err == nil {
		t.Error("a missing report must be an error")
	}
}

// TestBenchPlanBounds checks how the flags bound a run.
func TestBenchPlanBounds(t *testing.T) {
	plan := func(args ...string) *benchPlan {
		t.Helper()
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		var f benchFlags
		f.register(fs)
		if err := fs.Parse(append([]string{"-u", "http://x:1", "-m", "iris"}, args...)); err != nil {
			t.Fatal(err)
		}
		f.noteGiven(fs)
		p, err := f.plan()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := plan(); p.duration != 10*time.Second || len(p.loads) != 1 || p.loads[0] != 1 || p.open {
		t.Errorf("defaults: %+v", p)
	}
	if p := plan("-n", "500"); p.duration != 0 {
		t.Errorf("-n alone: duration %v, want none (bounded by -max-duration)", p.duration)
	}
	if p := plan("-n", "500", "-d", "3s"); p.duration != 3*time.Second {
		t.Errorf("-n and -d: duration %v", p.duration)
	}
	if p := plan("-rate-range", "100:300:+100"); !p.open || len(p.loads) != 3 || p.sweep != "rate 100:300:+100" {
		t.Errorf("rate range: %+v", p)
	}
	if p := plan("-u", "127.0.0.1:9", "-protocol", "grpc"); !p.grpc || p.addr != "127.0.0.1:9" {
		t.Errorf("host:port with -protocol grpc: %+v", p)
	}
}

func TestBenchProgressLine(t *testing.T) {
	var b bytes.Buffer
	pl := newProgressLine(&b, "on")
	pl.start("concurrency 4", 10*time.Second)
	pl.update(bench.Progress{Warmup: true, Elapsed: 300 * time.Millisecond})
	pl.update(bench.Progress{Elapsed: time.Second, Requests: 1000})
	pl.update(bench.Progress{Elapsed: 2 * time.Second, Requests: 3000, Errors: 1})
	pl.done()
	got := b.String()
	for _, want := range []string{"\r\x1b[Kconcurrency 4: warming up 300ms", "\r\x1b[Kconcurrency 4  2s/10s  3000 requests  2000/s  1 errors", "\r\x1b[K"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress output %q lacks %q", got, want)
		}
	}
	for _, mode := range []string{"off", "auto"} {
		var quiet bytes.Buffer
		pl := newProgressLine(&quiet, mode) // a buffer is not a terminal
		pl.start("x", 0)
		pl.update(bench.Progress{Elapsed: time.Second, Requests: 10})
		pl.done()
		if quiet.Len() != 0 {
			t.Errorf("-progress %s on a non-terminal wrote %q", mode, quiet.String())
		}
	}
}

// TestBenchWritesFilesOnlyWhereAsked runs `infergate bench` in an empty
// working directory: without -json, -csv and -html it writes nothing there
// (the table goes to stdout), and with -html it writes that one file.
func TestBenchWritesFilesOnlyWhereAsked(t *testing.T) {
	g := startBenchGateway(t)
	wd := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binPath, append([]string{"bench", "-u", g.restURL, "-m", "iris", "-n", "20", "-warmup", "0"}, args...)...)
		cmd.Dir = wd
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bench %v: %v\n%s", args, err, out)
		}
	}
	files := func() []string {
		t.Helper()
		entries, err := os.ReadDir(wd)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	run()
	if got := files(); len(got) != 0 {
		t.Errorf("bench without output flags wrote %q into its working directory", got)
	}
	elsewhere := filepath.Join(t.TempDir(), "sweep.html")
	run("-html", elsewhere)
	if got := files(); len(got) != 0 {
		t.Errorf("bench -html %s also wrote %q into its working directory", elsewhere, got)
	}
	if b, err := os.ReadFile(elsewhere); err != nil || !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) {
		t.Errorf("-html %s: %v, %.40q", elsewhere, err, b)
	}
	run("-html", "here.html")
	if got := files(); len(got) != 1 || got[0] != "here.html" {
		t.Errorf("bench -html here.html wrote %q into its working directory, want only here.html", got)
	}
}
