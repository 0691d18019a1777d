package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestGatewayToKServeV1Runtime declares a model served by a KServe v1
// runtime at a URL and calls it with OIP through `infergate gateway`.
func TestGatewayToKServeV1Runtime(t *testing.T) {
	v1 := listen(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models/rowsum", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"name":"rowsum","ready":true}`)
	})
	mux.HandleFunc("POST /v1/models/rowsum:predict", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Instances [][]float64 }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":%q}`, err.Error())
			return
		}
		preds := make([]float64, len(req.Instances))
		for i, row := range req.Instances {
			for _, v := range row {
				preds[i] += v
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"predictions": preds})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(v1) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	yaml := fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: rowsum
  annotations:
    infergate.io/endpoints: "http://%s"
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      protocolVersion: v1
`, v1.Addr())
	if err := os.WriteFile(filepath.Join(dir, "rowsum.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	rest := startInfergate(t, "gateway", "-config", dir).rest
	waitHTTP(t, "http://"+rest+"/v2/models/rowsum/ready", 30*time.Second)
	code, resp := postJSON(t, "http://"+rest+"/v2/models/rowsum/infer",
		[]byte(`{"id":"v1","inputs":[{"name":"x","datatype":"FP32","shape":[2,3],"data":[1,2,3,4,5,6]}]}`), nil)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, resp.Error)
	}
	if resp.ID != "v1" || len(resp.Outputs) != 1 || fmt.Sprint(resp.Outputs[0].Shape) != "[2]" {
		t.Fatalf("response = %+v", resp)
	}
	assertClose(t, "predictions", floatsOf(t, resp.Outputs[0].Data), []float64{6, 15}, 1e-6)
	code, resp = postJSON(t, "http://"+rest+"/v2/models/rowsum/infer",
		[]byte(`{"inputs":[{"name":"a","datatype":"FP32","shape":[1],"data":[1]},{"name":"b","datatype":"FP32","shape":[1],"data":[1]}]}`), nil)
	if code != http.StatusBadRequest {
		t.Errorf("two inputs to a v1 runtime: status %d (%s), want 400", code, resp.Error)
	}
	mustContain(t, "error", resp.Error, "one input tensor")
}
