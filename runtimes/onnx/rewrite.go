package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	onnxgomlx "github.com/gomlx/onnx-gomlx/onnx"
	"google.golang.org/protobuf/proto"
)

// The rewrites below replace ONNX operators that SimpleGo executes slowly by
// equivalent subgraphs of operators it executes quickly, before the graph is
// converted. SimpleGo's ConvGeneral and ReduceWindow (behind Conv and
// MaxPool) allocate for every output position, which made a small CNN cost
// about the same per item at batch 32 as at batch 1; Slice, Concat,
// Transpose, Max and a matrix product do the same work in a few passes over
// contiguous memory. Its Gather and ReduceMean cost a few nanoseconds per
// element, so a mean of embeddings followed by a linear layer is fused to
// move fewer elements through them. A rewrite is exact: it computes the same
// values, summed in a different order. An operator whose attributes a
// rewrite does not cover is left alone, for the converter to handle or
// reject as before; the rewrites also cover some attributes onnx-gomlx
// v0.3.4 rejects (a Conv's auto_pad VALID, strides with dilations, no
// kernel_shape; a MaxPool's dilations) or gets wrong (a MaxPool without
// strides, which it strides by the kernel).
//
// The rewrites need no tensor shapes, which the ONNX file need not declare:
// every size they use comes from the node's attributes or its weights, and
// every other size is left to the operators (a Slice's negative end counts
// from the end of its axis).
//
// onnx-gomlx keeps its protobuf types in an internal package, so this file
// never names them: it reaches them through the exported Model.Proto, and
// creates new messages with newElem.

// maxRewriteTaps bounds the kernel positions of a rewritten Conv or MaxPool:
// each one is a Slice in the graph, and for a Conv a copy of the input in
// the patches the matrix product reads.
const maxRewriteTaps = 64

// minRewriteOpset is the first opset whose Slice takes its starts, ends,
// axes and steps as inputs, as the rewrites emit it.
const minRewriteOpset = 10

// ONNX enum values (onnx.proto) used by the rewrites.
const (
	onnxFloat = 1 // TensorProto.DataType FLOAT
	onnxInt64 = 7 // TensorProto.DataType INT64
	onnxBool  = 9 // TensorProto.DataType BOOL

	attrFloat  = 1  // AttributeProto.AttributeType FLOAT
	attrInt    = 2  // INT
	attrString = 3  // STRING
	attrTensor = 4  // TENSOR
	attrGraph  = 5  // GRAPH
	attrInts   = 7  // INTS
	attrGraphs = 10 // GRAPHS

	onnxDefaultLocation = 0 // TensorProto.DataLocation DEFAULT
)

// sliceEnd is the end of a Slice that runs to the end of its axis.
const sliceEnd = math.MaxInt64

// opNode is an ONNX node as the rewrites see it.
type opNode struct {
	op      string
	inputs  []string
	outputs []string
	attrs   map[string]attrValue
	plain   bool // in the default domain, with attributes of the kinds above only
}

// graphView is what a rewrite that looks past one node sees of the graph.
type graphView struct {
	nodes     []opNode
	producer  map[string]int  // tensor -> index of the node computing it
	readers   map[string]int  // tensor -> node inputs and graph outputs reading it
	inputRank map[string]int  // graph input (not a weight) -> rank, when declared
	names     map[string]bool // every tensor name
	// weight decodes a FLOAT initializer.
	weight func(string) (weightF32, bool)
	// keepWeights reports whether a weight must stay even when no node
	// reads it any more.
	keepWeights func(string) bool
}

// produced returns the node computing name, if a plain node of type op
// does and name has no other reader than the one asking.
func (g *graphView) produced(name, op string) (int, *opNode, bool) {
	i, ok := g.producer[name]
	if !ok || g.readers[name] != 1 {
		return 0, nil, false
	}
	n := &g.nodes[i]
	return i, n, n.plain && n.op == op && len(n.outputs) == 1
}

