//go:build k8s

package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	servingv1beta1 "github.com/infergate/infergate/controlplane/k8s/apis/serving/v1beta1"
)

const isvcCRD = "inferenceservices.serving.kserve.io"

// testTimeout bounds each test's calls to the API server.
const testTimeout = time.Minute

func isvcGVR(group string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: "v1beta1", Resource: "inferenceservices"}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// exampleInferenceServices are the InferenceServices under examples/, by
// their path relative to examples/.
func exampleInferenceServices(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob("../../examples/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, f := range files {
		docs, err := readYAMLDocs(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 1 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(docs[0]); err != nil {
			continue // not a Kubernetes object (a pipeline, a dataset's notes)
		}
		if u.GetAPIVersion() == "serving.kserve.io/v1beta1" && u.GetKind() == "InferenceService" {
			rel, _ := filepath.Rel("../../examples", f)
			out[rel] = u
		}
	}
	if len(out) == 0 {
		t.Fatal("no InferenceService under examples/")
	}
	return out
}

// baseInferenceService is examples/canary/iris.yaml, named name.
func baseInferenceService(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := readObject("../../examples/canary/iris.yaml")
	if err != nil {
		t.Fatal(err)
	}
	u.SetName(name)
	u.SetNamespace(testNamespace)
	return u
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// TestExampleInferenceServicesAccepted applies every InferenceService under
// examples/ as it is (strict field validation: an unknown field is an
// error), reads it back, and checks that the API server kept its spec and
// annotations and that it decodes, strictly, into the Go types of
// controlplane/k8s/apis/serving/v1beta1.
func TestExampleInferenceServicesAccepted(t *testing.T) {
	for rel, obj := range exampleInferenceServices(t) {
		t.Run(rel, func(t *testing.T) {
			ctx := testContext(t)
			name := "ex-" + strings.Trim(nonName.ReplaceAllString(strings.TrimSuffix(rel, ".yaml"), "-"), "-")
			obj = obj.DeepCopy()
			obj.SetName(name)
			obj.SetNamespace(testNamespace)
			client := dyn.Resource(isvcGVR(servingv1beta1.GroupName)).Namespace(testNamespace)
			if _, err := client.Create(ctx, obj, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
				t.Fatalf("create %s from examples/%s: %v", name, rel, err)
			}
			t.Cleanup(func() {
				_ = client.Delete(context.Background(), name, metav1.DeleteOptions{})
			})
			got, err := client.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("read back %s: %v", name, err)
			}
			if diff := cmp.Diff(obj.Object["spec"], got.Object["spec"]); diff != "" {
				t.Errorf("spec as read back (-applied +served):\n%s", diff)
			}
			if diff := cmp.Diff(obj.GetAnnotations(), got.GetAnnotations()); diff != "" {
				t.Errorf("annotations as read back (-applied +served):\n%s", diff)
			}
			if g := got.GetGeneration(); g != 1 {
				t.Errorf("metadata.generation = %d, want 1", g)
			}
			var typed servingv1beta1.InferenceService
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(got.Object, &typed, true); err != nil {
				t.Fatalf("the served object does not decode strictly into the Go types: %v", err)
			}
			if typed.Spec.Predictor.Model == nil || typed.Spec.Predictor.Model.ModelFormat.Name == "" {
				t.Errorf("decoded spec.predictor.model = %+v, want the example's model", typed.Spec.Predictor.Model)
			}
		})
	}
}

// schemaPath walks the CRD's v1beta1 schema down path (property names)
// and lets edit change the schema found there; it fails the test if the
// path does not exist, so a renamed field cannot make a case vacuous.
func schemaPath(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition, path string, edit func(*apiextensionsv1.JSONSchemaProps)) {
	t.Helper()
	for i := range crd.Spec.Versions {
		v := &crd.Spec.Versions[i]
		if v.Name != "v1beta1" {
			continue
		}
		var walk func(p *apiextensionsv1.JSONSchemaProps, rest []string)
		walk = func(p *apiextensionsv1.JSONSchemaProps, rest []string) {
			if len(rest) == 0 {
				edit(p)
				return
			}
			child, ok := p.Properties[rest[0]]
			if !ok {
				t.Fatalf("the CRD's schema has no %s (at %s)", path, rest[0])
			}
			walk(&child, rest[1:])
			p.Properties[rest[0]] = child
		}
		walk(v.Schema.OpenAPIV3Schema, strings.Split(path, "."))
		return
	}
	t.Fatal("the CRD serves no v1beta1")
}

// TestInferenceServiceSchemaRefuses applies schema-invalid
// InferenceServices and checks that the API server refuses each with a
// message that names the field. Each case then proves that the refusal is
// the rule's doing: it installs a copy of the CRD, in a group of its own,
// with only that rule removed, and checks that the copy accepts the same
// object.
func TestInferenceServiceSchemaRefuses(t *testing.T) {
	cases := []struct {
		name string
		// mutate makes the valid example invalid.
		mutate func(u *unstructured.Unstructured)
		// strict asks for strict field validation (unknown fields are errors).
		strict bool
		// wantBadRequest: strict decoding errors are 400 Bad Request;
		// schema violations are 422 Invalid.
		wantBadRequest bool
		// wantInMessage must all appear in the API server's message.
		wantInMessage []string
		// removeRule removes, from a copy of the CRD, the rule that refuses it.
		removeRule func(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition)
	}{
		{
			name: "canary-traffic-percent-101",
			mutate: func(u *unstructured.Unstructured) {
				set(u, int64(101), "spec", "predictor", "canaryTrafficPercent")
			},
			wantInMessage: []string{"spec.predictor.canaryTrafficPercent", "101", "less than or equal to 100"},
			removeRule: func(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) {
				schemaPath(t, crd, "spec.predictor.canaryTrafficPercent", func(p *apiextensionsv1.JSONSchemaProps) { p.Maximum = nil })
			},
		},
		{
			name: "unknown-field-in-model",
			mutate: func(u *unstructured.Unstructured) {
				set(u, "gs://bucket/model", "spec", "predictor", "model", "storageUriTypo")
			},
			strict:         true,
			wantBadRequest: true,
			wantInMessage:  []string{`unknown field "spec.predictor.model.storageUriTypo"`},
			removeRule: func(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) {
				schemaPath(t, crd, "spec.predictor.model", func(p *apiextensionsv1.JSONSchemaProps) {
					preserve := true
					p.XPreserveUnknownFields = &preserve
				})
			},
		},
		{
			name: "min-replicas-negative",
			mutate: func(u *unstructured.Unstructured) {
				set(u, int64(-1), "spec", "predictor", "minReplicas")
			},
			wantInMessage: []string{"spec.predictor.minReplicas", "-1", "greater than or equal to 0"},
			removeRule: func(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) {
				schemaPath(t, crd, "spec.predictor.minReplicas", func(p *apiextensionsv1.JSONSchemaProps) { p.Minimum = nil })
			},
		},
		{
			name: "max-replicas-below-min-replicas",
			mutate: func(u *unstructured.Unstructured) {
				set(u, int64(3), "spec", "predictor", "minReplicas")
				set(u, int64(2), "spec", "predictor", "maxReplicas")
			},
			wantInMessage: []string{"spec.predictor.maxReplicas", "must be 0 (no limit) or at least minReplicas"},
			removeRule: func(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) {
				schemaPath(t, crd, "spec.predictor", func(p *apiextensionsv1.JSONSchemaProps) { p.XValidations = nil })
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			opts := metav1.CreateOptions{}
			if tc.strict {
				opts.FieldValidation = metav1.FieldValidationStrict
			}
			obj := baseInferenceService(t, "bad-"+tc.name)
			tc.mutate(obj)

			_, err := dyn.Resource(isvcGVR(servingv1beta1.GroupName)).Namespace(testNamespace).Create(ctx, obj, opts)
			if err == nil {
				t.Fatalf("the API server accepted %s; want it refused", tc.name)
			}
			if tc.wantBadRequest && !apierrors.IsBadRequest(err) || !tc.wantBadRequest && !apierrors.IsInvalid(err) {
				t.Errorf("refused with reason %q (%v); want %s", apierrors.ReasonForError(err), err, map[bool]string{true: "BadRequest", false: "Invalid"}[tc.wantBadRequest])
			}
			for _, want := range tc.wantInMessage {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q:\n%v", want, err)
				}
			}

			// The control: the same object, against the CRD without the rule.
			group := tc.name + ".rule-removed.infergate.test"
			served, ok := installedCRDs[isvcCRD]
			if !ok {
				t.Fatalf("%s not installed", isvcCRD)
			}
			crd := &apiextensionsv1.CustomResourceDefinition{
				ObjectMeta: metav1.ObjectMeta{Name: "inferenceservices." + group},
				Spec:       *served.Spec.DeepCopy(),
			}
			crd.Spec.Group = group
			tc.removeRule(t, crd)
			if _, err := installCRD(ctx, crd); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = crds.ApiextensionsV1().CustomResourceDefinitions().Delete(context.Background(), crd.Name, metav1.DeleteOptions{})
			})
			obj.SetAPIVersion(group + "/v1beta1")
			if _, err := dyn.Resource(isvcGVR(group)).Namespace(testNamespace).Create(ctx, obj, opts); err != nil {
				t.Errorf("without the rule, the CRD still refuses the object, so the refusal above was not the rule's doing: %v", err)
			}
		})
	}
}

