package v1beta1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/config"
	v1beta1 "github.com/infergate/infergate/controlplane/k8s/apis/serving/v1beta1"
)

// acceptedDirs hold InferenceService files both config and the CRD must
// accept: the repository's examples, config's own valid test files, and
// testdata here (every field set).
var acceptedDirs = []string{moduleDir + "examples", moduleDir + "config/testdata/valid", "testdata"}

// TestCRDIsValid runs the API server's validation of a CRD on the
// generated one: a structural schema, CEL rules that compile and fit the
// cost budget, printer columns and subresources.
func TestCRDIsValid(t *testing.T) {
	c := loadCRD(t)
	if errs := apiextensionsvalidation.ValidateCustomResourceDefinition(context.Background(), c.crd); len(errs) > 0 {
		for _, e := range errs {
			t.Error(e)
		}
	}
	if got, want := c.crd.Spec.Group, v1beta1.GroupName; got != want {
		t.Errorf("group %q, want %q", got, want)
	}
	if got, want := c.crd.Spec.Names.Kind, v1beta1.Kind; got != want {
		t.Errorf("kind %q, want %q", got, want)
	}
	if got, want := c.crd.Spec.Names.Plural, v1beta1.Resource; got != want {
		t.Errorf("plural %q, want %q", got, want)
	}
	if got := c.crd.Spec.Names.ShortNames; len(got) != 1 || got[0] != "isvc" {
		t.Errorf("short names %q, want [isvc]", got)
	}
	if p := c.crd.Spec.PreserveUnknownFields; p != nil && *p {
		t.Error("spec.preserveUnknownFields is set: unknown fields would be kept, not refused")
	}
}

