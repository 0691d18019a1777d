package quota

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/infergate/infergate/oip"
)

// fakeClock is the Limiter's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestLimiter(t *testing.T, lim Limits) (*Limiter, *fakeClock, *Metrics) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLimiter(LimiterOptions{Now: clk.Now, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(lim); err != nil {
		t.Fatal(err)
	}
	return l, clk, m
}

// step is one Admit in a scripted sequence: at offset from the start,
// expect admission, or a refusal of reason and scope with retry after.
type step struct {
	at           time.Duration
	tenant       string
	model        string
	refused      bool
	reason       Reason
	scope        Scope
	retry        time.Duration
	keep         bool // hold the ticket instead of releasing it at once
	releaseKept  bool // release every kept ticket before this step
	wantInFlight int64
}

func TestLimiterBuckets(t *testing.T) {
	tests := []struct {
		name  string
		lim   Limits
		steps []step
	}{
		{
			name: "burst then refill",
			lim:  Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 10, Burst: 3}}}},
			steps: []step{
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenant, retry: 100 * time.Millisecond},
				{at: 40 * time.Millisecond, tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenant, retry: 60 * time.Millisecond},
				{at: 100 * time.Millisecond, tenant: "a", model: "m"},
				{at: 100 * time.Millisecond, tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenant, retry: 100 * time.Millisecond},
				// A quiet spell refills the burst, no more.
				{at: 10 * time.Second, tenant: "a", model: "m"},
				{at: 10 * time.Second, tenant: "a", model: "m"},
				{at: 10 * time.Second, tenant: "a", model: "m"},
				{at: 10 * time.Second, tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenant, retry: 100 * time.Millisecond},
			},
		},
		{
			name: "default burst is one second's worth",
			lim:  Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 2.5}}}},
			steps: []step{
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenant, retry: 400 * time.Millisecond},
			},
		},
		{
			name: "slow rate, burst of one",
			lim:  Limits{Models: []ModelLimit{{Model: "m", Limit: Limit{RatePerSecond: 0.5, Burst: 1}}}},
			steps: []step{
				{tenant: "a", model: "m"},
				{at: 500 * time.Millisecond, tenant: "b", model: "m", refused: true, reason: ReasonRate, scope: ScopeModel, retry: 1500 * time.Millisecond},
				{at: 500 * time.Millisecond, tenant: "b", model: "other"},
				{at: 2 * time.Second, tenant: "b", model: "m"},
			},
		},
		{
			name: "a refusal gives back the tokens it took",
			lim: Limits{
				Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1, Burst: 2}}},
				Models:  []ModelLimit{{Model: "m", Limit: Limit{RatePerSecond: 1, Burst: 1}}},
			},
			steps: []step{
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeModel, retry: time.Second},
				{tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeModel, retry: time.Second},
				// The tenant's second token is still there.
				{tenant: "a", model: "other"},
				{tenant: "a", model: "other", refused: true, reason: ReasonRate, scope: ScopeTenant, retry: time.Second},
			},
		},
		{
			name: "per tenant and model",
			lim: Limits{
				Tenants:      []TenantLimit{{Tenant: "a"}},
				TenantModels: []TenantModelLimit{{Tenant: "a", Model: "m", Limit: Limit{RatePerSecond: 1, Burst: 1}}, {Tenant: "c", Model: "m", Limit: Limit{RatePerSecond: 1, Burst: 1}}},
			},
			steps: []step{
				{tenant: "a", model: "m"},
				{tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenantModel, retry: time.Second},
				{tenant: "a", model: "n"},
				{tenant: "b", model: "m"},
				{tenant: "c", model: "m"},
				{tenant: "c", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenantModel, retry: time.Second},
			},
		},
		{
			name: "concurrency caps, tenant then model then pair",
			lim: Limits{
				Tenants:      []TenantLimit{{Tenant: "a", Limit: Limit{MaxInFlight: 3}}, {Tenant: "b"}},
				Models:       []ModelLimit{{Model: "m", Limit: Limit{MaxInFlight: 2}}},
				TenantModels: []TenantModelLimit{{Tenant: "b", Model: "n", Limit: Limit{MaxInFlight: 1}}},
			},
			steps: []step{
				{tenant: "a", model: "m", keep: true},
				{tenant: "b", model: "m", keep: true},
				{tenant: "b", model: "m", refused: true, reason: ReasonConcurrency, scope: ScopeModel, retry: time.Second},
				{tenant: "a", model: "n", keep: true},
				{tenant: "a", model: "n", keep: true},
				{tenant: "a", model: "x", refused: true, reason: ReasonConcurrency, scope: ScopeTenant, retry: time.Second},
				{tenant: "b", model: "n", keep: true},
				{tenant: "b", model: "n", refused: true, reason: ReasonConcurrency, scope: ScopeTenantModel, retry: time.Second},
				{releaseKept: true, tenant: "a", model: "m", wantInFlight: 1},
			},
		},
		{
			name: "a refusal for concurrency takes no token",
			lim: Limits{
				Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1, Burst: 2}}},
				Models:  []ModelLimit{{Model: "m", Limit: Limit{MaxInFlight: 1}}},
			},
			steps: []step{
				{tenant: "a", model: "m", keep: true},
				{tenant: "a", model: "m", refused: true, reason: ReasonConcurrency, scope: ScopeModel, retry: time.Second},
				{tenant: "a", model: "m", refused: true, reason: ReasonConcurrency, scope: ScopeModel, retry: time.Second},
				{releaseKept: true, tenant: "a", model: "m"},
				{tenant: "a", model: "m", refused: true, reason: ReasonRate, scope: ScopeTenant, retry: time.Second},
			},
		},
		{
			name: "unknown tenant and model are unbounded",
			lim:  Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1, Burst: 1, MaxInFlight: 1}}}},
			steps: []step{
				{tenant: "z", model: "m", keep: true},
				{tenant: "z", model: "m", keep: true},
				{tenant: "", model: "m", keep: true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, clk, _ := newTestLimiter(t, tc.lim)
			start := clk.Now()
			var kept []Ticket
			for i, s := range tc.steps {
				if s.releaseKept {
					for _, k := range kept {
						k.Release()
					}
					kept = nil
				}
				// Alternate the injected clock and AdmitAt: they must agree.
				at := start.Add(s.at)
				var tk Ticket
				var err error
				if i%2 == 0 {
					clk.Advance(at.Sub(clk.Now()))
					tk, err = l.Admit(s.tenant, s.model)
				} else {
					tk, err = l.AdmitAt(s.tenant, s.model, at)
				}
				if !s.refused {
					if err != nil {
						t.Fatalf("step %d (%s, %s at %s): %v", i, s.tenant, s.model, s.at, err)
					}
					if s.wantInFlight != 0 {
						if got, _, _ := l.InFlight(s.tenant, s.model); got != s.wantInFlight {
							t.Errorf("step %d: tenant in flight %d, want %d", i, got, s.wantInFlight)
						}
					}
					if s.keep {
						kept = append(kept, tk)
					} else {
						tk.Release()
					}
					continue
				}
				var re *RefusedError
				if !errors.As(err, &re) {
					t.Fatalf("step %d (%s, %s at %s): err %v, want a refusal", i, s.tenant, s.model, s.at, err)
				}
				got := [3]any{re.Reason, re.Scope, re.After}
				want := [3]any{s.reason, s.scope, s.retry}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("step %d (%s, %s at %s): refusal (-want +got):\n%s", i, s.tenant, s.model, s.at, diff)
				}
			}
			for _, k := range kept {
				k.Release()
			}
			for _, s := range tc.steps {
				tn, m, tm := l.InFlight(s.tenant, s.model)
				if tn > 0 || m > 0 || tm > 0 {
					t.Errorf("after all releases, in flight for (%s, %s): %d %d %d", s.tenant, s.model, tn, m, tm)
				}
			}
		})
	}
}

