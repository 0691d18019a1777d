package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/infergate/infergate/oip"
)

// DefaultPlatform is the platform a simulated model reports in metadata.
const DefaultPlatform = "infergate_simulated"

// maxOutputRowElements bounds the elements of one row of one output, so that
// a typo in a shape cannot make every run allocate gigabytes.
const maxOutputRowElements = 1 << 24

// maxSlots bounds Spec.Slots.
const maxSlots = 1 << 20

// Spec describes a simulated model. It is the "simulate" object of a
// model's config.json; Validate checks it.
type Spec struct {
	// LatencyMS is the fixed cost of a run in milliseconds (a).
	LatencyMS float64 `json:"latency_ms"`
	// PerItemMS is the cost of each row of the batch in milliseconds (b).
	PerItemMS float64 `json:"per_item_ms"`
	// Slots is how many runs may proceed at once (c); 0 means 1.
	Slots int `json:"slots,omitempty"`
	// Inputs are the model's inputs. -1 is a dimension of any size; when
	// every input has -1 first, that dimension is the batch.
	Inputs []oip.TensorMetadata `json:"inputs"`
	// Outputs are the model's outputs. Only the first dimension may be -1,
	// and only for a batched model: it takes the request's batch size.
	Outputs []oip.TensorMetadata `json:"outputs"`
}

// Validate reports the first problem with s, naming the field (relative to
// "simulate") and the bad value.
func (s *Spec) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"latency_ms", s.LatencyMS}, {"per_item_ms", s.PerItemMS}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("simulate.%s: %v is not a finite, non-negative number of milliseconds", f.name, f.v)
		}
	}
	if s.Slots < 0 || s.Slots > maxSlots {
		return fmt.Errorf("simulate.slots: %d is not within 0..%d", s.Slots, maxSlots)
	}
	if len(s.Inputs) == 0 {
		return errors.New("simulate.inputs: a simulated model needs at least one input")
	}
	if len(s.Outputs) == 0 {
		return errors.New("simulate.outputs: a simulated model needs at least one output")
	}
	if err := checkTensors("inputs", s.Inputs, true); err != nil {
		return err
	}
	if err := checkTensors("outputs", s.Outputs, false); err != nil {
		return err
	}
	if !s.batched() {
		for i, o := range s.Outputs {
			if o.Shape[0] < 0 {
				return fmt.Errorf("simulate.outputs[%d].shape: %v: an output can have a -1 batch dimension only when every input has one", i, o.Shape)
			}
		}
	}
	return nil
}

func checkTensors(field string, ts []oip.TensorMetadata, input bool) error {
	seen := make(map[string]bool, len(ts))
	for i, t := range ts {
		switch {
		case t.Name == "":
			return fmt.Errorf("simulate.%s[%d].name: is required", field, i)
		case seen[t.Name]:
			return fmt.Errorf("simulate.%s[%d].name: %q is declared twice", field, i, t.Name)
		case !t.Datatype.Valid():
			return fmt.Errorf("simulate.%s[%d].datatype: is required (%s)", field, i, t.Name)
		case len(t.Shape) == 0:
			return fmt.Errorf("simulate.%s[%d].shape: %s needs at least one dimension", field, i, t.Name)
		}
		seen[t.Name] = true
		row := int64(1)
		for d, n := range t.Shape {
			switch {
			case n < -1:
				return fmt.Errorf("simulate.%s[%d].shape: %v: dimension %d is below -1", field, i, t.Shape, d)
			case n == -1 && !input && d > 0:
				return fmt.Errorf("simulate.%s[%d].shape: %v: only the first dimension of an output may be -1", field, i, t.Shape)
			case !input && d > 0:
				if n > 0 && row > maxOutputRowElements/n {
					return fmt.Errorf("simulate.%s[%d].shape: %v: more than %d elements per row", field, i, t.Shape, maxOutputRowElements)
				}
				row *= n
			}
		}
		if !input && t.Shape[0] > 0 && row > maxOutputRowElements/t.Shape[0] {
			return fmt.Errorf("simulate.%s[%d].shape: %v: more than %d elements", field, i, t.Shape, maxOutputRowElements)
		}
	}
	return nil
}

