package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketLayout(t *testing.T) {
	// Every bucket starts where the previous one ends, and bucketOf maps
	// both ends of a bucket back to it.
	next := int64(0)
	for b := 0; b < numBuckets; b++ {
		lo, width := bucketRange(b)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", b, lo, next)
		}
		if got := bucketOf(lo); got != b {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, got, b)
		}
		if got := bucketOf(lo + width - 1); got != b {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo+width-1, got, b)
		}
		if b >= 2*subBuckets && float64(width)/float64(lo) > 1.0/subBuckets {
			t.Fatalf("bucket %d: width %d is too wide for lower bound %d", b, width, lo)
		}
		next = lo + width
	}
	if next != maxTrackable+1 {
		t.Fatalf("buckets end at %d, want %d", next, int64(maxTrackable)+1)
	}
}

func TestHistogramQuantilesAgainstSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() time.Duration
		n    int
	}{
		{"small exact values", func() time.Duration { return time.Duration(rng.IntN(300)) }, 5000},
		{"uniform microseconds", func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }, 20000},
		{"log-normal latencies", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*1.5 + math.Log(200e3)))
		}, 50000},
		{"one value", func() time.Duration { return 123456789 }, 10},
		{"bimodal", func() time.Duration {
			if rng.IntN(100) == 0 {
				return time.Duration(rng.Int64N(int64(time.Second)))
			}
			return time.Duration(50e3 + rng.Int64N(10e3))
		}, 30000},
	}
	quantiles := []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := new(Histogram)
			ref := make([]time.Duration, tc.n)
			for i := range ref {
				ref[i] = tc.gen()
				h.Record(ref[i])
			}
			slices.Sort(ref)
			if h.Count() != uint64(tc.n) {
				t.Fatalf("Count() = %d, want %d", h.Count(), tc.n)
			}
			if h.Min() != ref[0] || h.Max() != ref[tc.n-1] {
				t.Fatalf("Min, Max = %v, %v; want %v, %v", h.Min(), h.Max(), ref[0], ref[tc.n-1])
			}
			for _, q := range quantiles {
				rank := int(math.Ceil(q * float64(tc.n)))
				rank = max(rank, 1)
				want := ref[rank-1]
				got := h.Quantile(q)
				if relErr(got, want) > HistogramRelativeError {
					t.Errorf("Quantile(%v) = %v, want %v within %.3f%% (error %.3f%%)",
						q, got, want, 100*HistogramRelativeError, 100*relErr(got, want))
				}
			}
		})
	}
}

func relErr(got, want time.Duration) float64 {
	if want == 0 {
		if got == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Abs(float64(got-want)) / float64(want)
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := new(Histogram), new(Histogram), new(Histogram)
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	a.Merge(new(Histogram)) // merging an empty one changes nothing
	if *a != *all {
		t.Fatalf("merged histogram differs: count %d min %v max %v mean %v; want %d %v %v %v",
			a.Count(), a.Min(), a.Max(), a.Mean(), all.Count(), all.Min(), all.Max(), all.Mean())
	}
	if got, want := a.Mean(), 500500*time.Nanosecond; got != want {
		t.Errorf("Mean() = %v, want %v", got, want)
	}
}

func TestHistogramEdges(t *testing.T) {
	h := new(Histogram)
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Max() != 0 {
		t.Fatal("an empty histogram must report zeros")
	}
	h.Record(-5)
	if h.Min() != 0 || h.Quantile(0.5) != 0 {
		t.Errorf("a negative duration must count as 0, got min %v", h.Min())
	}
	huge := 2 * time.Hour
	h.Record(huge)
	if h.Max() != huge || h.Quantile(1) != huge {
		t.Errorf("Max() = %v, want %v exactly", h.Max(), huge)
	}
	if q := h.Quantile(0.99); q > huge {
		t.Errorf("Quantile(0.99) = %v is above Max", q)
	}
	h.Reset()
	if h.Count() != 0 {
		t.Error("Reset left counts")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := new(Histogram)
	d := time.Duration(0)
	if n := testing.AllocsPerRun(1000, func() { d += 997; h.Record(d) }); n != 0 {
		t.Errorf("Record allocates %v times per call", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := new(Histogram)
	b.ReportAllocs()
	d := time.Duration(0)
	for b.Loop() {
		d += 7919
		h.Record(d & (1<<30 - 1))
	}
}