func TestLimiterUpdateKeepsState(t *testing.T) {
	l, clk, _ := newTestLimiter(t, Limits{
		Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1, Burst: 1, MaxInFlight: 2}}},
	})
	t1, err := l.Admit("a", "m")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	t2, err := l.Admit("a", "m")
	if err != nil {
		t.Fatal(err)
	}

	// A lower cap counts the two in flight; the bucket keeps its level.
	if err := l.Update(Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1, Burst: 1, MaxInFlight: 1}}}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	t1.Release()
	if _, err := l.Admit("a", "m"); !errors.Is(err, ErrConcurrencyLimited) {
		t.Fatalf("one in flight under a cap of 1: err %v, want ErrConcurrencyLimited", err)
	}
	t2.Release()
	if n, _, _ := l.InFlight("a", "m"); n != 0 {
		t.Fatalf("in flight %d after releasing both", n)
	}
	t3, err := l.Admit("a", "m")
	if err != nil {
		t.Fatalf("nothing in flight, a token there: %v", err)
	}
	t3.Release()
	if err := l.Update(Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1, Burst: 1}}}}); err != nil {
		t.Fatal(err)
	}
	var re *RefusedError
	if _, err := l.Admit("a", "m"); !errors.As(err, &re) || re.Reason != ReasonRate || re.After != time.Second {
		t.Fatalf("bucket emptied before the update: err %v, want a rate refusal after 1s", err)
	}

	// A ticket of a limit that an update dropped still releases cleanly.
	clk.Advance(time.Second)
	t4, err := l.Admit("a", "m")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(Limits{}); err != nil {
		t.Fatal(err)
	}
	t4.Release()
	if n, _, _ := l.InFlight("a", "m"); n != -1 {
		t.Fatalf("dropped tenant: InFlight %d, want -1", n)
	}
}

