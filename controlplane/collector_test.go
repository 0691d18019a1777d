package controlplane

import (
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/config"
)

// TestCollector: each revision's traffic percent and each model's
// rollout step, read from the state at scrape time.
func TestCollector(t *testing.T) {
	d, _ := newDeployments(t, Options{})
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewCollector(d)); err != nil {
		t.Fatal(err)
	}
	// scrape returns every sample as `name{label=value,...} value`.
	scrape := func() []string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				out = append(out, mf.GetName()+"{"+strings.Join(labels, ",")+"} "+strconv.FormatFloat(m.GetGauge().GetValue(), 'g', -1, 64))
			}
		}
		sort.Strings(out)
		return out
	}
	if got := scrape(); len(got) != 0 {
		t.Errorf("with no model: %v", got)
	}
	apply(t, d, false, decl("iris", "v1"))
	apply(t, d, false, decl("iris", "v2", annotate(config.AnnotationRollout, testPolicy)))
	want := []string{
		"infergate_revision_traffic_percent{model=iris,revision=iris-00001} 90",
		"infergate_revision_traffic_percent{model=iris,revision=iris-00002} 10",
		"infergate_rollout_step{canary=iris-00002,model=iris,state=progressing} 1",
	}
	if diff := cmp.Diff(want, scrape()); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}
