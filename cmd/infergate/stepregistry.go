package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/registry"
	"github.com/infergate/infergate/registry/registryapi"
)

// The register and deploy steps: a pipeline's way into the model registry
// and onto the gateway, through the admin API of a running infergate
// (INFERGATE_ADMIN, which `infergate serve` gives the steps it runs).

// defaultAdmin is the admin address a step calls without -admin and
// INFERGATE_ADMIN.
const defaultAdmin = "127.0.0.1:8090"

// stepAdmin returns the admin address a step calls: -admin, else
// $INFERGATE_ADMIN, else defaultAdmin.
func stepAdmin(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if a := os.Getenv("INFERGATE_ADMIN"); a != "" {
		return a
	}
	return defaultAdmin
}

// stepClient returns a client of the admin API at admin. Inside a pipeline
// run the changes it makes are recorded as the run's (actor
// "pipeline/<run id>"); elsewhere as the OS user's, as the registry CLI's.
func stepClient(admin string) (*registryapi.Client, error) {
	if run := os.Getenv("INFERGATE_RUN_ID"); run != "" {
		return registryapi.NewClient(admin, registryapi.ClientOptions{Actor: "pipeline/" + run, Token: adminKey(admin)})
	}
	return newRegistryClient(admin)
}

// unreachable explains an error that is not the API's answer: the admin
// port did not answer at all. An API error (with the server's message)
// and a cancellation are returned as they are.
func unreachable(api *registryapi.Client, err error) error {
	var ae *registryapi.APIError
	if err == nil || errors.As(err, &ae) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("the admin API at %s did not answer (is infergate serve running there? -admin or INFERGATE_ADMIN names it): %w", api.Base(), err)
}

// maxMetricsFileBytes bounds a -metrics file, as the pipeline engine
// bounds the JSON artifacts it reads parameters from.
const maxMetricsFileBytes = 16 << 20

// lineage is where a registered version comes from: the pipeline run and
// step that made it, from the engine's environment.
type lineage struct {
	run, pipeline, step, attempt string
}

func lineageFromEnv() lineage {
	return lineage{
		run: os.Getenv("INFERGATE_RUN_ID"), pipeline: os.Getenv("INFERGATE_PIPELINE"),
		step: os.Getenv("INFERGATE_STEP"), attempt: os.Getenv("INFERGATE_ATTEMPT"),
	}
}

const registerUsage = `Usage:
  infergate step register -model NAME (-file PATH | -dir PATH) [-metrics JSON ...] [-param k=v ...]
                          [-data CSV] [-description TEXT] [-format F] [-alias NAME] [-out-version PATH]
  infergate step register -model NAME -version N -alias NAME [-reason TEXT]

Registers a model version through a running infergate's admin API: creates
the model if it is missing, a version holding the file (or every file of
the directory, under its relative path), each streamed with its SHA-256
for the server to check, marks it READY and, with -alias, points the alias
at it. The numbers at the top level of each -metrics JSON object become the
version's metrics. Inside a pipeline run the version's source is the run
(kind pipelineRun, id the run, name the step) and its custom properties
name the pipeline, step and attempt; -data records the training data's
path and SHA-256 (data.path, data.digest). Nothing is left half-registered:
if anything fails once the version exists, it is marked FAILED with the
reason.

With -version instead of -file or -dir, it only moves -alias to that READY
version (promoting it: -alias prod).`

