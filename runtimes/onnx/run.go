package onnx

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"

	"github.com/infergate/infergate/oip"
)

// Run runs the model on inputs, given in any order, and returns every output
// in metadata order, each with its name, datatype, shape and canonical data
// in a new slice the caller owns. The caller has validated inputs against
// Metadata; Run still rejects, with an invalid-argument error, inputs whose
// names, datatypes, shapes or data lengths do not fit, and inputs of a
// bucketed model whose batch sizes differ. Engine failures are internal
// errors. ctx is checked before the run and between chunks of a large batch;
// a chunk once started runs to completion. Run is safe for concurrent use.
func (m *Model) Run(ctx context.Context, inputs []oip.Tensor) (outs []oip.Tensor, err error) {
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.closed {
		return nil, oip.Errorf(oip.KindUnavailable, "onnx: model %s is closed", m.meta.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			outs = nil
			err = oip.Errorf(oip.KindInternal, "onnx: run %s: engine panic: %v", m.meta.Name, r)
		}
	}()
	var buf [4]*oip.Tensor
	ordered, err := m.order(buf[:0], inputs)
	if err != nil {
		return nil, err
	}
	if m.buckets != nil {
		return m.runBatched(ctx, ordered)
	}
	return m.runShaped(ordered)
}

// order returns inputs in metadata order, checked enough that copying them
// into the engine is safe.
func (m *Model) order(dst []*oip.Tensor, inputs []oip.Tensor) ([]*oip.Tensor, error) {
	if len(inputs) != len(m.inputs) {
		return nil, oip.Errorf(oip.KindInvalidArgument,
			"onnx: model %s takes %d inputs, got %d", m.meta.Name, len(m.inputs), len(inputs))
	}
	for i := range m.inputs {
		spec := &m.inputs[i]
		var t *oip.Tensor
		for j := range inputs {
			if inputs[j].Name == spec.name {
				t = &inputs[j]
				break
			}
		}
		if t == nil {
			return nil, oip.Errorf(oip.KindInvalidArgument, "onnx: model %s: missing input %q", m.meta.Name, spec.name)
		}
		if t.Datatype != spec.datatype {
			return nil, oip.Errorf(oip.KindInvalidArgument, "onnx: model %s: input %q is %s, want %s",
				m.meta.Name, spec.name, t.Datatype, spec.datatype)
		}
		if !shapeFits(t.Shape, spec.dims) {
			return nil, oip.Errorf(oip.KindInvalidArgument, "onnx: model %s: input %q has shape %v, want %v",
				m.meta.Name, spec.name, t.Shape, m.meta.Inputs[i].Shape)
		}
		if n := oip.ShapeElements(t.Shape); n < 0 || int64(len(t.Data)) != n*int64(spec.dtype.Size()) {
			return nil, oip.Errorf(oip.KindInvalidArgument, "onnx: model %s: input %q has %d bytes of data for shape %v",
				m.meta.Name, spec.name, len(t.Data), t.Shape)
		}
		dst = append(dst, t)
	}
	return dst, nil
}

func shapeFits(shape []int64, dims []int) bool {
	if len(shape) != len(dims) {
		return false
	}
	for i, d := range shape {
		if d < 0 || (dims[i] >= 0 && d != int64(dims[i])) {
			return false
		}
	}
	return true
}

// runBatched pads the batch up to a bucket, or splits it into chunks of the
// largest bucket, and stitches the outputs back to the real batch.
func (m *Model) runBatched(ctx context.Context, ins []*oip.Tensor) ([]oip.Tensor, error) {
	batch := int(ins[0].Shape[0])
	for _, t := range ins[1:] {
		if int(t.Shape[0]) != batch {
			return nil, oip.Errorf(oip.KindInvalidArgument, "onnx: model %s: inputs %q and %q have batch sizes %d and %d",
				m.meta.Name, ins[0].Name, t.Name, batch, t.Shape[0])
		}
	}
	if m.maxBatch > 0 && batch > m.maxBatch {
		return nil, oip.Errorf(oip.KindInvalidArgument, "onnx: model %s: batch size %d exceeds the maximum %d",
			m.meta.Name, batch, m.maxBatch)
	}
	largest := m.buckets[len(m.buckets)-1]
	first, err := m.graph(graphKey{batch: m.bucketFor(min(max(batch, 1), largest))})
	if err != nil {
		return nil, m.engineError(err)
	}
	outs := make([]oip.Tensor, len(m.outputs))
	for i, spec := range m.outputs {
		s := first.outShapes[i]
		shape := make([]int64, s.Rank())
		shape[0] = int64(batch)
		rowElems := 1
		for j := 1; j < s.Rank(); j++ {
			shape[j] = int64(s.Dimensions[j])
			rowElems *= s.Dimensions[j]
		}
		outs[i] = oip.Tensor{
			Name:     spec.name,
			Datatype: spec.datatype,
			Shape:    shape,
			Data:     make([]byte, batch*rowElems*spec.dtype.Size()),
		}
	}
	e := first
	for off := 0; off < batch; {
		n := min(batch-off, largest)
		if off > 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if e, err = m.graph(graphKey{batch: m.bucketFor(n)}); err != nil {
				return nil, m.engineError(err)
			}
		}
		if err := m.execute(e, ins, batch, off, n, outs); err != nil {
			return nil, m.engineError(err)
		}
		off += n
	}
	return outs, nil
}

