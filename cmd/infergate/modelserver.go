package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes/modelserver"
	"github.com/infergate/infergate/runtimes/supervisor"
)

func runModelServer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modelserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		repo     = fs.String("repository", "", "model repository: DIR/<model>/<version>/model.onnx, optional DIR/<model>/config.json (see examples/models/README.md); models added later can be loaded")
		host     = fs.String("host", "127.0.0.1", "address to listen on")
		httpPort = fs.Int("http-port", 8000, "OIP REST port (0 picks a free one)")
		grpcPort = fs.Int("grpc-port", 8001, "OIP gRPC port (0 picks a free one)")
		maxBody  = fs.Int("max-body-bytes", 64<<20, "largest request body or gRPC message")
		repoAPI  = fs.Bool("repository-api", true, "serve the model repository extension (POST /v2/repository/index, .../models/{m}/load, .../unload and the gRPC RPCs); false answers them unimplemented")
		startup  = fs.String("startup-models", "*", "comma-separated models to load at start; * loads all, an empty value none (load them later with the repository API)")
		models   stringList
		logs     logFlags
	)
	fs.Var(&models, "model", "NAME=PATH of one model (a model directory or model.onnx file), served as NAME whatever its config.json says; repeatable")
	logs.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: infergate modelserver -repository DIR | -model NAME=PATH ... [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return err
	}
	var sources []modelserver.ModelSource
	if *repo != "" {
		s, err := modelserver.ScanRepository(*repo)
		if err != nil {
			return err
		}
		sources = append(sources, s...)
	}
	for _, m := range models {
		name, path, ok := strings.Cut(m, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("-model %q: want NAME=PATH", m)
		}
		s, err := modelserver.ScanModel(name, path)
		if err != nil {
			return err
		}
		// The name given on the command line wins over config.json's: the
		// gateway names the model after its InferenceService, and several
		// may share one model directory.
		s.Name = name
		sources = append(sources, s)
	}
	if len(sources) == 0 {
		fs.Usage()
		return errors.New("modelserver: give -repository or -model")
	}
	opts := modelserver.Options{Models: sources, Repository: *repo, DisableRepositoryAPI: !*repoAPI, Version: version, Logger: log}
	if *startup != "*" {
		opts.StartupModels = []string{}
		for _, name := range strings.Split(*startup, ",") {
			if name = strings.TrimSpace(name); name != "" {
				opts.StartupModels = append(opts.StartupModels, name)
			}
		}
	}
	srv, err := modelserver.New(opts)
	if err != nil {
		return err
	}
	defer srv.Close()

	restLn, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*httpPort)))
	if err != nil {
		return fmt.Errorf("modelserver: REST listener: %w", err)
	}
	grpcLn, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*grpcPort)))
	if err != nil {
		restLn.Close()
		return fmt.Errorf("modelserver: gRPC listener: %w", err)
	}
	// The announce line tells a supervising gateway where we listen.
	fmt.Fprintf(stdout, "%s rest=%s grpc=%s\n", supervisor.AnnouncePrefix, restLn.Addr(), grpcLn.Addr())
	log.Info("model server listening", "rest", restLn.Addr().String(), "grpc", grpcLn.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	httpSrv := &fasthttp.Server{
		Handler:               srv.HandleREST,
		Name:                  "infergate-modelserver",
		MaxRequestBodySize:    *maxBody,
		ReadTimeout:           60 * time.Second,
		WriteTimeout:          60 * time.Second,
		IdleTimeout:           120 * time.Second,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		CloseOnShutdown:       true,
	}
	grpcSrv := grpc.NewServer(grpc.MaxRecvMsgSize(*maxBody), grpc.MaxSendMsgSize(*maxBody))
	pb.RegisterGRPCInferenceServiceServer(grpcSrv, srv.GRPCService())
	reflection.Register(grpcSrv)

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		_ = srv.LoadAll(ctx) // failures are logged and leave those models not ready
		return nil
	})
	// Gives the memory of a burst of large requests back to the OS.
	eg.Go(func() error { return srv.Run(ctx) })
	eg.Go(func() error { return httpSrv.Serve(restLn) })
	eg.Go(func() error { return grpcSrv.Serve(grpcLn) })
	eg.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = httpSrv.ShutdownWithContext(sctx)
		grpcSrv.GracefulStop()
		return nil
	})
	if err := eg.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("model server stopped")
	return nil
}