func TestLimiterUpdateValidates(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		want string
	}{
		{"empty tenant", Limits{Tenants: []TenantLimit{{}}}, `Tenants[0] (""): Tenant is empty`},
		{"duplicate tenant", Limits{Tenants: []TenantLimit{{Tenant: "a"}, {Tenant: "a"}}}, `Tenants[1] ("a"): tenant named twice`},
		{"empty model", Limits{Models: []ModelLimit{{}}}, `Models[0] (""): Model is empty`},
		{"duplicate model", Limits{Models: []ModelLimit{{Model: "m"}, {Model: "m"}}}, `Models[1] ("m"): model named twice`},
		{"pair without model", Limits{TenantModels: []TenantModelLimit{{Tenant: "a"}}}, `TenantModels[0] ("a", ""): Model is empty`},
		{"pair without tenant", Limits{TenantModels: []TenantModelLimit{{Model: "m"}}}, `TenantModels[0] ("", "m"): Tenant is empty`},
		{"duplicate pair", Limits{TenantModels: []TenantModelLimit{{Tenant: "a", Model: "m"}, {Tenant: "a", Model: "m"}}}, `TenantModels[1] ("a", "m"): tenant and model named twice`},
		{"negative rate", Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: -1}}}}, `RatePerSecond -1`},
		{"NaN rate", Limits{Models: []ModelLimit{{Model: "m", Limit: Limit{RatePerSecond: math.NaN()}}}}, `RatePerSecond NaN`},
		{"infinite rate", Limits{Models: []ModelLimit{{Model: "m", Limit: Limit{RatePerSecond: math.Inf(1)}}}}, `RatePerSecond +Inf`},
		{"negative burst", Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1, Burst: -1}}}}, `Burst -1 is negative`},
		{"burst without rate", Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{Burst: 3}}}}, `Burst 3 without a RatePerSecond`},
		{"negative in flight", Limits{Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{MaxInFlight: -2}}}}, `MaxInFlight -2 is negative`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _, _ := newTestLimiter(t, Limits{Tenants: []TenantLimit{{Tenant: "keep", Limit: Limit{MaxInFlight: 1}}}})
			err := l.Update(tc.lim)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Update: err %v, want one containing %q", err, tc.want)
			}
			// Nothing changed.
			tk, err := l.Admit("keep", "m")
			if err != nil {
				t.Fatal(err)
			}
			defer tk.Release()
			if _, err := l.Admit("keep", "m"); !errors.Is(err, ErrConcurrencyLimited) {
				t.Fatalf("the limits before the failed update: err %v, want ErrConcurrencyLimited", err)
			}
		})
	}
}

