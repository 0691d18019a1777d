package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The rewrites of single operators and small patterns; rewrite.go holds
// what they share and how they are applied.

// poolWindow is the sliding window of a Conv or MaxPool over the spatial
// axes.
type poolWindow struct {
	kernel, strides, dilations []int64
	padBegin, padEnd           []int64
}

// window reads the window attributes of a Conv or MaxPool with the given
// kernel. It returns false for what the rewrites do not cover: auto_pad
// other than NOTSET or VALID, and malformed values.
func (n *opNode) window(kernel []int64) (poolWindow, bool) {
	r := len(kernel)
	w := poolWindow{kernel: kernel}
	ones := make([]int64, r)
	for i := range ones {
		ones[i] = 1
	}
	var ok bool
	if w.strides, ok = n.intsAttr("strides", r, ones); !ok {
		return w, false
	}
	if w.dilations, ok = n.intsAttr("dilations", r, ones); !ok {
		return w, false
	}
	pads, ok := n.intsAttr("pads", 2*r, make([]int64, 2*r))
	if !ok {
		return w, false
	}
	if a, ok := n.attrs["auto_pad"]; ok {
		switch {
		case a.kind != attrString:
			return w, false
		case a.s == "VALID":
			pads = make([]int64, 2*r)
		case a.s != "NOTSET":
			return w, false
		}
	}
	w.padBegin, w.padEnd = pads[:r], pads[r:]
	taps := int64(1)
	for i := range r {
		if kernel[i] < 1 || w.strides[i] < 1 || w.dilations[i] < 1 || w.padBegin[i] < 0 || w.padEnd[i] < 0 {
			return w, false
		}
		taps *= kernel[i]
		if taps > maxRewriteTaps {
			return w, false
		}
	}
	return w, r > 0
}

// taps returns the kernel positions in row-major order.
func (w *poolWindow) taps() [][]int64 {
	var out [][]int64
	var walk func(prefix []int64)
	walk = func(prefix []int64) {
		if len(prefix) == len(w.kernel) {
			out = append(out, append([]int64(nil), prefix...))
			return
		}
		for k := range w.kernel[len(prefix)] {
			walk(append(prefix, k))
		}
	}
	walk(make([]int64, 0, len(w.kernel)))
	return out
}

// tapSlice returns the Slice of the padded input that kernel position tap
// reads for every output position, over spatial axes starting at axis0:
// start at the tap, step by the stride, and stop where the last window
// ends. The stop counts from the end of the axis, so the slice needs no
// input size and has exactly the output's size, floor((padded - span) /
// stride) + 1 with span the dilated kernel's extent.
func (w *poolWindow) tapSlice(tap []int64, axis0 int) (starts, ends, axes, steps []int64, identity bool) {
	identity = true
	for i, k := range tap {
		start := k * w.dilations[i]
		end := -(w.kernel[i] - 1 - k) * w.dilations[i]
		if end == 0 {
			end = sliceEnd
		}
		identity = identity && start == 0 && end == sliceEnd && w.strides[i] == 1
		starts = append(starts, start)
		ends = append(ends, end)
		axes = append(axes, int64(axis0+i))
		steps = append(steps, w.strides[i])
	}
	return starts, ends, axes, steps, identity
}

