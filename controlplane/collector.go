package controlplane

import "github.com/prometheus/client_golang/prometheus"

var (
	trafficDesc = prometheus.NewDesc("infergate_revision_traffic_percent",
		"A revision's share of its model's requests.", []string{"model", "revision"}, nil)
	rolloutStepDesc = prometheus.NewDesc("infergate_rollout_step",
		"The 1-based step of a model's latest rollout, labelled with its state (progressing, paused, promoted, rolled-back, superseded).", []string{"model", "canary", "state"}, nil)
)

// NewCollector returns a collector of d's traffic split and rollout steps,
// read from d at each scrape (see the package comment for the metrics).
// Register it on the process's Registerer.
func NewCollector(d *Deployments) prometheus.Collector { return collector{d} }

type collector struct{ d *Deployments }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- trafficDesc
	ch <- rolloutStepDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, ms := range c.d.State().Models {
		for _, rev := range ms.Revisions {
			ch <- prometheus.MustNewConstMetric(trafficDesc, prometheus.GaugeValue, float64(ms.Traffic[rev.Name]), ms.Name, rev.Name)
		}
		if st, err := c.d.RolloutStatus(ms.Name); err == nil {
			ch <- prometheus.MustNewConstMetric(rolloutStepDesc, prometheus.GaugeValue, float64(st.Step), ms.Name, st.Canary, string(st.State))
		}
	}
}