func stepRegister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := stepFlags("register", registerUsage, stderr)
	var (
		model       = fs.String("model", "", "the registered model's name (required; created if missing)")
		file        = fs.String("file", "", "the file to register, stored under its base name")
		dir         = fs.String("dir", "", "the directory to register: every file in it, under its relative path")
		format      = fs.String("format", "", "the files' format, such as onnx (default: from each file's extension)")
		description = fs.String("description", "", "the version's description")
		data        = fs.String("data", "", "the data set the model was trained on: its path and SHA-256 become custom properties")
		alias       = fs.String("alias", "", "point this alias (candidate, prod...) at the version once it is READY")
		reason      = fs.String("reason", "", "why the alias moves, kept in its history (default: who registered the version)")
		version     = fs.Int64("version", 0, "move -alias to this existing READY version instead of registering one")
		outVersion  = fs.String("out-version", "", "write the version number to this file (a pipeline's output parameter)")
		admin       = fs.String("admin", "", "the admin API: HOST:PORT or URL (default $INFERGATE_ADMIN, else "+defaultAdmin+")")
		metricFiles stringList
		params      stringList
	)
	fs.Var(&metricFiles, "metrics", "a JSON object whose top-level numbers become the version's metrics (train's or evaluate's -metrics); repeatable")
	fs.Var(&params, "param", "k=v: a parameter of the version (learning_rate=0.01); repeatable")
	if err := parseStepFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model"); err != nil {
		return err
	}
	if *reason != "" && *alias == "" {
		return errors.New("step register: -reason says why an alias moves: give the alias with -alias")
	}
	if *version != 0 {
		switch {
		case *version < 0:
			return fmt.Errorf("step register: -version %d: want a version number (1, 2, ...)", *version)
		case *alias == "":
			return errors.New("step register: -version moves an alias: give it with -alias")
		case *file != "" || *dir != "" || len(metricFiles)+len(params) > 0 || *description != "" || *data != "" || *format != "":
			return errors.New("step register: -version moves an alias to an existing version: -file, -dir, -metrics, -param, -description, -data and -format describe a new one")
		}
		api, err := stepClient(stepAdmin(*admin))
		if err != nil {
			return fmt.Errorf("step register: %w", err)
		}
		if err := moveAlias(ctx, api, stdout, *model, *alias, *version, aliasReason(*reason, *model, *version)); err != nil {
			return fmt.Errorf("step register: %w", err)
		}
		return writeVersion(*outVersion, *version)
	}
	if (*file == "") == (*dir == "") {
		fs.Usage()
		return errors.New("step register: give the model's files with -file PATH or -dir PATH (one of them)")
	}

	// Everything that can be checked here is, before the registry is
	// touched: the files, the metrics, the params.
	body, err := versionBody(lineageFromEnv(), *description, metricFiles, params, *data)
	if err != nil {
		return fmt.Errorf("step register: %w", err)
	}
	uploads, err := prepareModelFiles(*file, *dir, *format)
	if err != nil {
		return fmt.Errorf("step register: %w", err)
	}
	api, err := stepClient(stepAdmin(*admin))
	if err != nil {
		return fmt.Errorf("step register: %w", err)
	}
	v, err := registerVersion(ctx, api, *model, body, uploads)
	if err != nil {
		return fmt.Errorf("step register: %w", err)
	}
	n := v.Version
	var size int64
	for _, up := range uploads {
		size += up.Size
	}
	fmt.Fprintf(stdout, "registered %s version %d: %s, %d file(s), %d bytes, digest %s\n", v.Model, n, v.Status, len(uploads), size, v.Digest)
	printRegistered(stdout, v)
	if *alias != "" {
		r := *reason
		if r == "" {
			r = "registered by " + describeSource(v.Source)
		}
		if err := moveAlias(ctx, api, stdout, *model, *alias, n, r); err != nil {
			return fmt.Errorf("step register: %s version %d is READY, but: %w", *model, n, err)
		}
	}
	return writeVersion(*outVersion, n)
}

// prepareModelFiles lists and hashes the files to register: the -file,
// or every file of the -dir, each with its format and content type.
func prepareModelFiles(file, dir, format string) ([]registryapi.Upload, error) {
	root := cmpOr(file, dir)
	switch info, err := os.Stat(root); {
	case err != nil:
		return nil, err
	case file != "" && info.IsDir():
		return nil, fmt.Errorf("-file %s is a directory: give it with -dir", root)
	case dir != "" && !info.IsDir():
		return nil, fmt.Errorf("-dir %s is not a directory: give a file with -file", root)
	}
	uploads, err := registryapi.PrepareUploads(root)
	if err != nil {
		return nil, err
	}
	for i := range uploads {
		uploads[i].Format = artifactFormat(format, uploads[i].Name)
		uploads[i].ContentType = mime.TypeByExtension(filepath.Ext(uploads[i].Name))
	}
	return uploads, nil
}