// rewriteConv replaces a Conv whose weight is a FLOAT initializer and whose
// group is 1 by an im2col: transpose the input to channels-last, pad it with
// zeros, take one strided Slice per kernel position, concatenate them along
// the channels, multiply by the weight laid out to match, add the bias and
// transpose back to channels-first.
func rewriteConv(n *opNode, weight func(string) (weightF32, bool), e *emitter) bool {
	if len(n.inputs) < 2 || len(n.inputs) > 3 || len(n.outputs) != 1 {
		return false
	}
	if !n.knownAttrs("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides") {
		return false
	}
	if group, ok := n.intAttr("group", 1); !ok || group != 1 {
		return false
	}
	w, ok := weight(n.inputs[1])
	if !ok || len(w.dims) < 3 {
		return false
	}
	kernel := w.dims[2:]
	if ks, ok := n.intsAttr("kernel_shape", len(kernel), kernel); !ok || fmt.Sprint(ks) != fmt.Sprint(kernel) {
		return false
	}
	win, ok := n.window(kernel)
	if !ok {
		return false
	}
	r := len(kernel)
	outCh, inCh := w.dims[0], w.dims[1]
	if outCh < 1 || inCh < 1 {
		return false
	}
	taps := win.taps()

	// The weight as the matrix [taps*C, O] whose row tap*C+c holds
	// W[:, c, tap...], matching the patches' channel order.
	nTaps := int64(len(taps))
	raw := make([]byte, 4*nTaps*inCh*outCh)
	for o := range outCh {
		for c := range inCh {
			for t := range nTaps {
				v := w.data[(o*inCh+c)*nTaps+t]
				binary.LittleEndian.PutUint32(raw[4*((t*inCh+c)*outCh+o):], math.Float32bits(v))
			}
		}
	}
	wt := e.initializer(onnxFloat, []int64{nTaps * inCh, outCh}, raw)

	// Channels-last: [N, C, S...] -> [N, S..., C].
	toLast := []int64{0}
	toFirst := []int64{0, int64(r + 1)}
	for i := range r {
		toLast = append(toLast, int64(i+2))
		toFirst = append(toFirst, int64(i+1))
	}
	toLast = append(toLast, 1)
	x := e.op("Transpose", []string{n.inputs[0]}, attr{name: "perm", ints: toLast})

	var zero string
	for i := range r {
		if win.padBegin[i] == 0 && win.padEnd[i] == 0 {
			continue
		}
		if zero == "" {
			zero = e.constant(onnxFloat, nil, make([]byte, 4))
		}
		x = padAxis(e, x, i+1, win.padBegin[i], win.padEnd[i], func(edge string, width int64) string {
			// A block of zeros shaped like width copies of the edge: Where
			// broadcasts the edge along the axis and selects the zero, so
			// the block is exactly zero whatever the edge holds.
			dims := make([]int64, r+2)
			for j := range dims {
				dims[j] = 1
			}
			dims[i+1] = width
			never := e.constant(onnxBool, dims, make([]byte, width))
			return e.op("Where", []string{never, edge, zero})
		})
	}

	patches := make([]string, len(taps))
	for t, tap := range taps {
		starts, ends, axes, steps, identity := win.tapSlice(tap, 1)
		if identity {
			patches[t] = x
			continue
		}
		patches[t] = e.slice(x, starts, ends, axes, steps)
	}
	p := patches[0]
	if len(patches) > 1 {
		p = e.op("Concat", patches, attr{name: "axis", i: int64(r + 1)})
	}
	y := e.op("MatMul", []string{p, wt})
	if len(n.inputs) == 3 && n.inputs[2] != "" {
		y = e.op("Add", []string{y, n.inputs[2]})
	}
	e.node("Transpose", n.outputs[0], []string{y}, attr{name: "perm", ints: toFirst})
	return true
}

// rewriteMaxPool replaces a MaxPool without the Indices output, ceil_mode
// or storage_order by the elementwise Max of one strided Slice per kernel
// position. Padding repeats the edge instead of adding -inf: with dilation
// 1 and pads smaller than the kernel, as ONNX requires, every window that
// reaches into the padding also holds the edge it repeats, so the maximum is
// the same; padding is not rewritten with other dilations.
func rewriteMaxPool(n *opNode, e *emitter) bool {
	if len(n.inputs) != 1 || len(n.outputs) != 1 {
		return false
	}
	if !n.knownAttrs("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides") {
		return false
	}
	if v, ok := n.intAttr("ceil_mode", 0); !ok || v != 0 {
		return false
	}
	if v, ok := n.intAttr("storage_order", 0); !ok || v != 0 {
		return false
	}
	kernel, ok := n.intsAttr("kernel_shape", -1, nil)
	if !ok || len(kernel) == 0 {
		return false
	}
	win, ok := n.window(kernel)
	if !ok {
		return false
	}
	r := len(kernel)
	x := n.inputs[0]
	for i := range r {
		if win.padBegin[i] == 0 && win.padEnd[i] == 0 {
			continue
		}
		if win.dilations[i] != 1 || win.padBegin[i] >= kernel[i] || win.padEnd[i] >= kernel[i] {
			return false
		}
	}
	for i := range r {
		if win.padBegin[i] == 0 && win.padEnd[i] == 0 {
			continue
		}
		x = padAxis(e, x, i+2, win.padBegin[i], win.padEnd[i], func(edge string, width int64) string {
			copies := make([]string, width)
			for j := range copies {
				copies[j] = edge
			}
			if width == 1 {
				return edge
			}
			return e.op("Concat", copies, attr{name: "axis", i: int64(i + 2)})
		})
	}
	taps := win.taps()
	outs := make([]string, len(taps))
	for t, tap := range taps {
		starts, ends, axes, steps, identity := win.tapSlice(tap, 2)
		if identity {
			outs[t] = x
			continue
		}
		outs[t] = e.slice(x, starts, ends, axes, steps)
	}
	e.node("Max", n.outputs[0], outs)
	return true
}

// padAxis pads x along axis by begin and end entries,
// concatenating the blocks fill makes from the first or last entry of the
// axis (a slice one entry wide) and the block's width.
func padAxis(e *emitter, x string, axis int, begin, end int64, fill func(edge string, width int64) string) string {
	parts := make([]string, 0, 3)
	if begin > 0 {
		edge := e.slice(x, []int64{0}, []int64{1}, []int64{int64(axis)}, []int64{1})
		parts = append(parts, fill(edge, begin))
	}
	parts = append(parts, x)
	if end > 0 {
		edge := e.slice(x, []int64{-1}, []int64{sliceEnd}, []int64{int64(axis)}, []int64{1})
		parts = append(parts, fill(edge, end))
	}
	return e.op("Concat", parts, attr{name: "axis", i: int64(axis)})
}

