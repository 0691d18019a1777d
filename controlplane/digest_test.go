package controlplane

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/config"
)

func TestDigestStable(t *testing.T) {
	a, b := decl("iris", "v1", canary(10)), decl("iris", "v1", canary(10))
	if Digest(a) != Digest(b) {
		t.Fatal("equal declarations have different digests")
	}
	c, err := cloneModel(a)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, c); diff != "" {
		t.Fatalf("clone differs (-in +clone):\n%s", diff)
	}
	if Digest(a) != Digest(c) {
		t.Fatal("a clone has another digest")
	}
	if got := Digest(a); len(got) != len("sha256:")+64 || got[:7] != "sha256:" {
		t.Fatalf("digest %q is not sha256:HEX", got)
	}
}

func TestDigestFields(t *testing.T) {
	intp := func(n int) *int { return &n }
	int64p := func(n int64) *int64 { return &n }
	pred := func(f func(p *config.PredictorSpec)) func(*config.Model) {
		return func(m *config.Model) {
			ms := *m.Spec.Spec.Predictor.Model
			m.Spec.Spec.Predictor.Model = &ms
			f(&m.Spec.Spec.Predictor)
		}
	}
	tests := []struct {
		name    string
		mod     func(*config.Model)
		changes bool
	}{
		{"storageUri", pred(func(p *config.PredictorSpec) { p.Model.StorageURI = "file:///models/v2" }), true},
		{"resolved path", func(m *config.Model) { m.Path = "/elsewhere/v1" }, true},
		{"model format", pred(func(p *config.PredictorSpec) { p.Model.ModelFormat.Name = "sklearn" }), true},
		{"model format version", pred(func(p *config.PredictorSpec) { p.Model.ModelFormat.Version = "2" }), true},
		{"runtime", pred(func(p *config.PredictorSpec) { p.Model.Runtime = "triton" }), true},
		{"runtime version", pred(func(p *config.PredictorSpec) { p.Model.RuntimeVersion = "24.01" }), true},
		{"protocol", pred(func(p *config.PredictorSpec) { p.Model.ProtocolVersion = "grpc-v2" }), true},
		{"args", pred(func(p *config.PredictorSpec) { p.Model.Args = []string{"--x"} }), true},
		{"env", pred(func(p *config.PredictorSpec) { p.Model.Env = []config.EnvVar{{Name: "A", Value: "1"}} }), true},
		{"resources", pred(func(p *config.PredictorSpec) {
			p.Model.Resources = &config.ResourceRequirements{Limits: map[string]config.Quantity{"cpu": "1"}}
		}), true},
		{"minReplicas", pred(func(p *config.PredictorSpec) { p.MinReplicas = intp(0) }), true},
		{"minReplicas written at its default", pred(func(p *config.PredictorSpec) { p.MinReplicas = intp(1) }), true},
		{"maxReplicas", pred(func(p *config.PredictorSpec) { p.MaxReplicas = 3 }), true},
		{"scaleTarget", pred(func(p *config.PredictorSpec) { p.ScaleTarget = intp(5) }), true},
		{"containerConcurrency", pred(func(p *config.PredictorSpec) { p.ContainerConcurrency = int64p(4) }), true},
		{"timeout", pred(func(p *config.PredictorSpec) { p.TimeoutSeconds = int64p(5) }), true},
		{"batcher", pred(func(p *config.PredictorSpec) { p.Batcher = &config.BatcherSpec{MaxBatchSize: intp(8)} }), true},
		{"serviceAccountName", pred(func(p *config.PredictorSpec) { p.ServiceAccountName = "sa" }), true},
		{"autoscaling annotation", annotate("autoscaling.knative.dev/target", "10"), true},
		{"endpoints annotation", annotate(config.AnnotationEndpoints, "http://h:1"), true},
		{"any other annotation", annotate("team", "search"), true},

		{"canaryTrafficPercent", canary(10), false},
		{"rollout annotation", annotate(config.AnnotationRollout, `{"steps":[{"weight":5}]}`), false},
		{"mirror percent annotation", annotate(config.AnnotationMirrorPercent, "5"), false},
		{"mirror revision annotation", annotate(config.AnnotationMirrorRevision, "prev"), false},
		{"source", source("other.yaml#2"), false},
		{"labels", func(m *config.Model) { m.Labels = map[string]string{"a": "b"}; m.Spec.Metadata.Labels = m.Labels }, false},
		{"namespace", func(m *config.Model) { m.Namespace = "team"; m.Spec.Metadata.Namespace = "team" }, false},
	}
	base := Digest(decl("iris", "v1"))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Digest(decl("iris", "v1", tc.mod))
			if (got != base) != tc.changes {
				t.Errorf("digest changed: %v, want %v", got != base, tc.changes)
			}
		})
	}
}

// TestDigestCoversEveryPredictorField guards against a field added to
// config.PredictorSpec or config.ModelSpec that the digest would miss.
func TestDigestCoversEveryPredictorField(t *testing.T) {
	base := decl("iris", "v1")
	pt := reflect.TypeFor[config.PredictorSpec]()
	for i := range pt.NumField() {
		f := pt.Field(i)
		m := decl("iris", "v1")
		fv := reflect.ValueOf(&m.Spec.Spec.Predictor).Elem().Field(i)
		fill(fv)
		if got, want := Digest(m) != Digest(base), f.Name != "CanaryTrafficPercent"; got != want {
			t.Errorf("spec.predictor %s: digest changed %v, want %v", f.Name, got, want)
		}
	}
	mt := reflect.TypeFor[config.ModelSpec]()
	for i := range mt.NumField() {
		f := mt.Field(i)
		m := decl("iris", "v1")
		ms := *m.Spec.Spec.Predictor.Model
		m.Spec.Spec.Predictor.Model = &ms
		fv := reflect.ValueOf(&ms).Elem().Field(i)
		fill(fv)
		if Digest(m) == Digest(base) {
			t.Errorf("spec.predictor.model %s: digest did not change", f.Name)
		}
	}
}

// fill sets v to a value unlike the ones decl uses: strings "zz", numbers
// 7, true, one-element slices and maps, structs filled field by field.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("zz")
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(7)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	default:
		panic("fill: " + v.Kind().String())
	}
}