// registerVersion registers a version of model (the model too, if it is
// missing) holding uploads, and marks it READY. Once the version exists,
// a failure marks it FAILED with the reason, so that nothing is left
// half-registered.
func registerVersion(ctx context.Context, api *registryapi.Client, model string, body registry.VersionCreate, uploads []registryapi.Upload) (_ *registry.ModelVersion, err error) {
	if err := ensureModel(ctx, api, model); err != nil {
		return nil, fmt.Errorf("model %s: %w", model, unreachable(api, err))
	}
	var v registry.ModelVersion
	if err := api.Call(ctx, "POST", registryapi.ModelPath(model)+"/versions", body, &v); err != nil {
		return nil, fmt.Errorf("a version of %s: %w", model, unreachable(api, err))
	}
	n := v.Version
	defer func() {
		if err != nil {
			err = markFailed(ctx, api, model, n, err)
		}
	}()
	for _, up := range uploads {
		if _, err := api.UploadFile(ctx, model, n, up); err != nil {
			return nil, fmt.Errorf("%s version %d: uploading %s: %w", model, n, up.Path, unreachable(api, err))
		}
	}
	if err := api.Call(ctx, "POST", registryapi.VersionPath(model, n)+"/ready", struct{}{}, &v); err != nil {
		return nil, fmt.Errorf("%s version %d: marking it READY: %w", model, n, unreachable(api, err))
	}
	return &v, nil
}

// versionBody builds the registration of a version: metrics from the
// JSON files, params, and the lineage (the pipeline run, the data).
func versionBody(l lineage, description string, metricFiles, params []string, data string) (registry.VersionCreate, error) {
	body := registry.VersionCreate{Description: description}
	var err error
	if body.Params, err = keyValues("-param", params); err != nil {
		return body, err
	}
	if body.Metrics, err = readMetricFiles(metricFiles); err != nil {
		return body, err
	}
	props := map[string]registry.Value{}
	if l.run != "" {
		body.Source = registry.Source{Kind: "pipelineRun", ID: l.run, Name: l.step}
		props["pipeline.run"] = registry.StringValue(l.run)
		if l.pipeline != "" {
			props["pipeline.name"] = registry.StringValue(l.pipeline)
		}
		if l.step != "" {
			props["pipeline.step"] = registry.StringValue(l.step)
		}
		if n, err := strconv.ParseInt(l.attempt, 10, 64); err == nil {
			props["pipeline.attempt"] = registry.IntValue(n)
		}
	}
	if data != "" {
		digest, err := fileDigest(data)
		if err != nil {
			return body, fmt.Errorf("-data: %w", err)
		}
		abs, err := filepath.Abs(data)
		if err != nil {
			return body, fmt.Errorf("-data: %w", err)
		}
		props["data.path"] = registry.StringValue(abs)
		props["data.digest"] = registry.StringValue(digest)
	}
	if len(props) > 0 {
		body.CustomProperties = props
	}
	return body, nil
}

// readMetricFiles reads the top-level numbers of each JSON object; a name
// two files give different values is an error.
func readMetricFiles(paths []string) (map[string]float64, error) {
	var out map[string]float64
	from := map[string]string{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("-metrics: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(f, maxMetricsFileBytes+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("-metrics %s: %w", p, err)
		}
		if len(b) > maxMetricsFileBytes {
			return nil, fmt.Errorf("-metrics %s: larger than %d bytes", p, maxMetricsFileBytes)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
			if err == nil {
				err = errors.New("null")
			}
			return nil, fmt.Errorf("-metrics %s: want a JSON object: %w", p, err)
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			raw := obj[k]
			if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
				continue // not a number: a curve, a table, a name
			}
			x, err := strconv.ParseFloat(string(raw), 64)
			if err != nil {
				return nil, fmt.Errorf("-metrics %s: %s: %s is not a finite number", p, k, raw)
			}
			if old, dup := out[k]; dup && old != x {
				return nil, fmt.Errorf("-metrics: %s is %v in %s but %v in %s", k, old, from[k], x, p)
			}
			if out == nil {
				out = map[string]float64{}
			}
			out[k], from[k] = x, p
		}
	}
	return out, nil
}

