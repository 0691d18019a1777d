package controlplane

import (
	"fmt"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/config"
)

// The decisions below turn a ModelState into what its revisions' runtimes
// should be: which revisions keep their replicas, how many replicas a new
// one starts with, and its autoscaler settings. They are pure; the owner
// of the runtimes (package serving on one machine) applies them.

// Active returns the names of the model's revisions that keep their
// minReplicas: those with traffic, the pending one, the tagged ones
// (latest, and prev for an instant rollback) and the mirror's. Other
// revisions are kept only to be addressable and may scale to zero.
func (ms ModelState) Active() map[string]bool {
	active := make(map[string]bool)
	for name := range ms.Traffic {
		active[name] = true
	}
	if ms.Pending != "" {
		active[ms.Pending] = true
	}
	for _, name := range ms.Tags {
		active[name] = true
	}
	if ms.Mirror != nil {
		if rev, ok := ms.Revision(ms.Mirror.Revision); ok {
			active[rev.Name] = true
		}
	}
	return active
}

// StartReplicas returns how many replicas rev's runtime asks for when it
// is made: its minReplicas if it is active (see Active), else none; and at
// least one for the pending revision, which must show it can come up
// before it takes traffic even if it may scale to zero later.
func (ms ModelState) StartReplicas(rev Revision) int {
	n := rev.Spec.MinReplicas
	if !ms.Active()[rev.Name] {
		n = 0
	}
	if rev.Name == ms.Pending {
		n = max(n, 1)
	}
	return n
}

// Scale returns the autoscaler settings of rev, a revision infergate runs
// itself, as its model stands: ScaleSettings of its spec, idle unless the
// revision is active, and at least one replica while it is the pending
// revision.
func (ms ModelState) Scale(rev Revision) (autoscaler.Settings, error) {
	s, err := ScaleSettings(rev.Spec, !ms.Active()[rev.Name])
	if err != nil {
		return s, err
	}
	if rev.Name == ms.Pending {
		s.MinReplicas = max(s.MinReplicas, 1)
	}
	return s, nil
}

// ScaleSettings returns the KPA settings of a revision infergate runs
// itself, from its InferenceService: min/max replicas, scale target and
// metric, containerConcurrency, autoscaling.knative.dev annotations. A
// revision kept only for rollback or pinning (idle) may scale to zero
// whatever its minReplicas says. The error names spec.Source.
func ScaleSettings(spec config.Model, idle bool) (autoscaler.Settings, error) {
	s := autoscaler.DefaultSettings()
	s.MinReplicas, s.MaxReplicas = spec.MinReplicas, spec.MaxReplicas
	// minReplicas 0 starts nothing until the first request (Knative starts
	// one and waits out the grace period); an annotation can say otherwise.
	s.InitialScale = spec.MinReplicas
	if spec.ScaleMetric == config.MetricRPS {
		s.Metric = autoscaler.MetricRPS
	}
	if spec.ScaleTarget > 0 {
		s.Target = float64(spec.ScaleTarget)
	}
	s.ContainerConcurrency = int(spec.ContainerConcurrency)
	s, err := autoscaler.SettingsFromAnnotations(s, spec.Annotations)
	if err != nil {
		return s, fmt.Errorf("%s: %w", spec.Source, err)
	}
	if idle {
		s.MinReplicas = 0
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%s: %w", spec.Source, err)
	}
	return s, nil
}
