package quota

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("registering the collectors twice: no error")
	}
	l, err := NewLimiter(LimiterOptions{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(Limits{Tenants: []TenantLimit{{Tenant: "acme", Limit: Limit{MaxInFlight: 1}}}}); err != nil {
		t.Fatal(err)
	}
	tk, _ := l.Admit("acme", "resnet")
	if _, err := l.Admit("acme", "resnet"); err == nil {
		t.Fatal("over the cap: admitted")
	}
	tk.Release()
	q, err := NewFairQueue(FairQueueOptions{Model: "resnet", Capacity: 1, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := q.Acquire(context.Background(), "acme", 1, 0)
	s.Release()

	const want = `
# HELP infergate_quota_refused_total Requests refused by a quota, by the limit's scope (tenant, model, tenant_model) and reason (rate, concurrency, queue_full).
# TYPE infergate_quota_refused_total counter
infergate_quota_refused_total{model="resnet",reason="concurrency",scope="tenant",tenant="acme"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "infergate_quota_refused_total"); err != nil {
		t.Error(err)
	}
	m.ForgetTenant("acme")
	m.ForgetModel("resnet")
	if n := testutil.CollectAndCount(m.refused); n != 0 {
		t.Errorf("%d refusal series left after forgetting", n)
	}
}

func TestNilMetrics(t *testing.T) {
	l, err := NewLimiter(LimiterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(Limits{Models: []ModelLimit{{Model: "m", Limit: Limit{MaxInFlight: 1}}}}); err != nil {
		t.Fatal(err)
	}
	tk, _ := l.Admit("a", "m")
	defer tk.Release()
	if _, err := l.Admit("a", "m"); err == nil {
		t.Fatal("over the cap: admitted")
	}
}

// TestImports keeps the package's promise to import nothing of ours but
// oip, so that the gateway can wire it and nothing else can pull the
// gateway in through it.
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-f", `{{join .Deps "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/infergate/infergate/"
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, module) && dep != module+"oip" && !strings.HasPrefix(dep, module+"oip/") {
			t.Errorf("depends on %s; only on %soip and what it imports", dep, module)
		}
	}
}