// fileDigest returns "sha256:<hex>" of a file's bytes, streaming it.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return "", err
	} else if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// artifactFormat is a file's format: format if set, else the one its
// extension says (as `infergate registry upload` decides).
func artifactFormat(format, name string) string {
	return (&regCLI{f: regFlags{format: format}}).formatOf(name)
}

// ensureModel registers model unless it exists; another client registering
// it at the same time is no error.
func ensureModel(ctx context.Context, api *registryapi.Client, model string) error {
	err := api.Call(ctx, "GET", registryapi.ModelPath(model), nil, nil)
	var ae *registryapi.APIError
	if !errors.As(err, &ae) || ae.Status != 404 {
		return err
	}
	err = api.Call(ctx, "POST", "/api/v1/registry/models", registry.ModelCreate{Name: model}, nil)
	if errors.As(err, &ae) && ae.Status == 409 {
		return nil
	}
	return err
}

// markFailed marks a PENDING version FAILED with cause as the reason, so
// that nothing is left half-registered, and returns cause saying so. It
// runs even when ctx was cancelled (the step was stopped), within a bound
// of its own.
func markFailed(ctx context.Context, api *registryapi.Client, model string, n int64, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	msg := "registration failed: " + cause.Error()
	if err := api.Call(ctx, "POST", registryapi.VersionPath(model, n)+"/failed", map[string]string{"message": msg}, nil); err != nil {
		return fmt.Errorf("%w (and %s version %d, left PENDING, could not be marked FAILED: %v)", cause, model, n, unreachable(api, err))
	}
	return fmt.Errorf("%w (%s version %d marked FAILED)", cause, model, n)
}

// moveAlias points model@alias at version n and says where it pointed
// before.
func moveAlias(ctx context.Context, api *registryapi.Client, stdout io.Writer, model, alias string, n int64, reason string) error {
	var before registry.Alias
	was := "new"
	err := api.Call(ctx, "GET", registryapi.AliasPath(model, alias), nil, &before)
	var ae *registryapi.APIError
	switch {
	case err == nil:
		was = "was version " + strconv.FormatInt(before.Version, 10)
	case errors.As(err, &ae) && ae.Status == 404:
	default:
		return fmt.Errorf("%s@%s: %w", model, alias, unreachable(api, err))
	}
	var a registry.Alias
	if err := api.Call(ctx, "PUT", registryapi.AliasPath(model, alias), map[string]any{"version": n, "reason": reason}, &a); err != nil {
		return fmt.Errorf("moving %s@%s to version %d: %w", model, alias, n, unreachable(api, err))
	}
	fmt.Fprintf(stdout, "%s@%s -> version %d (%s)\n", a.Model, a.Name, a.Version, was)
	return nil
}

// aliasReason is an alias move's default reason in alias-only mode.
func aliasReason(reason, model string, n int64) string {
	if reason != "" {
		return reason
	}
	if run := os.Getenv("INFERGATE_RUN_ID"); run != "" {
		return fmt.Sprintf("pipeline run %s step %s", run, os.Getenv("INFERGATE_STEP"))
	}
	return fmt.Sprintf("%s version %d", model, n)
}

// describeSource says who made a version, for an alias's history.
func describeSource(s registry.Source) string {
	if s.Kind == "pipelineRun" {
		return fmt.Sprintf("pipeline run %s step %s", s.ID, s.Name)
	}
	if s.Actor != "" {
		return s.Actor
	}
	return s.Kind
}

