package router

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestBucketsCoverEveryLatency(t *testing.T) {
	prevHi := time.Duration(0)
	for i := 0; i < NumBuckets; i++ {
		lo, hi := BucketBounds(i)
		if lo != prevHi || hi <= lo {
			t.Fatalf("bucket %d is [%d, %d), previous ended at %d", i, lo, hi, prevHi)
		}
		if w := float64(hi-lo) / float64(lo); lo >= subBuckets && w > 0.125 {
			t.Fatalf("bucket %d [%d, %d) is %.1f%% wide", i, lo, hi, w*100)
		}
		prevHi = hi
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := time.Duration(r.Int64N(int64(prevHi)))
		lo, hi := BucketBounds(bucketOf(d))
		if d < lo || d >= hi {
			t.Fatalf("%d went to bucket %d = [%d, %d)", d, bucketOf(d), lo, hi)
		}
	}
	if got := bucketOf(time.Duration(1) << 50); got != NumBuckets-1 {
		t.Fatalf("a very long latency went to bucket %d, want the last", got)
	}
}

func TestCountsWindow(t *testing.T) {
	var s Stats
	for i := range 100 {
		s.Record(time.Duration(i+1)*time.Millisecond, OutcomeOK)
	}
	before := s.Snapshot()
	for range 90 {
		s.Record(10*time.Millisecond, OutcomeOK)
	}
	for range 10 {
		s.Record(time.Second, OutcomeServerError)
	}
	for range 50 {
		s.Record(time.Microsecond, OutcomeClientError)
	}
	w := s.Snapshot().Sub(before)
	if w.Requests != 150 || w.ClientErrors != 50 || w.ServerErrors != 10 || w.Judged() != 100 {
		t.Fatalf("window counts %+v", w)
	}
	if got := w.ErrorRate(); got != 0.1 {
		t.Fatalf("error rate %v, want 0.1 (client errors excluded)", got)
	}
	if p50 := w.Quantile(0.5); p50 < 9*time.Millisecond || p50 > 11*time.Millisecond {
		t.Fatalf("p50 %v, want about 10ms", p50)
	}
	if p99 := w.Quantile(0.99); p99 < 900*time.Millisecond || p99 > 1100*time.Millisecond {
		t.Fatalf("p99 %v, want about 1s", p99)
	}
	if (Counts{}).Quantile(0.99) != 0 || (Counts{}).ErrorRate() != 0 {
		t.Fatal("an empty window has no latency and no error rate")
	}
}

func BenchmarkStatsRecord(b *testing.B) {
	var s Stats
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := 1500 * time.Microsecond
		for pb.Next() {
			s.Record(d, OutcomeOK)
		}
	})
}

// TestStatsIdle: Idle is closed at once with nothing in flight, closes
// when the last request ends (never before), and does not miss an End
// that races with it.
func TestStatsIdle(t *testing.T) {
	var s Stats
	select {
	case <-s.Idle():
	default:
		t.Fatal("Idle with nothing in flight is not closed")
	}
	s.Begin()
	s.Begin()
	idle := s.Idle()
	s.End()
	select {
	case <-idle:
		t.Fatal("Idle closed with a request still in flight")
	default:
	}
	s.End()
	select {
	case <-idle:
	default:
		t.Fatal("Idle not closed once the last request ended")
	}

	// Racing Ends: every round must see Idle close.
	for range 200 {
		const n = 8
		for range n {
			s.Begin()
		}
		var wg sync.WaitGroup
		for range n {
			wg.Go(s.End)
		}
		<-s.Idle()
		wg.Wait()
	}
}
