package bench

import (
	"math"
	"math/bits"
	"time"
)

// The histogram's shape: values below 2*subBuckets are counted exactly;
// above, every power of two is split into subBuckets equal buckets, so a
// bucket is never wider than 1/subBuckets of its lower bound.
const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits
	// maxValueBits bounds the values kept apart: up to 2^40 ns, about 18
	// minutes. Larger values land in the last bucket (Max stays exact).
	maxValueBits = 40
	maxTrackable = 1<<maxValueBits - 1
	numBuckets   = (maxValueBits-subBucketBits)*subBuckets + subBuckets

	// HistogramRelativeError bounds the relative error of a Quantile: the
	// value reported is the middle of the bucket holding the exact one.
	HistogramRelativeError = 1.0 / (2 * subBuckets)
)

// Histogram counts durations in log-linear buckets (the layout of HDR
// histograms): exact below 256ns, and within HistogramRelativeError above,
// up to about 18 minutes. Recording is a few instructions and never
// allocates. A Histogram is not safe for concurrent use: give each goroutine
// its own and Merge them. The zero value is empty and ready to use; it is
// 34 KiB, so allocate it rather than copying it around.
type Histogram struct {
	counts   [numBuckets]uint64
	count    uint64
	sum      int64
	min, max int64
}

// bucketOf returns the bucket of v, 0 <= v <= maxTrackable.
func bucketOf(v int64) int { return logBucketOf(v, subBucketBits) }

// bucketRange returns the lowest value of bucket b and its width.
func bucketRange(b int) (lo, width int64) { return logBucketRange(b, subBucketBits) }

// logBucketOf returns v's bucket among log-linear buckets with 2^subBits
// buckets per power of two (exact below 2^(subBits+1)).
func logBucketOf(v int64, subBits int) int {
	shift := max(bits.Len64(uint64(v))-(subBits+1), 0)
	return shift<<subBits + int(v>>uint(shift))
}

// logBucketRange returns the lowest value of logBucketOf's bucket b and
// its width.
func logBucketRange(b, subBits int) (lo, width int64) {
	if b < 2<<subBits {
		return int64(b), 1
	}
	shift := b>>subBits - 1
	mantissa := int64(b - shift<<subBits)
	return mantissa << uint(shift), 1 << uint(shift)
}

// rankBucket returns the bucket holding the q-quantile (0 < q < 1) of the
// total values counted, -1 when none does.
func rankBucket(counts []uint64, total uint64, q float64) int {
	rank := max(uint64(math.Ceil(q*float64(total))), 1)
	var seen uint64
	for b, c := range counts {
		if seen += c; seen >= rank {
			return b
		}
	}
	return -1
}

// Record counts one duration. Negative durations count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count++
	h.sum += v
	if v > maxTrackable {
		v = maxTrackable
	}
	h.counts[bucketOf(v)]++
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.count }

// Min returns the smallest recorded duration, exactly (0 when empty).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest recorded duration, exactly (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the recorded durations (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.count))
}

// Quantile returns the q-quantile (0 <= q <= 1) of the recorded durations:
// the value of rank ceil(q*Count) in sorted order, within
// HistogramRelativeError, and never outside [Min, Max]. Quantile(0) is Min
// and Quantile(1) is Max, exactly. It returns 0 when h is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	switch {
	case q <= 0 || math.IsNaN(q):
		return time.Duration(h.min)
	case q >= 1:
		return time.Duration(h.max)
	}
	b := rankBucket(h.counts[:], h.count, q)
	if b < 0 {
		return time.Duration(h.max)
	}
	lo, width := bucketRange(b)
	return time.Duration(min(max(lo+width/2, h.min), h.max))
}