// printRegistered shows what a version carries besides its files.
func printRegistered(w io.Writer, v *registry.ModelVersion) {
	fmt.Fprintf(w, "  source: %s\n", describeSource(v.Source))
	if d, ok := v.CustomProperties["data.digest"]; ok {
		fmt.Fprintf(w, "  data: %s %s\n", v.CustomProperties["data.path"].String(), d.String())
	}
	if len(v.Metrics) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(v.Metrics)) {
			parts = append(parts, k+"="+strconv.FormatFloat(v.Metrics[k], 'g', 6, 64))
		}
		fmt.Fprintf(w, "  metrics: %s\n", strings.Join(parts, " "))
	}
	if len(v.Params) > 0 {
		fmt.Fprintf(w, "  params: %s\n", formatMap(v.Params))
	}
}

// writeVersion writes a version number to path, if set.
func writeVersion(path string, n int64) error {
	if path == "" {
		return nil
	}
	if err := writeFileAtomic(path, []byte(strconv.FormatInt(n, 10)+"\n")); err != nil {
		return fmt.Errorf("step register: -out-version: %w", err)
	}
	return nil
}

const deployUsage = `Usage: infergate step deploy -f FILE|DIR [-f ...] [-wait [-timeout D]] [-out-revision PATH] [-admin ADDR]

Applies InferenceService declarations through a running infergate's admin
API (as infergate apply does: all or nothing). With -wait it then follows
each changed model's rollout (GET /api/v1/rollouts/MODEL) and prints its
decisions as they are taken, until the revision the declaration deploys
serves: its rollout promoted it (exit 0), or, without a rollout policy, it
is ready and takes the traffic declared. It fails (non-zero exit) with the
gate's reason when the rollout rolls the revision back, when the revision
fails to start or is replaced, and when -timeout passes first (the rollout
goes on: see infergate rollout status).`

// deployGiveUp is how long -wait keeps reading a rollout through errors
// of the admin API (a restart) before it fails.
const deployGiveUp = 30 * time.Second

func stepDeploy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := stepFlags("deploy", deployUsage, stderr)
	var files stringList
	fs.Var(&files, "f", "InferenceService YAML file, or directory of *.yaml/*.yml files (repeatable; required)")
	var (
		wait        = fs.Bool("wait", false, "wait for the rollout's verdict: exit 0 once promoted, non-zero if rolled back")
		timeout     = fs.Duration("timeout", 10*time.Minute, "with -wait: fail if the verdict has not come within this time")
		poll        = fs.Duration("poll", 500*time.Millisecond, "with -wait: how often to read the rollout")
		outRevision = fs.String("out-revision", "", "write the revision each model deploys (one a line) to this file (a pipeline's output parameter)")
		admin       = fs.String("admin", "", "the admin API: HOST:PORT or URL (default $INFERGATE_ADMIN, else "+defaultAdmin+")")
	)
	if err := parseStepFlags(fs, args); err != nil {
		return err
	}
	if len(files) == 0 {
		fs.Usage()
		return errors.New("step deploy: give the declarations with -f")
	}
	if *timeout <= 0 || *poll <= 0 {
		return fmt.Errorf("step deploy: -timeout %s and -poll %s: want positive durations", *timeout, *poll)
	}
	var req controlplane.ApplyRequest
	for _, f := range files {
		got, err := readApplyFiles(f, os.Stdin)
		if err != nil {
			return fmt.Errorf("step deploy: %w", err)
		}
		req.Files = append(req.Files, got...)
	}
	api, err := stepClient(stepAdmin(*admin))
	if err != nil {
		return fmt.Errorf("step deploy: %w", err)
	}
	var ch controlplane.Changes
	if err := api.Call(ctx, "POST", "/api/v1/apply", req, &ch); err != nil {
		return fmt.Errorf("step deploy: apply: %w", unreachable(api, err))
	}
	watches, err := watchChanges(ctx, api, stdout, ch)
	if err != nil {
		return fmt.Errorf("step deploy: %w", err)
	}
	if *outRevision != "" {
		var revs []string
		for _, w := range watches {
			revs = append(revs, w.revision)
		}
		if err := writeFileAtomic(*outRevision, []byte(strings.Join(revs, "\n")+"\n")); err != nil {
			return fmt.Errorf("step deploy: -out-revision: %w", err)
		}
	}
	if !*wait {
		return nil
	}
	ctx, cancel := context.WithTimeoutCause(ctx, *timeout, errDeployTimeout)
	defer cancel()
	for _, w := range watches {
		if err := w.follow(ctx, api, stdout, *poll); err != nil {
			return fmt.Errorf("step deploy: %w", err)
		}
	}
	return nil
}