// rewriteEmbeddingBag fuses Gemm(ReduceMean(Gather(E, idx)), W, C), the mean
// of some embeddings followed by a linear layer, into
// ReduceMean(Gather(E·Wᵀ, idx)) + C: the product moves before the mean,
// which it commutes with, so the engine gathers and averages rows of O
// outputs instead of rows of D embedding dimensions. SimpleGo's Gather and
// ReduceMean cost a few nanoseconds per element, which makes them most of
// such a model's time. The fusion applies when O <= D (it never moves more
// data), E and W are FLOAT weights, idx is a graph input of declared rank,
// the mean's axes are an attribute that spares the embedding axis, and the
// Gemm has alpha and beta 1 and transA 0. It returns the nodes it absorbed.
func rewriteEmbeddingBag(i int, g *graphView, e *emitter) ([]int, bool) {
	gemm := &g.nodes[i]
	if len(gemm.inputs) < 2 || len(gemm.inputs) > 3 || len(gemm.outputs) != 1 {
		return nil, false
	}
	if !gemm.knownAttrs("alpha", "beta", "transA", "transB") {
		return nil, false
	}
	for _, name := range []string{"alpha", "beta"} {
		if a, ok := gemm.attrs[name]; ok && (a.kind != attrFloat || a.f != 1) {
			return nil, false
		}
	}
	if v, ok := gemm.intAttr("transA", 0); !ok || v != 0 {
		return nil, false
	}
	transB, ok := gemm.intAttr("transB", 0)
	if !ok || (transB != 0 && transB != 1) {
		return nil, false
	}
	ri, mean, ok := g.produced(gemm.inputs[0], "ReduceMean")
	if !ok || len(mean.inputs) != 1 || !mean.knownAttrs("axes", "keepdims") {
		return nil, false
	}
	gi, gather, ok := g.produced(mean.inputs[0], "Gather")
	if !ok || len(gather.inputs) != 2 || !gather.knownAttrs("axis") {
		return nil, false
	}
	if axis, ok := gather.intAttr("axis", 0); !ok || axis != 0 {
		return nil, false
	}
	idx := gather.inputs[1]
	rank, ok := g.inputRank[idx]
	if !ok {
		return nil, false
	}
	emb, ok := g.weight(gather.inputs[0])
	if !ok || len(emb.dims) != 2 {
		return nil, false
	}
	lin, ok := g.weight(gemm.inputs[1])
	if !ok || len(lin.dims) != 2 {
		return nil, false
	}
	vocab, dim := emb.dims[0], emb.dims[1]
	outs, linDim := lin.dims[1], lin.dims[0]
	if transB == 1 {
		outs, linDim = lin.dims[0], lin.dims[1]
	}
	if linDim != dim || outs > dim || outs < 1 {
		return nil, false
	}

	// The mean must keep the embedding axis, the last, and leave the
	// matrix the Gemm takes.
	axes, ok := mean.intsAttr("axes", -1, nil)
	if !ok || len(axes) == 0 {
		return nil, false
	}
	keepdims, ok := mean.intAttr("keepdims", 1)
	if !ok || (keepdims != 0 && keepdims != 1) {
		return nil, false
	}
	gathered := int64(rank + 1)
	seen := map[int64]bool{}
	for _, a := range axes {
		if a < 0 {
			a += gathered
		}
		if a < 0 || a >= gathered-1 || seen[a] {
			return nil, false
		}
		seen[a] = true
	}
	if left := gathered - int64(len(axes))*(1-keepdims); left != 2 {
		return nil, false
	}

	table := make([]byte, 4*vocab*outs)
	for v := range vocab {
		row := emb.data[v*dim : (v+1)*dim]
		for o := range outs {
			var sum float64
			for d := range dim {
				wv := lin.data[d*outs+o]
				if transB == 1 {
					wv = lin.data[o*dim+d]
				}
				sum += float64(row[d]) * float64(wv)
			}
			binary.LittleEndian.PutUint32(table[4*(v*outs+o):], math.Float32bits(float32(sum)))
		}
	}
	t := e.initializer(onnxFloat, []int64{vocab, outs}, table)
	rows := e.op("Gather", []string{t, idx}, attr{name: "axis", i: 0})
	meanAttrs := []attr{{name: "axes", ints: axes}, {name: "keepdims", i: keepdims}}
	if len(gemm.inputs) == 3 && gemm.inputs[2] != "" {
		y := e.op("ReduceMean", []string{rows}, meanAttrs...)
		e.node("Add", gemm.outputs[0], []string{y, gemm.inputs[2]})
	} else {
		e.node("ReduceMean", gemm.outputs[0], []string{rows}, meanAttrs...)
	}
	return []int{gi, ri}, true
}
