package modelserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

// copyDir copies the regular files under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, in); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// irisRepository returns a temporary repository holding a copy of the iris
// sample model (version 1).
func irisRepository(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, filepath.Join(samplesDir, "iris"), filepath.Join(dir, "iris"))
	return dir
}

// gate is a LoadFunc wrapper that holds the loads of the versions in hold
// until release is closed, announcing each on entered first.
type gate struct {
	hold    map[string]bool
	entered chan string
	release chan struct{}
	load    LoadFunc
}

func newGate(load LoadFunc, hold ...string) *gate {
	g := &gate{hold: map[string]bool{}, entered: make(chan string, 8), release: make(chan struct{}), load: load}
	for _, v := range hold {
		g.hold[v] = true
	}
	return g
}

func (g *gate) Load(src ModelSource, v VersionSource) (Model, error) {
	if g.hold[v.Version] {
		g.entered <- v.Version
		<-g.release
	}
	return g.load(src, v)
}

// repoServer serves the repository dir with load and waits for its start.
func repoServer(t *testing.T, dir string, opts Options) *Server {
	t.Helper()
	srcs, err := ScanRepository(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts.Models, opts.Repository, opts.Logger = srcs, dir, slog.New(slog.DiscardHandler)
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// receive returns the next value on ch, failing the test after a deadline.
func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// restIndex asks for the repository index over REST.
func restIndex(t *testing.T, s *Server, body string) []ModelIndex {
	t.Helper()
	ctx := do(s, "POST", "/v2/repository/index", body)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("index: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	var idx []ModelIndex
	if err := json.Unmarshal(ctx.Response.Body(), &idx); err != nil {
		t.Fatalf("index %s: %v", ctx.Response.Body(), err)
	}
	return idx
}

func checkIndex(t *testing.T, s *Server, body string, want []ModelIndex) {
	t.Helper()
	if diff := cmp.Diff(want, restIndex(t, s, body)); diff != "" {
		t.Errorf("index (-want +got):\n%s", diff)
	}
}

// expect sends a request and checks the status and a part of the body.
type expect struct {
	method, path, body string
	code               int
	contains           string
}

func check(t *testing.T, s *Server, steps ...expect) {
	t.Helper()
	for _, e := range steps {
		ctx := do(s, e.method, e.path, e.body)
		if got := ctx.Response.StatusCode(); got != e.code {
			t.Errorf("%s %s: status %d, want %d (%s)", e.method, e.path, got, e.code, ctx.Response.Body())
		}
		if !strings.Contains(string(ctx.Response.Body()), e.contains) {
			t.Errorf("%s %s: body %s\nwant it to contain %s", e.method, e.path, ctx.Response.Body(), e.contains)
		}
	}
}

const irisBody = `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`

func infer(path string, code int, contains string) expect {
	return expect{"POST", path, irisBody, code, contains}
}

func ready(path string, code int) expect { return expect{"GET", path, "", code, ""} }

// TestReloadKeepsOldVersionServing adds version 2 to a running model and
// loads it through the REST repository API while holding the load midway:
// version 1 answers and the index says LOADING until version 2 is ready;
// then a version policy of "all" serves both side by side; an unload makes
// the model unavailable, and a load brings it back.
func TestReloadKeepsOldVersionServing(t *testing.T) {
	dir := irisRepository(t)
	g := newGate(LoadDefault, "2")
	s := repoServer(t, dir, Options{Load: g.Load})
	checkIndex(t, s, "", []ModelIndex{{Name: "iris", Version: "1", State: StateReady}})

	copyDir(t, filepath.Join(dir, "iris", "1"), filepath.Join(dir, "iris", "2"))
	loaded := make(chan *fasthttp.RequestCtx, 1)
	go func() { loaded <- do(s, "POST", "/v2/repository/models/iris/load", "") }()
	receive(t, "the load of version 2 to start", g.entered)

	checkIndex(t, s, "", []ModelIndex{
		{Name: "iris", Version: "1", State: StateReady},
		{Name: "iris", Version: "2", State: StateLoading},
	})
	checkIndex(t, s, `{"ready":true}`, []ModelIndex{{Name: "iris", Version: "1", State: StateReady}})
	check(t, s,
		infer("/v2/models/iris/infer", 200, `"model_version":"1"`),
		infer("/v2/models/iris/versions/2/infer", 503, `model \"iris\" version 2 is loading`),
		ready("/v2/models/iris/ready", 200),
		ready("/v2/models/iris/versions/2/ready", 503),
		ready("/v2/health/ready", 200),
	)

	close(g.release)
	if ctx := receive(t, "the load to finish", loaded); ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 0 {
		t.Fatalf("load: %d %q, want 200 and no body", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	checkIndex(t, s, "", []ModelIndex{
		{Name: "iris", Version: "1", State: StateUnavailable, Reason: ReasonUnloaded},
		{Name: "iris", Version: "2", State: StateReady},
	})
	check(t, s,
		infer("/v2/models/iris/infer", 200, `"model_version":"2"`),
		infer("/v2/models/iris/versions/1/infer", 503, `model \"iris\" version 1 is unloaded`),
		infer("/v2/models/iris/versions/3/infer", 404, `model \"iris\" has no version \"3\"; serving: 2`),
		expect{"GET", "/v2/models/iris", "", 200, `"versions":["2"]`},
	)

	// Serve both versions side by side; version 2, unchanged, is kept.
	writeFile(t, filepath.Join(dir, "iris", "config.json"), `{"name":"iris","platform":"onnx_onnxv1","max_batch_size":64,"version_policy":{"all":true}}`)
	check(t, s, expect{"POST", "/v2/repository/models/iris/load", `{"parameters":{"unknown":1}}`, 200, ""})
	checkIndex(t, s, "", []ModelIndex{
		{Name: "iris", Version: "1", State: StateReady},
		{Name: "iris", Version: "2", State: StateReady},
	})
	check(t, s,
		infer("/v2/models/iris/versions/1/infer", 200, `"model_version":"1"`),
		infer("/v2/models/iris/versions/2/infer", 200, `"model_version":"2"`),
		infer("/v2/models/iris/infer", 200, `"model_version":"2"`),
		expect{"GET", "/v2/models/iris/versions/1", "", 200, `"versions":["1","2"]`},
	)
	if n := len(g.entered); n != 0 {
		t.Errorf("%d held loads ran again; an unchanged version must be kept", n)
	}

	check(t, s, expect{"POST", "/v2/repository/models/iris/unload", "", 200, ""})
	checkIndex(t, s, "", []ModelIndex{
		{Name: "iris", Version: "1", State: StateUnavailable, Reason: ReasonUnloaded},
		{Name: "iris", Version: "2", State: StateUnavailable, Reason: ReasonUnloaded},
	})
	checkIndex(t, s, `{"ready":true}`, []ModelIndex{})
	check(t, s,
		ready("/v2/models/iris/ready", 503),
		infer("/v2/models/iris/infer", 503, `model \"iris\" is unloaded`),
		ready("/v2/health/ready", 200), // an unloaded model does not make the server unready
		expect{"POST", "/v2/repository/models/iris/unload", "", 200, ""},
		expect{"POST", "/v2/repository/models/iris/load", "", 200, ""},
		infer("/v2/models/iris/versions/1/infer", 200, `"model_version":"1"`),
	)
}

// TestLoadNewModelDirectory loads a model whose directory appeared after
// start, found by its config's name.
func TestLoadNewModelDirectory(t *testing.T) {
	dir := irisRepository(t)
	s := repoServer(t, dir, Options{})
	copyDir(t, filepath.Join(dir, "iris"), filepath.Join(dir, "flowers"))
	writeFile(t, filepath.Join(dir, "flowers", "config.json"), `{"name":"petals"}`)
	writeFile(t, filepath.Join(dir, "broken", "config.json"), `{"nmae":"typo"}`)
	checkIndex(t, s, "", []ModelIndex{
		{Name: "broken", State: StateUnavailable, Reason: `modelserver: model "broken": ` + filepath.Join(dir, "broken", "config.json") + `: json: unknown field "nmae"`},
		{Name: "iris", Version: "1", State: StateReady},
		{Name: "petals", State: StateUnavailable, Reason: ReasonNotLoaded},
	})
	check(t, s,
		expect{"GET", "/v2/models/petals/ready", "", 404, `model \"petals\" not found`},
		expect{"POST", "/v2/repository/models/nope/load", "", 404, `model \"nope\" not found in repository`},
		expect{"POST", "/v2/repository/models/nope/unload", "", 404, `model \"nope\" not found in repository`},
		expect{"POST", "/v2/repository/models/broken/load", "", 400, `unknown field \"nmae\"`},
		expect{"POST", "/v2/repository/models/petals/unload", "", 200, ""}, // in the repository, never loaded
		expect{"POST", "/v2/repository/models/petals/load", "", 200, ""},
		infer("/v2/models/petals/infer", 200, `"model_name":"petals","model_version":"1"`),
	)
	checkIndex(t, s, `{"ready":true}`, []ModelIndex{
		{Name: "iris", Version: "1", State: StateReady},
		{Name: "petals", Version: "1", State: StateReady},
	})
}

func TestRepositoryRESTErrors(t *testing.T) {
	s := repoServer(t, irisRepository(t), Options{})
	check(t, s,
		expect{"GET", "/v2/repository/index", "", 405, "use POST"},
		expect{"POST", "/v2/repository/indexes", "", 404, "no repository endpoint"},
		expect{"POST", "/v2/repository/models/iris/reload", "", 404, "no repository endpoint"},
		expect{"POST", "/v2/repository/store/index", "", 501, `repository \"store\": naming a repository is not supported`},
		expect{"POST", "/v2/repository/store/models/iris/load", "", 501, "naming a repository is not supported"},
		expect{"POST", "/v2/repository/index", "{", 400, "repository request body"},
		expect{"POST", "/v2/repository/models/iris/load", `{"parameters":{"config":"{}"}}`, 501, `load parameter \"config\" is not supported`},
		expect{"POST", "/v2/repository/models/iris/load", `{"parameters":{"file:1/model.onnx":"AAAA"}}`, 501, "is not supported"},
		expect{"POST", "/v2/repository/index", `{"ready":false,"other":1}`, 200, `"name":"iris"`},
		expect{"GET", "/v2", "", 200, `"extensions":["binary_tensor_data","model_repository"]`},
	)

	off := repoServer(t, irisRepository(t), Options{DisableRepositoryAPI: true})
	check(t, off,
		expect{"POST", "/v2/repository/index", "", 501, "repository extension is disabled"},
		expect{"POST", "/v2/repository/models/iris/unload", "", 501, "disabled"},
		expect{"GET", "/v2", "", 200, `"extensions":["binary_tensor_data"]`},
		infer("/v2/models/iris/infer", 200, `"model_version":"1"`),
	)
}

// TestStartupModels starts with no model loaded: the models are listed and
// answer "not loaded" until a load request.
func TestStartupModels(t *testing.T) {
	s := repoServer(t, irisRepository(t), Options{StartupModels: []string{}})
	checkIndex(t, s, "", []ModelIndex{{Name: "iris", State: StateUnavailable, Reason: ReasonNotLoaded}})
	check(t, s,
		ready("/v2/health/ready", 200),
		ready("/v2/models/iris/ready", 503),
		infer("/v2/models/iris/infer", 503, `model \"iris\" is not loaded`),
		expect{"POST", "/v2/repository/models/iris/load", "", 200, ""},
		infer("/v2/models/iris/infer", 200, `"model_version":"1"`),
	)
	if _, err := New(Options{Models: []ModelSource{{Name: "a", Versions: []VersionSource{{Version: "1"}}}}, StartupModels: []string{"b"}}); err == nil {
		t.Error("New accepted a startup model it does not have")
	}
}

// TestSimulatedModel serves a simulated model from a config without any
// model file.
func TestSimulatedModel(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "gpu", "config.json"), `{
		"max_batch_size": 8,
		"simulate": {
			"latency_ms": 0, "per_item_ms": 0, "slots": 2,
			"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
			"outputs": [{"name": "y", "datatype": "INT32", "shape": [-1, 3]}]
		}
	}`)
	s := repoServer(t, dir, Options{})
	check(t, s,
		expect{"GET", "/v2/models/gpu", "", 200, `{"name":"gpu","versions":["1"],"platform":"infergate_simulated","inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]}],"outputs":[{"name":"y","datatype":"INT32","shape":[-1,3]}]}`},
		expect{"POST", "/v2/models/gpu/infer", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[1,2,3,4]}]}`, 200,
			`"outputs":[{"name":"y","shape":[2,3],"datatype":"INT32","data":[3,3,3,7,7,7]}]`},
		expect{"POST", "/v2/models/gpu/infer", `{"inputs":[{"name":"x","datatype":"FP32","shape":[9,2],"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18]}]}`, 400, "exceeds max_batch_size 8"},
	)

	writeFile(t, filepath.Join(dir, "bad", "config.json"), `{"simulate": {"latency_ms": -1, "inputs": [], "outputs": []}}`)
	if _, err := ScanModel("bad", filepath.Join(dir, "bad")); err == nil || !strings.Contains(err.Error(), "simulate.latency_ms: -1") {
		t.Errorf("ScanModel of a bad simulate config = %v, want the field named", err)
	}
}

func TestVersionPolicy(t *testing.T) {
	versions := []VersionSource{{Version: "1"}, {Version: "2"}, {Version: "10"}}
	tests := []struct {
		name    string
		config  string
		want    []string
		wantErr string
	}{
		{"default is the latest", `{}`, []string{"10"}, ""},
		{"latest 2", `{"version_policy":{"latest":2}}`, []string{"2", "10"}, ""},
		{"latest more than there are", `{"version_policy":{"latest":5}}`, []string{"1", "2", "10"}, ""},
		{"all", `{"version_policy":{"all":true}}`, []string{"1", "2", "10"}, ""},
		{"specific", `{"version_policy":{"specific":[10,1]}}`, []string{"1", "10"}, ""},
		{"specific missing", `{"version_policy":{"specific":[3]}}`, nil, "no directory for version 3"},
		{"none set", `{"version_policy":{}}`, nil, "set exactly one"},
		{"two set", `{"version_policy":{"latest":1,"all":true}}`, nil, "set exactly one"},
		{"negative latest", `{"version_policy":{"latest":-1}}`, nil, "version_policy.latest: -1"},
		{"unknown field", `{"version_policy":{"newest":1}}`, nil, `unknown field "newest"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "config.json"), tc.config)
			var cfg ModelConfig
			err := readConfig(filepath.Join(dir, "config.json"), &cfg)
			var got []VersionSource
			if err == nil {
				got, err = cfg.VersionPolicy.Select(versions)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, v := range got {
				names = append(names, v.Version)
			}
			if diff := cmp.Diff(tc.want, names); diff != "" {
				t.Errorf("selected (-want +got):\n%s", diff)
			}
		})
	}
}
