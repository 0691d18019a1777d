package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/serving"
)

// fakeModel is an InferenceService for model m served by fake runtime
// processes (see fakeRuntimeMain) answering with version v and status;
// extra goes under spec.predictor (canaryTrafficPercent...).
func fakeModel(m, v string, status int, extra string) string {
	return fakeModelAnnotated(m, v, status, extra, "")
}

// fakeModelAnnotated is fakeModel with extra annotations (indented lines).
func fakeModelAnnotated(m, v string, status int, extra, annotations string) string {
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
  annotations:
    infergate.io/command: %q
%sspec:
  predictor:
%s    model:
      modelFormat: {name: fake}
      env: [{name: %s, value: "version=%s,status=%d"}]
`, m, fakeRuntimeCommand(), annotations, extra, fakeRuntimeEnv, v, status)
}

// fakeAnswer is a fake runtime's answer through the gateway.
type fakeAnswer struct {
	code              int
	version, revision string // the runtime's model_version, the gateway's X-Model-Revision
	body              string
}

// inferFake sends one request to a fake runtime's model at path (under
// the gateway at rest). It does not fail the test, so load loops may call
// it from their goroutines.
func inferFake(rest, path string, header map[string]string) (fakeAnswer, error) {
	req, err := http.NewRequest("POST", "http://"+rest+path, strings.NewReader(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`))
	if err != nil {
		return fakeAnswer{}, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fakeAnswer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		ModelVersion string `json:"model_version"`
	}
	_ = json.Unmarshal(b, &out)
	return fakeAnswer{resp.StatusCode, out.ModelVersion, resp.Header.Get("X-Model-Revision"), string(b)}, nil
}

// inferVersion is inferFake for the test's goroutine: the status, the
// version that answered ("" on error) and the body.
func inferVersion(t *testing.T, rest, path string, header map[string]string) (int, string, string) {
	t.Helper()
	a, err := inferFake(rest, path, header)
	if err != nil {
		t.Fatal(err)
	}
	return a.code, a.version, a.body
}

// revisionRows reads GET /api/v1/models for model m.
func revisionRows(t *testing.T, admin, m string) []controlplane.RevisionRow {
	t.Helper()
	var rows []controlplane.RevisionRow
	if err := adminCall(admin, "GET", "/api/v1/models", nil, &rows); err != nil {
		t.Fatal(err)
	}
	var out []controlplane.RevisionRow
	for _, r := range rows {
		if r.Name == m {
			out = append(out, r)
		}
	}
	return out
}

// traffic is a model's split as "rev=pct,..." in revision order.
func traffic(rows []controlplane.RevisionRow) string {
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%s=%d", r.Revision, r.Traffic))
	}
	return strings.Join(parts, ",")
}

// waitTraffic waits (bounded) until model m's split is want.
func waitTraffic(t *testing.T, admin, m, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		if got = traffic(revisionRows(t, admin, m)); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("traffic of %s is %s, want %s", m, got, want)
}

// versionShare sends n requests and returns the share answered by version v;
// every request must succeed.
func versionShare(t *testing.T, rest, m, v string, n int) float64 {
	t.Helper()
	hits := 0
	for range n {
		code, got, body := inferVersion(t, rest, "/v2/models/"+m+"/infer", nil)
		if code != 200 {
			t.Fatalf("request failed: %d %s", code, body)
		}
		if got == v {
			hits++
		}
	}
	return float64(hits) / float64(n)
}

