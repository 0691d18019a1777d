package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// fakeRuntimeEnv, set in a replica's environment, makes the test binary
// a runtime process instead of running tests: an OIP REST server that is
// always ready and answers every infer with a fixed status and a body
// naming its version. Its value is "version=V,status=S", and may add
// "unready" (it answers but never says ready) or "exit=N" (it exits with
// status N at once). It stands in for what cannot run here: a second
// version of a model, or a model server that is up but failing, or never
// comes up.
const fakeRuntimeEnv = "INFERGATE_FAKE_RUNTIME"

// fakeRuntimeCommand is the infergate.io/command of a fake runtime.
func fakeRuntimeCommand() string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return exe + " {{.HTTPPort}}"
}

func fakeRuntimeMain(spec, port string) {
	version, status, ready := "1", 200, http.StatusOK
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "version":
			version = v
		case "status":
			status, _ = strconv.Atoi(v)
		case "unready":
			ready = http.StatusServiceUnavailable
		case "exit":
			code, _ := strconv.Atoi(v)
			fmt.Fprintln(os.Stderr, "fake runtime: exiting as told, secret path /srv/secret/model.onnx")
			os.Exit(code)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/{what}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(ready) })
	mux.HandleFunc("GET /v2/models/{m}/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(ready) })
	mux.HandleFunc("GET /v2/models/{m}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"name":%q,"versions":[%q],"platform":"fake","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"version","datatype":"FP32","shape":[-1,1]}]}`, r.PathValue("m"), version)
	})
	mux.HandleFunc("POST /v2/models/{m}/infer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status != http.StatusOK {
			fmt.Fprintf(w, `{"error":"fake runtime version %s fails"}`, version)
			return
		}
		fmt.Fprintf(w, `{"model_name":%q,"model_version":%q,"outputs":[{"name":"version","datatype":"FP32","shape":[1,1],"data":[%s]}]}`, r.PathValue("m"), version, version)
	})
	if err := http.ListenAndServe("127.0.0.1:"+port, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
