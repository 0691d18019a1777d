package controlplane

import (
	"maps"
	"testing"
	"time"

	"github.com/infergate/infergate/config"
)

// t0 is the fake time tests start at.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a Clock tests move by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// newDeployments returns a Deployments on a fake clock at t0.
func newDeployments(t *testing.T, opts Options) (*Deployments, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: t0}
	opts.Clock = clk
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d, clk
}

// decl builds a declaration of model name serving model files under
// /models/<version>, as config.Parse would return it, with opts applied
// to both the spec as written and the defaulted fields.
func decl(name, version string, opts ...func(*config.Model)) config.Model {
	ms := &config.ModelSpec{ModelFormat: config.ModelFormat{Name: "onnx"}, StorageURI: "file:///models/" + version}
	m := config.Model{
		Name:        name,
		Source:      name + ".yaml#1",
		Format:      "onnx",
		Path:        "/models/" + version,
		Protocol:    config.ProtocolREST,
		MinReplicas: config.DefaultMinReplicas,
		ScaleMetric: config.DefaultScaleMetric,
		Timeout:     config.DefaultTimeout,
		Spec: config.InferenceService{
			APIVersion: config.APIVersion,
			Kind:       config.Kind,
			Metadata:   config.ObjectMeta{Name: name},
			Spec:       config.InferenceServiceSpec{Predictor: config.PredictorSpec{Model: ms}},
		},
	}
	for _, o := range opts {
		o(&m)
	}
	return m
}

// canary sets canaryTrafficPercent.
func canary(pct int64) func(*config.Model) {
	return func(m *config.Model) {
		m.CanaryTrafficPercent = &pct
		p := pct
		m.Spec.Spec.Predictor.CanaryTrafficPercent = &p
	}
}

// annotate sets an annotation.
func annotate(key, value string) func(*config.Model) {
	return func(m *config.Model) {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[key] = value
		m.Spec.Metadata.Annotations = maps.Clone(m.Annotations)
	}
}

// source sets the Source.
func source(s string) func(*config.Model) {
	return func(m *config.Model) { m.Source = s }
}

// apply applies a batch, fails the test on an error, and marks the
// revisions it made ready, as their runtimes would.
func apply(t *testing.T, d *Deployments, prune bool, models ...config.Model) Changes {
	t.Helper()
	ch, err := d.Apply(models, prune)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	readyAll(t, d)
	return ch
}

// readyAll marks every pending revision ready, as runtimes that start
// well would.
func readyAll(t testing.TB, d *Deployments) {
	t.Helper()
	for _, ms := range d.State().Models {
		for _, r := range ms.Revisions {
			if r.Status == RevisionPending {
				if err := d.MarkReady(r.Name); err != nil {
					t.Fatalf("MarkReady(%s): %v", r.Name, err)
				}
			}
		}
	}
}

// modelState returns a model's state, failing the test if it is absent.
func modelState(t *testing.T, d *Deployments, name string) ModelState {
	t.Helper()
	ms, ok := d.State().Model(name)
	if !ok {
		t.Fatalf("model %s is not in the state", name)
	}
	return ms
}

func revNames(ms ModelState) []string {
	var out []string
	for _, r := range ms.Revisions {
		out = append(out, r.Name)
	}
	return out
}
