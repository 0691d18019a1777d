//go:build long

package long

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// fakeRuntimeEnv, set in a replica's environment (the InferenceService's
// env), makes this test binary a runtime replica instead of running
// tests: an OIP REST server on 127.0.0.1:PORT (its last argument) for an
// iris-shaped model (input FP32 [-1,4], output probabilities FP32 [-1,3])
// that is always live and ready. Its value is the mode:
//
//   - "ok": every infer is answered well;
//   - "garbage": infers are answered in turn by each of garbageModes,
//     well-formed answers alternating with broken ones.
const fakeRuntimeEnv = "INFERGATE_LONG_FAKE_RUNTIME"

// garbageModes are the ways the fake runtime answers an infer in garbage
// mode, in the order it cycles through them.
var garbageModes = []string{
	"ok",
	"truncated", // Content-Length larger than the body, then close
	"ok",
	"wrong-shape", // 200, an output whose data do not fill its shape
	"ok",
	"invalid-json", // 200, a body that is not JSON
	"ok",
	"wrong-datatype", // 200, FP32 output with string data
	"ok",
	"not-http", // bytes that are not HTTP, then close
	"ok",
	"close", // close the connection without answering
	"ok",
	"headers-only", // status line and headers, then close
	"ok",
	"huge-length", // claims a 60 MiB body, sends 10 bytes, closes
	"ok",
	"empty-200", // 200 with an empty body
	"ok",
	"no-outputs", // 200, a response without outputs
}

// fakeCommand is the infergate.io/command of a fake runtime.
func fakeCommand() string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return exe + " {{.HTTPPort}}"
}

// fakeModel is an InferenceService served by fake runtime replicas in
// mode, with min..max replicas and a 10s timeout.
func fakeModel(name, mode string, min, max int) string {
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
  annotations:
    infergate.io/command: %q
spec:
  predictor:
    minReplicas: %d
    maxReplicas: %d
    timeout: 10
    model:
      modelFormat: {name: fake}
      env: [{name: %s, value: %q}]
`, name, fakeCommand(), min, max, fakeRuntimeEnv, mode)
}

const fakeOK = `{"model_name":%q,"model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.2,0.7]}]}`

// fakeRuntimeMain runs the fake runtime until it is killed; it returns
// the process's exit code.
func fakeRuntimeMain(mode string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "fake runtime: want the port as the last argument")
		return 2
	}
	port := args[len(args)-1]
	var n atomic.Uint64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/{what}", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /v2/models/{m}/ready", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /v2/models/{m}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"name":%q,"versions":["1"],"platform":"fake","inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,3]}]}`, r.PathValue("m"))
	})
	mux.HandleFunc("POST /v2/models/{m}/infer", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		m := "ok"
		if mode == "garbage" {
			m = garbageModes[(n.Add(1)-1)%uint64(len(garbageModes))]
		}
		fakeAnswer(w, m, r.PathValue("m"))
	})
	fmt.Fprintf(os.Stderr, "fake runtime (%s) listening on 127.0.0.1:%s\n", mode, port)
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fakeAnswer answers an infer the way mode says.
func fakeAnswer(w http.ResponseWriter, mode, model string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	switch mode {
	case "ok":
		fmt.Fprintf(w, fakeOK, model)
	case "wrong-shape":
		fmt.Fprintf(w, `{"model_name":%q,"outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.2]}]}`, model)
	case "invalid-json":
		fmt.Fprint(w, `{"model_name": "`+model+`", "outputs": [{"name": "probabilities", "datat`)
	case "wrong-datatype":
		fmt.Fprintf(w, `{"model_name":%q,"outputs":[{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":["a","b","c"]}]}`, model)
	case "empty-200":
		h.Set("Content-Length", "0")
	case "no-outputs":
		fmt.Fprintf(w, `{"model_name":%q}`, model)
	default:
		raw(w, mode, model)
	}
}

// raw answers below HTTP: modes that break the connection.
func raw(w http.ResponseWriter, mode, model string) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	body := fmt.Sprintf(fakeOK, model)
	switch mode {
	case "truncated":
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])
	case "not-http":
		fmt.Fprint(buf, "\x00\x01garbage that is not HTTP\r\n\r\n")
	case "close":
	case "headers-only":
		fmt.Fprint(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
	case "huge-length":
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model_n", 60<<20)
	}
	_ = buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	// Let the peer read what was written before the close.
	_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
}
