package onnx

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	onnxgomlx "github.com/gomlx/onnx-gomlx/onnx"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
)

// windowCase is a model of one Conv or MaxPool node on a batch of inputs
// shaped [N, in...], built by windowModel.
type windowCase struct {
	name   string
	op     string  // Conv or MaxPool
	in     []int64 // [C, spatial...]
	outCh  int64   // Conv output channels
	kernel []int64 // Conv: the weight's spatial dims; MaxPool: kernel_shape
	attrs  string  // attributes as prototext
	group  int64   // Conv group; 0 means 1
	bias   bool
	// bare leaves out a Conv's kernel_shape and strides when attrs lacks
	// them, as ONNX allows; they are added otherwise, for onnx-gomlx v0.3.4
	// to convert the original graph.
	bare     bool
	indices  bool // MaxPool also outputs Indices
	opset    int  // 0 means 13
	rewrites int  // nodes the rewrite should replace
	// origWrong says why the original graph's output is wrong, when it is.
	origWrong string
	// window as the reference applies it
	strides, dilations, pads []int64
}

var windowCases = []windowCase{
	{name: "conv2d_digits", op: "Conv", in: []int64{1, 8, 8}, outCh: 4, kernel: []int64{3, 3}, bias: true,
		attrs: ints("kernel_shape", 3, 3) + ints("pads", 1, 1, 1, 1) + ints("strides", 1, 1) + ints("dilations", 1, 1) + intAttr("group", 1),
		pads:  []int64{1, 1, 1, 1}, rewrites: 1},
	{name: "conv2d_everything", op: "Conv", in: []int64{3, 9, 10}, outCh: 5, kernel: []int64{3, 2}, bias: true,
		attrs:   ints("strides", 2, 1) + ints("pads", 1, 0, 2, 1) + ints("dilations", 1, 2),
		strides: []int64{2, 1}, dilations: []int64{1, 2}, pads: []int64{1, 0, 2, 1}, rewrites: 1},
	{name: "conv2d_no_attrs_no_bias", op: "Conv", in: []int64{2, 5, 4}, outCh: 3, kernel: []int64{2, 3}, bare: true, rewrites: 1},
	{name: "conv2d_1x1", op: "Conv", in: []int64{4, 3, 3}, outCh: 2, kernel: []int64{1, 1}, bias: true, rewrites: 1},
	{name: "conv2d_1x1_stride2", op: "Conv", in: []int64{2, 5, 6}, outCh: 3, kernel: []int64{1, 1},
		attrs: ints("strides", 2, 2), strides: []int64{2, 2}, rewrites: 1},
	{name: "conv2d_pads_wider_than_kernel", op: "Conv", in: []int64{1, 3, 4}, outCh: 2, kernel: []int64{2, 2}, bias: true,
		attrs: ints("pads", 3, 0, 1, 2), pads: []int64{3, 0, 1, 2}, rewrites: 1},
	{name: "conv2d_dilated_strided", op: "Conv", in: []int64{2, 11, 9}, outCh: 2, kernel: []int64{3, 3},
		attrs:   ints("strides", 3, 2) + ints("dilations", 2, 3) + ints("pads", 2, 1, 0, 3),
		strides: []int64{3, 2}, dilations: []int64{2, 3}, pads: []int64{2, 1, 0, 3}, rewrites: 1},
	{name: "conv2d_dilated", op: "Conv", in: []int64{2, 7, 8}, outCh: 3, kernel: []int64{3, 2}, bias: true,
		attrs: ints("dilations", 2, 3) + ints("pads", 2, 1, 2, 0), dilations: []int64{2, 3}, pads: []int64{2, 1, 2, 0}, rewrites: 1},
	{name: "conv2d_auto_pad_valid", op: "Conv", in: []int64{2, 6, 6}, outCh: 2, kernel: []int64{3, 3}, bias: true,
		attrs: str("auto_pad", "VALID") + ints("strides", 2, 2), strides: []int64{2, 2}, rewrites: 1},
	{name: "conv2d_opset11", op: "Conv", in: []int64{2, 6, 5}, outCh: 3, kernel: []int64{3, 3}, bias: true,
		attrs: ints("pads", 1, 1, 1, 1), pads: []int64{1, 1, 1, 1}, opset: 11, rewrites: 1},
	{name: "conv1d", op: "Conv", in: []int64{3, 12}, outCh: 4, kernel: []int64{5}, bias: true,
		attrs: ints("strides", 2) + ints("pads", 2, 1), strides: []int64{2}, pads: []int64{2, 1}, rewrites: 1},
	{name: "conv3d", op: "Conv", in: []int64{2, 4, 5, 3}, outCh: 3, kernel: []int64{2, 3, 2}, bias: true,
		attrs: ints("pads", 1, 1, 0, 0, 1, 1), pads: []int64{1, 1, 0, 0, 1, 1}, rewrites: 1},

	{name: "conv2d_group2_kept", op: "Conv", in: []int64{4, 5, 5}, outCh: 4, kernel: []int64{3, 3}, group: 2, bias: true,
		attrs: intAttr("group", 2) + ints("pads", 1, 1, 1, 1), pads: []int64{1, 1, 1, 1}},
	{name: "conv2d_opset9_kept", op: "Conv", in: []int64{1, 4, 4}, outCh: 2, kernel: []int64{3, 3}, opset: 9},

	{name: "maxpool2d_digits", op: "MaxPool", in: []int64{3, 8, 8}, kernel: []int64{2, 2},
		attrs:   ints("kernel_shape", 2, 2) + ints("strides", 2, 2) + ints("pads", 0, 0, 0, 0) + intAttr("ceil_mode", 0),
		strides: []int64{2, 2}, rewrites: 1},
	{name: "maxpool2d_same", op: "MaxPool", in: []int64{2, 5, 6}, kernel: []int64{3, 3},
		attrs: ints("kernel_shape", 3, 3) + ints("pads", 1, 1, 1, 1) + ints("strides", 1, 1), pads: []int64{1, 1, 1, 1}, rewrites: 1},
	{name: "maxpool2d_default_strides", op: "MaxPool", in: []int64{2, 5, 6}, kernel: []int64{3, 3},
		attrs: ints("kernel_shape", 3, 3) + ints("pads", 1, 1, 1, 1), pads: []int64{1, 1, 1, 1}, rewrites: 1,
		origWrong: "onnx-gomlx v0.3.4 strides a MaxPool without strides by its kernel, not by 1"},
	{name: "maxpool2d_asymmetric", op: "MaxPool", in: []int64{2, 9, 7}, kernel: []int64{3, 2},
		attrs:   ints("kernel_shape", 3, 2) + ints("strides", 2, 3) + ints("pads", 2, 0, 1, 1),
		strides: []int64{2, 3}, pads: []int64{2, 0, 1, 1}, rewrites: 1},
	{name: "maxpool2d_dilated", op: "MaxPool", in: []int64{1, 7, 7}, kernel: []int64{2, 2},
		attrs:     ints("kernel_shape", 2, 2) + ints("dilations", 2, 3),
		dilations: []int64{2, 3}, rewrites: 1},
	{name: "maxpool1d", op: "MaxPool", in: []int64{2, 11}, kernel: []int64{3},
		attrs: ints("kernel_shape", 3) + ints("strides", 2) + ints("pads", 1, 2), strides: []int64{2}, pads: []int64{1, 2}, rewrites: 1},
	{name: "maxpool3d", op: "MaxPool", in: []int64{2, 4, 4, 5}, kernel: []int64{2, 2, 2},
		attrs: ints("kernel_shape", 2, 2, 2) + ints("strides", 2, 2, 2), strides: []int64{2, 2, 2}, rewrites: 1},
	{name: "maxpool_kernel1", op: "MaxPool", in: []int64{2, 5, 5}, kernel: []int64{1, 1},
		attrs: ints("kernel_shape", 1, 1) + ints("strides", 2, 2), strides: []int64{2, 2}, rewrites: 1},

	{name: "maxpool_ceil_kept", op: "MaxPool", in: []int64{1, 5, 5}, kernel: []int64{2, 2},
		attrs: ints("kernel_shape", 2, 2) + ints("strides", 2, 2) + intAttr("ceil_mode", 1)},
	{name: "maxpool_dilated_padded_kept", op: "MaxPool", in: []int64{1, 6, 6}, kernel: []int64{2, 2},
		attrs: ints("kernel_shape", 2, 2) + ints("dilations", 2, 2) + ints("pads", 1, 1, 1, 1)},
	{name: "maxpool_indices_kept", op: "MaxPool", in: []int64{1, 4, 4}, kernel: []int64{2, 2}, indices: true,
		attrs: ints("kernel_shape", 2, 2)},
	{name: "maxpool_auto_pad_same_kept", op: "MaxPool", in: []int64{1, 4, 4}, kernel: []int64{3, 3},
		attrs: ints("kernel_shape", 3, 3) + str("auto_pad", "SAME_UPPER")},
}

