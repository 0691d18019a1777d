package controlplane

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/config"
)

// minReplicas sets minReplicas.
func minReplicas(n int) func(*config.Model) {
	return func(m *config.Model) { m.MinReplicas = n }
}

// TestRevisionPlan: which revisions keep their replicas, how many a new
// one starts with and its autoscaler's minimum, as a model's state stands
// after a sequence of applies.
func TestRevisionPlan(t *testing.T) {
	type plan struct {
		Active        bool
		StartReplicas int
		ScaleMin      int
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, d *Deployments)
		want  map[string]plan
	}{
		{
			name:  "one revision",
			setup: func(t *testing.T, d *Deployments) { apply(t, d, false, decl("iris", "v1", minReplicas(2))) },
			want:  map[string]plan{"iris-00001": {true, 2, 2}},
		},
		{
			name: "a canary and its stable",
			setup: func(t *testing.T, d *Deployments) {
				apply(t, d, false, decl("iris", "v1"))
				apply(t, d, false, decl("iris", "v2", canary(10)))
			},
			want: map[string]plan{"iris-00001": {true, 1, 1}, "iris-00002": {true, 1, 1}},
		},
		{
			name: "an untagged revision without traffic may scale to zero",
			setup: func(t *testing.T, d *Deployments) {
				apply(t, d, false, decl("iris", "v1"))
				apply(t, d, false, decl("iris", "v2"))
				apply(t, d, false, decl("iris", "v3"))
			},
			want: map[string]plan{"iris-00001": {false, 0, 0}, "iris-00002": {true, 1, 1}, "iris-00003": {true, 1, 1}},
		},
		{
			name: "a pending revision starts one replica whatever its minReplicas",
			setup: func(t *testing.T, d *Deployments) {
				apply(t, d, false, decl("iris", "v1"))
				if _, err := d.Apply([]config.Model{decl("iris", "v2", minReplicas(0))}, false); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]plan{"iris-00001": {true, 1, 1}, "iris-00002": {true, 1, 1}},
		},
		{
			name: "the mirror's revision, named by number",
			setup: func(t *testing.T, d *Deployments) {
				apply(t, d, false, decl("iris", "v1"))
				apply(t, d, false, decl("iris", "v2"))
				apply(t, d, false, decl("iris", "v3", annotate(config.AnnotationMirrorPercent, "5"), annotate(config.AnnotationMirrorRevision, "1")))
			},
			want: map[string]plan{"iris-00001": {true, 1, 1}, "iris-00002": {true, 1, 1}, "iris-00003": {true, 1, 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDeployments(t, Options{})
			tc.setup(t, d)
			ms := modelState(t, d, "iris")
			got := make(map[string]plan)
			for _, rev := range ms.Revisions {
				s, err := ms.Scale(rev)
				if err != nil {
					t.Fatalf("Scale(%s): %v", rev.Name, err)
				}
				got[rev.Name] = plan{ms.Active()[rev.Name], ms.StartReplicas(rev), s.MinReplicas}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScaleSettings(t *testing.T) {
	m := decl("iris", "v1", minReplicas(2), func(m *config.Model) {
		m.MaxReplicas, m.ScaleMetric, m.ScaleTarget, m.ContainerConcurrency = 5, config.MetricRPS, 40, 4
	})
	s, err := ScaleSettings(m, false)
	if err != nil {
		t.Fatal(err)
	}
	want := autoscaler.DefaultSettings()
	want.MinReplicas, want.MaxReplicas, want.InitialScale = 2, 5, 2
	want.Metric, want.Target, want.ContainerConcurrency = autoscaler.MetricRPS, 40, 4
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if s, err := ScaleSettings(m, true); err != nil || s.MinReplicas != 0 || s.InitialScale != 2 {
		t.Errorf("idle: MinReplicas %d, InitialScale %d (%v); want 0, 2", s.MinReplicas, s.InitialScale, err)
	}
	bad := decl("iris", "v1", source("bad.yaml#2"), annotate("autoscaling.knative.dev/window", "1s"))
	if _, err := ScaleSettings(bad, false); err == nil || !strings.Contains(err.Error(), "bad.yaml#2") || !strings.Contains(err.Error(), "window") {
		t.Errorf("a bad annotation: %v, want an error naming the source and the annotation", err)
	}
}
