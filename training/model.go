package training

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	onnxgomlx "github.com/gomlx/onnx-gomlx/onnx"
)

// maxModelBytes bounds the ONNX file Train reads: its weights are trained
// in memory, with two more copies for Adam's moments.
const maxModelBytes = 1 << 30

// ONNX TensorProto.DataType values of the floating-point types, the
// initializers Train trains.
const (
	onnxFloat16  = 10
	onnxDouble   = 11
	onnxBFloat16 = 16
)

// classifier is an ONNX classification model prepared for training: one
// data input, and a first output of class scores shaped [batch, classes].
type classifier struct {
	path string
	om   *onnxgomlx.Model
	ctx  *context.Context // the initializers as variables, in onnxgomlx.ModelScope

	input      string
	inputDType dtypes.DType
	inputDims  []int    // without the batch; -1 where the file leaves one open
	consts     []string // graph inputs that are initializers (IR version 3 exporters list weights so)
	output     string   // the model's first output

	// scores is the tensor the loss reads: the input of a final Softmax
	// (logits), or else the output itself; probs says it holds
	// probabilities all the same (a Softmax over an axis other than the
	// classes'), so the loss takes their log.
	scores string
	probs  bool

	classes   int // set by probe
	trainable int // floating-point initializers
}

// loadClassifier reads and converts the ONNX model at path and moves its
// initializers into a new GoMLX context. Errors name the file and wrap
// ErrInvalidModel (or ErrNoTrainableWeights).
func loadClassifier(path string) (c *classifier, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("training: model %s: %s: %w", path, fmt.Sprintf(format, args...), ErrInvalidModel)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("training: model: %w", err)
	}
	if fi.IsDir() {
		return nil, bad("is a directory, not an ONNX file")
	}
	if fi.Size() > maxModelBytes {
		return nil, bad("%d bytes, more than the %d this step trains", fi.Size(), maxModelBytes)
	}
	contents, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("training: model: %w", err)
	}
	if len(contents) == 0 {
		return nil, bad("file is empty")
	}
	c = &classifier{path: path}
	// The converter reports many faults by panicking, among them a file
	// that decodes as a protobuf but lacks parts ONNX requires.
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, bad("not a model this step can train: %v", r)
		}
	}()
	om, err := onnxgomlx.Parse(contents)
	if err != nil {
		return nil, bad("not a valid ONNX model: %v", err)
	}
	if om.Proto.Graph == nil {
		return nil, bad("file holds no graph")
	}
	if len(om.Proto.Functions) > 0 || len(om.Proto.Graph.SparseInitializer) > 0 {
		return nil, bad("ONNX functions and sparse initializers are not supported")
	}
	c.om = om

	inits := map[string]bool{}
	for _, t := range om.Proto.Graph.Initializer {
		inits[t.Name] = true
		switch t.DataType {
		case onnxFloat, onnxDouble, onnxFloat16, onnxBFloat16:
			c.trainable++
		}
	}
	names, dshapes := om.Inputs()
	var data []int
	for i, name := range names {
		if inits[name] {
			c.consts = append(c.consts, name)
			continue
		}
		data = append(data, i)
	}
	if len(data) != 1 {
		return nil, bad("has %d data inputs; Train feeds one, from the CSV's feature columns", len(data))
	}
	in := dshapes[data[0]]
	c.input, c.inputDType = names[data[0]], in.DType
	switch c.inputDType {
	case dtypes.Float32, dtypes.Float64, dtypes.Int32, dtypes.Int64:
	default:
		return nil, bad("input %q is %s; Train feeds FP32, FP64, INT32 or INT64", c.input, c.inputDType)
	}
	if in.Rank() < 2 {
		return nil, bad("input %q has rank %d; it needs a batch dimension and features", c.input, in.Rank())
	}
	c.inputDims = slices.Clone(in.Dimensions[1:])

	outNames, outShapes := om.Outputs()
	if len(outNames) == 0 {
		return nil, bad("graph has no outputs")
	}
	c.output = outNames[0]
	if dt := outShapes[0].DType; !dt.IsFloat() {
		return nil, bad("output %q is %s; class scores are floating point", c.output, dt)
	}
	c.scores, c.probs = scoresOf(om, c.output)

	if c.trainable == 0 {
		return nil, fmt.Errorf("training: model %s: %w", path, ErrNoTrainableWeights)
	}
	c.ctx = context.New()
	if err := om.VariablesToContext(c.ctx); err != nil {
		return nil, bad("weights: %v", err)
	}
	// Only floating-point initializers are weights: integer ones are
	// shapes, indices and the like, which have no gradient.
	for v := range c.ctx.IterVariables() {
		v.SetTrainable(v.DType().IsFloat())
	}
	return c, nil
}

