package v1beta1_test

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/config"
	v1beta1 "github.com/infergate/infergate/controlplane/k8s/apis/serving/v1beta1"
)

// TestRoundTrip decodes each accepted manifest into the Go type, strictly
// (a field the type lacks is an error), and checks that every field config
// reads has the value config.Parse read from the same document.
func TestRoundTrip(t *testing.T) {
	docs := inferenceServiceFiles(t, acceptedDirs...)
	if len(docs) == 0 {
		t.Fatal("no manifest found")
	}
	for _, doc := range docs {
		t.Run(doc.name, func(t *testing.T) {
			models, err := config.Parse(doc.name, doc.yaml, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(models) != 1 {
				t.Fatalf("config read %d models from one document", len(models))
			}
			var isvc v1beta1.InferenceService
			if err := yaml.UnmarshalStrict(doc.yaml, &isvc); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(models[0].Spec, asConfig(&isvc), cmp.Comparer(sameQuantity)); diff != "" {
				t.Errorf("(-config +v1beta1):\n%s", diff)
			}
		})
	}
}

// TestSameFieldsAsConfig: the spec has the fields config reads, at the
// same JSON paths, and no other; metadata has config's.
func TestSameFieldsAsConfig(t *testing.T) {
	ours := jsonPaths(reflect.TypeFor[v1beta1.InferenceService](), "")
	theirs := jsonPaths(reflect.TypeFor[config.InferenceService](), "")
	for p := range theirs {
		if !ours[p] {
			t.Errorf("config reads %s; the v1beta1 type has no such field", p)
		}
	}
	for p := range ours {
		if strings.HasPrefix(p, "spec.") && !theirs[p] {
			t.Errorf("the v1beta1 type has %s; config does not read it", p)
		}
	}
}

// jsonPaths lists the JSON paths of t's fields ("spec.predictor.model"),
// inline fields flattened, slices and maps by their element's fields
// ("spec.predictor.model.env[].name").
func jsonPaths(t reflect.Type, prefix string) map[string]bool {
	paths := make(map[string]bool)
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		if t.Kind() != reflect.Pointer {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[resource.Quantity]() || t == reflect.TypeFor[metav1.Time]() {
		return paths
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		sub := prefix
		if name != "" || !strings.Contains(opts, "inline") {
			if sub != "" {
				sub += "."
			}
			sub += name
			paths[sub] = true
		}
		maps.Copy(paths, jsonPaths(f.Type, sub))
	}
	return paths
}

// TestFullManifestSetsEveryField guards TestRoundTrip: the fullest manifest
// in testdata sets every field config reads, so that a field asConfig
// forgot cannot compare equal as zero on both sides.
func TestFullManifestSetsEveryField(t *testing.T) {
	docs := inferenceServiceFiles(t, "testdata")
	var isvc v1beta1.InferenceService
	if err := yaml.UnmarshalStrict(docs[0].yaml, &isvc); err != nil {
		t.Fatal(err)
	}
	for _, p := range zeroFields(reflect.ValueOf(asConfig(&isvc)), "") {
		t.Errorf("%s leaves %s unset", docs[0].name, p)
	}
}

// zeroFields lists the fields of v, recursively through pointers and
// structs, that are unset: nil, or the zero value where not a pointer (a
// pointer to false is set).
func zeroFields(v reflect.Value, path string) []string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return []string{path}
		}
		if v = v.Elem(); v.Kind() != reflect.Struct {
			return nil
		}
	}
	if v.Kind() != reflect.Struct {
		if v.IsZero() {
			return []string{path}
		}
		return nil
	}
	var zero []string
	for i := range v.NumField() {
		zero = append(zero, zeroFields(v.Field(i), path+"."+v.Type().Field(i).Name)...)
	}
	return zero
}

// sameQuantity compares quantities by value ("1" and "1000m" are equal),
// as Kubernetes does; config keeps them as written.
func sameQuantity(a, b config.Quantity) bool {
	qa, errA := resource.ParseQuantity(string(a))
	qb, errB := resource.ParseQuantity(string(b))
	if errA != nil || errB != nil {
		return a == b
	}
	return qa.Cmp(qb) == 0
}

// asConfig is the v1beta1 object in config's types, field by field.
func asConfig(in *v1beta1.InferenceService) config.InferenceService {
	p := in.Spec.Predictor
	out := config.InferenceService{
		APIVersion: in.APIVersion,
		Kind:       in.Kind,
		Metadata: config.ObjectMeta{
			Name:        in.Name,
			Namespace:   in.Namespace,
			Labels:      in.Labels,
			Annotations: in.Annotations,
		},
		Spec: config.InferenceServiceSpec{Predictor: config.PredictorSpec{
			MinReplicas:          p.MinReplicas,
			MaxReplicas:          p.MaxReplicas,
			ScaleTarget:          p.ScaleTarget,
			ScaleMetric:          (*config.ScaleMetric)(p.ScaleMetric),
			ContainerConcurrency: p.ContainerConcurrency,
			TimeoutSeconds:       p.TimeoutSeconds,
			CanaryTrafficPercent: p.CanaryTrafficPercent,
			ServiceAccountName:   p.ServiceAccountName,
		}},
	}
	if m := p.Model; m != nil {
		cm := &config.ModelSpec{
			ModelFormat:     config.ModelFormat{Name: m.ModelFormat.Name, Version: m.ModelFormat.Version},
			Runtime:         m.Runtime,
			StorageURI:      m.StorageURI,
			RuntimeVersion:  m.RuntimeVersion,
			ProtocolVersion: m.ProtocolVersion,
			Args:            m.Args,
		}
		for _, e := range m.Env {
			cm.Env = append(cm.Env, config.EnvVar{Name: e.Name, Value: e.Value})
		}
		if r := m.Resources; r != nil {
			cm.Resources = &config.ResourceRequirements{Limits: quantities(r.Limits), Requests: quantities(r.Requests)}
		}
		out.Spec.Predictor.Model = cm
	}
	if b := p.Batcher; b != nil {
		cb := &config.BatcherSpec{
			MaxBatchSize:        b.MaxBatchSize,
			MaxLatency:          b.MaxLatency,
			Timeout:             b.Timeout,
			PreferredBatchSizes: b.PreferredBatchSizes,
			MaxQueueSize:        b.MaxQueueSize,
			PriorityLevels:      b.PriorityLevels,
			DefaultPriority:     b.DefaultPriority,
			PreserveOrdering:    b.PreserveOrdering,
			MaxBatchesInFlight:  b.MaxBatchesInFlight,
			Oversize:            b.Oversize,
		}
		if q := b.QueuePolicy; q != nil {
			cb.QueuePolicy = &config.QueuePolicySpec{
				TimeoutAction:              q.TimeoutAction,
				DefaultTimeoutMicroseconds: q.DefaultTimeoutMicroseconds,
				AllowTimeoutOverride:       q.AllowTimeoutOverride,
			}
		}
		out.Spec.Predictor.Batcher = cb
	}
	return out
}

func quantities(in map[string]resource.Quantity) map[string]config.Quantity {
	if in == nil {
		return nil
	}
	out := make(map[string]config.Quantity, len(in))
	for k, q := range in {
		out[k] = config.Quantity(q.String())
	}
	return out
}