func ints(name string, v ...int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "attribute { name: %q type: INTS", name)
	for _, x := range v {
		fmt.Fprintf(&b, " ints: %d", x)
	}
	return b.String() + " } "
}

func intAttr(name string, v int64) string {
	return fmt.Sprintf("attribute { name: %q type: INT i: %d } ", name, v)
}

func str(name, v string) string {
	return fmt.Sprintf("attribute { name: %q type: STRING s: %q } ", name, v)
}

// windowModel returns the ONNX file of c, with weights drawn from rng, and
// the weights.
func windowModel(t *testing.T, c windowCase, rng *rand.Rand) (contents []byte, w, bias []float32) {
	t.Helper()
	var b strings.Builder
	opset := c.opset
	if opset == 0 {
		opset = 13
	}
	fmt.Fprintf(&b, "ir_version: 7 opset_import { domain: \"\" version: %d } graph { name: %q ", opset, c.name)
	dims := func(name string, d []int64, dynamic bool) string {
		var s strings.Builder
		fmt.Fprintf(&s, "{ name: %q type { tensor_type { elem_type: 1 shape { dim { dim_param: \"batch\" }", name)
		for i, x := range d {
			if dynamic {
				fmt.Fprintf(&s, " dim { dim_param: \"d%d\" }", i+1)
			} else {
				fmt.Fprintf(&s, " dim { dim_value: %d }", x)
			}
		}
		return s.String() + " } } } } "
	}
	switch c.op {
	case "Conv":
		inputs := `input: "x" input: "w"`
		if c.bias {
			inputs += ` input: "b"`
		}
		attrs := c.attrs
		if !c.bare && !strings.Contains(attrs, "kernel_shape") {
			attrs += ints("kernel_shape", c.kernel...)
		}
		if !c.bare && !strings.Contains(attrs, "strides") && !strings.Contains(attrs, "dilations") {
			ones := make([]int64, len(c.kernel))
			for i := range ones {
				ones[i] = 1
			}
			attrs += ints("strides", ones...)
		}
		fmt.Fprintf(&b, "node { %s output: \"y\" op_type: \"Conv\" %s} ", inputs, attrs)
		group := max(c.group, 1)
		wdims := append([]int64{c.outCh, c.in[0] / group}, c.kernel...)
		size := int64(1)
		for _, d := range wdims {
			size *= d
		}
		scale := 1 / math.Sqrt(float64(size/c.outCh))
		w = make([]float32, size)
		fmt.Fprintf(&b, "initializer { name: \"w\" data_type: 1")
		for _, d := range wdims {
			fmt.Fprintf(&b, " dims: %d", d)
		}
		for i := range w {
			w[i] = float32((2*rng.Float64() - 1) * scale)
			fmt.Fprintf(&b, " float_data: %v", w[i])
		}
		b.WriteString(" } ")
		if c.bias {
			bias = make([]float32, c.outCh)
			fmt.Fprintf(&b, "initializer { name: \"b\" data_type: 1 dims: %d", c.outCh)
			for i := range bias {
				bias[i] = float32(2*rng.Float64() - 1)
				fmt.Fprintf(&b, " float_data: %v", bias[i])
			}
			b.WriteString(" } ")
		}
	case "MaxPool":
		outputs := `output: "y"`
		if c.indices {
			outputs += ` output: "i"`
		}
		fmt.Fprintf(&b, "node { input: \"x\" %s op_type: \"MaxPool\" %s} ", outputs, c.attrs)
	}
	b.WriteString("input " + dims("x", c.in, false))
	b.WriteString("output " + dims("y", c.in, true))
	if c.indices {
		b.WriteString(`output { name: "i" type { tensor_type { elem_type: 7 shape { dim { dim_param: "batch" } } } } } `)
	}
	b.WriteString("}")

	var om onnxgomlx.Model
	if err := prototext.Unmarshal([]byte(b.String()), &om.Proto); err != nil {
		t.Fatalf("model text: %v\n%s", err, b.String())
	}
	contents, err := proto.Marshal(&om.Proto)
	if err != nil {
		t.Fatal(err)
	}
	return contents, w, bias
}

