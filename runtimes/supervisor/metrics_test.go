package supervisor_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/infergate/infergate/runtimes/supervisor"
)

// histogram returns the histogram name's series for model, nil if none.
func histogram(t *testing.T, reg *prometheus.Registry, name, model string) *dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "model" && l.GetValue() == model {
					return m.GetHistogram()
				}
			}
		}
	}
	return nil
}

// TestStartToReadyMetrics: a replica's first ready answer records its
// start-to-ready time (as Status reports it) and a probe gap no longer
// than that, once per start.
func TestStartToReadyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := start(t, supervisor.Options{Registerer: reg}, 1)
	st := r.waitReady(t, 1)
	took := st.Replicas[0].StartToReady
	if took <= 0 || took > time.Since(st.Replicas[0].Started) {
		t.Errorf("StartToReady = %s, want within (0, time since the start]", took)
	}
	h := histogram(t, reg, "infergate_runtime_start_to_ready_seconds", "iris")
	if h.GetSampleCount() != 1 || h.GetSampleSum() != took.Seconds() {
		t.Errorf("start-to-ready histogram: %d samples of sum %v, want 1 of %v", h.GetSampleCount(), h.GetSampleSum(), took.Seconds())
	}
	gap := histogram(t, reg, "infergate_runtime_ready_probe_gap_seconds", "iris")
	if gap.GetSampleCount() != 1 || gap.GetSampleSum() <= 0 || gap.GetSampleSum() > took.Seconds() {
		t.Errorf("probe gap histogram: %d samples of sum %v, want 1 within (0, %v]", gap.GetSampleCount(), gap.GetSampleSum(), took.Seconds())
	}
}

// TestSupervisorsShareARegisterer: the supervisors of several models
// register their metrics on one Registerer without conflict.
func TestSupervisorsShareARegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, model := range []string{"a", "b"} {
		_, err := supervisor.New(supervisor.Options{Model: model, ModelPath: irisPath, Pool: newPool(t, model), Registerer: reg, Logger: quiet})
		if err != nil {
			t.Fatalf("New(%s) = %v", model, err)
		}
	}
}
