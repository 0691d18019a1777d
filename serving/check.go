package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/infergate/infergate/batcher"
	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
	"github.com/infergate/infergate/gateway/payloadlog"
	"github.com/infergate/infergate/oip"
	"github.com/infergate/infergate/runtimes"
	"github.com/infergate/infergate/runtimes/modelserver"
)

// CheckRuntimes checks, for every model, what only building its runtime
// reveals: its endpoints' URLs, that it has endpoints when infergate runs
// no runtime itself (localRuntimes false: `infergate gateway`), its
// scaling settings and model files when infergate runs it, and its
// batcher settings. It starts nothing, keeps no connection and registers
// no metric; the error names each model's Source.
func CheckRuntimes(models []config.Model, localRuntimes bool) error {
	var errs []error
	for _, m := range models {
		clients, err := checkRevision(m, localRuntimes, nil)
		for _, c := range clients {
			c.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkRevision checks a revision's runtime settings (see CheckRuntimes)
// and returns clients for its endpoints, none when it names none.
func checkRevision(spec config.Model, localRuntimes bool, runtimeTLS *tls.Config) ([]runtimes.Client, error) {
	clients, err := endpointClients(spec, runtimeTLS)
	if err != nil {
		return nil, err
	}
	err = nil
	switch {
	case len(clients) == 0 && !localRuntimes:
		err = fmt.Errorf("%s: model %q names no runtime URL (annotation infergate.io/endpoints); `infergate gateway` starts no runtime, use `infergate serve`", spec.Source, spec.Name)
	case len(clients) == 0:
		if _, err = controlplane.ScaleSettings(spec, false); err == nil {
			err = checkModelFiles(spec)
		}
	}
	if err == nil {
		c, ok, perr := payloadlog.ParseAnnotations(spec.Annotations)
		if perr == nil && ok {
			perr = payloadlog.CheckSink(c)
		}
		if perr != nil {
			err = fmt.Errorf("%s: model %q: %w", spec.Source, spec.Name, perr)
		}
	}
	if err == nil && spec.Batcher != nil {
		if err = batcherOptions(spec.Name, spec, nil, nil).Validate(); err != nil {
			err = fmt.Errorf("%s: batcher: %w", spec.Source, err)
		}
	}
	if err != nil {
		for _, c := range clients {
			c.Close()
		}
		return nil, err
	}
	return clients, nil
}

// checkModelFiles checks that the files a revision infergate runs itself
// will load are there: storageUri's path exists and, for the built-in
// runtime, holds a model it can serve (the versions its version policy
// selects, each with its model file). What a file holds is only known
// once a runtime loads it: a revision that fails then never takes traffic.
func checkModelFiles(spec config.Model) error {
	if spec.Path == "" {
		return nil // a command that reads no storageUri
	}
	uri := ""
	if ms := spec.Spec.Spec.Predictor.Model; ms != nil {
		uri = ms.StorageURI
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: spec.predictor.model.storageUri: %q: %s", spec.Source, uri, fmt.Sprintf(format, args...))
	}
	if _, err := os.Stat(spec.Path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return bad("%s does not exist", spec.Path)
		}
		return bad("%v", err)
	}
	if len(spec.Command) > 0 {
		return nil // the user's runtime reads what it reads
	}
	src, err := modelserver.ScanModel(spec.Name, spec.Path)
	if err != nil {
		return bad("%v", err)
	}
	versions, err := src.Config.VersionPolicy.Select(src.Versions)
	if err != nil {
		return bad("%v", err)
	}
	if src.Config.Simulate != nil {
		return nil
	}
	for _, v := range versions {
		if fi, err := os.Stat(v.Path); err != nil || fi.IsDir() {
			return bad("version %s has no model file %s", v.Version, v.Path)
		}
	}
	return nil
}

// endpointClients returns clients for the runtimes at m's endpoints, none
// when it names none. https:// and grpcs:// endpoints are verified with
// runtimeTLS (nil: the system's roots, against the endpoint's host).
func endpointClients(m config.Model, runtimeTLS *tls.Config) ([]runtimes.Client, error) {
	var clients []runtimes.Client
	for _, e := range m.Endpoints {
		var (
			c   runtimes.Client
			err error
		)
		switch e.Protocol {
		case config.ProtocolGRPC:
			c, err = runtimes.NewGRPCClient(runtimes.GRPCOptions{Addr: e.Address, TLS: e.TLS, TLSConfig: runtimeTLS})
		case config.ProtocolKServeV1:
			c, err = runtimes.NewKServeV1Client(runtimes.KServeV1Options{Addr: e.Address, TLS: e.TLS, TLSConfig: runtimeTLS})
		default:
			c, err = runtimes.NewRESTClient(runtimes.RESTOptions{Addr: e.Address, Pipeline: e.Pipeline, TLS: e.TLS, TLSConfig: runtimeTLS})
		}
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
	}
	return clients, nil
}

// payloadLogs are the payload-log settings of each model that has them:
// its latest revision's annotations (a change to them is a new
// revision, as a change to KServe's logger is).
func payloadLogs(st controlplane.State) map[string]payloadlog.ModelConfig {
	out := make(map[string]payloadlog.ModelConfig)
	for _, ms := range st.Models {
		rev, ok := ms.Revision(ms.Latest)
		if !ok {
			continue
		}
		// Checked when the revision was built (checkRevision).
		if c, ok, err := payloadlog.ParseAnnotations(rev.Spec.Annotations); ok && err == nil {
			c.Namespace = rev.Spec.Namespace
			out[ms.Name] = c
		}
	}
	return out
}

// batcherOptions are the batcher settings of a revision whose
// InferenceService sets spec.predictor.batcher, calling dispatch with
// merged requests (pool and dispatch may be nil to Validate them).
func batcherOptions(name string, spec config.Model, pool *runtimes.Pool, dispatch batcher.DispatchFunc) batcher.Options {
	cfg := spec.Batcher
	callTimeout := cfg.Timeout
	inFlight := gateway.ReadyReplicas(pool)
	if n := cfg.MaxBatchesInFlight; n > 0 {
		inFlight = func() int { return n }
	}
	preferred := make([]int64, len(cfg.PreferredBatchSizes))
	for j, p := range cfg.PreferredBatchSizes {
		preferred[j] = int64(p)
	}
	action := batcher.TimeoutReject
	if cfg.QueuePolicy.TimeoutAction == config.TimeoutDelay {
		action = batcher.TimeoutDelay
	}
	oversize := batcher.OversizeSendAlone
	if cfg.Oversize == config.OversizeReject {
		oversize = batcher.OversizeReject
	}
	return batcher.Options{
		Model:               name,
		MaxBatchSize:        int64(cfg.MaxBatchSize),
		PreferredBatchSizes: preferred,
		MaxQueueDelay:       cfg.MaxLatency,
		MaxQueueSize:        cfg.MaxQueueSize,
		PriorityLevels:      cfg.PriorityLevels,
		DefaultPriority:     cfg.DefaultPriority,
		DefaultQueuePolicy: batcher.QueuePolicy{
			TimeoutAction:        action,
			DefaultTimeout:       cfg.QueuePolicy.DefaultTimeout,
			AllowTimeoutOverride: cfg.QueuePolicy.AllowTimeoutOverride,
		},
		PreserveOrdering:   cfg.PreserveOrdering,
		MaxBatchesInFlight: inFlight,
		OversizePolicy:     oversize,
		Dispatch: func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
			ctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			return dispatch(ctx, req)
		},
	}
}