// batched reports whether every input has a -1 first dimension, which is
// then the batch.
func (s *Spec) batched() bool {
	for _, t := range s.Inputs {
		if len(t.Shape) == 0 || t.Shape[0] != -1 {
			return false
		}
	}
	return true
}

// Delay returns the simulated time of a run of batch rows:
// LatencyMS + PerItemMS*batch milliseconds.
func (s *Spec) Delay(batch int64) time.Duration {
	return time.Duration((s.LatencyMS + s.PerItemMS*float64(batch)) * float64(time.Millisecond))
}

// SleepFunc waits for d or until ctx is done, and returns ctx's error in
// the second case.
type SleepFunc func(ctx context.Context, d time.Duration) error

// Options configure New. The zero value of every field but Name is a usable
// default.
type Options struct {
	// Name is the model's name in metadata (required).
	Name string
	// Version is reported in metadata's versions; empty reports none.
	Version string
	// Platform is reported in metadata (default DefaultPlatform).
	Platform string
	// Sleep waits out the simulated cost (default Sleep); tests inject a
	// fake to hold runs in their slots.
	Sleep SleepFunc
}

// Model is a simulated model. Its methods are safe for concurrent use.
type Model struct {
	spec    Spec
	meta    oip.ModelMetadata
	batched bool
	first   string // the name of the first input, whose rows the outputs sum
	sleep   SleepFunc
	sem     *semaphore.Weighted

	waiting atomic.Int64
	running atomic.Int64
	closed  atomic.Bool
}

// New returns a simulated model for spec, or spec's validation error.
func New(spec Spec, opts Options) (*Model, error) {
	if opts.Name == "" {
		return nil, errors.New("sim: Options.Name is required")
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Slots == 0 {
		spec.Slots = 1
	}
	if opts.Platform == "" {
		opts.Platform = DefaultPlatform
	}
	if opts.Sleep == nil {
		opts.Sleep = Sleep
	}
	m := &Model{
		spec:    spec,
		batched: spec.batched(),
		first:   spec.Inputs[0].Name,
		sleep:   opts.Sleep,
		sem:     semaphore.NewWeighted(int64(spec.Slots)),
		meta: oip.ModelMetadata{
			Name:     opts.Name,
			Platform: opts.Platform,
			Inputs:   cloneTensors(spec.Inputs),
			Outputs:  cloneTensors(spec.Outputs),
		},
	}
	if opts.Version != "" {
		m.meta.Versions = []string{opts.Version}
	}
	return m, nil
}

func cloneTensors(ts []oip.TensorMetadata) []oip.TensorMetadata {
	out := make([]oip.TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = oip.TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: append([]int64(nil), t.Shape...)}
	}
	return out
}

// Metadata returns the declared inputs and outputs.
func (m *Model) Metadata() oip.ModelMetadata { return m.meta }

// Stats is a snapshot of a model's slots.
type Stats struct {
	// Waiting is the number of runs waiting for a slot.
	Waiting int64
	// Running is the number of runs holding a slot.
	Running int64
}

// Stats returns how many runs wait for a slot and how many hold one.
func (m *Model) Stats() Stats {
	return Stats{Waiting: m.waiting.Load(), Running: m.running.Load()}
}