func TestLimiterExtremeRates(t *testing.T) {
	l, clk, _ := newTestLimiter(t, Limits{Tenants: []TenantLimit{
		{Tenant: "fast", Limit: Limit{RatePerSecond: 1e12, Burst: math.MaxInt32}},
		{Tenant: "slow", Limit: Limit{RatePerSecond: 1e-30}},
	}})
	for range 3 {
		tk, err := l.Admit("fast", "m")
		if err != nil {
			t.Fatal(err)
		}
		tk.Release()
	}
	if _, err := l.Admit("slow", "m"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	ra, ok := RetryAfter(func() error { _, err := l.Admit("slow", "m"); return err }())
	if !ok || ra < 50*365*24*time.Hour {
		t.Fatalf("a rate of 1e-30/s: retry after %s (%v), want decades", ra, ok)
	}
}

func TestRefusedErrorProtocol(t *testing.T) {
	l, _, m := newTestLimiter(t, Limits{
		Tenants: []TenantLimit{{Tenant: "acme", Limit: Limit{RatePerSecond: 4, Burst: 1}}},
		Models:  []ModelLimit{{Model: "resnet", Limit: Limit{MaxInFlight: 1}}},
	})
	tk, err := l.Admit("acme", "other")
	if err != nil {
		t.Fatal(err)
	}
	tk.Release()
	_, rateErr := l.Admit("acme", "other")
	hold, err := l.Admit("anon", "resnet")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Release()
	_, concErr := l.Admit("anon", "resnet")

	tests := []struct {
		name     string
		err      error
		sentinel error
		msg      string
		retry    time.Duration
		header   int
	}{
		{"rate", rateErr, ErrRateLimited, `tenant "acme" is over its rate limit of 4 requests/s; retry after 250ms`, 250 * time.Millisecond, 1},
		{"concurrency", concErr, ErrConcurrencyLimited, `model "resnet" has its limit of 1 requests in flight; retry after 1s`, time.Second, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.sentinel) {
				t.Errorf("err %v is not %v", tc.err, tc.sentinel)
			}
			if got := oip.KindOf(tc.err); got != oip.KindResourceExhausted {
				t.Errorf("kind %v, want resource exhausted", got)
			}
			if got := oip.HTTPStatus(tc.err); got != http.StatusTooManyRequests {
				t.Errorf("HTTP status %d, want 429", got)
			}
			if got := oip.GRPCCode(tc.err); got != codes.ResourceExhausted {
				t.Errorf("gRPC code %v, want ResourceExhausted", got)
			}
			if got := oip.Message(tc.err); got != tc.msg {
				t.Errorf("message %q, want %q", got, tc.msg)
			}
			if got, ok := RetryAfter(tc.err); !ok || got != tc.retry {
				t.Errorf("RetryAfter %s %v, want %s", got, ok, tc.retry)
			}
			if got := RetryAfterSeconds(tc.retry); got != tc.header {
				t.Errorf("RetryAfterSeconds(%s) %d, want %d", tc.retry, got, tc.header)
			}
		})
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("acme", "other", "tenant", "rate")); got != 1 {
		t.Errorf("rate refusals counted %v, want 1", got)
	}
	// An unconfigured tenant is labelled "", keeping the label to the
	// configured tenants.
	if got := testutil.ToFloat64(m.refused.WithLabelValues("", "resnet", "model", "concurrency")); got != 1 {
		t.Errorf("concurrency refusals counted %v, want 1", got)
	}
	if _, ok := RetryAfter(errors.New("plain")); ok {
		t.Error("RetryAfter of a plain error: ok")
	}
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Duration(math.MaxInt64): math.MaxInt32} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}