func set(u *unstructured.Unstructured, value any, path ...string) {
	if err := unstructured.SetNestedField(u.Object, value, path...); err != nil {
		panic(fmt.Sprintf("set %v: %v", path, err))
	}
}

// kserveColumns are the columns `kubectl get inferenceservices` shows with
// KServe installed; ours must be the same.
var kserveColumns = []apiextensionsv1.CustomResourceColumnDefinition{
	{Name: "URL", Type: "string", JSONPath: ".status.url"},
	{Name: "Ready", Type: "string", JSONPath: ".status.conditions[?(@.type=='Ready')].status"},
	{Name: "Prev", Type: "integer", JSONPath: ".status.components.predictor.traffic[?(@.tag=='prev')].percent"},
	{Name: "Latest", Type: "integer", JSONPath: ".status.components.predictor.traffic[?(@.latestRevision==true)].percent"},
	{Name: "PrevRolledoutRevision", Type: "string", JSONPath: ".status.components.predictor.traffic[?(@.tag=='prev')].revisionName"},
	{Name: "LatestReadyRevision", Type: "string", JSONPath: ".status.components.predictor.traffic[?(@.latestRevision==true)].revisionName"},
	{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
}

// TestInferenceServicePrinterColumns reads the CRD back from the API
// server and checks its printer columns against KServe's, then writes a
// canary's status through the status subresource and lists the
// InferenceServices as kubectl get does (as a Table), checking what each
// column shows.
func TestInferenceServicePrinterColumns(t *testing.T) {
	ctx := testContext(t)
	crd, err := crds.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, isvcCRD, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var columns []apiextensionsv1.CustomResourceColumnDefinition
	for _, v := range crd.Spec.Versions {
		if v.Name == "v1beta1" {
			columns = v.AdditionalPrinterColumns
		}
	}
	if diff := cmp.Diff(kserveColumns, columns); diff != "" {
		t.Errorf("printer columns as served (-KServe's +ours):\n%s", diff)
	}

	name := "columns"
	client := dyn.Resource(isvcGVR(servingv1beta1.GroupName)).Namespace(testNamespace)
	created, err := client.Create(ctx, baseInferenceService(t, name), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	url := "http://columns.infergate-test.example.com"
	created.Object["status"] = map[string]any{
		"url": url,
		"conditions": []any{
			map[string]any{"type": "PredictorReady", "status": "True"},
			map[string]any{"type": "Ready", "status": "True"},
		},
		"components": map[string]any{"predictor": map[string]any{
			"traffic": []any{
				map[string]any{"revisionName": "columns-00001", "percent": int64(90), "tag": "prev", "latestRevision": false},
				map[string]any{"revisionName": "columns-00002", "percent": int64(10), "tag": "latest", "latestRevision": true},
			},
		}},
	}
	if _, err := client.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}

	table := getTable(ctx, t, fmt.Sprintf("/apis/%s/v1beta1/namespaces/%s/inferenceservices/%s", servingv1beta1.GroupName, testNamespace, name))
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	wantNames := []string{"Name"}
	for _, c := range kserveColumns {
		wantNames = append(wantNames, c.Name)
	}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("table columns (-want +got):\n%s", diff)
	}
	if len(table.Rows) != 1 || len(table.Rows[0].Cells) != len(names) {
		t.Fatalf("table rows = %+v, want one row of %d cells", table.Rows, len(names))
	}
	got := map[string]string{}
	for i, cell := range table.Rows[0].Cells {
		got[names[i]] = fmt.Sprint(cell)
	}
	delete(got, "Age") // a duration since creation
	want := map[string]string{
		"Name":                  name,
		"URL":                   url,
		"Ready":                 "True",
		"Prev":                  "90",
		"Latest":                "10",
		"PrevRolledoutRevision": "columns-00001",
		"LatestReadyRevision":   "columns-00002",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kubectl get's cells (-want +got):\n%s", diff)
	}
}

// getTable GETs path as kubectl get does, asking for a meta.k8s.io Table.
func getTable(ctx context.Context, t *testing.T, path string) *metav1.Table {
	t.Helper()
	httpClient, err := rest.HTTPClientFor(testCluster.config)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, testCluster.config.Host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s as Table: %s: %s", path, resp.Status, body)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("decode Table: %v\n%s", err, body)
	}
	if table.Kind != "Table" {
		t.Fatalf("GET %s as Table returned a %q", path, table.Kind)
	}
	return &table
}