// Run waits for a slot, holds it for Delay(batch), and returns every output
// in metadata order. inputs must have been validated against Metadata (the
// model server does so); the batch is the first dimension of the first
// input for a batched model and 1 otherwise. When ctx ends first, Run
// returns ctx's error and frees its place in the queue or its slot.
func (m *Model) Run(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	if m.closed.Load() {
		return nil, oip.Errorf(oip.KindUnavailable, "simulated model %q is closed", m.meta.Name)
	}
	var in *oip.Tensor
	for i := range inputs {
		if inputs[i].Name == m.first {
			in = &inputs[i]
			break
		}
	}
	if in == nil {
		return nil, oip.Errorf(oip.KindInvalidArgument, "simulated model %q: input %q is missing", m.meta.Name, m.first)
	}
	batch := int64(1)
	if m.batched {
		if len(in.Shape) == 0 || in.Shape[0] < 0 {
			return nil, oip.Errorf(oip.KindInvalidArgument, "simulated model %q: input %q has no batch dimension", m.meta.Name, in.Name)
		}
		batch = in.Shape[0]
	}

	m.waiting.Add(1)
	err := m.sem.Acquire(ctx, 1)
	m.waiting.Add(-1)
	if err != nil {
		return nil, err
	}
	m.running.Add(1)
	err = m.sleep(ctx, m.spec.Delay(batch))
	m.running.Add(-1)
	m.sem.Release(1)
	if err != nil {
		return nil, err
	}

	sums, err := rowSums(in, batch)
	if err != nil {
		return nil, oip.Errorf(oip.KindInvalidArgument, "simulated model %q: input %q: %w", m.meta.Name, in.Name, err)
	}
	outs := make([]oip.Tensor, len(m.meta.Outputs))
	for i := range m.meta.Outputs {
		outs[i] = output(&m.meta.Outputs[i], sums, m.batched)
	}
	return outs, nil
}

// Close makes later runs fail; runs in flight finish.
func (m *Model) Close() error {
	m.closed.Store(true)
	return nil
}

// rowSums returns, for each of the batch rows of t, the sum of its
// elements: their values for numbers, 1 per true for BOOL, and their lengths
// for BYTES.
func rowSums(t *oip.Tensor, batch int64) ([]float64, error) {
	sums := make([]float64, batch)
	if batch == 0 {
		return sums, nil
	}
	if t.Datatype == oip.BYTES {
		n, err := oip.CountBytesElements(t.Data)
		if err != nil {
			return nil, err
		}
		if n%batch != 0 {
			return nil, fmt.Errorf("%d BYTES elements do not split into %d rows", n, batch)
		}
		per := n / batch
		var k int64
		for off := 0; off < len(t.Data); k++ {
			l := int(binary.LittleEndian.Uint32(t.Data[off:]))
			sums[k/per] += float64(l)
			off += 4 + l
		}
		return sums, nil
	}
	size := t.Datatype.Size()
	if size == 0 || len(t.Data)%size != 0 {
		return nil, fmt.Errorf("%d bytes are not whole %s elements", len(t.Data), t.Datatype)
	}
	n := int64(len(t.Data) / size)
	if n%batch != 0 {
		return nil, fmt.Errorf("%d elements do not split into %d rows", n, batch)
	}
	per := n / batch
	if t.Datatype == oip.FP32 { // the common case, without a switch per element
		for r := range sums {
			row := t.Data[int64(r)*per*4 : int64(r+1)*per*4]
			s := 0.0
			for off := 0; off < len(row); off += 4 {
				s += float64(math.Float32frombits(binary.LittleEndian.Uint32(row[off:])))
			}
			sums[r] = s
		}
		return sums, nil
	}
	for k := int64(0); k < n; k++ {
		sums[k/per] += element(t.Datatype, t.Data[k*int64(size):])
	}
	return sums, nil
}

