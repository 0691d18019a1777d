package payloadlog

import (
	"testing"
)

var (
	benchPayload = []byte(`{"id":"r","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`)
	benchType    = []byte("application/json")
	benchID      = []byte("2f1c7a4e-request-id")
)

func benchLogger(tb testing.TB, models map[string]ModelConfig) *Logger {
	tb.Helper()
	l, err := New(Options{QueueLength: 16})
	if err != nil {
		tb.Fatal(err)
	}
	if err := l.SetModels(models); err != nil {
		tb.Fatal(err)
	}
	return l
}

// logOnce is the gateway's per-request sequence.
func logOnce(l *Logger) {
	h := l.Begin("iris", "iris-00001", benchID)
	h.Request(benchType, benchPayload)
	h.Response(benchType, benchPayload)
}

// drain takes what logOnce queued, as a sender would, without sending.
func (l *Logger) drain() {
	for {
		select {
		case ev := <-l.queue:
			l.bytes.Add(-int64(len(ev.payload)))
			l.release(ev)
		default:
			return
		}
	}
}

func TestLogNotLoggedAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	for name, models := range map[string]map[string]ModelConfig{
		"disabled":    {"other": {Sink: dir + "/o.jsonl", SampleRate: 1}},
		"sampled out": {"iris": {Sink: dir + "/i.jsonl", SampleRate: 1e-12}},
		"rate 0":      {"iris": {Sink: dir + "/i.jsonl", SampleRate: 0}},
	} {
		l := benchLogger(t, models)
		if a := testing.AllocsPerRun(100, func() { logOnce(l) }); a != 0 {
			t.Errorf("%s: %v allocations per request, want 0", name, a)
		}
		if n := len(l.queue); n != 0 {
			t.Errorf("%s: %d events queued", name, n)
		}
	}
	var nl *Logger
	if a := testing.AllocsPerRun(100, func() { logOnce(nl) }); a != 0 {
		t.Errorf("nil Logger: %v allocations", a)
	}
}

func BenchmarkLogDisabled(b *testing.B) {
	l := benchLogger(b, map[string]ModelConfig{"other": {Sink: b.TempDir() + "/o.jsonl", SampleRate: 1}})
	b.ReportAllocs()
	for b.Loop() {
		logOnce(l)
	}
}

func BenchmarkLogSampledOut(b *testing.B) {
	l := benchLogger(b, map[string]ModelConfig{"iris": {Sink: b.TempDir() + "/i.jsonl", SampleRate: 1e-12}})
	b.ReportAllocs()
	for b.Loop() {
		logOnce(l)
	}
}

func BenchmarkLogQueued(b *testing.B) {
	l := benchLogger(b, map[string]ModelConfig{"iris": {Sink: b.TempDir() + "/i.jsonl", SampleRate: 1}})
	b.ReportAllocs()
	for b.Loop() {
		logOnce(l)
		l.drain()
	}
}

func BenchmarkLogQueuedParallel(b *testing.B) {
	l := benchLogger(b, map[string]ModelConfig{"iris": {Sink: b.TempDir() + "/i.jsonl", SampleRate: 1}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			logOnce(l)
			l.drain()
		}
	})
}
