package onnx

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkRun measures one Run of each sample model at batch 1 and 32; the
// ns/item metric is ns/op divided by the batch.
func BenchmarkRun(b *testing.B) {
	for _, model := range sampleModels {
		b.Run(model, func(b *testing.B) {
			m := loadSample(b, model, Options{})
			cases := sampleCases(b, model)
			src := toTensors(b, cases[len(cases)-1].Inputs)
			for _, n := range []int{1, 32} {
				b.Run("batch"+strconv.Itoa(n), func(b *testing.B) {
					in := rows(src, n)
					ctx := context.Background()
					b.ReportAllocs()
					for b.Loop() {
						if _, err := m.Run(ctx, in); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/item")
				})
			}
		})
	}
}

// BenchmarkRunParallel measures concurrent Runs at batch 1, the shape of
// unbatched traffic.
func BenchmarkRunParallel(b *testing.B) {
	for _, model := range sampleModels {
		b.Run(model, func(b *testing.B) {
			m := loadSample(b, model, Options{})
			in := rows(toTensors(b, sampleCases(b, model)[0].Inputs), 1)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := m.Run(ctx, in); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLoad measures Load, including the ahead-of-time compiles.
func BenchmarkLoad(b *testing.B) {
	for _, model := range sampleModels {
		b.Run(model, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m, err := Load(samplePath(model), Options{Name: model})
				if err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
	}
}