// attrValue is a FLOAT, INT, INTS or STRING attribute; kind is its
// AttributeType.
type attrValue struct {
	kind int
	f    float32
	i    int64
	ints []int64
	s    string
}

// intsAttr returns the INTS attribute name, def when absent, and false when
// it is present with another type or a length other than n (n < 0: any).
func (n *opNode) intsAttr(name string, n0 int, def []int64) ([]int64, bool) {
	a, ok := n.attrs[name]
	if !ok {
		return def, true
	}
	if a.kind != attrInts || (n0 >= 0 && len(a.ints) != n0) {
		return nil, false
	}
	return a.ints, true
}

// intAttr returns the INT attribute name, def when absent, and false when
// it is present with another type.
func (n *opNode) intAttr(name string, def int64) (int64, bool) {
	a, ok := n.attrs[name]
	if !ok {
		return def, true
	}
	return a.i, a.kind == attrInt
}

// knownAttrs reports whether every attribute of n is one of names: a
// rewrite does not guess at attributes it was not written for.
func (n *opNode) knownAttrs(names ...string) bool {
	for name := range n.attrs {
		found := false
		for _, k := range names {
			found = found || k == name
		}
		if !found {
			return false
		}
	}
	return true
}

// attr is an attribute of an emitted node: INTS when ints is not nil, INT
// otherwise.
type attr struct {
	name string
	i    int64
	ints []int64
}

// emitter adds nodes to the rewritten graph, in order.
type emitter struct {
	// node appends a node computing out.
	node func(op string, out string, inputs []string, attrs ...attr)
	// fresh returns a tensor name no other tensor uses.
	fresh func(hint string) string
	// constant appends a Constant node holding the tensor and returns its
	// output.
	constant func(dtype int32, dims []int64, raw []byte) string
	// initializer adds a weight and returns its name.
	initializer func(dtype int32, dims []int64, raw []byte) string
	// keep appends the original node i unchanged.
	keep func(i int)
	// commit replaces the graph's nodes by those emitted, without the
	// absorbed originals, and its weights by those still read (or kept)
	// and those added.
	commit func(absorbed []bool, keepWeight func(string) bool)
}

// op appends a node with one fresh output and returns the output.
func (e *emitter) op(op string, inputs []string, attrs ...attr) string {
	out := e.fresh(op)
	e.node(op, out, inputs, attrs...)
	return out
}

// ints appends a Constant 1-D INT64 tensor.
func (e *emitter) ints(vals ...int64) string {
	raw := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
	}
	return e.constant(onnxInt64, []int64{int64(len(vals))}, raw)
}

// slice appends a Slice of x over axes.
func (e *emitter) slice(x string, starts, ends, axes, steps []int64) string {
	return e.op("Slice", []string{x, e.ints(starts...), e.ints(ends...), e.ints(axes...), e.ints(steps...)})
}

// weightF32 is a FLOAT initializer.
type weightF32 struct {
	dims []int64
	data []float32
}

// rewriteModel rewrites om's graph in place and, when it changed anything,
// returns the model parsed anew (the converter indexes the graph when it
// parses it) and the number of nodes rewritten.
func rewriteModel(om *onnxgomlx.Model) (*onnxgomlx.Model, int, error) {
	n := rewriteGraph(om)
	if n == 0 {
		return om, 0, nil
	}
	contents, err := proto.Marshal(&om.Proto)
	if err != nil {
		return nil, 0, fmt.Errorf("rewrite: %w", err)
	}
	om, err = onnxgomlx.Parse(contents)
	if err != nil {
		return nil, 0, fmt.Errorf("rewrite: %w", err)
	}
	return om, n, nil
}