// scoresOf finds what the loss should read for output: the logits a final
// Softmax normalizes (looking through Identity nodes), or the output itself
// when it comes from anything else, which is taken for logits; a
// LogSoftmax's log-probabilities serve as logits as they are (their
// softmax is the probabilities). probs is true when output is a Softmax
// over an axis Train cannot confirm is the classes' one.
func scoresOf(om *onnxgomlx.Model, output string) (scores string, probs bool) {
	producer := map[string]int{}
	for i, n := range om.Proto.Graph.Node {
		for _, o := range n.Output {
			producer[o] = i
		}
	}
	opset := int64(0)
	for _, o := range om.Proto.OpsetImport {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			opset = o.Version
		}
	}
	name := output
	for range len(om.Proto.Graph.Node) {
		i, ok := producer[name]
		if !ok {
			break
		}
		n := om.Proto.Graph.Node[i]
		if n.Domain != "" && n.Domain != "ai.onnx" {
			break
		}
		switch n.OpType {
		case "Identity":
			name = n.Input[0]
			continue
		case "Softmax":
			axis := int64(-1)
			if opset < 13 {
				axis = 1 // and the input flattened to 2-D there, which a [batch, classes] input already is
			}
			for _, a := range n.Attribute {
				if a.Name == "axis" {
					axis = a.I
				}
			}
			// The output is checked to be [batch, classes], so axis 1 and
			// -1 are the classes'.
			if len(n.Input) == 1 && (axis == 1 || axis == -1) {
				return n.Input[0], false
			}
			return output, true
		}
		break
	}
	return output, false
}

// resolveInput fits the input's dimensions to the data's feature count
// (see fitDims).
func (c *classifier) resolveInput(features int) error {
	dims, err := fitDims(c.inputDims, features)
	if err != nil {
		return fmt.Errorf("training: model %s input %q: %w", c.path, c.input, err)
	}
	c.inputDims = dims
	return nil
}

// fitDims fits an input's per-row dimensions (without the batch; -1 where
// open) to a row of features values: all fixed must multiply to features,
// and one open dimension takes what is left. The error wraps
// ErrInvalidData, or ErrInvalidModel for an input with several open
// dimensions.
func fitDims(dims []int, features int) ([]int, error) {
	known, open := 1, -1
	for i, d := range dims {
		if d < 0 {
			if open >= 0 {
				return nil, fmt.Errorf("shape %v has more than one open dimension besides the batch: %w", dims, ErrInvalidModel)
			}
			open = i
			continue
		}
		known *= d
	}
	out := slices.Clone(dims)
	switch {
	case open >= 0 && known > 0 && features%known == 0:
		out[open] = features / known
		return out, nil
	case open < 0 && known == features:
		return out, nil
	}
	return nil, fmt.Errorf("the data has %d feature columns, but the input takes %v per row: %w", features, dims, ErrInvalidData)
}

// forward builds the model's graph from x to its scores (see scores).
func (c *classifier) forward(ctx *context.Context, x *graph.Node) *graph.Node {
	g := x.Graph()
	feeds := map[string]*graph.Node{c.input: x}
	scope := ctx.In(onnxgomlx.ModelScope).Checked(false)
	for _, name := range c.consts {
		feeds[name] = scope.GetVariable(onnxgomlx.SafeVarName(name)).ValueGraph(g)
	}
	return c.om.CallGraph(ctx, g, feeds, c.scores)[0]
}

// probe converts the graph for one row to learn, and check, the shape of
// its scores: [1, classes], with classes at least 2. Conversion faults
// (an operator onnx-gomlx lacks) surface here, before any training.
func (c *classifier) probe(backend backends.Backend) (err error) {
	g := graph.NewGraph(backend, "probe")
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("training: model %s: convert: %v: %w", c.path, r, ErrInvalidModel)
		}
		func() {
			defer func() { _ = recover() }()
			g.Finalize()
		}()
	}()
	x := graph.Parameter(g, "x", shapes.Make(c.inputDType, append([]int{1}, c.inputDims...)...))
	s := c.forward(c.ctx, x).Shape()
	if s.Rank() != 2 || s.Dimensions[0] != 1 || s.Dimensions[1] < 2 {
		return fmt.Errorf("training: model %s: output %q is shaped %v for one row; a classifier's is [batch, classes] with at least 2 classes: %w",
			c.path, c.scores, s.Dimensions, ErrInvalidModel)
	}
	if !s.DType.IsFloat() {
		return fmt.Errorf("training: model %s: scores %q are %s: %w", c.path, c.scores, s.DType, ErrInvalidModel)
	}
	c.classes = s.Dimensions[1]
	return nil
}

// errorFromPanic turns a recovered panic value into an error.
func errorFromPanic(r any) error {
	if e, ok := r.(error); ok {
		return e
	}
	return errors.New(fmt.Sprint(r))
}
