package serving

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
)

func TestNewManagerOptions(t *testing.T) {
	gw, err := gateway.New(gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := controlplane.New(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts ManagerOptions
		want string
	}{
		{"no gateway", ManagerOptions{Status: dep}, "Gateway"},
		{"no status", ManagerOptions{Gateway: gw}, "Status"},
		{"local runtimes without an activator", ManagerOptions{Gateway: gw, Status: dep, LocalRuntimes: true}, "Activator"},
		{"negative drain", ManagerOptions{Gateway: gw, Status: dep, DrainTimeout: -1}, "DrainTimeout"},
	} {
		if _, err := NewManager(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	m, err := NewManager(ManagerOptions{Gateway: gw, Status: dep})
	if err != nil {
		t.Fatal(err)
	}
	if m.opts.DataDir != DefaultDataDir || m.opts.DrainTimeout != DefaultDrainTimeout {
		t.Errorf("defaults: data dir %q, drain %v", m.opts.DataDir, m.opts.DrainTimeout)
	}
	m.Close()
}

func TestNewReconcilerOptions(t *testing.T) {
	h := newHarness(t, false)
	full := ReconcilerOptions{Deployments: h.dep, Manager: h.manager, Gateway: h.gw, Autoscaler: h.scaler}
	for _, tc := range []struct {
		name   string
		change func(*ReconcilerOptions)
		want   string
	}{
		{"no deployments", func(o *ReconcilerOptions) { o.Deployments = nil }, "Deployments"},
		{"no manager", func(o *ReconcilerOptions) { o.Manager = nil }, "Manager"},
		{"no gateway", func(o *ReconcilerOptions) { o.Gateway = nil }, "Gateway"},
		{"no autoscaler", func(o *ReconcilerOptions) { o.Autoscaler = nil }, "Autoscaler"},
		{"negative retry", func(o *ReconcilerOptions) { o.RetryInterval = -1 }, "RetryInterval"},
	} {
		opts := full
		tc.change(&opts)
		if _, err := NewReconciler(opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

// TestScalerOnlyScalesSupervisedRevisions: the autoscaler's calls for a
// revision at URLs, or one that is gone, are errors it retries, not
// panics; its ready count is the pool's.
func TestScalerOnlyScalesSupervisedRevisions(t *testing.T) {
	h := newHarness(t, false)
	if _, err := h.rec.Apply(parse(t, endpointModel("e", "", fakeEndpoint(t, "version=1"))), false); err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"e-00001", "gone-00001"} {
		if err := h.manager.SetReplicas(context.Background(), rev, 2); !errors.Is(err, ErrNotSupervised) {
			t.Errorf("SetReplicas(%s): %v, want ErrNotSupervised", rev, err)
		}
	}
	h.waitState(t, "e-00001 ready", revisionReady("e", "e-00001"))
	if n := h.manager.ReadyReplicas("e-00001"); n != 1 {
		t.Errorf("ReadyReplicas(e-00001) = %d, want 1", n)
	}
	if n := h.manager.ReadyReplicas("gone-00001"); n != 0 {
		t.Errorf("ReadyReplicas of no revision = %d, want 0", n)
	}
	if _, ok := h.manager.RuntimeStatus("gone-00001"); ok {
		t.Errorf("RuntimeStatus of no revision reports one")
	}
}
