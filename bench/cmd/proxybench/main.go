// Command proxybench compares infergate's gateway with nginx and haproxy in
// front of the same trivial OIP runtime, on loopback, from one interleaved
// run, as issue 14 asks: requests/s as a ratio to direct, p50/p99 latency,
// each proxy's CPU time and wake-ups per request (from /proc over each
// measured window), the load generator's own CPU, and for the gateway its
// allocations per request and GC cycles per second, at several
// concurrencies, driven by load generators we did not write as well as by
// our own:
//
//   - REST: direct, through the gateway (pass-through, pipelined, and to
//     the runtime's gRPC port: the REST-to-gRPC translation), nginx and
//     haproxy; driven by wrk and by package bench's closed loop;
//   - gRPC: direct, through the gateway (pass-through, and to the
//     runtime's REST port: the gRPC-to-REST translation), nginx
//     (grpc_pass) and haproxy (proto h2); driven by h2load and by package
//     bench's gRPC client.
//
// Then the gateway's RSS under a long high-concurrency load once per round,
// and the goals, PASS or FAIL, judged on the wrk and h2load rows.
// It is a report: the figures do not change its exit status.
//
// It builds nothing: `make bench` builds bin/infergate and passes it with
// -infergate. nginx, haproxy, wrk and h2load are Debian's; a missing one is
// skipped with a note. Everything listens on 127.0.0.1, every loop is
// bounded in time and count, and every process started is stopped at the
// end or on Ctrl-C (each server runs in its own process group and dies
// with this one; a generator is bounded by its own duration).
//
// Usage:
//
//	go run ./bench/cmd/proxybench -infergate bin/infergate [-rounds 3] [-window 3s] [-generators infergate,wrk,h2load] [-json out.json] [-profile-dir DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infergate/infergate/bench"
)

// The models the gateway routes: one to the upstream's REST port, one to
// its gRPC port. nginx and haproxy forward whatever path they get.
// pipeModel is routed to the REST port with HTTP/1.1 pipelining
// (infergate.io/pipeline).
const (
	restModel = "iris"
	grpcModel = "iris-grpc"
	pipeModel = "iris-pipelined"
	// splitModel has two revisions at 90/10 (a canary), both to the
	// upstream's REST port: the router's cost against restModel's.
	splitModel = "iris-split"
)

type flags struct {
	infergate, nginx, haproxy string
	wrk, h2load               string
	generators                string
	wrkThreads, h2loadThreads int
	grpcStreamsPerConn        int
	concurrency               string
	targets                   string
	rounds                    int
	window, warmup, winWarmup time.Duration
	maxRequests               int64
	timeout                   time.Duration
	memoryWindow              time.Duration
	memoryConc                int
	memoryTarget              string
	jsonPath                  string
	profileDir                string
	profileSeconds            int
	syscallTool               string
	gatewayEnv                envFlag
	keep                      bool

	upstream       bool
	upstreamModels string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("proxybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f flags
	fs.StringVar(&f.infergate, "infergate", "bin/infergate", "the infergate binary to run as the gateway (make build)")
	fs.StringVar(&f.nginx, "nginx", "/usr/sbin/nginx", "nginx binary; skipped when missing")
	fs.StringVar(&f.haproxy, "haproxy", "/usr/sbin/haproxy", "haproxy binary; skipped when missing")
	fs.StringVar(&f.wrk, "wrk", "wrk", "wrk binary (Debian's wrk), the REST generator we did not write; skipped when missing")
	fs.StringVar(&f.h2load, "h2load", "h2load", "h2load binary (Debian's nghttp2-client), the gRPC generator we did not write; skipped when missing")
	fs.StringVar(&f.generators, "generators", strings.Join(allGenerators, ","), "comma-separated load generators: infergate (ours, both protocols), wrk (REST), h2load (gRPC); a missing binary is skipped")
	fs.IntVar(&f.wrkThreads, "wrk-threads", 1, "wrk's threads (-t)")
	fs.IntVar(&f.h2loadThreads, "h2load-threads", 1, "h2load's threads (-t; at most its connections)")
	fs.IntVar(&f.grpcStreamsPerConn, "grpc-streams-per-conn", 16, "gRPC: concurrent streams per connection; a concurrency of N opens ceil(N/this) connections, for h2load (-c, -m) and infergate's client alike")
	fs.StringVar(&f.concurrency, "concurrency", "16,64", "comma-separated concurrencies (REST connections, gRPC concurrent streams)")
	fs.StringVar(&f.targets, "targets", strings.Join(targetKeys(true), ","), "comma-separated targets to run, of: "+strings.Join(targetKeys(false), ", "))
	fs.IntVar(&f.rounds, "rounds", 3, "measured rounds; each runs every target with every generator at every concurrency once, interleaved")
	fs.DurationVar(&f.window, "window", 3*time.Second, "length of one measured window (wrk's is rounded up to whole seconds)")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "warm-up of each target at each concurrency before the first round")
	fs.DurationVar(&f.winWarmup, "window-warmup", 200*time.Millisecond, "unmeasured load just before each measured window (h2load's --warm-up-time)")
	fs.Int64Var(&f.maxRequests, "max-requests", 5_000_000, "most requests in one measured window of infergate's generator")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "timeout of one request")
	fs.DurationVar(&f.memoryWindow, "memory-window", 30*time.Second, "the gateway's RSS: load of each round (0: not measured)")
	fs.IntVar(&f.memoryConc, "memory-concurrency", 256, "the gateway's RSS: concurrency of that load")
	fs.StringVar(&f.memoryTarget, "memory-target", tGatewayREST, "the gateway's RSS: the target loaded (a gateway target)")
	fs.StringVar(&f.jsonPath, "json", "", "write the results as JSON to this file")
	fs.StringVar(&f.profileDir, "profile-dir", "", "after the comparison, profile the gateway (pprof) and count syscalls and wake-ups per request of each proxy, into this directory")
	fs.IntVar(&f.profileSeconds, "profile-seconds", 5, "length of each profile and syscall count")
	fs.StringVar(&f.syscallTool, "syscall-tool", "", "count syscalls with perf or strace (default: perf when it can, else strace)")
	fs.Var(&f.gatewayEnv, "gateway-env", "KEY=VALUE added to the gateway's environment (GOMAXPROCS, GOGC, GODEBUG...); repeatable")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary directory (configs and logs)")
	fs.BoolVar(&f.upstream, "upstream", false, "internal: run as the trivial runtime")
	fs.StringVar(&f.upstreamModels, "upstream-models", restModel+","+grpcModel+","+pipeModel+","+splitModel, "internal: models the trivial runtime serves")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.upstream {
		if err := runUpstream(f.upstreamModels, stdout); err != nil {
			fmt.Fprintln(stderr, "proxybench upstream:", err)
			return 1
		}
		return 0
	}
	if err := runDriver(f, stdout); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "proxybench: interrupted; every process it started is stopped")
			return 130
		}
		fmt.Fprintln(stderr, "proxybench:", err)
		return 1
	}
	return 0
}

// runUpstream serves the trivial runtime on two loopback ports, announces
// them on stdout and runs until SIGTERM or SIGINT.
func runUpstream(models string, stdout io.Writer) error {
	u, err := bench.NewUpstream(bench.UpstreamOptions{Models: strings.Split(models, ",")})
	if err != nil {
		return err
	}
	restLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "%s rest=%s grpc=%s\n", announcePrefix, restLn.Addr(), grpcLn.Addr())
	return u.Serve(ctx, restLn, grpcLn)
}

// envFlag collects repeated KEY=VALUE flags.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", p)
		}
		out = append(out, n)
	}
	return out, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