// TestPrinterColumns checks kubectl's columns are KServe's.
func TestPrinterColumns(t *testing.T) {
	c := loadCRD(t)
	var got []string
	for _, col := range c.crd.Spec.Versions[0].AdditionalPrinterColumns {
		got = append(got, col.Name+" "+col.Type+" "+col.JSONPath)
	}
	if len(got) == 0 {
		for _, col := range c.crd.Spec.AdditionalPrinterColumns {
			got = append(got, col.Name+" "+col.Type+" "+col.JSONPath)
		}
	}
	want := []string{
		"URL string .status.url",
		"Ready string .status.conditions[?(@.type=='Ready')].status",
		"Prev integer .status.components.predictor.traffic[?(@.tag=='prev')].percent",
		"Latest integer .status.components.predictor.traffic[?(@.latestRevision==true)].percent",
		"PrevRolledoutRevision string .status.components.predictor.traffic[?(@.tag=='prev')].revisionName",
		"LatestReadyRevision string .status.components.predictor.traffic[?(@.latestRevision==true)].revisionName",
		"Age date .metadata.creationTimestamp",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("printer columns:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAcceptedManifests: every InferenceService under examples/ (and
// config's valid files, and testdata here) is accepted by the CRD, as
// config accepts it.
func TestAcceptedManifests(t *testing.T) {
	c := loadCRD(t)
	docs := inferenceServiceFiles(t, acceptedDirs...)
	examples := 0
	for _, doc := range docs {
		if strings.HasPrefix(doc.name, "examples/") {
			examples++
		}
		t.Run(doc.name, func(t *testing.T) {
			if _, err := config.Parse(doc.name, doc.yaml, ""); err != nil {
				t.Fatalf("config refuses it, so it proves nothing here: %v", err)
			}
			for _, msg := range c.validate(doc.obj) {
				t.Error(msg)
			}
		})
	}
	// The walk must have found the examples the README walks through.
	if examples < 5 {
		t.Errorf("found %d InferenceServices under examples/, want at least 5", examples)
	}
}

// base is the smallest InferenceService both config and the CRD accept.
const base = `
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    model:
      modelFormat:
        name: onnx
      storageUri: models/iris
`

// edit is a change to base: set path to value, or remove it when value is
// the remove sentinel. Paths are dotted, from the root.
type edit struct {
	path  string
	value any
}

var remove = new(struct{})

// manifest returns base with the edits applied, as an object and as YAML.
func manifest(t *testing.T, edits ...edit) (map[string]any, []byte) {
	t.Helper()
	obj, err := decodeObject([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		fields := strings.Split(e.path, ".")
		if e.value == remove {
			unstructured.RemoveNestedField(obj, fields...)
			continue
		}
		// Round-trip the value through JSON so that it has the types a
		// decoded request has (int64, []any, map[string]any).
		j, err := json.Marshal(e.value)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := utiljson.Unmarshal(j, &v); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(obj, v, fields...); err != nil {
			t.Fatal(err)
		}
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return obj, y
}

// TestRefusedManifests: what config refuses with a field's name, the API
// server refuses through the CRD, naming the same field.
func TestRefusedManifests(t *testing.T) {
	c := loadCRD(t)
	const p = "spec.predictor."
	long := strings.Repeat("a", 64)
	cases := []struct {
		name  string
		edits []edit
		field string // named by both
	}{
		{"negative minReplicas", []edit{{p + "minReplicas", -1}}, p + "minReplicas"},
		{"minReplicas not a number", []edit{{p + "minReplicas", "one"}}, p + "minReplicas"},
		{"negative maxReplicas", []edit{{p + "maxReplicas", -1}}, p + "maxReplicas"},
		{"maxReplicas under minReplicas", []edit{{p + "minReplicas", 3}, {p + "maxReplicas", 2}}, p + "maxReplicas"},
		{"scaleTarget zero", []edit{{p + "scaleTarget", 0}}, p + "scaleTarget"},
		{"scaleMetric unknown", []edit{{p + "scaleMetric", "gpu"}}, p + "scaleMetric"},
		{"negative containerConcurrency", []edit{{p + "containerConcurrency", -1}}, p + "containerConcurrency"},
		{"timeout zero", []edit{{p + "timeout", 0}}, p + "timeout"},
		{"timeout over a day", []edit{{p + "timeout", 86401}}, p + "timeout"},
		{"canaryTrafficPercent 101", []edit{{p + "canaryTrafficPercent", 101}}, p + "canaryTrafficPercent"},
		{"negative canaryTrafficPercent", []edit{{p + "canaryTrafficPercent", -1}}, p + "canaryTrafficPercent"},
		{"model missing", []edit{{p + "model", remove}}, p + "model"},
		{"modelFormat.name missing", []edit{{p + "model.modelFormat.name", remove}}, p + "model.modelFormat.name"},
		{"modelFormat.name empty", []edit{{p + "model.modelFormat.name", ""}}, p + "model.modelFormat.name"},
		{"unknown field under predictor.model", []edit{{p + "model.image", "kserve/sklearnserver"}}, p + "model.image"},
		{"unknown field under predictor", []edit{{p + "logger", map[string]any{"mode": "all"}}}, p + "logger"},
		{"unknown field under spec", []edit{{"spec.transformer", map[string]any{}}}, "spec.transformer"},
		{"protocolVersion grpc-v1", []edit{{p + "model.protocolVersion", "grpc-v1"}}, p + "model.protocolVersion"},
		{"protocolVersion unknown", []edit{{p + "model.protocolVersion", "v3"}}, p + "model.protocolVersion"},
		{"env without a name", []edit{{p + "model.env", []any{map[string]any{"value": "1"}}}}, p + "model.env[0].name"},
		{"env from a secret", []edit{{p + "model.env", []any{map[string]any{"name": "KEY", "valueFrom": map[string]any{}}}}}, p + "model.env[0].valueFrom"},
		{"batcher maxBatchSize zero", []edit{{p + "batcher.maxBatchSize", 0}}, p + "batcher.maxBatchSize"},
		{"batcher maxLatency zero", []edit{{p + "batcher.maxLatency", 0}}, p + "batcher.maxLatency"},
		{"batcher timeout zero", []edit{{p + "batcher.timeout", 0}}, p + "batcher.timeout"},
		{"batcher preferred size zero", []edit{{p + "batcher.preferredBatchSizes", []int{0}}}, p + "batcher.preferredBatchSizes[0]"},
		{"batcher preferred size twice", []edit{{p + "batcher.preferredBatchSizes", []int{4, 4}}}, p + "batcher.preferredBatchSizes[1]"},
		{"batcher preferred size over default max", []edit{{p + "batcher.preferredBatchSizes", []int{33}}}, p + "batcher.preferredBatchSizes"},
		{"batcher preferred size over max", []edit{{p + "batcher.maxBatchSize", 8}, {p + "batcher.preferredBatchSizes", []int{16}}}, p + "batcher.preferredBatchSizes"},
		{"batcher maxQueueSize zero", []edit{{p + "batcher.maxQueueSize", 0}}, p + "batcher.maxQueueSize"},
		{"batcher priorityLevels over 1000", []edit{{p + "batcher.priorityLevels", 1001}}, p + "batcher.priorityLevels"},
		{"batcher defaultPriority over levels", []edit{{p + "batcher.priorityLevels", 2}, {p + "batcher.defaultPriority", 3}}, p + "batcher.defaultPriority"},
		{"batcher defaultPriority over default levels", []edit{{p + "batcher.defaultPriority", 2}}, p + "batcher.defaultPriority"},
		{"batcher timeoutAction unknown", []edit{{p + "batcher.queuePolicy.timeoutAction", "DROP"}}, p + "batcher.queuePolicy.timeoutAction"},
		{"batcher negative queue timeout", []edit{{p + "batcher.queuePolicy.defaultTimeoutMicroseconds", -1}}, p + "batcher.queuePolicy.defaultTimeoutMicroseconds"},
		{"batcher negative maxBatchesInFlight", []edit{{p + "batcher.maxBatchesInFlight", -1}}, p + "batcher.maxBatchesInFlight"},
		{"batcher oversize unknown", []edit{{p + "batcher.oversize", "drop"}}, p + "batcher.oversize"},
		{"name with capitals", []edit{{"metadata.name", "Iris"}}, "metadata.name"},
		{"name with an underscore", []edit{{"metadata.name", "iris_v1"}}, "metadata.name"},
		{"name starting with a digit", []edit{{"metadata.name", "1iris"}}, "metadata.name"},
		{"name of 64 characters", []edit{{"metadata.name", long}}, "metadata.name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, y := manifest(t, tc.edits...)
			_, err := config.Parse("case.yaml", y, "")
			if err == nil {
				t.Errorf("config accepts it:\n%s", y)
			} else if !strings.Contains(err.Error(), tc.field+":") && !strings.Contains(err.Error(), tc.field+"[") {
				t.Errorf("config's error does not name %s: %v", tc.field, err)
			}
			msgs := c.validate(obj)
			if len(msgs) == 0 {
				t.Fatalf("the CRD accepts it:\n%s", y)
			}
			if !named(msgs, tc.field) {
				t.Errorf("no error names %s:\n%s", tc.field, strings.Join(msgs, "\n"))
			}
			t.Logf("the API server would answer: %s", strings.Join(msgs, "; "))
		})
	}
}

// named reports whether a message names field: as the field path of a
// schema error ("spec.x: Invalid value"), in an unknown-field error
// (`unknown field "spec.x"`), or in a CEL rule's message.
func named(msgs []string, field string) bool {
	for _, m := range msgs {
		if strings.HasPrefix(m, field+":") || strings.Contains(m, fmt.Sprintf("%q", field)) || strings.Contains(m, ": "+field+" ") {
			return true
		}
	}
	return false
}

// TestBoundaries: values at the edge of what config accepts are accepted
// by the CRD too (the CEL rules' defaults are config's).
func TestBoundaries(t *testing.T) {
	c := loadCRD(t)
	const p = "spec.predictor."
	cases := []struct {
		name  string
		edits []edit
	}{
		{"scale to zero", []edit{{p + "minReplicas", 0}}},
		{"maxReplicas 0 is no limit", []edit{{p + "minReplicas", 5}, {p + "maxReplicas", 0}}},
		{"maxReplicas equal to minReplicas", []edit{{p + "minReplicas", 3}, {p + "maxReplicas", 3}}},
		{"maxReplicas 1 with the default minReplicas", []edit{{p + "maxReplicas", 1}}},
		{"containerConcurrency 0 is no limit", []edit{{p + "containerConcurrency", 0}}},
		{"timeout of a day", []edit{{p + "timeout", 86400}}},
		{"canary 0", []edit{{p + "canaryTrafficPercent", 0}}},
		{"canary 100", []edit{{p + "canaryTrafficPercent", 100}}},
		{"protocolVersion empty", []edit{{p + "model.protocolVersion", ""}}},
		{"protocolVersion grpc-v2", []edit{{p + "model.protocolVersion", "grpc-v2"}}},
		{"every scale metric", []edit{{p + "scaleMetric", "memory"}}},
		{"preferred size at the default max", []edit{{p + "batcher.preferredBatchSizes", []int{1, 32}}}},
		{"preferred size at max", []edit{{p + "batcher.maxBatchSize", 64}, {p + "batcher.preferredBatchSizes", []int{64}}}},
		{"defaultPriority 1 with the default levels", []edit{{p + "batcher.defaultPriority", 1}}},
		{"defaultPriority at levels", []edit{{p + "batcher.priorityLevels", 1000}, {p + "batcher.defaultPriority", 1000}}},
		{"queue timeout of a day", []edit{{p + "batcher.queuePolicy.defaultTimeoutMicroseconds", int64(86400) * 1_000_000}}},
		{"name of 63 characters", []edit{{"metadata.name", "a" + strings.Repeat("-b", 31)}}},
		{"quantities as numbers and text", []edit{{p + "model.resources", map[string]any{"requests": map[string]any{"cpu": 1, "memory": "2Gi"}, "limits": map[string]any{"cpu": "500m"}}}}},
		{"annotations of infergate and knative", []edit{{"metadata.annotations", map[string]any{config.AnnotationPipeline: "true", "autoscaling.knative.dev/window": "10s"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, y := manifest(t, tc.edits...)
			if _, err := config.Parse("case.yaml", y, ""); err != nil {
				t.Fatalf("config refuses it: %v", err)
			}
			for _, msg := range c.validate(obj) {
				t.Error(msg)
			}
		})
	}
}

// TestBeyondTheSchema lists, to keep the boundary honest, what config
// refuses and a schema cannot say: these rules depend on annotations, which
// CEL cannot read, or on what a string means. The control plane refuses
// them when it reads the object with config.
func TestBeyondTheSchema(t *testing.T) {
	c := loadCRD(t)
	const p = "spec.predictor."
	cases := []struct {
		name  string
		edits []edit
	}{
		{"remote storage without infergate.io/endpoints", []edit{{p + "model.storageUri", "s3://bucket/iris"}}},
		{"storageUri missing without infergate.io/endpoints", []edit{{p + "model.storageUri", remove}}},
		{"protocolVersion v1 without infergate.io/endpoints", []edit{{p + "model.protocolVersion", "v1"}}},
		{"a format the built-in runtime does not serve", []edit{{p + "model.modelFormat.name", "sklearn"}}},
		{"a misspelt infergate.io annotation", []edit{{"metadata.annotations", map[string]any{"infergate.io/endpoint": "http://127.0.0.1:8000"}}}},
		{"a malformed registry reference", []edit{{p + "model.storageUri", "registry://iris/0"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, y := manifest(t, tc.edits...)
			if _, err := config.Parse("case.yaml", y, ""); err == nil {
				t.Errorf("config accepts it; move the case to TestBoundaries")
			}
			if msgs := c.validate(obj); len(msgs) > 0 {
				t.Errorf("the CRD refuses it now; move the case to TestRefusedManifests:\n%s", strings.Join(msgs, "\n"))
			}
		})
	}
	// And what the CRD refuses but config accepts: Kubernetes' rules for
	// quantities (a CRD's int-or-string takes no fractional number: write
	// cpu: "1.5"), and a bound on a list.
	strict := []struct {
		name  string
		edits []edit
		field string
	}{
		{"a quantity Kubernetes cannot parse", []edit{{p + "model.resources.requests", map[string]any{"cpu": "lots"}}}, p + "model.resources.requests.cpu"},
		{"a fractional quantity as a YAML number", []edit{{p + "model.resources.limits", map[string]any{"cpu": 1.5}}}, p + "model.resources.limits.cpu"},
		{"more than 1024 preferred batch sizes", []edit{{p + "batcher.maxBatchSize", 2000}, {p + "batcher.preferredBatchSizes", sizes(1025)}}, p + "batcher.preferredBatchSizes"},
	}
	for _, tc := range strict {
		t.Run(tc.name, func(t *testing.T) {
			obj, y := manifest(t, tc.edits...)
			if _, err := config.Parse("case.yaml", y, ""); err != nil {
				t.Errorf("config refuses it too; move the case to TestRefusedManifests: %v", err)
			}
			if msgs := c.validate(obj); !named(msgs, tc.field) {
				t.Errorf("no error names %s:\n%s", tc.field, strings.Join(msgs, "\n"))
			}
		})
	}
}

func sizes(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

// TestStatusAccepted: a status as the control plane writes it, from the Go
// types, is valid under the CRD's schema, and the Go types have no field
// the schema lacks (which would be pruned on write).
func TestStatusAccepted(t *testing.T) {
	c := loadCRD(t)
	now := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	isvc := &v1beta1.InferenceService{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: v1beta1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: "iris", Namespace: "ml", Generation: 3},
		Spec: v1beta1.InferenceServiceSpec{Predictor: v1beta1.PredictorSpec{
			MinReplicas:          ptrTo(0),
			CanaryTrafficPercent: ptrTo[int64](10),
			Model:                &v1beta1.ModelSpec{ModelFormat: v1beta1.ModelFormat{Name: "onnx"}, StorageURI: "registry://iris@prod"},
		}},
		Status: v1beta1.InferenceServiceStatus{
			ObservedGeneration: 3,
			Conditions: []v1beta1.Condition{
				{Type: v1beta1.ConditionPredictorReady, Status: metav1.ConditionTrue, LastTransitionTime: now},
				{Type: v1beta1.ConditionReady, Status: metav1.ConditionFalse, Reason: "CanaryInProgress", Message: "iris-00003 takes 10%", LastTransitionTime: now},
			},
			URL:     "http://iris.ml.svc.cluster.local",
			Address: &v1beta1.Addressable{URL: "http://iris-predictor.ml.svc.cluster.local"},
			Components: map[v1beta1.ComponentType]v1beta1.ComponentStatusSpec{
				v1beta1.PredictorComponent: {
					LatestCreatedRevision:     "iris-00003",
					LatestReadyRevision:       "iris-00003",
					PreviousRolledoutRevision: "iris-00002",
					LatestRolledoutRevision:   "iris-00002",
					Traffic: []v1beta1.TrafficTarget{
						{Tag: "prev", RevisionName: "iris-00002", Percent: ptrTo[int64](90)},
						{Tag: "latest", RevisionName: "iris-00003", LatestRevision: ptrTo(true), Percent: ptrTo[int64](10)},
					},
				},
			},
		},
	}
	j, err := json.Marshal(isvc)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		t.Fatal(err)
	}
	// A status field infergate does not write (KServe's modelStatus) is
	// kept, as KServe's CRD keeps it.
	modelStatus := map[string]any{"transitionStatus": "UpToDate"}
	obj["status"].(map[string]any)["modelStatus"] = modelStatus
	for _, msg := range c.validate(obj) {
		t.Error(msg)
	}
	if got := obj["status"].(map[string]any)["modelStatus"]; !equalJSON(t, got, modelStatus) {
		t.Errorf("status.modelStatus is %v after pruning, want it kept", got)
	}
	// The status survives pruning whole.
	var back v1beta1.InferenceService
	j2, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j2, &back); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, isvc.Status, back.Status) {
		t.Errorf("status changed through the schema:\n%s\nwant:\n%s", mustJSON(t, back.Status), mustJSON(t, isvc.Status))
	}

	// A bad status is refused too: a percent over 100, a condition
	// status that is not True, False or Unknown.
	bad := isvc.DeepCopy()
	bad.Status.Components[v1beta1.PredictorComponent].Traffic[0].Percent = ptrTo[int64](101)
	bad.Status.Conditions[0].Status = "Yes"
	j, err = json.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	obj = nil
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		t.Fatal(err)
	}
	msgs := c.validate(obj)
	for _, f := range []string{"status.components.predictor.traffic[0].percent", "status.conditions[0].status"} {
		if !named(msgs, f) {
			t.Errorf("no error names %s:\n%s", f, strings.Join(msgs, "\n"))
		}
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return mustJSON(t, a) == mustJSON(t, b)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

func ptrTo[T any](v T) *T { return &v }
