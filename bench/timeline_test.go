package bench

import (
	"sync"
	"testing"
	"time"
)

func TestTimelinePoints(t *testing.T) {
	tl := newTimeline(100 * time.Millisecond)
	// Intervals 0 and 2 have requests; 1 has only an error; 3 nothing.
	for range 99 {
		tl.record(10*time.Millisecond, time.Millisecond, false)
	}
	tl.record(20*time.Millisecond, 50*time.Millisecond, false)
	tl.record(150*time.Millisecond, 0, true)
	tl.record(250*time.Millisecond, 2*time.Millisecond, false)
	tl.record(-time.Millisecond, time.Second, false) // warm-up: dropped
	pts, iv := tl.points(200)
	if iv != 100*time.Millisecond || len(pts) != 3 {
		t.Fatalf("%d points of %v, want 3 of 100ms: %+v", len(pts), iv, pts)
	}
	p := pts[0]
	if p.Requests != 100 || p.Errors != 0 || p.Max != 50*time.Millisecond {
		t.Errorf("interval 0: %+v", p)
	}
	if rel := float64(p.P50-time.Millisecond) / float64(time.Millisecond); rel < -0.07 || rel > 0.07 {
		t.Errorf("interval 0 p50 %v, want 1ms within the coarse histogram's 6%%", p.P50)
	}
	if p.P99 < time.Millisecond || p.P99 > 1070*time.Microsecond {
		t.Errorf("interval 0 p99 %v: the 99th of 100 is 1ms", p.P99)
	}
	if pts[1].Requests != 1 || pts[1].Errors != 1 || pts[1].P50 != 0 {
		t.Errorf("interval 1: %+v", pts[1])
	}
	if pts[2].Offset != 200*time.Millisecond || pts[2].Requests != 1 {
		t.Errorf("interval 2: %+v", pts[2])
	}

	// Merged down to two points.
	pts, iv = tl.points(2)
	if iv != 200*time.Millisecond || len(pts) != 2 || pts[0].Requests != 101 || pts[1].Requests != 1 {
		t.Errorf("merged: %v %+v", iv, pts)
	}
}

func TestTimelineConcurrentAndLong(t *testing.T) {
	tl := newTimeline(time.Millisecond)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				// Spread over several chunks.
				tl.record(time.Duration(i*200+w)*time.Microsecond, time.Duration(i)*time.Microsecond, i%10 == 0)
			}
		})
	}
	wg.Wait()
	pts, _ := tl.points(1000)
	var n, e int64
	for _, p := range pts {
		n += p.Requests
		e += p.Errors
	}
	if n != 8000 || e != 800 {
		t.Errorf("counted %d requests and %d errors, want 8000 and 800", n, e)
	}
	if len(pts) > 1000 {
		t.Errorf("%d points, more than asked", len(pts))
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	now := time.Now()
	for _, open := range []bool{false, true} {
		rec := newRecorder(2, now, open, time.Millisecond, 0)
		rec.record(0, now, now, now.Add(time.Millisecond), nil) // makes the first timeline chunk
		i := 0
		n := testing.AllocsPerRun(1000, func() {
			i++
			at := now.Add(time.Duration(i) * time.Microsecond)
			rec.record(i%2, at, at.Add(time.Microsecond), at.Add(300*time.Microsecond), nil)
		})
		if n != 0 {
			t.Errorf("open=%v: recording a success allocates %v times", open, n)
		}
	}
}
