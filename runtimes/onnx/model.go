package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	onnxgomlx "github.com/gomlx/onnx-gomlx/onnx"

	"github.com/infergate/infergate/oip"
)

// DefaultPlatform is the platform reported in metadata when
// Options.Platform is empty, as Triton names its ONNX backend.
const DefaultPlatform = "onnx_onnxv1"

// DefaultBatchBuckets are the batch sizes compiled when Options.BatchBuckets
// is nil.
var DefaultBatchBuckets = []int{1, 2, 4, 8, 16, 32, 64}

// maxShapeGraphs bounds the graphs kept for a model that is not bucketed,
// one per distinct set of input shapes; the least recently used goes first.
var maxShapeGraphs = 32

// Options configure Load. The zero value of every field but Name is a usable
// default.
type Options struct {
	// Name is the model's name in metadata. It is required: Load only sees a
	// file path and cannot guess the name the model is served under.
	Name string
	// Version is reported in metadata's versions; empty reports none.
	Version string
	// Platform is reported in metadata; empty means DefaultPlatform.
	Platform string
	// BatchBuckets are the batch sizes compiled for a model whose only
	// dynamic dimension is the batch. A request's batch is padded up to the
	// next bucket, and split into chunks of the largest bucket when bigger.
	// Nil means DefaultBatchBuckets. Buckets 1, 8 and 32 (those configured,
	// topped up with the smallest to make two) are compiled at Load, the
	// others once, on first use.
	BatchBuckets []int
	// MaxBatchSize makes Run reject a bigger batch with an invalid-argument
	// error, and drops the buckets above it; 0 means no limit, a batch
	// bigger than the largest bucket running in chunks. It applies to
	// bucketed models only: for the others the leading dimension need not
	// be a batch.
	MaxBatchSize int

	// noRewrite keeps the graph as the file has it, for tests comparing a
	// rewritten graph with the original.
	noRewrite bool
}

// aheadBuckets are the buckets compiled at Load (when configured): a lone
// request, a typical dynamic batch, and a full one. A compile of a sample
// model takes about 1.5 ms in a small process, but onnx-gomlx forces three
// garbage collections per conversion, which cost more as the heap grows and
// as graphs get bigger; so the rarer buckets wait for a request that needs
// them.
var aheadBuckets = []int{1, 8, 32}

// Model is a loaded ONNX model. Its methods are safe for concurrent use;
// Close waits for runs in flight and fails the runs that come after it.
type Model struct {
	meta     oip.ModelMetadata
	backend  backends.Backend
	onnx     *onnxgomlx.Model
	weights  []weight                   // the initializers, on the engine
	varBufs  map[string]backends.Buffer // variable parameter name -> engine buffer
	inputs   []tensorSpec               // metadata order
	outputs  []tensorSpec               // metadata order
	consts   []string                   // graph inputs fed from initializers
	buckets  []int                      // ascending; nil when not bucketed
	maxBatch int
	rewrites int // nodes replaced by rewriteModel

	buildMu sync.Mutex // serializes graph building: onnx-gomlx is not documented as concurrent-safe

	mu     sync.Mutex
	graphs map[graphKey]*graphEntry
	uses   atomic.Int64 // clock for graphEntry.lastUse

	closeMu sync.RWMutex // held for reading by Run, for writing by Close
	closed  bool
}

// weight is one ONNX initializer as a GoMLX variable would hold it.
type weight struct {
	scope, name string
	value       *tensors.Tensor
}

// tensorSpec is one input or output as the engine sees it.
type tensorSpec struct {
	name     string
	dtype    dtypes.DType
	datatype oip.DataType
	dims     []int // -1 for a dynamic dimension
}

