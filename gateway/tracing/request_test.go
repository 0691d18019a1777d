package tracing

import (
	"strings"
	"testing"
	"time"
)

func TestServerTiming(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	type mark struct {
		s        Stage
		from, to time.Duration
	}
	tests := []struct {
		name  string
		marks []mark
		want  string
	}{
		{name: "nothing happened", want: ""},
		{
			name:  "upstream only",
			marks: []mark{{StageUpstream, time.Millisecond, 2*time.Millisecond + 120*time.Microsecond}},
			want:  "upstream;dur=1.12",
		},
		{
			name: "all stages, in order whatever the marking order",
			marks: []mark{
				{StageUpstream, 10 * time.Millisecond, 15 * time.Millisecond},
				{StageActivator, 0, 120 * time.Microsecond},
				{StageBatch, 8 * time.Millisecond, 10 * time.Millisecond},
				{StageQueue, time.Millisecond, 1*time.Millisecond + 1500*time.Nanosecond},
			},
			want: "activator;dur=0.12, queue;dur=0.002, batch;dur=2, upstream;dur=5",
		},
		{
			name:  "sub-microsecond rounds",
			marks: []mark{{StageActivator, 0, 499 * time.Nanosecond}, {StageUpstream, 0, 1234500 * time.Nanosecond}},
			want:  "activator;dur=0, upstream;dur=1.235",
		},
		{
			name:  "long",
			marks: []mark{{StageActivator, 0, 12*time.Second + 345678*time.Microsecond}},
			want:  "activator;dur=12345.678",
		},
		{
			name:  "marked twice keeps the first start and the last end",
			marks: []mark{{StageUpstream, time.Millisecond, 2 * time.Millisecond}, {StageUpstream, 3 * time.Millisecond, 4 * time.Millisecond}},
			want:  "upstream;dur=3",
		},
		{
			name:  "end before start is zero",
			marks: []mark{{StageQueue, 2 * time.Millisecond, time.Millisecond}},
			want:  "queue;dur=0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			r.Start(nil, start)
			for _, m := range tc.marks {
				r.Mark(m.s, at(m.from), at(m.to))
			}
			if got := string(r.AppendServerTiming(nil)); got != tc.want {
				t.Errorf("Server-Timing %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBeginEnd(t *testing.T) {
	var r Request
	r.Start(nil, time.Now())
	r.End(StageBatch) // never began: ignored
	r.Begin(StageUpstream)
	if _, ok := r.Duration(StageUpstream); !ok {
		t.Fatal("a begun stage did not happen")
	}
	r.End(StageUpstream)
	d1, _ := r.Duration(StageUpstream)
	r.Begin(StageUpstream) // a retry: keeps the first start
	r.End(StageUpstream)
	d2, _ := r.Duration(StageUpstream)
	if d2 < d1 {
		t.Errorf("a second try shortened the stage: %v then %v", d1, d2)
	}
	got := string(r.AppendServerTiming(nil))
	if !strings.HasPrefix(got, "upstream;dur=") || strings.Contains(got, ",") {
		t.Errorf("Server-Timing %q, want upstream only", got)
	}
	r.Begin(Stage(200)) // out of range: ignored
	r.End(Stage(200))
	if Stage(200).String() != "stage(200)" || StageQueue.String() != "queue wait" {
		t.Error("Stage.String")
	}
}

// perRequest is the gateway's whole per-request sequence.
func perRequest(t *Tracer, now time.Time, traceparent []byte, buf []byte) []byte {
	var r Request
	r.StartBytes(t, now, traceparent, nil)
	r.Model, r.Revision, r.Protocol = "iris", "iris-00001", ProtocolREST
	r.Begin(StageActivator)
	r.End(StageActivator)
	r.Begin(StageQueue)
	r.End(StageQueue)
	r.Begin(StageUpstream)
	v, _ := r.AppendUpstreamTraceParent(buf[:0])
	r.End(StageUpstream)
	r.Status = 200
	v = r.AppendServerTiming(v[:0])
	r.Finish()
	return v
}

func TestRequestOffAllocatesNothing(t *testing.T) {
	tp := []byte("00-" + testTraceID + "-" + testSpanID + "-01")
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() { perRequest(nil, time.Now(), tp, buf) }); a != 0 {
		t.Errorf("tracing off: %v allocations per request, want 0", a)
	}
	// Tracing on, the request not sampled (ratio 0, no caller): it still
	// makes and propagates its trace context, and allocates nothing.
	tr := &Tracer{}
	if a := testing.AllocsPerRun(100, func() { perRequest(tr, time.Now(), nil, buf) }); a != 0 {
		t.Errorf("tracing on, not sampled: %v allocations per request, want 0", a)
	}
}

func BenchmarkRequestOff(b *testing.B) {
	tp := []byte("00-" + testTraceID + "-" + testSpanID + "-01")
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		perRequest(nil, time.Now(), tp, buf)
	}
}

func BenchmarkRequestOnUnsampled(b *testing.B) {
	tr := &Tracer{} // ratio 0
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		perRequest(tr, time.Now(), nil, buf)
	}
}

func BenchmarkServerTiming(b *testing.B) {
	var r Request
	start := time.Now()
	r.Start(nil, start)
	r.Mark(StageActivator, start, start.Add(120*time.Microsecond))
	r.Mark(StageQueue, start.Add(time.Millisecond), start.Add(2*time.Millisecond))
	r.Mark(StageBatch, start.Add(2*time.Millisecond), start.Add(4500*time.Microsecond))
	r.Mark(StageUpstream, start.Add(5*time.Millisecond), start.Add(9*time.Millisecond+333*time.Microsecond))
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendServerTiming(buf[:0])
	}
	if string(buf) != "activator;dur=0.12, queue;dur=1, batch;dur=2.5, upstream;dur=4.333" {
		b.Fatalf("got %q", buf)
	}
}

func BenchmarkRequestOffParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 256)
		for pb.Next() {
			perRequest(nil, time.Now(), nil, buf)
		}
	})
}
