package onnx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	onnxgomlx "github.com/gomlx/onnx-gomlx/onnx"
)

// errNotBatched says an output's leading dimension does not follow the
// batch, so the model cannot be padded to buckets.
var errNotBatched = errors.New("an output's leading dimension does not follow the batch")

// graphKey names one compiled graph: a bucket for bucketed models, the input
// shapes for the others.
type graphKey struct {
	batch int
	shape string
}

// graphEntry is one compiled graph and what running it needs. Its fields are
// written once, inside once, and only read afterwards.
type graphEntry struct {
	once    sync.Once
	err     error
	lastUse atomic.Int64 // m.uses when last used; shape keys only

	g         *graph.Graph
	inShapes  []shapes.Shape    // per input, metadata order
	inHandles []int             // parameter handle of each input
	template  []backends.Buffer // parameters: weights filled in, inputs nil
	outShapes []shapes.Shape    // per output, metadata order
}

// graph returns the compiled graph for k, compiling it on first use. dims
// are the input dimensions for a shape key; for a bucket they are derived.
// Concurrent callers for the same key wait for one compilation, whose error
// (if any) is kept: a shape that fails to compile fails the same way again.
func (m *Model) graph(k graphKey, dims ...[]int) (*graphEntry, error) {
	m.mu.Lock()
	e := m.graphs[k]
	if e == nil {
		if k.batch == 0 && len(m.graphs) >= maxShapeGraphs {
			m.evictLocked()
		}
		e = &graphEntry{}
		m.graphs[k] = e
	}
	m.mu.Unlock()
	if k.batch == 0 {
		e.lastUse.Store(m.uses.Add(1))
	}
	e.once.Do(func() {
		if k.batch > 0 {
			dims = make([][]int, len(m.inputs))
			for i, in := range m.inputs {
				d := append([]int(nil), in.dims...)
				d[0] = k.batch
				dims[i] = d
			}
		}
		e.err = m.build(e, k, dims)
	})
	return e, e.err
}

// evictLocked forgets the least recently used graph to make room for
// another. It does not finalize it: a run may still be using it, and the
// garbage collector frees it after that run. m.mu must be held.
func (m *Model) evictLocked() {
	var oldest graphKey
	least := int64(-1)
	for k, e := range m.graphs {
		if u := e.lastUse.Load(); least < 0 || u < least {
			oldest, least = k, u
		}
	}
	delete(m.graphs, oldest)
}

// build converts the ONNX graph for the given input dimensions and compiles
// it into e.
func (m *Model) build(e *graphEntry, k graphKey, dims [][]int) (err error) {
	m.buildMu.Lock()
	defer m.buildMu.Unlock()
	name := m.meta.Name + "/" + k.shape
	if k.batch > 0 {
		name = m.meta.Name + "/batch" + strconv.Itoa(k.batch)
	}
	g := graph.NewGraph(m.backend, name)
	defer func() {
		if err != nil {
			func() {
				defer func() { _ = recover() }()
				g.Finalize()
			}()
			err = fmt.Errorf("compile %s: %w", name, err)
		}
	}()
	defer recoverError(&err, "convert")

	e.inShapes = make([]shapes.Shape, len(m.inputs))
	e.inHandles = make([]int, len(m.inputs))
	feeds := make(map[string]*graph.Node, len(m.inputs)+len(m.consts))
	for i, in := range m.inputs {
		e.inShapes[i] = shapes.Make(in.dtype, dims[i]...)
		p := graph.Parameter(g, "input#"+strconv.Itoa(i), e.inShapes[i])
		e.inHandles[i] = int(p.GetParameterHandle())
		feeds[in.name] = p
	}
	ctx := m.graphContext()
	if len(m.consts) > 0 {
		scope := ctx.In(onnxgomlx.ModelScope).Checked(false)
		for _, name := range m.consts {
			v := scope.GetVariable(onnxgomlx.SafeVarName(name))
			if v == nil {
				return fmt.Errorf("input %q is an initializer, but its value was not loaded", name)
			}
			feeds[name] = v.ValueGraph(g)
		}
	}
	outs := m.onnx.CallGraph(ctx, g, feeds)
	if len(outs) != len(m.outputs) {
		return fmt.Errorf("graph yields %d outputs, metadata lists %d", len(outs), len(m.outputs))
	}
	e.outShapes = make([]shapes.Shape, len(outs))
	for i, o := range outs {
		s := o.Shape()
		if s.DType != m.outputs[i].dtype {
			return fmt.Errorf("output %q is %s, metadata says %s", m.outputs[i].name, s.DType, m.outputs[i].dtype)
		}
		if k.batch > 0 && (s.Rank() == 0 || s.Dimensions[0] != k.batch) {
			return fmt.Errorf("output %q shaped %v for batch %d: %w", m.outputs[i].name, s.Dimensions, k.batch, errNotBatched)
		}
		e.outShapes[i] = s
	}
	g.Compile(outs...)

	n := g.NumParameters()
	e.template = make([]backends.Buffer, n)
	isInput := make([]bool, n)
	for _, h := range e.inHandles {
		isInput[h] = true
	}
	for h := range n {
		if isInput[h] {
			continue
		}
		pname := g.GetParameterByHandle(graph.ParameterHandle(h)).GetParameterName()
		buf, ok := m.varBufs[pname]
		if !ok {
			return fmt.Errorf("graph parameter %q has no value", pname)
		}
		e.template[h] = buf
	}
	e.g = g
	return nil
}

// shapeKey renders input dimensions as a graph key, such as "1x3|4".
func shapeKey(dims [][]int) string {
	var b strings.Builder
	for i, d := range dims {
		if i > 0 {
			b.WriteByte('|')
		}
		for j, x := range d {
			if j > 0 {
				b.WriteByte('x')
			}
			b.WriteString(strconv.Itoa(x))
		}
	}
	return b.String()
}