// TestRewriteCoverage checks which nodes the rewrites replace: those whose
// attributes they cover, and no others.
func TestRewriteCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range windowCases {
		t.Run(c.name, func(t *testing.T) {
			contents, _, _ := windowModel(t, c, rng)
			om, err := onnxgomlx.Parse(contents)
			if err != nil {
				t.Fatal(err)
			}
			_, n, err := rewriteModel(om)
			if err != nil {
				t.Fatal(err)
			}
			if n != c.rewrites {
				t.Errorf("rewrote %d nodes, want %d", n, c.rewrites)
			}
		})
	}
}

// TestRewriteMatches runs each rewritten model on random inputs and
// compares it with a direct computation and, where the converter handles
// the original node, with the original graph.
func TestRewriteMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range windowCases {
		if c.rewrites == 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			contents, w, bias := windowModel(t, c, rng)
			path := filepath.Join(t.TempDir(), c.name+".onnx")
			if err := os.WriteFile(path, contents, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path, Options{Name: c.name, BatchBuckets: []int{1, 4, 8}})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer m.Close()
			if m.rewrites != c.rewrites {
				t.Fatalf("Load rewrote %d nodes, want %d", m.rewrites, c.rewrites)
			}
			orig, err := Load(path, Options{Name: c.name, BatchBuckets: []int{1, 4, 8}, noRewrite: true})
			if c.origWrong != "" {
				t.Logf("comparing with the direct computation only: %s", c.origWrong)
				if err == nil {
					orig.Close()
				}
				orig = nil
			} else if err != nil {
				t.Logf("the original graph does not load (%v): comparing with the direct computation only", err)
				orig = nil
			} else {
				defer orig.Close()
			}
			for _, batch := range []int{1, 3, 8} {
				x := make([]float32, int64(batch)*product(c.in))
				for i := range x {
					x[i] = float32(2*rng.Float64() - 1)
				}
				in := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: append([]int64{int64(batch)}, c.in...), Data: fp32Bytes(x)}}
				got, err := m.Run(context.Background(), in)
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				outDims, ref := reference(c, batch, x, w, bias)
				want := oip.Tensor{Name: "y", Datatype: oip.FP32, Shape: outDims, Data: fp32Bytes(ref)}
				if d := diffTensors(want, got[0], 1e-5); d != "" {
					t.Errorf("batch %d, against the direct computation: %s", batch, d)
				}
				if orig == nil {
					continue
				}
				prev, err := orig.Run(context.Background(), in)
				if err != nil {
					t.Fatalf("batch %d, original graph: %v", batch, err)
				}
				if d := diffTensors(prev[0], got[0], 1e-5); d != "" {
					t.Errorf("batch %d, against the original graph: %s", batch, d)
				}
			}
		})
	}
}

