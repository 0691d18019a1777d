// Command infergate is the one binary of infergate: the gateway, its
// built-in model server, and the tools around them. Each subcommand is
// documented by `infergate <command> -h`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `infergate: an Open Inference Protocol gateway

Usage:
  infergate serve [flags]        gateway + built-in runtimes, embedded defaults
  infergate gateway [flags]      data plane only, runtimes at URLs
  infergate modelserver [flags]  built-in OIP model server for ONNX models
  infergate bench [flags]        load-test any OIP server over REST or gRPC
  infergate get models [flags]   models, revisions, traffic, replicas and autoscaler decisions
  infergate apply -f FILE|DIR    apply InferenceService YAML to a running gateway
  infergate rollout status|promote|rollback|pause|resume MODEL
                                 show or steer a model's canary rollout
  infergate registry models|versions|aliases|upload|resolve ...
                                 the model registry: models, versions and their files, aliases
  infergate events [-f] [-model M] [-since ID|TIME|DURATION]
                                 the event log of every change; -f follows it
  infergate run submit|list|get|logs|cancel|retry ...
                                 pipeline runs: submit a pipeline file, follow it, its steps and logs
  infergate step mlp|train|evaluate|sweep|register|deploy [flags]
                                 the pipelines' built-in steps
  infergate tenants create|update|list|get|delete|grant|revoke-grant ...
                                 tenants: weights, quotas and grants (who may do what on which models)
  infergate keys create|list|revoke ...
                                 tenants' API keys: a token is shown once, at creation
  infergate version              print the version

Run "infergate <command> -h" for a command's flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h asked for the usage, which was printed
		}
		fmt.Fprintln(os.Stderr, "infergate:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return runServe(rest, stderr, true)
	case "gateway":
		return runServe(rest, stderr, false)
	case "get":
		return runGet(rest, stdout, stderr)
	case "apply":
		return runApply(rest, os.Stdin, stdout, stderr)
	case "rollout":
		return runRollout(rest, stdout, stderr)

	case "registry":
		return runRegistry(context.Background(), rest, stdout, stderr)
	case "events":
		// -f follows until Ctrl-C, then exits 0.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runEvents(ctx, rest, stdout, stderr)
	case "run":
		return runRun(rest, stdout, stderr)
	case "tenants", "keys":
		return runTenants(context.Background(), cmd, rest, stdout, stderr)
	case "step":
		return runStep(rest, stdout, stderr)
	case "modelserver":
		return runModelServer(rest, stdout, stderr)
	case "bench":
		return runBench(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "infergate", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// stringList is a flag that may be given several times (-f, -H, -model).
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	format, level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("-log-level: %q is not debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: %q is not text or json", l.format)
}
