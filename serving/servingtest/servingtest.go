// Package servingtest runs fake OIP runtimes for the tests that start
// real runtime processes (serving's and cmd/infergate's). A test binary
// whose TestMain calls RunRuntime first becomes, when a supervisor starts
// it as a revision's runtime (the infergate.io/command Command returns)
// with one of the environment variables below set, a small OIP REST
// server on 127.0.0.1 instead of running tests. It stands in for what
// cannot run in a test: a second version of a model, a model server that
// is up but failing or never comes up, a slow one, and one that holds a
// request until the test lets it go.
//
// It is for tests only and imports nothing of infergate's.
package servingtest

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// FakeEnv, set in a replica's environment, makes it a runtime that answers
// every infer with a fixed status and a body naming its version. Its
// value is "version=V,status=S", to which may be added:
//   - "unready": it answers but never says ready;
//   - "exit=N": it exits with status N at once, after a log line naming a
//     path no client may see;
//   - "hold=URL": before it answers an infer it GETs URL (on loopback),
//     which the test answers when it lets the request go.
const FakeEnv = "INFERGATE_FAKE_RUNTIME"

// SlowEnv, set in a replica's environment, makes it a runtime that holds
// each infer request for the duration its value gives and answers with
// the most infer requests it has had in flight at once, as the INT64
// output "max_in_flight".
const SlowEnv = "INFERGATE_SLOW_RUNTIME"

// Command returns the infergate.io/command of a fake runtime: the running
// test binary, given the port to serve on.
func Command() string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return exe + " {{.HTTPPort}}"
}

// RunRuntime serves the runtime FakeEnv or SlowEnv asks for on the port
// the last argument names, and exits the process when it stops; without
// either it returns at once. Call it first in TestMain.
func RunRuntime() {
	port := os.Args[len(os.Args)-1]
	var h http.Handler
	if spec := os.Getenv(FakeEnv); spec != "" {
		if code, ok := exitCode(spec); ok {
			fmt.Fprintln(os.Stderr, "fake runtime: exiting as told, secret path /srv/secret/model.onnx")
			os.Exit(code)
		}
		h = Handler(spec)
	} else if hold := os.Getenv(SlowEnv); hold != "" {
		h = slowRuntime(hold)
	} else {
		return
	}
	if err := http.ListenAndServe("127.0.0.1:"+port, h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// exitCode returns the N of an "exit=N" in a FakeEnv value.
func exitCode(spec string) (int, bool) {
	for _, kv := range strings.Split(spec, ",") {
		if k, v, _ := strings.Cut(kv, "="); k == "exit" {
			code, _ := strconv.Atoi(v)
			return code, true
		}
	}
	return 0, false
}

// Handler returns the OIP REST handler of the fake runtime a FakeEnv value
// describes, "exit=N" aside, to serve in the test's own process: a
// runtime at a URL (infergate.io/endpoints).
func Handler(spec string) http.Handler {
	version, status, ready, hold := "1", 200, http.StatusOK, ""
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "version":
			version = v
		case "status":
			status, _ = strconv.Atoi(v)
		case "unready":
			ready = http.StatusServiceUnavailable
		case "hold":
			hold = v
		}
	}
	// A held request waits at most this long for the test.
	holdClient := &http.Client{Timeout: 2 * time.Minute}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/{what}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(ready) })
	mux.HandleFunc("GET /v2/models/{m}/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(ready) })
	mux.HandleFunc("GET /v2/models/{m}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"name":%q,"versions":[%q],"platform":"fake","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"version","datatype":"FP32","shape":[-1,1]}]}`, r.PathValue("m"), version)
	})
	mux.HandleFunc("POST /v2/models/{m}/infer", func(w http.ResponseWriter, r *http.Request) {
		code := status
		if hold != "" {
			resp, err := holdClient.Get(hold)
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				code = http.StatusInternalServerError
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code != http.StatusOK {
			fmt.Fprintf(w, `{"error":"fake runtime version %s fails"}`, version)
			return
		}
		fmt.Fprintf(w, `{"model_name":%q,"model_version":%q,"outputs":[{"name":"version","datatype":"FP32","shape":[1,1],"data":[%s]}]}`, r.PathValue("m"), version, version)
	})
	return mux
}

func slowRuntime(hold string) http.Handler {
	d, err := time.ParseDuration(hold)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var inFlight, most atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/{what}", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /v2/models/{m}/ready", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /v2/models/{m}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"name":%q,"versions":["1"],"platform":"slow","inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]}],"outputs":[{"name":"max_in_flight","datatype":"INT64","shape":[1]}]}`, r.PathValue("m"))
	})
	mux.HandleFunc("POST /v2/models/{m}/infer", func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(d) // the model's work
		inFlight.Add(-1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"model_name":%q,"outputs":[{"name":"max_in_flight","datatype":"INT64","shape":[1],"data":[%d]}]}`, r.PathValue("m"), most.Load())
	})
	return mux
}