// rewriteGraph rewrites the nodes of om's main graph that the rewrites
// cover (Conv, MaxPool, and Gemm with the nodes it fuses), drops the weights
// only the old nodes read, and returns the number of nodes it rewrote.
func rewriteGraph(om *onnxgomlx.Model) int {
	if om.Proto.Graph == nil || defaultOpset(om) < minRewriteOpset {
		return 0
	}
	gr := viewGraph(om)
	e := newEmitter(om, gr.names)
	rewritten := 0
	absorbed := make([]bool, len(gr.nodes))
	for i := range gr.nodes {
		v := &gr.nodes[i]
		ok := false
		if v.plain {
			switch v.op {
			case "Conv":
				ok = rewriteConv(v, gr.weight, e)
			case "MaxPool":
				ok = rewriteMaxPool(v, e)
			case "Gemm":
				var fused []int
				if fused, ok = rewriteEmbeddingBag(i, gr, e); ok {
					for _, j := range fused {
						absorbed[j] = true
					}
				}
			}
		}
		if ok {
			rewritten++
		} else {
			e.keep(i)
		}
	}
	if rewritten > 0 {
		e.commit(absorbed, gr.keepWeights)
	}
	return rewritten
}

// viewGraph describes om's main graph for the rewrites.
func viewGraph(om *onnxgomlx.Model) *graphView {
	g := om.Proto.Graph
	gr := &graphView{
		nodes:     make([]opNode, len(g.Node)),
		producer:  map[string]int{},
		readers:   map[string]int{},
		inputRank: map[string]int{},
		names:     map[string]bool{},
	}
	graphIO := map[string]bool{}
	for _, v := range g.Input {
		gr.names[v.Name], graphIO[v.Name] = true, true
	}
	for _, v := range g.Output {
		gr.names[v.Name], graphIO[v.Name] = true, true
		gr.readers[v.Name]++
	}
	for _, v := range g.ValueInfo {
		gr.names[v.Name] = true
	}
	inits := map[string]int{}
	for i, t := range g.Initializer {
		gr.names[t.Name] = true
		inits[t.Name] = i
	}
	subgraphs := false
	for i, n := range g.Node {
		v := opNode{op: n.OpType, inputs: n.Input, outputs: n.Output, attrs: map[string]attrValue{}}
		v.plain = (n.Domain == "" || n.Domain == "ai.onnx") && n.Overload == ""
		for _, a := range n.Attribute {
			switch a.Type {
			case attrFloat, attrInt, attrInts, attrString:
				v.attrs[a.Name] = attrValue{kind: int(a.Type), f: a.F, i: a.I, ints: a.Ints, s: string(a.S)}
			case attrGraph, attrGraphs:
				subgraphs = true
				v.plain = false
			default:
				v.plain = false
			}
		}
		gr.nodes[i] = v
		for _, o := range n.Output {
			gr.producer[o] = i
			gr.names[o] = true
		}
		for _, in := range n.Input {
			gr.readers[in]++
		}
	}
	for _, v := range g.Input {
		if _, ok := inits[v.Name]; ok {
			continue
		}
		if shape := v.GetType().GetTensorType().GetShape(); shape != nil {
			gr.inputRank[v.Name] = len(shape.GetDim())
		}
	}
	gr.weight = func(name string) (weightF32, bool) {
		i, ok := inits[name]
		if !ok {
			return weightF32{}, false
		}
		t := g.Initializer[i]
		return floatTensor(t.DataType, t.Dims, t.RawData, t.FloatData, int32(t.DataLocation) != onnxDefaultLocation)
	}
	// A graph with subgraphs keeps every weight, since a subgraph may read
	// an outer one; a weight listed as a graph input or output stays too.
	gr.keepWeights = func(name string) bool { return subgraphs || graphIO[name] }
	return gr
}

