package quota

import (
	"context"
	"sync/atomic"
	"testing"
)

func benchLimiter(b *testing.B, lim Limits) *Limiter {
	b.Helper()
	l, err := NewLimiter(LimiterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Update(lim); err != nil {
		b.Fatal(err)
	}
	return l
}

// A configuration the size of a real one: many tenants and models, so the
// lookups are not of a one-entry map.
func benchLimits(l Limit) Limits {
	var lim Limits
	for i := range 100 {
		lim.Tenants = append(lim.Tenants, TenantLimit{Tenant: "tenant-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Limit: l})
	}
	lim.Tenants = append(lim.Tenants, TenantLimit{Tenant: "acme", Limit: l})
	for i := range 50 {
		lim.Models = append(lim.Models, ModelLimit{Model: "model-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Limit: l})
	}
	lim.Models = append(lim.Models, ModelLimit{Model: "resnet50", Limit: l})
	lim.TenantModels = append(lim.TenantModels, TenantModelLimit{Tenant: "acme", Model: "resnet50", Limit: l})
	return lim
}

func BenchmarkLimiterAdmit(b *testing.B) {
	cases := []struct {
		name string
		lim  Limits
	}{
		{"no limits", Limits{}},
		{"caps only", benchLimits(Limit{MaxInFlight: 1 << 30})},
		{"rates and caps", benchLimits(Limit{RatePerSecond: 1e12, MaxInFlight: 1 << 30})},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			l := benchLimiter(b, tc.lim)
			b.ReportAllocs()
			for b.Loop() {
				tk, err := l.Admit("acme", "resnet50")
				if err != nil {
					b.Fatal(err)
				}
				tk.Release()
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			l := benchLimiter(b, tc.lim)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tk, err := l.Admit("acme", "resnet50")
					if err != nil {
						b.Error(err)
						return
					}
					tk.Release()
				}
			})
		})
	}
}

// BenchmarkLimiterRefuse is the cost of a refusal: a flood over its rate.
func BenchmarkLimiterRefuse(b *testing.B) {
	l := benchLimiter(b, benchLimits(Limit{RatePerSecond: 1e-9}))
	if tk, err := l.Admit("acme", "resnet50"); err == nil {
		tk.Release()
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Admit("acme", "resnet50"); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkFairQueuePass(b *testing.B) {
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		q, err := NewFairQueue(FairQueueOptions{Model: "m", Capacity: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			s, err := q.Acquire(ctx, "acme", 1, 0)
			if err != nil {
				b.Fatal(err)
			}
			s.Release()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		q, err := NewFairQueue(FairQueueOptions{Model: "m", Capacity: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s, err := q.Acquire(ctx, "acme", 1, 0)
				if err != nil {
					b.Error(err)
					return
				}
				s.Release()
			}
		})
	})
}

// BenchmarkFairQueueContended runs more callers than places, each holding
// its place for a little work, so that many requests wait and are handed
// their place by a release; waited/op is the share that waited.
func BenchmarkFairQueueContended(b *testing.B) {
	ctx := context.Background()
	q, err := NewFairQueue(FairQueueOptions{Model: "m", Capacity: 1, MaxQueue: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	tenants := []string{"a", "b", "c", "d"}
	b.ReportAllocs()
	b.SetParallelism(4)
	var n, waited atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		tenant := tenants[int(n.Add(1))%len(tenants)]
		for pb.Next() {
			s, ok := q.TryAcquire()
			if !ok {
				waited.Add(1)
				if s, err = q.Acquire(ctx, tenant, 1, 0); err != nil {
					b.Error(err)
					return
				}
			}
			work()
			s.Release()
		}
	})
	b.ReportMetric(float64(waited.Load())/float64(b.N), "waited/op")
}

var sink uint64

// work stands for the request's time at the model: a few hundred ns.
func work() {
	x := uint64(1)
	for i := range 200 {
		x = x*6364136223846793005 + uint64(i)
	}
	atomic.AddUint64(&sink, x)
}