// watchChanges prints what an apply did, as infergate apply does, and
// returns a watch of each changed model's deployed revision.
func watchChanges(ctx context.Context, api *registryapi.Client, stdout io.Writer, ch controlplane.Changes) ([]*rolloutWatch, error) {
	watches := make([]*rolloutWatch, 0, len(ch.Models))
	for _, m := range ch.Models {
		fmt.Fprintf(stdout, "inferenceservice/%s %s", m.Model, m.Action)
		if m.Revision != "" {
			fmt.Fprintf(stdout, ": revision %s", m.Revision)
		}
		if m.Pending {
			fmt.Fprint(stdout, " (pending: it takes its traffic once ready)")
		}
		if len(m.Traffic) > 0 {
			fmt.Fprintf(stdout, "; traffic %s", controlplane.FormatTraffic(m.Traffic))
		}
		fmt.Fprintln(stdout)
		w := &rolloutWatch{model: m.Model, revision: m.Revision, printed: map[string]bool{}}
		if w.revision == "" {
			// Unchanged or configured: the revision the model deploys
			// now is the one to follow (an alias move may have made it
			// before this apply).
			st, err := rolloutStatus(ctx, api, m.Model)
			if err != nil {
				return nil, err
			}
			w.revision = cmpOr(st.Pending, st.Canary)
		}
		watches = append(watches, w)
	}
	return watches, nil
}

var errDeployTimeout = errors.New("-timeout passed")

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// rolloutStatus reads GET /api/v1/rollouts/{model}.
func rolloutStatus(ctx context.Context, api *registryapi.Client, model string) (controlplane.RolloutStatus, error) {
	var st controlplane.RolloutStatus
	if err := api.Call(ctx, "GET", "/api/v1/rollouts/"+url.PathEscape(model), nil, &st); err != nil {
		return st, fmt.Errorf("rollout status of %s: %w", model, unreachable(api, err))
	}
	return st, nil
}

// rolloutWatch follows one model's rollout of one revision.
type rolloutWatch struct {
	model, revision string
	printed         map[string]bool // decisions shown, by time, step and verdict
	said            string          // the last waiting note shown
}

// follow reads the rollout every poll until rolloutVerdict says it is
// over, printing each new decision about the revision; ctx's end (with
// errDeployTimeout as its cause at -timeout) fails it, saying where the
// rollout stands.
func (w *rolloutWatch) follow(ctx context.Context, api *registryapi.Client, stdout io.Writer, poll time.Duration) error {
	var last controlplane.RolloutStatus
	var verdict error
	err := registryapi.Poll(ctx, registryapi.PollOptions{Min: poll, GiveUpAfter: deployGiveUp}, func(ctx context.Context) (done, changed bool, err error) {
		st, err := rolloutStatus(ctx, api, w.model)
		if err != nil {
			return false, false, err
		}
		last = st
		w.show(stdout, st)
		done, verdict = rolloutVerdict(st, w.revision)
		return done || verdict != nil, false, nil
	})
	switch {
	case verdict != nil:
		return fmt.Errorf("%s: %w", w.model, verdict)
	case err != nil && ctx.Err() != nil:
		if cause := context.Cause(ctx); errors.Is(cause, errDeployTimeout) {
			return fmt.Errorf("%s: revision %s has no verdict yet, and %w: %s", w.model, w.revision, cause, where(last, w.revision))
		}
		return ctx.Err()
	}
	return err
}

