package autoscaler

import "time"

// Window keeps a model's samples in one bucket per second over a span (the
// stable window) and averages them over that span or a shorter one ending
// now (the panic window). A bucket's value is the mean of the samples
// recorded in its second.
//
// The average over a window at now is the mean of the bucket values of the
// seconds in the window, with three refinements, all Knative's:
//   - a second without a sample counts as 0 (a gap is no traffic);
//   - seconds before the first sample are left out, so a young series is
//     averaged over its life so far rather than diluted by seconds nobody
//     watched; the series starts over when a whole span passes without a
//     sample;
//   - seconds after the last sample are left out too, so that a decision
//     taken before this second's sample does not read the second as 0.
//
// A Window is not safe for concurrent use; Average does not change it.
type Window struct {
	buckets []bucket // a ring indexed by Unix second modulo its length
	first   int64    // the Unix second of the first sample of the series
	last    int64    // the Unix second of the latest sample
	empty   bool
}

type bucket struct {
	sec int64 // the Unix second the bucket holds; others are stale
	sum float64
	n   int
}

// NewWindow returns an empty Window spanning span, rounded up to whole
// seconds (at least one).
func NewWindow(span time.Duration) *Window {
	n := int((span + time.Second - 1) / time.Second)
	return &Window{buckets: make([]bucket, max(n, 1)), empty: true}
}

// Span is the longest window Average covers.
func (w *Window) Span() time.Duration { return time.Duration(len(w.buckets)) * time.Second }

// Record adds a sample taken at t. A sample older than the span before the
// latest one is dropped.
func (w *Window) Record(t time.Time, v float64) {
	sec := t.Unix()
	span := int64(len(w.buckets))
	switch {
	case w.empty || sec-w.last >= span:
		// No sample within a span: a new series.
		w.first, w.last, w.empty = sec, sec, false
	case sec <= w.last-span:
		return
	case sec > w.last:
		w.last = sec
	case sec < w.first:
		w.first = sec
	}
	b := &w.buckets[mod(sec, span)]
	if b.sec != sec || b.n == 0 {
		*b = bucket{sec: sec}
	}
	b.sum += v
	b.n++
}

// Average returns the average of the samples over the window of length d
// (rounded up to whole seconds, at most the span) that ends with now's
// second; 0 when the window holds no sample.
func (w *Window) Average(now time.Time, d time.Duration) float64 {
	if w.empty {
		return 0
	}
	span := int64(len(w.buckets))
	n := int64((d + time.Second - 1) / time.Second)
	n = min(max(n, 1), span)
	end := now.Unix()
	from := max(end-n+1, w.first)
	to := min(end, w.last)
	if from > to {
		return 0
	}
	var sum float64
	for sec := from; sec <= to; sec++ {
		if b := w.buckets[mod(sec, span)]; b.sec == sec && b.n > 0 {
			sum += b.sum / float64(b.n)
		}
	}
	return sum / float64(to-from+1)
}

// resized returns a Window of the new span holding w's samples that fit in
// it, one per second (each second's mean).
func (w *Window) resized(span time.Duration) *Window {
	nw := NewWindow(span)
	if w.empty {
		return nw
	}
	for sec := max(w.first, w.last-int64(len(nw.buckets))+1); sec <= w.last; sec++ {
		if b := w.buckets[mod(sec, int64(len(w.buckets)))]; b.sec == sec && b.n > 0 {
			nw.Record(time.Unix(sec, 0), b.sum/float64(b.n))
		}
	}
	if !nw.empty {
		nw.first = max(w.first, w.last-int64(len(nw.buckets))+1)
	}
	return nw
}

func mod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}