// Load reads the ONNX model at path, converts it and compiles the common
// batch buckets. A file that is missing, corrupt, or uses an operator or
// datatype the engine lacks returns an error naming the file and the cause.
func Load(path string, opts Options) (_ *Model, err error) {
	if opts.Name == "" {
		return nil, fmt.Errorf("onnx: load %s: Options.Name is required", path)
	}
	if opts.MaxBatchSize < 0 {
		return nil, fmt.Errorf("onnx: load %s: Options.MaxBatchSize %d is negative", path, opts.MaxBatchSize)
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return nil, fmt.Errorf("onnx: load %s: big-endian hosts are not supported", path)
	}
	contents, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: load %s: %w", path, err)
	}
	m := &Model{
		backend:  engine(),
		maxBatch: opts.MaxBatchSize,
		graphs:   make(map[graphKey]*graphEntry),
	}
	defer func() {
		if err != nil {
			m.release()
			err = fmt.Errorf("onnx: load %s: %w", path, err)
		}
	}()
	if err := m.parse(contents, !opts.noRewrite); err != nil {
		return nil, err
	}
	if err := m.loadVariables(); err != nil {
		return nil, err
	}
	m.meta = m.metadata(opts)
	buckets, err := normalizeBuckets(opts.BatchBuckets, opts.MaxBatchSize)
	if err != nil {
		return nil, err
	}
	if m.bucketable() {
		m.buckets = buckets
		batched, err := m.compileAhead()
		if err != nil {
			return nil, err
		}
		if !batched {
			// An output does not follow the batch: pad-and-slice would be
			// wrong, so fall back to one graph per input shape.
			m.buckets = nil
		} else {
			// Outputs follow the batch whatever the exporter declared.
			for i := range m.meta.Outputs {
				m.meta.Outputs[i].Shape[0] = -1
			}
		}
	} else if dims, ok := m.staticDims(); ok {
		if _, err := m.graph(graphKey{shape: shapeKey(dims)}, dims...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// parse converts the ONNX file, rewrites the operators SimpleGo runs slowly
// when rewrite is set, and derives the input and output specs.
func (m *Model) parse(contents []byte, rewrite bool) (err error) {
	if len(contents) == 0 {
		return errors.New("file is empty")
	}
	// A file that decodes as a protobuf but lacks parts ONNX requires (the
	// graph, tensor types) makes the converter panic.
	defer recoverError(&err, "not a valid ONNX model")
	om, err := onnxgomlx.Parse(contents)
	if err != nil {
		return err
	}
	if om.Proto.Graph == nil {
		return errors.New("file holds no graph")
	}
	if rewrite {
		if om, m.rewrites, err = rewriteModel(om); err != nil {
			return err
		}
	}
	m.onnx = om
	initializers := make(map[string]bool, len(om.Proto.Graph.Initializer))
	for _, t := range om.Proto.Graph.Initializer {
		initializers[t.Name] = true
	}
	names, shapes := om.Inputs()
	for i, name := range names {
		if initializers[name] {
			// Exporters of IR version 3 list weights as graph inputs too;
			// they are not something a client sends.
			m.consts = append(m.consts, name)
			continue
		}
		spec, err := newSpec(name, shapes[i])
		if err != nil {
			return fmt.Errorf("input %q: %w", name, err)
		}
		m.inputs = append(m.inputs, spec)
	}
	names, shapes = om.Outputs()
	if len(names) == 0 {
		return errors.New("graph has no outputs")
	}
	for i, name := range names {
		spec, err := newSpec(name, shapes[i])
		if err != nil {
			return fmt.Errorf("output %q: %w", name, err)
		}
		m.outputs = append(m.outputs, spec)
	}
	return nil
}

func newSpec(name string, ds onnxgomlx.DynamicShape) (tensorSpec, error) {
	dt, ok := oipDataType(ds.DType)
	if !ok {
		return tensorSpec{}, fmt.Errorf("datatype %s has no OIP equivalent", ds.DType)
	}
	dims := slices.Clone(ds.Dimensions)
	for i, d := range dims {
		if d < 0 {
			dims[i] = -1
		}
	}
	return tensorSpec{name: name, dtype: ds.DType, datatype: dt, dims: dims}, nil
}

// loadVariables moves the model's initializers onto the engine, once: every
// compiled graph reads the same buffers.
func (m *Model) loadVariables() (err error) {
	defer recoverError(&err, "load weights")
	ctx := context.New()
	if err := m.onnx.VariablesToContext(ctx); err != nil {
		return err
	}
	m.varBufs = make(map[string]backends.Buffer)
	for v := range ctx.IterVariables() {
		t, err := v.Value()
		if err != nil {
			return err
		}
		// Detach from the converter's own backend before moving to ours.
		if err := t.ToLocal(); err != nil {
			return err
		}
		buf, err := t.Buffer(m.backend, 0)
		if err != nil {
			return fmt.Errorf("weight %s: %w", v.Name(), err)
		}
		m.weights = append(m.weights, weight{scope: v.Scope(), name: v.Name(), value: t})
		m.varBufs[v.ParameterName()] = buf
	}
	return nil
}

// graphContext returns a new context holding the weights, for converting
// one graph. Each graph gets its own because a variable remembers every
// graph it was used in, for the life of its context: a shared context
// would keep evicted graphs alive. The weights' tensors are shared, not
// copied.
func (m *Model) graphContext() *context.Context {
	ctx := context.New()
	for _, w := range m.weights {
		ctx.InAbsPath(w.scope).Checked(false).VariableWithValue(w.name, w.value)
	}
	return ctx
}

func (m *Model) metadata(opts Options) oip.ModelMetadata {
	md := oip.ModelMetadata{Name: opts.Name, Platform: opts.Platform}
	if md.Platform == "" {
		md.Platform = DefaultPlatform
	}
	if opts.Version != "" {
		md.Versions = []string{opts.Version}
	}
	tm := func(s tensorSpec) oip.TensorMetadata {
		shape := make([]int64, len(s.dims))
		for i, d := range s.dims {
			shape[i] = int64(d)
		}
		return oip.TensorMetadata{Name: s.name, Datatype: s.datatype, Shape: shape}
	}
	md.Inputs = make([]oip.TensorMetadata, len(m.inputs))
	for i, s := range m.inputs {
		md.Inputs[i] = tm(s)
	}
	md.Outputs = make([]oip.TensorMetadata, len(m.outputs))
	for i, s := range m.outputs {
		md.Outputs[i] = tm(s)
	}
	return md
}

// bucketable reports whether every input has a dynamic leading dimension
// and no other dynamic one.
func (m *Model) bucketable() bool {
	if len(m.inputs) == 0 {
		return false
	}
	for _, in := range m.inputs {
		if len(in.dims) == 0 || in.dims[0] != -1 || slices.Contains(in.dims[1:], -1) {
			return false
		}
	}
	return true
}

// staticDims returns the input dimensions of a model whose inputs are all
// fully static.
func (m *Model) staticDims() ([][]int, bool) {
	dims := make([][]int, len(m.inputs))
	for i, in := range m.inputs {
		if slices.Contains(in.dims, -1) {
			return nil, false
		}
		dims[i] = in.dims
	}
	return dims, true
}

// normalizeBuckets sorts and dedupes the buckets and drops those above max.
func normalizeBuckets(in []int, max int) ([]int, error) {
	if in == nil {
		in = DefaultBatchBuckets
	}
	out := make([]int, 0, len(in))
	for _, b := range in {
		if b <= 0 {
			return nil, fmt.Errorf("Options.BatchBuckets: bucket %d is not positive", b)
		}
		if max > 0 && b > max {
			continue
		}
		out = append(out, b)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		if max > 0 {
			return []int{max}, nil
		}
		return nil, errors.New("Options.BatchBuckets is empty")
	}
	return out, nil
}

// compileAhead compiles the configured ahead-of-time buckets, topped up
// with the smallest ones to make two, and reports whether every output
// follows the batch: a second bucket is what tells a batched output from one
// that merely has a leading dimension of 1.
func (m *Model) compileAhead() (batched bool, err error) {
	var pick []int
	for _, b := range m.buckets {
		if slices.Contains(aheadBuckets, b) {
			pick = append(pick, b)
		}
	}
	for _, b := range m.buckets {
		if len(pick) >= 2 {
			break
		}
		if !slices.Contains(pick, b) {
			pick = append(pick, b)
		}
	}
	slices.Sort(pick)
	for _, b := range pick {
		if _, err := m.graph(graphKey{batch: b}); err != nil {
			if errors.Is(err, errNotBatched) {
				m.dropGraphs()
				return false, nil
			}
			return false, err
		}
	}
	return true, nil
}

// Metadata returns the model's metadata. The caller must not modify it.
func (m *Model) Metadata() oip.ModelMetadata { return m.meta }

// Close releases the compiled graphs and the weights. It waits for runs in
// flight; later runs fail with an unavailable error. Close is idempotent.
func (m *Model) Close() error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.release()
	return nil
}

// release frees what Load built; the model must not run again.
func (m *Model) release() {
	defer func() { _ = recover() }() // releasing is best effort
	m.dropGraphs()
	for _, w := range m.weights {
		_ = w.value.FinalizeAll()
	}
	m.weights, m.varBufs = nil, nil
}

// dropGraphs finalizes and forgets every compiled graph. No run may be
// using them.
func (m *Model) dropGraphs() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.graphs {
		if e.g != nil {
			e.g.Finalize()
		}
		delete(m.graphs, k)
	}
}

