package training

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	onnxgomlx "github.com/gomlx/onnx-gomlx/onnx"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MLP defaults, used for the zero values of MLPOptions' fields.
const (
	DefaultInputName       = "input"
	DefaultProbabilityName = "probabilities"
	DefaultLogitName       = "logits"
)

// mlpOpset is the ONNX operator set NewMLP writes: the one the sample
// models were exported at, and the first whose Softmax normalizes over one
// axis rather than flattening.
const mlpOpset = 13

// mlpIRVersion is the ONNX IR version NewMLP writes (ONNX 1.10), which
// opset 13 allows.
const mlpIRVersion = 8

// maxMLPParams bounds the weights of one MLP: this package trains on a CPU,
// and a typo in a layer size should fail rather than fill memory.
const maxMLPParams = 1 << 26

// ONNX enum values (onnx.proto) NewMLP writes. onnx-gomlx keeps its
// generated protobuf types in an internal package, so neither they nor
// their enum constants can be named here.
const (
	onnxFloat = 1 // TensorProto.DataType FLOAT
	attrInt   = 2 // AttributeProto.AttributeType INT
)

// MLPOptions describe the multi-layer perceptron NewMLP writes: Inputs
// features, a Gemm and a Relu per hidden layer, a final Gemm to Classes
// scores and, unless Logits is set, a Softmax.
type MLPOptions struct {
	// Inputs is the number of input features; required.
	Inputs int
	// Hidden are the sizes of the hidden layers, in order; empty means none
	// (a linear model: one Gemm, then the Softmax).
	Hidden []int
	// Classes is the number of classes (output scores); at least 2.
	Classes int
	// Seed seeds the initial weights: the same options write the same
	// bytes. Every value, 0 included, is a seed.
	Seed uint64
	// InputName names the graph's input; empty means DefaultInputName.
	InputName string
	// OutputName names the graph's output; empty means
	// DefaultProbabilityName, or DefaultLogitName when Logits is set.
	OutputName string
	// Logits leaves the final Softmax out, so that the model outputs
	// unnormalized scores rather than probabilities.
	Logits bool
}

