package batcher

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/oip"
)

// mnist returns n requests of one 1x784 FP32 image each, and their rows.
func mnist(n int) ([]*oip.InferRequest, []int64) {
	reqs := make([]*oip.InferRequest, n)
	rows := make([]int64, n)
	for i := range reqs {
		reqs[i] = &oip.InferRequest{
			ModelName: "mnist",
			ID:        "r",
			Inputs:    []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 784}, Data: make([]byte, 784*4)}},
			Outputs:   []oip.RequestedOutput{{Name: "y"}},
		}
		rows[i] = 1
	}
	return reqs, rows
}

func BenchmarkMerge(b *testing.B) {
	reqs, _ := mnist(64)
	b.SetBytes(64 * 784 * 4)
	b.ReportAllocs()
	for b.Loop() {
		merge(reqs, 64)
	}
}

// BenchmarkSplit checks a [64,10] FP32 answer and splits it, as the
// batcher does for every merged batch.
func BenchmarkSplit(b *testing.B) {
	reqs, rows := mnist(64)
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}
	resp := &oip.InferResponse{ModelName: "mnist", Outputs: []oip.Tensor{
		{Name: "y", Datatype: oip.FP32, Shape: []int64{64, 10}, Data: make([]byte, 64*10*4)},
	}}
	b.ReportAllocs()
	for b.Loop() {
		if err := checkResponse(resp, 64, reqs[0].Outputs, "mnist"); err != nil {
			b.Fatal(err)
		}
		split(resp, ids, rows)
	}
}

// BenchmarkSubmit measures the batcher's own cost per request, against an
// upstream that answers at once: sequentially every request is a batch of
// one sent unchanged; in parallel they merge.
func BenchmarkSubmit(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(map[bool]string{false: "sequential", true: "parallel"}[parallel], func(b *testing.B) {
			var calls, rows atomic.Int64
			bt, err := New(Options{
				Model:        "mnist",
				MaxBatchSize: 64,
				Dispatch: func(_ context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
					x := &r.Inputs[0]
					calls.Add(1)
					rows.Add(x.Shape[0])
					return &oip.InferResponse{ModelName: r.ModelName, ID: r.ID, Outputs: []oip.Tensor{
						{Name: "y", Datatype: oip.FP32, Shape: []int64{x.Shape[0], 10}, Data: x.Data[:x.Shape[0]*40]},
					}}, nil
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- bt.Run(ctx) }()
			defer func() { cancel(); <-done }()

			b.ReportAllocs()
			if !parallel {
				reqs, _ := mnist(1)
				for b.Loop() {
					if _, err := bt.Submit(ctx, reqs[0]); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(32) // many callers per core, as a gateway has
				b.RunParallel(func(pb *testing.PB) {
					reqs, _ := mnist(1)
					for pb.Next() {
						if _, err := bt.Submit(ctx, reqs[0]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			if n := calls.Load(); n > 0 {
				b.ReportMetric(float64(rows.Load())/float64(n), "rows/batch")
			}
		})
	}
}

// BenchmarkReady measures the scheduler's decision for one group of 32
// queued requests held for callers expected back: the fill of its
// candidate, the deadline check and the hold rule. It runs at every
// arrival and completion, so it must not allocate.
func BenchmarkReady(b *testing.B) {
	bt, err := New(Options{Model: "mnist", MaxBatchSize: 64, MaxQueueDelay: 5 * time.Millisecond,
		Dispatch: func(context.Context, *oip.InferRequest) (*oip.InferResponse, error) { return nil, nil }})
	if err != nil {
		b.Fatal(err)
	}
	reqs, _ := mnist(1)
	key := appendKey(nil, reqs[0])
	now := time.Now()
	bt.mu.Lock()
	defer bt.mu.Unlock()
	for i := range 32 {
		it, _, err := bt.newItem(context.Background(), reqs[0])
		if err != nil {
			b.Fatal(err)
		}
		it.enqueued = now.Add(time.Duration(i) * time.Microsecond)
		bt.enqueue(it, key)
	}
	g := bt.groups[0]
	g.peak = 64 // half the callers are expected back
	bt.service.observe(64, 8*time.Millisecond)
	at := now.Add(40 * time.Microsecond)
	if n, _ := bt.ready(g, at); n != 0 {
		b.Fatalf("ready = %d, want the batch held", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		bt.ready(g, at)
	}
}
