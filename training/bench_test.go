package training

import (
	"context"
	"testing"
)

// BenchmarkTrainEpochIris measures one training epoch of the iris MLP
// (4-16-3) over the 120 training rows, batches of 32: 4 optimizer steps.
func BenchmarkTrainEpochIris(b *testing.B) {
	backend, err := newBackend()
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Finalize()
	opts := TrainOptions{Model: irisUntrained, Data: irisCSV, Out: "unused", Seed: 1}
	tr, err := prepare(&opts, backend)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// The first epoch compiles the step's graphs.
	if _, err := tr.epoch(ctx, opts.BatchSize); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.epoch(ctx, opts.BatchSize); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(tr.trainRows)), "ns/row")
}