// newEmitter returns an emitter building a new node list for om's main
// graph, in which it makes names unique against names.
func newEmitter(om *onnxgomlx.Model, names map[string]bool) *emitter {
	g := om.Proto.Graph
	out := g.Node[:0:0]
	newInits := g.Initializer[:0:0]
	seq := 0
	e := &emitter{}
	e.fresh = func(hint string) string {
		for {
			seq++
			name := "infergate.rewrite." + hint + "." + strconv.Itoa(seq)
			if !names[name] {
				names[name] = true
				return name
			}
		}
	}
	e.keep = func(i int) { out = append(out, g.Node[i]) }
	e.node = func(op, output string, inputs []string, attrs ...attr) {
		n := newElem(g.Node)
		n.OpType = op
		n.Name = output
		n.Input = inputs
		n.Output = []string{output}
		for _, a := range attrs {
			pa := newElem(n.Attribute)
			pa.Name = a.name
			if a.ints != nil {
				pa.Type = attrInts
				pa.Ints = a.ints
			} else {
				pa.Type = attrInt
				pa.I = a.i
			}
			n.Attribute = append(n.Attribute, pa)
		}
		out = append(out, n)
	}
	consts := map[string]string{} // value -> Constant output, to emit each value once
	e.constant = func(dtype int32, dims []int64, raw []byte) string {
		key := fmt.Sprint(dtype, dims, raw)
		if name, ok := consts[key]; ok {
			return name
		}
		t := newElem(g.Initializer)
		t.DataType, t.Dims, t.RawData = dtype, dims, raw
		output := e.fresh("Constant")
		n := newElem(g.Node)
		n.OpType, n.Name, n.Output = "Constant", output, []string{output}
		a := newElem(n.Attribute)
		a.Name, a.Type, a.T = "value", attrTensor, t
		n.Attribute = append(n.Attribute, a)
		out = append(out, n)
		consts[key] = output
		return output
	}
	e.initializer = func(dtype int32, dims []int64, raw []byte) string {
		t := newElem(g.Initializer)
		t.Name = e.fresh("weight")
		t.DataType, t.Dims, t.RawData = dtype, dims, raw
		newInits = append(newInits, t)
		return t.Name
	}
	e.commit = func(absorbed []bool, keepWeight func(string) bool) {
		// The nodes a fusion absorbed came before it and were kept.
		drop := map[any]bool{}
		for i, n := range g.Node {
			if absorbed[i] {
				drop[n] = true
			}
		}
		nodes := out[:0]
		used := map[string]bool{}
		for _, n := range out {
			if drop[n] {
				continue
			}
			nodes = append(nodes, n)
			for _, in := range n.Input {
				used[in] = true
			}
		}
		g.Node = nodes
		// Drop the weights only rewritten nodes read: the engine would
		// otherwise hold both layouts.
		weights := g.Initializer[:0:0]
		for _, t := range g.Initializer {
			if used[t.Name] || keepWeight(t.Name) {
				weights = append(weights, t)
			}
		}
		g.Initializer = append(weights, newInits...)
	}
	return e
}

// newElem returns a new message of the element type of s, a slice of
// protobuf message pointers whose type this package cannot name.
func newElem[T any](_ []*T) *T { return new(T) }

// defaultOpset returns the version of the default ONNX operator set the
// model imports, or 0.
func defaultOpset(om *onnxgomlx.Model) int64 {
	for _, o := range om.Proto.OpsetImport {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			return o.Version
		}
	}
	return 0
}

// floatTensor decodes a FLOAT initializer held in the file.
func floatTensor(dtype int32, dims []int64, raw []byte, floats []float32, external bool) (weightF32, bool) {
	if dtype != onnxFloat || external {
		return weightF32{}, false
	}
	size := int64(1)
	for _, d := range dims {
		if d < 0 {
			return weightF32{}, false
		}
		size *= d
	}
	w := weightF32{dims: dims}
	switch {
	case raw != nil:
		if int64(len(raw)) != 4*size {
			return weightF32{}, false
		}
		w.data = make([]float32, size)
		for i := range w.data {
			w.data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case int64(len(floats)) == size:
		w.data = floats
	default:
		return weightF32{}, false
	}
	return w, true
}
