package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/oip"
)

func spec() Spec {
	return Spec{
		LatencyMS: 5,
		PerItemMS: 0.5,
		Slots:     2,
		Inputs:    []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 3}}},
		Outputs: []oip.TensorMetadata{
			{Name: "f", Datatype: oip.FP32, Shape: []int64{-1, 2}},
			{Name: "i", Datatype: oip.INT64, Shape: []int64{-1}},
			{Name: "h", Datatype: oip.FP16, Shape: []int64{-1, 1}},
			{Name: "b", Datatype: oip.BOOL, Shape: []int64{-1, 2}},
			{Name: "s", Datatype: oip.BYTES, Shape: []int64{-1, 1}},
			{Name: "u", Datatype: oip.UINT8, Shape: []int64{-1, 1}},
		},
	}
}

func TestDelay(t *testing.T) {
	tests := []struct {
		name  string
		a, b  float64
		batch int64
		want  time.Duration
	}{
		{"fixed cost only", 5, 0, 32, 5 * time.Millisecond},
		{"per item", 0, 0.25, 8, 2 * time.Millisecond},
		{"both", 2, 0.5, 32, 18 * time.Millisecond},
		{"fractions of a millisecond", 0.1, 0.01, 1, 110 * time.Microsecond},
		{"zero", 0, 0, 64, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Spec{LatencyMS: tc.a, PerItemMS: tc.b}
			if got := s.Delay(tc.batch); got != tc.want {
				t.Errorf("Delay(%d) = %v, want %v", tc.batch, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Spec)
		wantErr string
	}{
		{"valid", func(*Spec) {}, ""},
		{"negative latency", func(s *Spec) { s.LatencyMS = -1 }, "simulate.latency_ms: -1"},
		{"NaN per item", func(s *Spec) { s.PerItemMS = math.NaN() }, "simulate.per_item_ms"},
		{"negative slots", func(s *Spec) { s.Slots = -2 }, "simulate.slots: -2"},
		{"no inputs", func(s *Spec) { s.Inputs = nil }, "simulate.inputs"},
		{"no outputs", func(s *Spec) { s.Outputs = nil }, "simulate.outputs"},
		{"unnamed input", func(s *Spec) { s.Inputs[0].Name = "" }, "simulate.inputs[0].name: is required"},
		{"duplicate output", func(s *Spec) { s.Outputs[1].Name = "f" }, `simulate.outputs[1].name: "f" is declared twice`},
		{"no datatype", func(s *Spec) { s.Outputs[0].Datatype = oip.Invalid }, "simulate.outputs[0].datatype"},
		{"scalar", func(s *Spec) { s.Inputs[0].Shape = nil }, "simulate.inputs[0].shape"},
		{"dimension below -1", func(s *Spec) { s.Inputs[0].Shape = []int64{-1, -3} }, "dimension 1 is below -1"},
		{"variable inner output dimension", func(s *Spec) { s.Outputs[0].Shape = []int64{-1, -1} }, "only the first dimension of an output may be -1"},
		{"batched output of an unbatched model", func(s *Spec) { s.Inputs[0].Shape = []int64{1, 3} }, "only when every input has one"},
		{"huge output", func(s *Spec) { s.Outputs[0].Shape = []int64{-1, 1 << 20, 1 << 10} }, "elements per row"},
		{"variable inner input dimension is fine", func(s *Spec) { s.Inputs[0].Shape = []int64{-1, -1} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := spec()
			tc.edit(&s)
			err := s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func fp32s(vs ...float32) []byte {
	b := make([]byte, 0, 4*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// TestRunOutputs checks names, datatypes, shapes and the row sums of every
// output, for a batch of two rows and for an empty batch.
func TestRunOutputs(t *testing.T) {
	m, err := New(spec(), Options{Name: "sim", Version: "3", Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	md := m.Metadata()
	if md.Platform != DefaultPlatform || md.Name != "sim" || !cmp.Equal(md.Versions, []string{"3"}) {
		t.Errorf("metadata = %+v", md)
	}
	in := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{2, 3}, Data: fp32s(1, 2, 3.5, -1, -2, 1)}}
	outs, err := m.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	// Row sums are 6.5 and -2.
	bytesRow := func(s string) []byte {
		return append(binary.LittleEndian.AppendUint32(nil, uint32(len(s))), s...)
	}
	i64 := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return b
	}
	want := []oip.Tensor{
		{Name: "f", Datatype: oip.FP32, Shape: []int64{2, 2}, Data: fp32s(6.5, 6.5, -2, -2)},
		{Name: "i", Datatype: oip.INT64, Shape: []int64{2}, Data: i64(6, -2)},
		{Name: "h", Datatype: oip.FP16, Shape: []int64{2, 1}, Data: binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, oip.Float64ToFP16(6.5)), oip.Float64ToFP16(-2))},
		{Name: "b", Datatype: oip.BOOL, Shape: []int64{2, 2}, Data: []byte{1, 1, 1, 1}},
		{Name: "s", Datatype: oip.BYTES, Shape: []int64{2, 1}, Data: append(bytesRow("6.5"), bytesRow("-2")...)},
		{Name: "u", Datatype: oip.UINT8, Shape: []int64{2, 1}, Data: []byte{6, 0xfe}},
	}
	if diff := cmp.Diff(want, outs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}

	empty := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{0, 3}}}
	outs, err = m.Run(context.Background(), empty)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if o.Shape[0] != 0 || len(o.Data) != 0 {
			t.Errorf("batch 0: output %s has shape %v and %d bytes", o.Name, o.Shape, len(o.Data))
		}
	}
}

// TestRunInputKinds sums rows of BYTES, BOOL and integer inputs, and runs a
// model that is not batched.
func TestRunInputKinds(t *testing.T) {
	noSleep := func(context.Context, time.Duration) error { return nil }
	out := []oip.TensorMetadata{{Name: "y", Datatype: oip.FP64, Shape: []int64{-1}}}
	f64 := func(vs ...float64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b
	}
	var words []byte
	for _, w := range []string{"ab", "cde", "", "f"} {
		words = binary.LittleEndian.AppendUint32(words, uint32(len(w)))
		words = append(words, w...)
	}
	tests := []struct {
		name string
		in   oip.TensorMetadata
		data []byte
		rows int64
		want oip.Tensor
	}{
		{"BYTES sums lengths", oip.TensorMetadata{Name: "x", Datatype: oip.BYTES, Shape: []int64{-1, 2}}, words, 2,
			oip.Tensor{Name: "y", Datatype: oip.FP64, Shape: []int64{2}, Data: f64(5, 1)}},
		{"BOOL counts true", oip.TensorMetadata{Name: "x", Datatype: oip.BOOL, Shape: []int64{-1, 3}}, []byte{1, 0, 1, 0, 0, 1}, 2,
			oip.Tensor{Name: "y", Datatype: oip.FP64, Shape: []int64{2}, Data: f64(2, 1)}},
		{"INT8 is signed", oip.TensorMetadata{Name: "x", Datatype: oip.INT8, Shape: []int64{-1, 2}}, []byte{0xff, 3}, 1,
			oip.Tensor{Name: "y", Datatype: oip.FP64, Shape: []int64{1}, Data: f64(2)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(Spec{Inputs: []oip.TensorMetadata{tc.in}, Outputs: out}, Options{Name: "sim", Sleep: noSleep})
			if err != nil {
				t.Fatal(err)
			}
			shape := append([]int64{tc.rows}, tc.in.Shape[1:]...)
			got, err := m.Run(context.Background(), []oip.Tensor{{Name: "x", Datatype: tc.in.Datatype, Shape: shape, Data: tc.data}})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]oip.Tensor{tc.want}, got); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("not batched", func(t *testing.T) {
		s := Spec{
			Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: oip.INT32, Shape: []int64{2}}},
			Outputs: []oip.TensorMetadata{{Name: "y", Datatype: oip.INT32, Shape: []int64{2, 2}}},
		}
		var slept time.Duration
		s.LatencyMS, s.PerItemMS = 1, 1
		m, err := New(s, Options{Name: "sim", Sleep: func(_ context.Context, d time.Duration) error { slept = d; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		in := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 7), 5)
		got, err := m.Run(context.Background(), []oip.Tensor{{Name: "x", Datatype: oip.INT32, Shape: []int64{2}, Data: in}})
		if err != nil {
			t.Fatal(err)
		}
		want := []byte{12, 0, 0, 0, 12, 0, 0, 0, 12, 0, 0, 0, 12, 0, 0, 0}
		if diff := cmp.Diff([]oip.Tensor{{Name: "y", Datatype: oip.INT32, Shape: []int64{2, 2}, Data: want}}, got); diff != "" {
			t.Errorf("outputs (-want +got):\n%s", diff)
		}
		if slept != 2*time.Millisecond {
			t.Errorf("slept %v, want the cost of a batch of 1 (2ms)", slept)
		}
	})
}

// heldSleep is a SleepFunc that records each run's delay and holds it
// until release is closed or its context ends.
type heldSleep struct {
	entered chan time.Duration
	release chan struct{}
}

func newHeldSleep() *heldSleep {
	return &heldSleep{entered: make(chan time.Duration, 16), release: make(chan struct{})}
}

func (h *heldSleep) sleep(ctx context.Context, d time.Duration) error {
	h.entered <- d
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// TestSlots holds runs in their slots: no more than Slots run at once, a
// waiting run whose context ends leaves the queue, a running one whose
// context ends frees its slot for the next in line, and the queue is FIFO.
func TestSlots(t *testing.T) {
	h := newHeldSleep()
	s := spec()
	s.Slots = 2
	m, err := New(s, Options{Name: "sim", Sleep: h.sleep})
	if err != nil {
		t.Fatal(err)
	}
	batch := func(n int64) []oip.Tensor {
		return []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{n, 3}, Data: make([]byte, 12*n)}}
	}
	type result struct {
		id  int
		err error
	}
	done := make(chan result, 8)
	start := func(ctx context.Context, id int, n int64) {
		go func() {
			_, err := m.Run(ctx, batch(n))
			done <- result{id, err}
		}()
	}

	// Two runs take the two slots, with the delay of their batch.
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	start(ctx1, 1, 4)
	start(context.Background(), 2, 4)
	for range 2 {
		if d := receive(t, "a run to take a slot", h.entered); d != 7*time.Millisecond {
			t.Errorf("delay = %v, want 5ms + 4*0.5ms", d)
		}
	}
	// A third waits; when its context ends it leaves without a slot.
	ctx3, cancel3 := context.WithCancel(context.Background())
	start(ctx3, 3, 1)
	waitFor(t, "run 3 to queue", func() bool { return m.Stats() == Stats{Waiting: 1, Running: 2} })
	cancel3()
	if r := receive(t, "run 3 to give up", done); r.id != 3 || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("got %+v, want run 3 canceled", r)
	}
	if got := m.Stats(); got != (Stats{Running: 2}) {
		t.Errorf("after run 3 gave up: %+v", got)
	}

	// Runs 4 and 5 queue in that order; canceling running run 1 frees its
	// slot, which goes to run 4, the first in line.
	start(context.Background(), 4, 1)
	waitFor(t, "run 4 to queue", func() bool { return m.Stats().Waiting == 1 })
	start(context.Background(), 5, 2)
	waitFor(t, "run 5 to queue", func() bool { return m.Stats().Waiting == 2 })
	cancel1()
	if r := receive(t, "run 1 to end", done); r.id != 1 || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("got %+v, want run 1 canceled", r)
	}
	if d := receive(t, "the next run to take the freed slot", h.entered); d != 5500*time.Microsecond {
		t.Errorf("the freed slot went to a run of delay %v, want run 4's 5.5ms (FIFO)", d)
	}
	if got := m.Stats(); got != (Stats{Waiting: 1, Running: 2}) {
		t.Errorf("after the hand-over: %+v", got)
	}

	close(h.release)
	for range 3 {
		if r := receive(t, "the held runs to finish", done); r.err != nil {
			t.Errorf("run %d: %v", r.id, r.err)
		}
	}
	if got := m.Stats(); got != (Stats{}) {
		t.Errorf("at rest: %+v", got)
	}
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a canceled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Errorf("Sleep(0) = %v", err)
	}
}