// NewMLP returns an untrained MLP as the bytes of an ONNX model, for Train
// to train. The input is FP32 [batch, Inputs] and the output FP32
// [batch, Classes], the batch dimension dynamic (named "batch"), so the
// built-in runtime serves it with batching. Hidden layers are initialized
// He-uniform (suited to the Relu after them), the output layer
// Glorot-uniform, and biases to zero, from a generator seeded with
// opts.Seed. Invalid options return an error naming the field, wrapping
// ErrInvalidOptions.
func NewMLP(opts MLPOptions) ([]byte, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	var om onnxgomlx.Model
	m := &om.Proto
	m.IrVersion = mlpIRVersion
	m.ProducerName = "infergate"
	m.ProducerVersion = "training.NewMLP"
	m.DocString = "MLP " + opts.shape() + ", seed " + strconv.FormatUint(opts.Seed, 10)
	opset := newElem(m.OpsetImport)
	opset.Version = mlpOpset
	m.OpsetImport = append(m.OpsetImport, opset)

	g := newPtr(m.Graph)
	m.Graph = g
	g.Name = "mlp"
	g.Input = append(g.Input, newValueInfo(g.Input, opts.InputName, opts.Inputs))
	g.Output = append(g.Output, newValueInfo(g.Output, opts.OutputName, opts.Classes))

	// The node and tensor types are onnx-gomlx's, reached through the
	// exported Model.Proto; see newElem.
	node := func(op, name string, inputs []string, output string) {
		n := newElem(g.Node)
		n.OpType, n.Name, n.Input, n.Output = op, name, inputs, []string{output}
		if op == "Softmax" {
			a := newElem(n.Attribute)
			a.Name, a.Type, a.I = "axis", attrInt, -1
			n.Attribute = append(n.Attribute, a)
		}
		g.Node = append(g.Node, n)
	}
	weight := func(name string, dims []int64, data []float32) {
		t := newElem(g.Initializer)
		t.Name, t.DataType, t.Dims = name, onnxFloat, dims
		t.RawData = make([]byte, 4*len(data))
		for i, f := range data {
			binary.LittleEndian.PutUint32(t.RawData[4*i:], math.Float32bits(f))
		}
		g.Initializer = append(g.Initializer, t)
	}

	rng := rand.New(rand.NewPCG(opts.Seed, mlpStream))
	sizes := append(append([]int{opts.Inputs}, opts.Hidden...), opts.Classes)
	x := opts.InputName
	for l := range len(sizes) - 1 {
		in, out := sizes[l], sizes[l+1]
		last := l == len(sizes)-2
		// He-uniform keeps the variance through a layer followed by Relu;
		// Glorot-uniform suits the output layer, which has none.
		limit := math.Sqrt(6 / float64(in))
		if last {
			limit = math.Sqrt(6 / float64(in+out))
		}
		w := make([]float32, in*out)
		for i := range w {
			w[i] = float32((2*rng.Float64() - 1) * limit)
		}
		prefix := "layer" + strconv.Itoa(l)
		weight(prefix+".weight", []int64{int64(in), int64(out)}, w)
		weight(prefix+".bias", []int64{int64(out)}, make([]float32, out))
		y := prefix + ".gemm"
		if last && opts.Logits {
			y = opts.OutputName
		}
		node("Gemm", prefix+".gemm", []string{x, prefix + ".weight", prefix + ".bias"}, y)
		x = y
		if !last {
			node("Relu", prefix+".relu", []string{x}, prefix+".relu")
			x = prefix + ".relu"
		}
	}
	if !opts.Logits {
		node("Softmax", "softmax", []string{x}, opts.OutputName)
	}
	// Deterministic marshalling, so the same options give the same bytes.
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// mlpStream is the PCG stream NewMLP draws weights from; Train uses
// another, so that its shuffles never replay the initialization.
const mlpStream = 0x6d6c70 // "mlp"

func (o *MLPOptions) normalize() error {
	if o.Inputs <= 0 {
		return fmt.Errorf("training: MLPOptions.Inputs: %d is not positive: %w", o.Inputs, ErrInvalidOptions)
	}
	if o.Classes < 2 {
		return fmt.Errorf("training: MLPOptions.Classes: %d; a classifier needs at least 2: %w", o.Classes, ErrInvalidOptions)
	}
	params, prev := 0, o.Inputs
	for i, h := range o.Hidden {
		if h <= 0 {
			return fmt.Errorf("training: MLPOptions.Hidden[%d]: %d is not positive: %w", i, h, ErrInvalidOptions)
		}
		params += (prev + 1) * h
		prev = h
		if params > maxMLPParams {
			return fmt.Errorf("training: MLPOptions: %s has more than %d weights: %w", o.shape(), maxMLPParams, ErrInvalidOptions)
		}
	}
	if params+(prev+1)*o.Classes > maxMLPParams {
		return fmt.Errorf("training: MLPOptions: %s has more than %d weights: %w", o.shape(), maxMLPParams, ErrInvalidOptions)
	}
	if o.InputName == "" {
		o.InputName = DefaultInputName
	}
	if o.OutputName == "" {
		o.OutputName = DefaultProbabilityName
		if o.Logits {
			o.OutputName = DefaultLogitName
		}
	}
	if o.InputName == o.OutputName {
		return fmt.Errorf("training: MLPOptions.OutputName: %q is also the input's name: %w", o.OutputName, ErrInvalidOptions)
	}
	return nil
}

// shape renders the layer sizes, such as "4-16-3".
func (o *MLPOptions) shape() string {
	s := strconv.Itoa(o.Inputs)
	for _, h := range o.Hidden {
		s += "-" + strconv.Itoa(h)
	}
	return s + "-" + strconv.Itoa(o.Classes)
}

// newElem returns a new message of the element type of s, a slice of
// protobuf message pointers whose type this package cannot name (see the
// enum constants above).
func newElem[T any](_ []*T) *T { return new(T) }

// newPtr returns a new message of p's type; p may be nil.
func newPtr[T any](_ *T) *T { return new(T) }

// newValueInfo returns a graph input or output named name, FP32 shaped
// [batch, n] with a dynamic batch. The type is a oneof, whose wrapper types
// cannot be named here, so it is built through protobuf reflection.
func newValueInfo[T any, P interface {
	*T
	proto.Message
}](_ []P, name string, n int) P {
	vi := P(new(T))
	r := vi.ProtoReflect()
	setString(r, "name", name)
	tt := r.Mutable(fieldOf(r, "type")).Message()
	tensor := tt.Mutable(fieldOf(tt, "tensor_type")).Message()
	tensor.Set(fieldOf(tensor, "elem_type"), protoreflect.ValueOfInt32(onnxFloat))
	shape := tensor.Mutable(fieldOf(tensor, "shape")).Message()
	dims := shape.Mutable(fieldOf(shape, "dim")).List()
	batch := dims.NewElement()
	setString(batch.Message(), "dim_param", "batch")
	dims.Append(batch)
	d := dims.NewElement()
	d.Message().Set(fieldOf(d.Message(), "dim_value"), protoreflect.ValueOfInt64(int64(n)))
	dims.Append(d)
	return vi
}

func setString(m protoreflect.Message, field, v string) {
	m.Set(fieldOf(m, field), protoreflect.ValueOfString(v))
}

// fieldOf returns the field of m named name. onnx.proto's field names are
// fixed, so a missing one is a programming error.
func fieldOf(m protoreflect.Message, name string) protoreflect.FieldDescriptor {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic(fmt.Sprintf("training: onnx message %s has no field %q", m.Descriptor().FullName(), name))
	}
	return fd
}