// bucketFor returns the smallest bucket that holds n rows; n must not
// exceed the largest bucket.
func (m *Model) bucketFor(n int) int {
	for _, b := range m.buckets {
		if b >= n {
			return b
		}
	}
	return m.buckets[len(m.buckets)-1]
}

// runShaped runs a model that is not bucketed on a graph compiled for the
// exact input shapes.
func (m *Model) runShaped(ins []*oip.Tensor) ([]oip.Tensor, error) {
	dims := make([][]int, len(ins))
	for i, t := range ins {
		d := make([]int, len(t.Shape))
		for j, x := range t.Shape {
			d[j] = int(x)
		}
		dims[i] = d
	}
	e, err := m.graph(graphKey{shape: shapeKey(dims)}, dims...)
	if err != nil {
		return nil, m.engineError(err)
	}
	outs := make([]oip.Tensor, len(m.outputs))
	for i, spec := range m.outputs {
		s := e.outShapes[i]
		shape := make([]int64, s.Rank())
		for j, d := range s.Dimensions {
			shape[j] = int64(d)
		}
		outs[i] = oip.Tensor{
			Name:     spec.name,
			Datatype: spec.datatype,
			Shape:    shape,
			Data:     make([]byte, s.Size()*spec.dtype.Size()),
		}
	}
	if err := m.execute(e, ins, 1, 0, 1, outs); err != nil {
		return nil, m.engineError(err)
	}
	return outs, nil
}

// execute runs rows [off, off+n) of inputs holding total rows through e,
// padding with zeros up to e's batch, and copies the first n rows of each
// result into outs at row off. A shaped run is one row of everything.
func (m *Model) execute(e *graphEntry, ins []*oip.Tensor, total, off, n int, outs []oip.Tensor) error {
	bufs := make([]backends.Buffer, len(e.template))
	copy(bufs, e.template)
	donate := make([]bool, len(bufs))
	for i, t := range ins {
		buf, flat, err := m.backend.NewSharedBuffer(0, e.inShapes[i])
		if err != nil {
			return err
		}
		row := len(t.Data) / total
		dst := flatBytes(flat)
		src := t.Data[off*row : (off+n)*row]
		if len(dst) < len(src) {
			return fmt.Errorf("input %q: engine buffer of %d bytes for %d bytes of data", t.Name, len(dst), len(src))
		}
		copyIn(dst, src, e.inShapes[i].DType)
		clear(dst[len(src):])
		// The engine owns donated buffers and recycles them after the run.
		bufs[e.inHandles[i]] = buf
		donate[e.inHandles[i]] = true
	}
	results := e.g.RunWithBuffers(bufs, donate, 0)
	defer func() {
		for _, r := range results {
			_ = r.FinalizeAll() // back to the engine's buffer pool
		}
	}()
	for i, r := range results {
		buf, err := r.Buffer(m.backend, 0)
		if err != nil {
			return err
		}
		flat, err := m.backend.BufferData(buf)
		if err != nil {
			return err
		}
		src := flatBytes(flat)
		row := len(outs[i].Data) / max(total, 1)
		want := n * row
		if len(src) < want {
			return fmt.Errorf("output %q: engine returned %d bytes, want at least %d", outs[i].Name, len(src), want)
		}
		copy(outs[i].Data[off*row:], src[:want])
	}
	return nil
}

// copyIn copies canonical bytes into an engine buffer of dtype. Only BOOL
// needs care: a Go bool must hold 0 or 1, and the wire may hold any byte.
func copyIn(dst, src []byte, dtype dtypes.DType) {
	if dtype != dtypes.Bool {
		copy(dst, src)
		return
	}
	for i, b := range src {
		if b != 0 {
			dst[i] = 1
		} else {
			dst[i] = 0
		}
	}
}

// flatBytes views an engine flat slice ([]float32, []int64, ...) as its
// bytes, which on a little-endian host are the canonical OIP bytes.
func flatBytes(flat any) []byte {
	v := reflect.ValueOf(flat)
	if v.Kind() != reflect.Slice || v.Len() == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(v.UnsafePointer()), v.Len()*int(v.Type().Elem().Size()))
}

// engineError classifies err: protocol errors keep their kind, the rest are
// internal.
func (m *Model) engineError(err error) error {
	if oe := (*oip.Error)(nil); errors.As(err, &oe) {
		return err
	}
	return oip.Errorf(oip.KindInternal, "onnx: run %s: %w", m.meta.Name, err)
}
