// Command coldstart measures scale from zero through `infergate serve`, on
// loopback, with real runtime processes: how long the first request to a
// model at zero replicas takes, how much of that is the runtime starting
// and how much the gateway's own, and whether any request fails while the
// model goes to zero and back again under load.
//
// It runs one gateway (`infergate serve -config`, built by `make build`)
// with two models, each at minReplicas 0 with the shortest windows the
// autoscaling annotations allow (stable window 6s, scale-to-zero grace
// period 1s): the sample ONNX model iris and a simulated model (1 ms per
// request), both served by the built-in runtime (`infergate modelserver`).
// Each cycle of a model waits until the admin API shows it at zero (desired,
// running and ready all 0), sends one request, and with it -concurrency
// clients that send back to back for -load; then it leaves the model idle
// until it is at zero again. One model's cycle runs while the other idles,
// so that two cold starts never overlap.
//
// The runtime's start-to-ready time of each cycle comes from the
// supervisor: the increase of infergate_runtime_start_to_ready_seconds_sum
// on /metrics over the cycle, or, when the gateway does not export that
// histogram, the "replica ready" line of its JSON log (the same figure).
// It runs from the moment the supervisor starts the process to the first
// answer that says the runtime and the model are ready. The gateway's share
// is the first request's latency, as the client sees it, minus that time.
// The probe gap (infergate_runtime_ready_probe_gap_seconds, or the log's
// probe_gap) bounds how long the runtime may have been ready before the
// supervisor saw it: time the split counts as the runtime's although the
// runtime was done.
//
// Everything listens on 127.0.0.1; every loop is bounded in count and
// time, and the whole run by -timeout; the gateway (and with it every
// runtime) is stopped at the end or on Ctrl-C.
//
// Usage:
//
//	go run ./bench/cmd/coldstart -infergate bin/infergate [-cycles 20] [-concurrency 8] [-load 1s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type flags struct {
	infergate   string
	samples     string
	models      string
	cycles      int
	concurrency int
	load        time.Duration
	maxRequests int
	simLatency  float64
	timeout     time.Duration
	zeroTimeout time.Duration
	gateShare   time.Duration
	keep        bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coldstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f flags
	fs.StringVar(&f.infergate, "infergate", "bin/infergate", "the infergate binary (make build)")
	fs.StringVar(&f.samples, "samples", "examples/models", "the sample models' directory (iris is read from it)")
	fs.StringVar(&f.models, "models", "iris,sim", "comma-separated models to cycle: iris (ONNX), sim (simulated)")
	fs.IntVar(&f.cycles, "cycles", 20, "cycles of zero, first request and load, back to zero, per model")
	fs.IntVar(&f.concurrency, "concurrency", 8, "clients sending back to back alongside each cycle's first request")
	fs.DurationVar(&f.load, "load", time.Second, "how long the clients send in each cycle")
	fs.IntVar(&f.maxRequests, "max-requests", 20000, "most requests one client sends in one cycle")
	fs.Float64Var(&f.simLatency, "sim-latency-ms", 1, "the simulated model's latency per request")
	fs.DurationVar(&f.timeout, "timeout", 8*time.Minute, "bound of the whole run; cycles not run by then are left out of the figures")
	fs.DurationVar(&f.zeroTimeout, "zero-timeout", time.Minute, "most time one model may take to reach zero replicas")
	fs.DurationVar(&f.gateShare, "want-gateway-share", 20*time.Millisecond, "the target of the gateway's share's p99")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directory (config, gateway and runtime logs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := f.validate(); err != nil {
		fmt.Fprintln(stderr, "coldstart:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runBench(ctx, f, stdout, stderr); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "coldstart: interrupted; the gateway and its runtimes are stopped")
			return 130
		}
		fmt.Fprintln(stderr, "coldstart:", err)
		return 1
	}
	return 0
}

func (f *flags) validate() error {
	switch {
	case f.cycles < 1:
		return fmt.Errorf("-cycles %d: want at least 1", f.cycles)
	case f.concurrency < 0:
		return fmt.Errorf("-concurrency %d: want 0 or more", f.concurrency)
	case f.load <= 0 || f.load > time.Minute:
		return fmt.Errorf("-load %s: want more than 0 and at most 1m", f.load)
	case f.maxRequests < 1:
		return fmt.Errorf("-max-requests %d: want at least 1", f.maxRequests)
	case f.simLatency < 0:
		return fmt.Errorf("-sim-latency-ms %g: want 0 or more", f.simLatency)
	case f.timeout <= 0:
		return fmt.Errorf("-timeout %s: want more than 0", f.timeout)
	}
	for _, m := range strings.Split(f.models, ",") {
		if _, ok := modelKinds[m]; !ok {
			return fmt.Errorf("-models: unknown model %q (want iris or sim)", m)
		}
	}
	if _, err := os.Stat(filepath.Join(f.samples, "iris", "request.json")); err != nil && strings.Contains(f.models, "iris") {
		return fmt.Errorf("-samples %s: %w", f.samples, err)
	}
	return nil
}