// element decodes the little-endian element of datatype dt at the start of b.
func element(dt oip.DataType, b []byte) float64 {
	switch dt {
	case oip.BOOL:
		if b[0] != 0 {
			return 1
		}
		return 0
	case oip.UINT8:
		return float64(b[0])
	case oip.UINT16:
		return float64(binary.LittleEndian.Uint16(b))
	case oip.UINT32:
		return float64(binary.LittleEndian.Uint32(b))
	case oip.UINT64:
		return float64(binary.LittleEndian.Uint64(b))
	case oip.INT8:
		return float64(int8(b[0]))
	case oip.INT16:
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case oip.INT32:
		return float64(int32(binary.LittleEndian.Uint32(b)))
	case oip.INT64:
		return float64(int64(binary.LittleEndian.Uint64(b)))
	case oip.FP16:
		return float64(oip.FP16ToFloat32(binary.LittleEndian.Uint16(b)))
	case oip.BF16:
		return float64(oip.BF16ToFloat32(binary.LittleEndian.Uint16(b)))
	case oip.FP32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case oip.FP64:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	return 0
}

// output builds the tensor md declares with every element of row r set to
// sums[r]; a model that is not batched has one row.
func output(md *oip.TensorMetadata, sums []float64, batched bool) oip.Tensor {
	shape := append([]int64(nil), md.Shape...)
	rows := int64(1)
	if batched && shape[0] < 0 {
		shape[0] = int64(len(sums))
		rows = int64(len(sums))
	}
	n := oip.ShapeElements(shape)
	per := int64(0)
	if rows > 0 {
		per = n / rows
	}
	t := oip.Tensor{Name: md.Name, Datatype: md.Datatype, Shape: shape}
	if md.Datatype == oip.BYTES {
		var data []byte
		for r := int64(0); r < rows; r++ {
			s := strconv.FormatFloat(sums[r], 'g', -1, 64)
			for range per {
				data = binary.LittleEndian.AppendUint32(data, uint32(len(s)))
				data = append(data, s...)
			}
		}
		t.Data = data
		return t
	}
	size := int64(md.Datatype.Size())
	t.Data = make([]byte, n*size)
	for r := int64(0); r < rows; r++ {
		var v float64
		if r < int64(len(sums)) {
			v = sums[r]
		}
		putElement(md.Datatype, t.Data[r*per*size:(r+1)*per*size], v)
	}
	return t
}

// putElement fills dst with v encoded as dt: integers truncate toward zero
// and wrap to their width (NaN is 0, infinities saturate), BOOL is v != 0.
func putElement(dt oip.DataType, dst []byte, v float64) {
	var one [8]byte
	size := dt.Size()
	switch dt {
	case oip.BOOL:
		if v != 0 {
			one[0] = 1
		}
	case oip.FP16:
		binary.LittleEndian.PutUint16(one[:], oip.Float64ToFP16(v))
	case oip.BF16:
		binary.LittleEndian.PutUint16(one[:], oip.Float64ToBF16(v))
	case oip.FP32:
		binary.LittleEndian.PutUint32(one[:], math.Float32bits(float32(v)))
	case oip.FP64:
		binary.LittleEndian.PutUint64(one[:], math.Float64bits(v))
	default: // integers: little-endian two's complement, cut to the width
		binary.LittleEndian.PutUint64(one[:], uint64(toInt64(v)))
	}
	// Word stores rather than a copy per element.
	switch size {
	case 1:
		for i := range dst {
			dst[i] = one[0]
		}
	case 2:
		w := binary.LittleEndian.Uint16(one[:])
		for off := 0; off+2 <= len(dst); off += 2 {
			binary.LittleEndian.PutUint16(dst[off:], w)
		}
	case 4:
		w := binary.LittleEndian.Uint32(one[:])
		for off := 0; off+4 <= len(dst); off += 4 {
			binary.LittleEndian.PutUint32(dst[off:], w)
		}
	default:
		w := binary.LittleEndian.Uint64(one[:])
		for off := 0; off+8 <= len(dst); off += 8 {
			binary.LittleEndian.PutUint64(dst[off:], w)
		}
	}
}

// toInt64 converts v toward zero, saturating, with NaN as 0: Go leaves the
// conversion of an out-of-range float implementation-defined.
func toInt64(v float64) int64 {
	switch {
	case math.IsNaN(v):
		return 0
	case v >= math.MaxInt64:
		return math.MaxInt64
	case v <= math.MinInt64:
		return math.MinInt64
	}
	return int64(v)
}