// TestSleepWaitsTheDelay checks that Sleep never wakes early, and that a
// context ending first ends it, whether it waits on a timerfd (Linux) or a
// runtime timer.
func TestSleepWaitsTheDelay(t *testing.T) {
	for _, d := range []time.Duration{300 * time.Microsecond, 3 * time.Millisecond} {
		start := time.Now()
		if err := Sleep(context.Background(), d); err != nil {
			t.Fatalf("Sleep(%v) = %v", d, err)
		}
		if got := time.Since(start); got < d {
			t.Errorf("Sleep(%v) returned after %v", d, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	defer cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sleep past its context's deadline = %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(time.Millisecond, cancel)
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep whose context is cancelled = %v, want context.Canceled", err)
	}
}

func TestClosed(t *testing.T) {
	m, err := New(spec(), Options{Name: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	_, err = m.Run(context.Background(), []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 3}, Data: make([]byte, 12)}})
	if oip.KindOf(err) != oip.KindUnavailable {
		t.Errorf("Run after Close = %v, want unavailable", err)
	}
}

// BenchmarkRun measures a run's own cost, its delay left out: reading the
// rows of the first input and writing the outputs, for the shape of
// `make bench-batching` (FP32 [n, 16] in and out).
func BenchmarkRun(b *testing.B) {
	s := Spec{
		Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 16}}},
		Outputs: []oip.TensorMetadata{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, 16}}},
	}
	m, err := New(s, Options{Name: "sim", Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int64{1, 64} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			in := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{n, 16}, Data: make([]byte, n*16*4)}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Run(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSleep reports how late Sleep wakes, on average, for the delay
// of a batch of 64 rows of the batching benchmark's model (8.2 ms): a
// runtime timer is up to a millisecond late on Linux.
func BenchmarkSleep(b *testing.B) {
	const d = 8200 * time.Microsecond
	var late time.Duration
	for b.Loop() {
		start := time.Now()
		if err := Sleep(context.Background(), d); err != nil {
			b.Fatal(err)
		}
		late += time.Since(start) - d
	}
	b.ReportMetric(float64(late.Microseconds())/float64(b.N), "late-us/op")
}