func product(d []int64) int64 {
	p := int64(1)
	for _, x := range d {
		p *= x
	}
	return p
}

func fp32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// reference computes c's output directly, in float64, and returns its
// shape and values.
func reference(c windowCase, batch int, x, w, bias []float32) ([]int64, []float32) {
	r := len(c.kernel)
	fill := func(v []int64, n int, def int64) []int64 {
		if v != nil {
			return v
		}
		out := make([]int64, n)
		for i := range out {
			out[i] = def
		}
		return out
	}
	strides, dilations, pads := fill(c.strides, r, 1), fill(c.dilations, r, 1), fill(c.pads, 2*r, 0)
	inCh, spatial := c.in[0], c.in[1:]
	outSpatial := make([]int64, r)
	for i := range r {
		span := (c.kernel[i]-1)*dilations[i] + 1
		outSpatial[i] = (spatial[i]+pads[i]+pads[r+i]-span)/strides[i] + 1
	}
	outCh := inCh
	if c.op == "Conv" {
		outCh = c.outCh
	}
	group := max(c.group, 1)
	outDims := append([]int64{int64(batch), outCh}, outSpatial...)
	out := make([]float32, 0, product(outDims))
	inPlane, outPlane, taps := product(spatial), product(outSpatial), product(c.kernel)
	pos := make([]int64, r)
	tap := make([]int64, r)
	for n := range int64(batch) {
		for o := range outCh {
			for p := range outPlane {
				unflatten(p, outSpatial, pos)
				acc := math.Inf(-1)
				if c.op == "Conv" {
					acc = 0
					if bias != nil {
						acc = float64(bias[o])
					}
				}
				perGroup := inCh / group
				chans := []int64{o}
				if c.op == "Conv" {
					chans = chans[:0]
					for k := range perGroup {
						chans = append(chans, o/(outCh/group)*perGroup+k)
					}
				}
				for ci, ch := range chans {
					for k := range taps {
						unflatten(k, c.kernel, tap)
						idx, inside := int64(0), true
						for i := range r {
							at := pos[i]*strides[i] + tap[i]*dilations[i] - pads[i]
							inside = inside && at >= 0 && at < spatial[i]
							idx = idx*spatial[i] + at
						}
						if !inside {
							continue // zero for Conv, ignored by MaxPool
						}
						v := float64(x[(n*inCh+ch)*inPlane+idx])
						if c.op == "Conv" {
							acc += v * float64(w[(o*perGroup+int64(ci))*taps+k])
						} else {
							acc = math.Max(acc, v)
						}
					}
				}
				out = append(out, float32(acc))
			}
		}
	}
	return outDims, out
}