// TestLimiterConcurrent admits and releases from many goroutines while the
// limits change, under -race: a cap is never exceeded while it stands, and
// every count returns to zero.
func TestLimiterConcurrent(t *testing.T) {
	l, _, _ := newTestLimiter(t, Limits{
		Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{MaxInFlight: 3}}, {Tenant: "b", Limit: Limit{MaxInFlight: 3}}},
		Models:  []ModelLimit{{Model: "m", Limit: Limit{MaxInFlight: 4}}},
	})
	var inA, maxA atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			tenant := []string{"a", "b"}[g%2]
			for range 500 {
				tk, err := l.Admit(tenant, "m")
				if err != nil {
					if !errors.Is(err, ErrConcurrencyLimited) {
						t.Errorf("Admit: %v", err)
						return
					}
					continue
				}
				if tenant == "a" {
					n := inA.Add(1)
					for {
						m := maxA.Load()
						if n <= m || maxA.CompareAndSwap(m, n) {
							break
						}
					}
					inA.Add(-1)
				}
				tk.Release()
			}
		})
	}
	wg.Go(func() {
		// Swap the model's limits back and forth; tenant a keeps its cap.
		for i := range 200 {
			mm := Limit{MaxInFlight: 1 + i%4, RatePerSecond: float64(1e6 + i)}
			if err := l.Update(Limits{
				Tenants: []TenantLimit{{Tenant: "a", Limit: Limit{MaxInFlight: 3}}, {Tenant: "b", Limit: Limit{MaxInFlight: 3}}},
				Models:  []ModelLimit{{Model: "m", Limit: mm}},
			}); err != nil {
				t.Errorf("Update: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if m := maxA.Load(); m > 3 {
		t.Errorf("tenant a had %d in flight, over its cap of 3", m)
	}
	for _, tenant := range []string{"a", "b"} {
		if tn, m, _ := l.InFlight(tenant, "m"); tn != 0 || m != 0 {
			t.Errorf("tenant %s: in flight %d, model %d after all released", tenant, tn, m)
		}
	}
}

func TestLimiterAdmitAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("-race allocates")
	}
	l, _, _ := newTestLimiter(t, Limits{
		Tenants:      []TenantLimit{{Tenant: "a", Limit: Limit{RatePerSecond: 1e9, MaxInFlight: 100}}},
		Models:       []ModelLimit{{Model: "m", Limit: Limit{RatePerSecond: 1e9, MaxInFlight: 100}}},
		TenantModels: []TenantModelLimit{{Tenant: "a", Model: "m", Limit: Limit{RatePerSecond: 1e9, MaxInFlight: 100}}},
	})
	l.opts.Now = time.Now // the fake clock's lock is not what is measured
	if n := testing.AllocsPerRun(1000, func() {
		tk, err := l.Admit("a", "m")
		if err != nil {
			t.Fatal(err)
		}
		tk.Release()
	}); n != 0 {
		t.Errorf("Admit and Release allocate %v times", n)
	}
}

func TestNewLimiterRejects(t *testing.T) {
	if _, err := NewLimiter(LimiterOptions{ConcurrencyRetryAfter: -1}); err == nil || !strings.Contains(err.Error(), "ConcurrencyRetryAfter") {
		t.Fatalf("negative ConcurrencyRetryAfter: err %v", err)
	}
}