// oipDataType maps an engine datatype to the protocol's.
func oipDataType(d dtypes.DType) (oip.DataType, bool) {
	switch d {
	case dtypes.Bool:
		return oip.BOOL, true
	case dtypes.Int8:
		return oip.INT8, true
	case dtypes.Int16:
		return oip.INT16, true
	case dtypes.Int32:
		return oip.INT32, true
	case dtypes.Int64:
		return oip.INT64, true
	case dtypes.Uint8:
		return oip.UINT8, true
	case dtypes.Uint16:
		return oip.UINT16, true
	case dtypes.Uint32:
		return oip.UINT32, true
	case dtypes.Uint64:
		return oip.UINT64, true
	case dtypes.Float16:
		return oip.FP16, true
	case dtypes.Float32:
		return oip.FP32, true
	case dtypes.Float64:
		return oip.FP64, true
	case dtypes.BFloat16:
		return oip.BF16, true
	}
	return oip.Invalid, false
}

// recoverError turns a panic into an error in *err, for the converter and
// engine, which report many errors by panicking.
func recoverError(err *error, what string) {
	r := recover()
	if r == nil {
		return
	}
	if e, ok := r.(error); ok {
		*err = fmt.Errorf("%s: %w", what, e)
		return
	}
	*err = fmt.Errorf("%s: %v", what, r)
}