// unflatten writes the row-major index of flat in dims to idx.
func unflatten(flat int64, dims, idx []int64) {
	for i := len(dims) - 1; i >= 0; i-- {
		idx[i] = flat % dims[i]
		flat /= dims[i]
	}
}

// bagCase is a model of Gemm(ReduceMean(Gather(emb, idx)), w, c), the mean
// of embeddings and a linear layer, built by bagModel.
type bagCase struct {
	name       string
	idx        []int64 // idx dims after the batch
	vocab, dim int64
	outs       int64
	transB     int64
	bias       bool
	meanAttrs  string
	gemmAttrs  string
	gatherOut  bool // the Gather's output is also a graph output
	rewrites   int
}

var bagCases = []bagCase{
	{name: "textclass", idx: []int64{6}, vocab: 20, dim: 8, outs: 3, transB: 1, bias: true,
		meanAttrs: ints("axes", 1) + intAttr("keepdims", 0), rewrites: 1},
	{name: "transB0_no_bias", idx: []int64{5}, vocab: 12, dim: 4, outs: 4,
		meanAttrs: ints("axes", 1) + intAttr("keepdims", 0), gemmAttrs: float("alpha", 1) + float("beta", 1), rewrites: 1},
	// (Token ids of rank 3 would exercise more of the axes check, but
	// onnx-gomlx v0.3.4 cannot Gather with them.)
	{name: "negative_axes", idx: []int64{5}, vocab: 9, dim: 6, outs: 2, transB: 1, bias: true,
		meanAttrs: ints("axes", -2) + intAttr("keepdims", 0), rewrites: 1},
	{name: "more_outputs_than_dims_kept", idx: []int64{3}, vocab: 9, dim: 2, outs: 5, transB: 1,
		meanAttrs: ints("axes", 1) + intAttr("keepdims", 0)},
	{name: "alpha_kept", idx: []int64{3}, vocab: 9, dim: 4, outs: 2, transB: 1,
		meanAttrs: ints("axes", 1) + intAttr("keepdims", 0), gemmAttrs: float("alpha", 0.5)},
	{name: "gather_read_twice_kept", idx: []int64{3}, vocab: 9, dim: 4, outs: 2, transB: 1, gatherOut: true,
		meanAttrs: ints("axes", 1) + intAttr("keepdims", 0)},
	// The mean runs over the embedding axis: the fused graph would compute
	// something else, so it is left alone.
	{name: "mean_over_embedding_kept", idx: []int64{4}, vocab: 9, dim: 4, outs: 2, transB: 1,
		meanAttrs: ints("axes", 2) + intAttr("keepdims", 0)},
}

func float(name string, v float32) string {
	return fmt.Sprintf("attribute { name: %q type: FLOAT f: %v } ", name, v)
}