// TestCanaryThroughConfigAndApply walks a canary through `infergate serve
// -config DIR` reloads and `infergate apply`: a changed declaration makes
// revision 2 with canaryTrafficPercent of the traffic, revisions are
// pinned by version path and header, a bad document changes nothing, 0
// rolls back and removing the field promotes.
func TestCanaryThroughConfigAndApply(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "m.yaml")
	write := func(yaml string) {
		t.Helper()
		// Write and rename, so the watcher never reads half a file.
		tmp := filepath.Join(dir, ".m.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(fakeModel("m", "1", 200, ""))
	p := startServe(t, "/v2/models/m/ready", "-config", dir, "-data-dir", t.TempDir())
	rest, grpcAddr, admin, logs := p.rest, p.grpc, p.admin, p.logs
	waitTraffic(t, admin, "m", "m-00001=100")

	write(fakeModel("m", "2", 200, "    canaryTrafficPercent: 20\n"))
	waitTraffic(t, admin, "m", "m-00001=80,m-00002=20")
	if share := versionShare(t, rest, "m", "2", 600); math.Abs(share-0.2) > 0.07 {
		t.Errorf("the 20%% canary answered %.1f%% of requests", 100*share)
	}
	for _, tc := range []struct {
		path   string
		header map[string]string
		want   string
	}{
		{"/v2/models/m/versions/1/infer", nil, "1"},
		{"/v2/models/m/versions/m-00002/infer", nil, "2"},
		{"/v2/models/m/infer", map[string]string{"X-Model-Revision": "latest"}, "2"},
		// KServe's prev: the revision rolled out before the latest.
		{"/v2/models/m/infer", map[string]string{"X-Model-Revision": "prev"}, "1"},
		{"/v2/models/m/versions/7/infer", nil, ""},
	} {
		code, got, body := inferVersion(t, rest, tc.path, tc.header)
		switch {
		case tc.want == "" && (code != 404 || !strings.Contains(body, "revisions: m-00001 (1), m-00002 (2); tags: latest=m-00002")):
			t.Errorf("%s %v: %d %s, want 404 listing the revisions", tc.path, tc.header, code, body)
		case tc.want != "" && (code != 200 || got != tc.want):
			t.Errorf("%s %v: %d version %q, want version %s", tc.path, tc.header, code, got, tc.want)
		}
	}

	// gRPC pins by model_version or x-model-revision metadata, and hears
	// which revision answered in the header metadata.
	grpcc := dialGRPC(t, grpcAddr)
	for _, tc := range []struct {
		version, pin, want string
	}{
		{"2", "", "m-00002"},
		{"", "prev", "m-00001"},
		{"m-00001", "latest", "m-00001"}, // model_version wins
	} {
		ctx := context.Background()
		if tc.pin != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-model-revision", tc.pin)
		}
		var hdr metadata.MD
		resp, err := grpcc.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m", ModelVersion: tc.version, Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}},
		}}, grpc.Header(&hdr))
		if err != nil {
			t.Errorf("gRPC version %q pin %q: %v", tc.version, tc.pin, err)
			continue
		}
		if got := hdr.Get("x-model-revision"); len(got) != 1 || got[0] != tc.want || resp.GetModelVersion() != tc.want[len(tc.want)-1:] {
			t.Errorf("gRPC version %q pin %q: answered by %v with model_version %q, want %s", tc.version, tc.pin, got, resp.GetModelVersion(), tc.want)
		}
	}
	var out []byte
	_, err := grpcc.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "m", ModelVersion: "9"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "revisions: m-00001 (1), m-00002 (2)") {
		t.Errorf("gRPC unknown revision: %v", err)
	}

	// A bad document is logged and leaves the routes as they were.
	write(fakeModel("m", "3", 200, "    canaryTrafficPercent: 150\n"))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "config not applied") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "m.yaml: document 1: spec.predictor.canaryTrafficPercent: 150 is not between 0 and 100") {
		t.Fatalf("the log does not name the bad field:\n%s", l)
	}
	waitTraffic(t, admin, "m", "m-00001=80,m-00002=20")

	// infergate apply: canaryTrafficPercent 0 rolls back to the stable
	// revision; the canary stays addressable.
	applied := filepath.Join(t.TempDir(), "rollback.yaml")
	if err := os.WriteFile(applied, []byte(fakeModel("m", "2", 200, "    canaryTrafficPercent: 0\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = p.cli("apply", "-f", applied, "-admin", admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "inferenceservice/m configured; traffic m-00001 100%") {
		t.Fatalf("infergate apply: %v\n%s", err, out)
	}
	waitTraffic(t, admin, "m", "m-00001=100,m-00002=0")
	if share := versionShare(t, rest, "m", "1", 100); share != 1 {
		t.Errorf("after the rollback version 1 answered %.0f%%", 100*share)
	}
	if code, got, _ := inferVersion(t, rest, "/v2/models/m/versions/latest/infer", nil); code != 200 || got != "2" {
		t.Errorf("the rolled back revision is not addressable: %d %q", code, got)
	}

	// A bad apply names the file and changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(fakeModel("m", "2", 200, "    minReplicas: -1\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = p.cli("apply", "-f", bad, "-admin", admin).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad.yaml: document 1: spec.predictor.minReplicas: -1") {
		t.Errorf("a bad apply: %v\n%s", err, out)
	}

	// Removing canaryTrafficPercent promotes the latest revision.
	write(fakeModel("m", "2", 200, ""))
	waitTraffic(t, admin, "m", "m-00001=0,m-00002=100")
	if share := versionShare(t, rest, "m", "2", 100); share != 1 {
		t.Errorf("after the promotion version 2 answered %.0f%%", 100*share)
	}
	rows := revisionRows(t, admin, "m")
	if len(rows) != 2 || strings.Join(rows[0].Tags, ",") != "prev" || strings.Join(rows[1].Tags, ",") != "latest" {
		t.Errorf("after the promotion the revisions are %+v", rows)
	}
}

// TestCanaryExampleManifests checks the README's walkthrough files: both
// parse, the second makes revision 2 of iris, whose declared rollout
// starts once it is ready.
func TestCanaryExampleManifests(t *testing.T) {
	dep, err := controlplane.New(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{"iris.yaml", "iris-v2.yaml"} {
		models, err := config.LoadPath(filepath.Join("../../examples/canary", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := serving.CheckRuntimes(models, true); err != nil {
			t.Fatal(err)
		}
		ch, err := dep.Apply(models, false)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("iris-%05d", i+1)
		if len(ch.Models) != 1 || ch.Models[0].Revision != want {
			t.Fatalf("%s: %+v, want revision %s", f, ch, want)
		}
		if err := dep.MarkReady(want); err != nil {
			t.Fatal(err)
		}
	}
	st, err := dep.RolloutStatus("iris")
	if err != nil || st.State != controlplane.RolloutProgressing || st.Weights["iris-00002"] != 10 {
		t.Fatalf("rollout after iris-v2.yaml: %+v, %v", st, err)
	}
}