// show prints the decisions about the watched revision's rollout that
// were not shown yet and, when it changes, where the revision stands
// (waiting for a replica, paused, promoted...) unless its rollout
// progresses, which the decisions say.
func (w *rolloutWatch) show(out io.Writer, st controlplane.RolloutStatus) {
	if st.Canary == w.revision && st.State != "" {
		for _, d := range st.Decisions {
			if d.Canary != w.revision || d.Time.Before(st.Started) {
				continue
			}
			key := d.Time.Format(time.RFC3339Nano) + "/" + strconv.Itoa(d.Step) + "/" + string(d.Verdict)
			if w.printed[key] {
				continue
			}
			w.printed[key] = true
			by := ""
			if d.Manual {
				by = " (by hand)"
			}
			fmt.Fprintf(out, "  %s  step %d  %s%s: %s; traffic %s\n", d.Time.Local().Format(time.TimeOnly), d.Step, d.Verdict, by, d.Reason, controlplane.FormatTraffic(d.Weights))
		}
	}
	if st.Canary == w.revision && st.State == controlplane.RolloutProgressing {
		return // the decisions tell it
	}
	if s := where(st, w.revision); s != w.said {
		w.said = s
		fmt.Fprintf(out, "%s: %s\n", w.model, s)
	}
}

// where says where revision rev stands in st, in a few words.
func where(st controlplane.RolloutStatus, rev string) string {
	info, ok := revisionInfo(st, rev)
	switch {
	case st.Model == "":
		return "not read yet"
	case !ok:
		return "revision " + rev + " is no longer kept"
	case info.Status == controlplane.RevisionPending:
		return "revision " + rev + " is waiting for a ready replica"
	case info.Status == controlplane.RevisionFailed:
		return "revision " + rev + " failed to start: " + info.Reason
	case st.Canary == rev && st.State != "":
		s := fmt.Sprintf("revision %s %s at step %d of %d", rev, st.State, st.Step, len(st.Policy.Steps))
		if st.Reason != "" {
			s += ": " + st.Reason
		}
		return s + "; traffic " + controlplane.FormatTraffic(st.Weights)
	}
	return fmt.Sprintf("revision %s serves without a rollout; traffic %s", rev, controlplane.FormatTraffic(st.Weights))
}

func revisionInfo(st controlplane.RolloutStatus, rev string) (controlplane.RevisionInfo, bool) {
	i := slices.IndexFunc(st.Revisions, func(r controlplane.RevisionInfo) bool { return r.Name == rev })
	if i < 0 {
		return controlplane.RevisionInfo{}, false
	}
	return st.Revisions[i], true
}

// rolloutVerdict judges whether revision rev's deployment is over in st:
// done without error once it serves as declared (its rollout promoted it,
// or it has no rollout and is ready); an error once it never will (its
// rollout rolled it back or was superseded, it failed to start, it is no
// longer kept); not done while it waits for a ready replica or its
// rollout progresses or is paused.
func rolloutVerdict(st controlplane.RolloutStatus, rev string) (done bool, err error) {
	info, ok := revisionInfo(st, rev)
	switch {
	case !ok:
		return true, fmt.Errorf("revision %s is no longer kept (revisions: %s)", rev, revisionNames(st))
	case info.Status == controlplane.RevisionFailed:
		return true, fmt.Errorf("revision %s failed to start: %s", rev, info.Reason)
	case info.Status == controlplane.RevisionPending:
		return false, nil
	case st.Canary != rev || st.State == "":
		// No rollout of its own: a model without a rollout policy, or
		// the stable revision's spec applied again.
		return true, nil
	}
	switch st.State {
	case controlplane.RolloutPromoted:
		return true, nil
	case controlplane.RolloutRolledBack:
		return true, fmt.Errorf("revision %s rolled back: %s", rev, st.Reason)
	case controlplane.RolloutSuperseded:
		return true, fmt.Errorf("revision %s was superseded: %s", rev, st.Reason)
	}
	return false, nil // progressing, paused
}

func revisionNames(st controlplane.RolloutStatus) string {
	var names []string
	for _, r := range st.Revisions {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}