func bagModel(t *testing.T, c bagCase, rng *rand.Rand) []byte {
	t.Helper()
	var b strings.Builder
	b.WriteString(`ir_version: 7 opset_import { domain: "" version: 13 } graph { name: "bag" `)
	b.WriteString(`node { input: "emb" input: "idx" output: "rows" op_type: "Gather" } `)
	fmt.Fprintf(&b, `node { input: "rows" output: "mean" op_type: "ReduceMean" %s} `, c.meanAttrs)
	inputs := `input: "mean" input: "w"`
	if c.bias {
		inputs += ` input: "c"`
	}
	fmt.Fprintf(&b, `node { %s output: "y" op_type: "Gemm" %s%s} `, inputs, intAttr("transB", c.transB), c.gemmAttrs)
	tensor := func(name string, dims ...int64) {
		fmt.Fprintf(&b, "initializer { name: %q data_type: 1", name)
		for _, d := range dims {
			fmt.Fprintf(&b, " dims: %d", d)
		}
		for range product(dims) {
			fmt.Fprintf(&b, " float_data: %v", float32(2*rng.Float64()-1))
		}
		b.WriteString(" } ")
	}
	tensor("emb", c.vocab, c.dim)
	if c.transB == 1 {
		tensor("w", c.outs, c.dim)
	} else {
		tensor("w", c.dim, c.outs)
	}
	if c.bias {
		tensor("c", c.outs)
	}
	b.WriteString(`input { name: "idx" type { tensor_type { elem_type: 7 shape { dim { dim_param: "batch" }`)
	for _, d := range c.idx {
		fmt.Fprintf(&b, " dim { dim_value: %d }", d)
	}
	b.WriteString(" } } } } ")
	b.WriteString(`output { name: "y" type { tensor_type { elem_type: 1 shape { dim { dim_param: "batch" } dim { dim_param: "o" } } } } } `)
	if c.gatherOut {
		b.WriteString(`output { name: "rows" type { tensor_type { elem_type: 1 shape { dim { dim_param: "batch" } } } } } `)
	}
	b.WriteString("}")
	var om onnxgomlx.Model
	if err := prototext.Unmarshal([]byte(b.String()), &om.Proto); err != nil {
		t.Fatalf("model text: %v\n%s", err, b.String())
	}
	contents, err := proto.Marshal(&om.Proto)
	if err != nil {
		t.Fatal(err)
	}
	return contents
}

// TestEmbeddingBagRewrite checks which mean-of-embeddings-then-linear
// graphs are fused, and that the fused graph computes what the original
// does on random token ids.
func TestEmbeddingBagRewrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range bagCases {
		t.Run(c.name, func(t *testing.T) {
			contents := bagModel(t, c, rng)
			path := filepath.Join(t.TempDir(), c.name+".onnx")
			if err := os.WriteFile(path, contents, 0o644); err != nil {
				t.Fatal(err)
			}
			opts := Options{Name: c.name, BatchBuckets: []int{1, 4, 8}}
			m, err := Load(path, opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer m.Close()
			if m.rewrites != c.rewrites {
				t.Fatalf("Load rewrote %d nodes, want %d", m.rewrites, c.rewrites)
			}
			opts.noRewrite = true
			orig, err := Load(path, opts)
			if err != nil {
				t.Fatalf("Load without rewrites: %v", err)
			}
			defer orig.Close()
			for _, batch := range []int{1, 3, 8} {
				ids := make([]byte, 0, 8*int64(batch)*product(c.idx))
				for range int64(batch) * product(c.idx) {
					ids = binary.LittleEndian.AppendUint64(ids, uint64(rng.Int64N(c.vocab)))
				}
				in := []oip.Tensor{{Name: "idx", Datatype: oip.INT64, Shape: append([]int64{int64(batch)}, c.idx...), Data: ids}}
				got, err := m.Run(context.Background(), in)
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				want, err := orig.Run(context.Background(), in)
				if err != nil {
					t.Fatalf("batch %d, original graph: %v", batch, err)
				}
				for i := range want {
					if d := diffTensors(want[i], got[i], 1e-5); d != "" {
						t.Errorf("batch %d: %s", batch, d)
					}
				}
			}
		})
	}
}
