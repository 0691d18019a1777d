package oip

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/infergate/infergate/oip/inferencepb"
)

// Conversions between the oip types and the generated gRPC messages.
//
// The gateway forwards gRPC messages unchanged when it can; these functions
// serve translation between REST and gRPC and the built-in model server, so
// they are on the request path and allocate little:
//
//   - Raw contents are already the canonical form, so the FromProto functions
//     reference them (Tensor.Data aliases the message's raw bytes) and the
//     ToProto functions reference Tensor.Data. Only typed contents are
//     converted, into one new buffer per tensor.
//   - Shapes read from a message are copied, into one array per message, so
//     that a caller may rewrite a dimension without changing the message.
//   - Generated structs that a message needs several of are allocated as one
//     slice per message, not one at a time.

// side says which message a tensor belongs to, so that one decoder serves
// requests and responses with the right words and error kind: a malformed
// request is the client's fault, a malformed response is the runtime's.
type side struct {
	noun string // "input" or "output"
	raw  string // the name of the raw contents field
	kind Kind
}

var (
	requestSide  = side{noun: "input", raw: "raw_input_contents", kind: KindInvalidArgument}
	responseSide = side{noun: "output", raw: "raw_output_contents", kind: KindInternal}
)

// RequestFromProto converts the gRPC request m into req. req is Reset first,
// so the capacity of its Inputs, Outputs and Parameters slices is reused.
//
// Both forms of tensor data are accepted. In the raw form there is one
// raw_input_contents entry per input, in input order, and no input may set
// typed contents (an InferTensorContents with no elements does not count as
// set). In the typed form each input's elements are in the contents field
// the protocol assigns to its datatype (int_contents for INT8, INT16 and
// INT32, uint_contents for UINT8, UINT16 and UINT32, and so on); values are
// range-checked into narrower datatypes; FP16 and BF16 have no typed field
// and must be raw. Either way the number of elements must equal the product
// of the shape, and BYTES raw data must be well-formed length-prefixed
// elements.
//
// Aliasing: for raw inputs, Tensor.Data references m's raw_input_contents
// entry (capacity-limited, so appending to Data copies), for every datatype
// including BYTES, whose raw form is already canonical. Typed inputs get one
// new Data buffer each. Names and strings are shared, shapes are copied. m
// must therefore not be modified while req is in use, and writing to a raw
// input's Data writes to m.
//
// Parameters are converted from the message's maps and sorted by key, so the
// result does not depend on map iteration order. A parameter with no value
// set is an error.
//
// Every error is an *Error of KindInvalidArgument whose message names the
// offending tensor or parameter. On error req holds a partial conversion and
// should be discarded or Reset.
func RequestFromProto(m *inferencepb.ModelInferRequest, req *InferRequest) error {
	req.Reset()
	req.ModelName = m.GetModelName()
	req.ModelVersion = m.GetModelVersion()
	req.ID = m.GetId()
	var err error
	if req.Parameters, err = appendParams(req.Parameters, m.GetParameters(), requestSide.kind, "", ""); err != nil {
		return err
	}

	ins := m.GetInputs()
	raw := m.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(ins) {
		return Errorf(KindInvalidArgument, "request has %d raw_input_contents for %d inputs", len(raw), len(ins))
	}
	shapes := newShapeArena(len(ins), func(i int) []int64 { return ins[i].GetShape() })
	req.Inputs = slices.Grow(req.Inputs, len(ins))
	for i, in := range ins {
		req.Inputs = append(req.Inputs, Tensor{Name: in.GetName(), Shape: shapes.take(in.GetShape())})
		t := &req.Inputs[len(req.Inputs)-1]
		if t.Parameters, err = appendParams(nil, in.GetParameters(), requestSide.kind, requestSide.noun, t.Name); err != nil {
			return err
		}
		var r []byte
		if len(raw) > 0 {
			r = raw[i]
		}
		if err := decodeTensor(t, requestSide, in.GetDatatype(), in.GetContents(), r, len(raw) > 0); err != nil {
			return err
		}
	}

	outs := m.GetOutputs()
	req.Outputs = slices.Grow(req.Outputs, len(outs))
	for _, o := range outs {
		req.Outputs = append(req.Outputs, RequestedOutput{Name: o.GetName()})
		ro := &req.Outputs[len(req.Outputs)-1]
		if ro.Parameters, err = appendParams(nil, o.GetParameters(), requestSide.kind, "output", ro.Name); err != nil {
			return err
		}
	}
	return nil
}

// RequestToProto converts req to a gRPC request that carries every input's
// data in raw_input_contents, the form the protocol recommends for speed.
//
// The message shares memory with req: each raw_input_contents entry is the
// input's Data (capacity-limited) and each shape is the input's Shape, not
// copies. req must not be modified until the message has been sent or
// dropped. Data is passed through as is; call ValidateRequest first if it
// may not match the shapes.
func RequestToProto(req *InferRequest) *inferencepb.ModelInferRequest {
	m := &inferencepb.ModelInferRequest{
		ModelName:    req.ModelName,
		ModelVersion: req.ModelVersion,
		Id:           req.ID,
		Parameters:   ParametersToProto(req.Parameters),
	}
	if n := len(req.Inputs); n > 0 {
		ts := make([]inferencepb.ModelInferRequest_InferInputTensor, n)
		m.Inputs = make([]*inferencepb.ModelInferRequest_InferInputTensor, n)
		m.RawInputContents = make([][]byte, n)
		for i := range req.Inputs {
			t := &req.Inputs[i]
			p := &ts[i]
			p.Name = t.Name
			p.Datatype = t.Datatype.String()
			p.Shape = t.Shape
			p.Parameters = ParametersToProto(t.Parameters)
			m.Inputs[i] = p
			m.RawInputContents[i] = rawOf(t.Data)
		}
	}
	if n := len(req.Outputs); n > 0 {
		ros := make([]inferencepb.ModelInferRequest_InferRequestedOutputTensor, n)
		m.Outputs = make([]*inferencepb.ModelInferRequest_InferRequestedOutputTensor, n)
		for i := range req.Outputs {
			o := &req.Outputs[i]
			ros[i].Name = o.Name
			ros[i].Parameters = ParametersToProto(o.Parameters)
			m.Outputs[i] = &ros[i]
		}
	}
	return m
}

// ResponseFromProto converts the gRPC response m into resp, which is Reset
// first so the capacity of its Outputs and Parameters slices is reused. It
// accepts raw_output_contents or typed contents under the same rules, and
// with the same aliasing, as RequestFromProto: raw outputs' Data references
// m, typed outputs get a new buffer each, shapes are copied.
//
// A response that breaks the rules (an unknown datatype, a count that does
// not match the shape, raw and typed contents mixed) is the runtime's fault,
// so every error is an *Error of KindInternal naming the output. On error
// resp holds a partial conversion and should be discarded or Reset.
func ResponseFromProto(m *inferencepb.ModelInferResponse, resp *InferResponse) error {
	resp.Reset()
	resp.ModelName = m.GetModelName()
	resp.ModelVersion = m.GetModelVersion()
	resp.ID = m.GetId()
	var err error
	if resp.Parameters, err = appendParams(resp.Parameters, m.GetParameters(), responseSide.kind, "", ""); err != nil {
		return err
	}
	outs := m.GetOutputs()
	raw := m.GetRawOutputContents()
	if len(raw) > 0 && len(raw) != len(outs) {
		return Errorf(KindInternal, "response has %d raw_output_contents for %d outputs", len(raw), len(outs))
	}
	shapes := newShapeArena(len(outs), func(i int) []int64 { return outs[i].GetShape() })
	resp.Outputs = slices.Grow(resp.Outputs, len(outs))
	for i, o := range outs {
		resp.Outputs = append(resp.Outputs, Tensor{Name: o.GetName(), Shape: shapes.take(o.GetShape())})
		t := &resp.Outputs[len(resp.Outputs)-1]
		if t.Parameters, err = appendParams(nil, o.GetParameters(), responseSide.kind, responseSide.noun, t.Name); err != nil {
			return err
		}
		var r []byte
		if len(raw) > 0 {
			r = raw[i]
		}
		if err := decodeTensor(t, responseSide, o.GetDatatype(), o.GetContents(), r, len(raw) > 0); err != nil {
			return err
		}
	}
	return nil
}

// ResponseToProto converts resp to a gRPC response. With raw true every
// output's data goes in raw_output_contents; with raw false each output's
// data goes in the typed contents field of its datatype, except that the
// protocol's all-or-nothing rule and FP16 and BF16 having no typed field mean
// that a response with any FP16 or BF16 output is sent raw throughout.
//
// The message shares memory with resp: raw entries are the outputs' Data,
// typed BYTES elements are slices of it, and shapes are the outputs' Shape.
// resp must not be modified until the message has been sent or dropped.
// Typed conversion trusts Data to be canonical: a trailing partial element,
// or a malformed BYTES length prefix and everything after it, is dropped.
func ResponseToProto(resp *InferResponse, raw bool) *inferencepb.ModelInferResponse {
	m := &inferencepb.ModelInferResponse{
		ModelName:    resp.ModelName,
		ModelVersion: resp.ModelVersion,
		Id:           resp.ID,
		Parameters:   ParametersToProto(resp.Parameters),
	}
	n := len(resp.Outputs)
	if n == 0 {
		return m
	}
	if !raw {
		raw = slices.ContainsFunc(resp.Outputs, func(t Tensor) bool { return t.Datatype == FP16 || t.Datatype == BF16 })
	}
	ts := make([]inferencepb.ModelInferResponse_InferOutputTensor, n)
	m.Outputs = make([]*inferencepb.ModelInferResponse_InferOutputTensor, n)
	var cs []inferencepb.InferTensorContents
	if raw {
		m.RawOutputContents = make([][]byte, n)
	} else {
		cs = make([]inferencepb.InferTensorContents, n)
	}
	for i := range resp.Outputs {
		t := &resp.Outputs[i]
		p := &ts[i]
		p.Name = t.Name
		p.Datatype = t.Datatype.String()
		p.Shape = t.Shape
		p.Parameters = ParametersToProto(t.Parameters)
		m.Outputs[i] = p
		if raw {
			m.RawOutputContents[i] = rawOf(t.Data)
		} else {
			fillContents(&cs[i], t.Datatype, t.Data)
			p.Contents = &cs[i]
		}
	}
	return m
}

// rawOf returns data for a raw contents entry: never nil, so the entry is
// present, and capacity-limited, so a consumer that appends cannot write
// into the buffer past it.
func rawOf(data []byte) []byte {
	if data == nil {
		return []byte{}
	}
	return data[:len(data):len(data)]
}

// decodeTensor fills t.Datatype and t.Data from a message tensor's datatype
// name and either its raw entry (useRaw) or its typed contents.
func decodeTensor(t *Tensor, s side, dtName string, c *inferencepb.InferTensorContents, raw []byte, useRaw bool) error {
	dt, ok := ParseDataType(dtName)
	if !ok {
		return Errorf(s.kind, "%s %q: unknown datatype %q", s.noun, t.Name, dtName)
	}
	t.Datatype = dt
	n := ShapeElements(t.Shape)
	if n < 0 {
		return Errorf(s.kind, "%s %q: invalid shape %s", s.noun, t.Name, FormatShape(t.Shape))
	}
	if useRaw {
		if f := firstContentsField(c); f != "" {
			return Errorf(s.kind, "%s %q: sets %s, but the message uses %s (all or nothing)", s.noun, t.Name, f, s.raw)
		}
		if err := checkRawSize(t, s, n, raw); err != nil {
			return err
		}
		t.Data = raw[:len(raw):len(raw)]
		return nil
	}

	want := contentsFieldFor(dt)
	if want == "" { // FP16, BF16
		if f := firstContentsField(c); f != "" || n > 0 {
			return Errorf(s.kind, "%s %q: %s data must be sent in %s", s.noun, t.Name, dt, s.raw)
		}
		return nil
	}
	if f := otherContentsField(c, want); f != "" {
		return Errorf(s.kind, "%s %q: datatype %s takes %s, got %s", s.noun, t.Name, dt, want, f)
	}
	if got := contentsLen(c, dt); int64(got) != n {
		return Errorf(s.kind, "%s %q: %s has %d elements, shape %s needs %d", s.noun, t.Name, want, got, FormatShape(t.Shape), n)
	}
	data, err := contentsToData(c, dt)
	if err != nil {
		return Errorf(s.kind, "%s %q: %s", s.noun, t.Name, err.Msg)
	}
	t.Data = data
	return nil
}

// checkRawSize checks that a raw entry holds exactly n elements of t's
// datatype.
func checkRawSize(t *Tensor, s side, n int64, raw []byte) error {
	if t.Datatype == BYTES {
		got, err := CountBytesElements(raw)
		if err != nil {
			return Errorf(s.kind, "%s %q: %s: %s", s.noun, t.Name, s.raw, Message(err))
		}
		if got != n {
			return Errorf(s.kind, "%s %q: %s has %d elements, shape %s needs %d", s.noun, t.Name, s.raw, got, FormatShape(t.Shape), n)
		}
		return nil
	}
	size := int64(t.Datatype.Size())
	if l := int64(len(raw)); l%size != 0 || l/size != n {
		// n*size can overflow for absurd shapes; report the need only when
		// it is representable.
		if n > math.MaxInt64/size {
			return Errorf(s.kind, "%s %q: %s has %d bytes, shape %s of %s is too large", s.noun, t.Name, s.raw, l, FormatShape(t.Shape), t.Datatype)
		}
		return Errorf(s.kind, "%s %q: %s has %d bytes, shape %s of %s needs %d", s.noun, t.Name, s.raw, l, FormatShape(t.Shape), t.Datatype, n*size)
	}
	return nil
}

// The names of the InferTensorContents fields, as in the .proto.
const (
	fieldBool   = "bool_contents"
	fieldInt    = "int_contents"
	fieldInt64  = "int64_contents"
	fieldUint   = "uint_contents"
	fieldUint64 = "uint64_contents"
	fieldFP32   = "fp32_contents"
	fieldFP64   = "fp64_contents"
	fieldBytes  = "bytes_contents"
)

// contentsFieldFor returns the typed field that carries dt, or "" for the
// datatypes that must be raw.
func contentsFieldFor(dt DataType) string {
	switch dt {
	case BOOL:
		return fieldBool
	case INT8, INT16, INT32:
		return fieldInt
	case INT64:
		return fieldInt64
	case UINT8, UINT16, UINT32:
		return fieldUint
	case UINT64:
		return fieldUint64
	case FP32:
		return fieldFP32
	case FP64:
		return fieldFP64
	case BYTES:
		return fieldBytes
	}
	return ""
}

// firstContentsField returns the name of the first field of c that holds
// elements, or "" when c is nil or holds none.
func firstContentsField(c *inferencepb.InferTensorContents) string {
	return otherContentsField(c, "")
}

// otherContentsField returns the name of the first field of c other than
// except that holds elements, or "".
func otherContentsField(c *inferencepb.InferTensorContents, except string) string {
	if c == nil {
		return ""
	}
	switch {
	case len(c.BoolContents) > 0 && except != fieldBool:
		return fieldBool
	case len(c.IntContents) > 0 && except != fieldInt:
		return fieldInt
	case len(c.Int64Contents) > 0 && except != fieldInt64:
		return fieldInt64
	case len(c.UintContents) > 0 && except != fieldUint:
		return fieldUint
	case len(c.Uint64Contents) > 0 && except != fieldUint64:
		return fieldUint64
	case len(c.Fp32Contents) > 0 && except != fieldFP32:
		return fieldFP32
	case len(c.Fp64Contents) > 0 && except != fieldFP64:
		return fieldFP64
	case len(c.BytesContents) > 0 && except != fieldBytes:
		return fieldBytes
	}
	return ""
}

// contentsLen returns the number of elements in c's field for dt.
func contentsLen(c *inferencepb.InferTensorContents, dt DataType) int {
	switch dt {
	case BOOL:
		return len(c.GetBoolContents())
	case INT8, INT16, INT32:
		return len(c.GetIntContents())
	case INT64:
		return len(c.GetInt64Contents())
	case UINT8, UINT16, UINT32:
		return len(c.GetUintContents())
	case UINT64:
		return len(c.GetUint64Contents())
	case FP32:
		return len(c.GetFp32Contents())
	case FP64:
		return len(c.GetFp64Contents())
	case BYTES:
		return len(c.GetBytesContents())
	}
	return 0
}

// contentsToData converts c's field for dt into one new canonical buffer,
// range-checking values bound for a narrower type. The returned error's Msg
// names the field and element but not the tensor.
func contentsToData(c *inferencepb.InferTensorContents, dt DataType) ([]byte, *Error) {
	le := binary.LittleEndian
	switch dt {
	case BOOL:
		vs := c.GetBoolContents()
		b := make([]byte, len(vs))
		for i, v := range vs {
			if v {
				b[i] = 1
			}
		}
		return b, nil
	case UINT8:
		vs := c.GetUintContents()
		b := make([]byte, len(vs))
		for i, v := range vs {
			if v > math.MaxUint8 {
				return nil, rangeError(fieldUint, i, int64(v), dt)
			}
			b[i] = byte(v)
		}
		return b, nil
	case UINT16:
		vs := c.GetUintContents()
		b := make([]byte, 2*len(vs))
		for i, v := range vs {
			if v > math.MaxUint16 {
				return nil, rangeError(fieldUint, i, int64(v), dt)
			}
			le.PutUint16(b[2*i:], uint16(v))
		}
		return b, nil
	case UINT32:
		vs := c.GetUintContents()
		b := make([]byte, 4*len(vs))
		for i, v := range vs {
			le.PutUint32(b[4*i:], v)
		}
		return b, nil
	case UINT64:
		vs := c.GetUint64Contents()
		b := make([]byte, 8*len(vs))
		for i, v := range vs {
			le.PutUint64(b[8*i:], v)
		}
		return b, nil
	case INT8:
		vs := c.GetIntContents()
		b := make([]byte, len(vs))
		for i, v := range vs {
			if v < math.MinInt8 || v > math.MaxInt8 {
				return nil, rangeError(fieldInt, i, int64(v), dt)
			}
			b[i] = byte(int8(v))
		}
		return b, nil
	case INT16:
		vs := c.GetIntContents()
		b := make([]byte, 2*len(vs))
		for i, v := range vs {
			if v < math.MinInt16 || v > math.MaxInt16 {
				return nil, rangeError(fieldInt, i, int64(v), dt)
			}
			le.PutUint16(b[2*i:], uint16(int16(v)))
		}
		return b, nil
	case INT32:
		vs := c.GetIntContents()
		b := make([]byte, 4*len(vs))
		for i, v := range vs {
			le.PutUint32(b[4*i:], uint32(v))
		}
		return b, nil
	case INT64:
		vs := c.GetInt64Contents()
		b := make([]byte, 8*len(vs))
		for i, v := range vs {
			le.PutUint64(b[8*i:], uint64(v))
		}
		return b, nil
	case FP32:
		vs := c.GetFp32Contents()
		b := make([]byte, 4*len(vs))
		for i, v := range vs {
			le.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b, nil
	case FP64:
		vs := c.GetFp64Contents()
		b := make([]byte, 8*len(vs))
		for i, v := range vs {
			le.PutUint64(b[8*i:], math.Float64bits(v))
		}
		return b, nil
	case BYTES:
		vs := c.GetBytesContents()
		total := 0
		for i, v := range vs {
			if uint64(len(v)) > math.MaxUint32 {
				return nil, &Error{Kind: KindInvalidArgument, Msg: fieldBytes + "[" + strconv.Itoa(i) + "] is longer than 4 GiB"}
			}
			total += 4 + len(v)
		}
		b := make([]byte, 0, total)
		for _, v := range vs {
			b = le.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
		return b, nil
	}
	return nil, nil
}

func rangeError(field string, i int, v int64, dt DataType) *Error {
	return &Error{Kind: KindInvalidArgument, Msg: field + "[" + strconv.Itoa(i) + "] = " + strconv.FormatInt(v, 10) + " is out of range for " + dt.String()}
}

// fillContents sets the typed field of c for dt from canonical data.
// Slices of BYTES elements reference data.
func fillContents(c *inferencepb.InferTensorContents, dt DataType, data []byte) {
	le := binary.LittleEndian
	switch dt {
	case BOOL:
		vs := make([]bool, len(data))
		for i, b := range data {
			vs[i] = b != 0
		}
		c.BoolContents = vs
	case UINT8:
		vs := make([]uint32, len(data))
		for i, b := range data {
			vs[i] = uint32(b)
		}
		c.UintContents = vs
	case UINT16:
		vs := make([]uint32, len(data)/2)
		for i := range vs {
			vs[i] = uint32(le.Uint16(data[2*i:]))
		}
		c.UintContents = vs
	case UINT32:
		vs := make([]uint32, len(data)/4)
		for i := range vs {
			vs[i] = le.Uint32(data[4*i:])
		}
		c.UintContents = vs
	case UINT64:
		vs := make([]uint64, len(data)/8)
		for i := range vs {
			vs[i] = le.Uint64(data[8*i:])
		}
		c.Uint64Contents = vs
	case INT8:
		vs := make([]int32, len(data))
		for i, b := range data {
			vs[i] = int32(int8(b))
		}
		c.IntContents = vs
	case INT16:
		vs := make([]int32, len(data)/2)
		for i := range vs {
			vs[i] = int32(int16(le.Uint16(data[2*i:])))
		}
		c.IntContents = vs
	case INT32:
		vs := make([]int32, len(data)/4)
		for i := range vs {
			vs[i] = int32(le.Uint32(data[4*i:]))
		}
		c.IntContents = vs
	case INT64:
		vs := make([]int64, len(data)/8)
		for i := range vs {
			vs[i] = int64(le.Uint64(data[8*i:]))
		}
		c.Int64Contents = vs
	case FP32:
		vs := make([]float32, len(data)/4)
		for i := range vs {
			vs[i] = math.Float32frombits(le.Uint32(data[4*i:]))
		}
		c.Fp32Contents = vs
	case FP64:
		vs := make([]float64, len(data)/8)
		for i := range vs {
			vs[i] = math.Float64frombits(le.Uint64(data[8*i:]))
		}
		c.Fp64Contents = vs
	case BYTES:
		n, _, _ := walkBytes(data)
		vs := make([][]byte, 0, n)
		for off := 0; len(vs) < int(n); {
			l := int(le.Uint32(data[off:]))
			off += 4
			vs = append(vs, data[off:off+l:off+l])
			off += l
		}
		c.BytesContents = vs
	}
}

// shapeArena hands out copies of shapes from one array per message.
type shapeArena struct{ buf []int64 }

func newShapeArena(n int, shape func(i int) []int64) shapeArena {
	total := 0
	for i := range n {
		total += len(shape(i))
	}
	return shapeArena{buf: make([]int64, 0, total)}
}

// take returns a copy of s, capacity-limited so that appending to one shape
// cannot overwrite the next. A scalar's shape is empty but not nil.
func (a *shapeArena) take(s []int64) []int64 {
	start := len(a.buf)
	a.buf = append(a.buf, s...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// ParametersFromProto appends the parameters of the map m to dst, sorted by
// key among themselves, and returns the extended slice. All five kinds are
// accepted (the spec's bool, int64 and string, and Triton's double and
// uint64). A nil parameter or one with no value set is an *Error of
// KindInvalidArgument naming the key.
func ParametersFromProto(dst Parameters, m map[string]*inferencepb.InferParameter) (Parameters, error) {
	return appendParams(dst, m, KindInvalidArgument, "", "")
}

// appendParams is ParametersFromProto with the error kind and, for a
// tensor's parameters, the tensor's noun and name for messages.
func appendParams(dst Parameters, m map[string]*inferencepb.InferParameter, k Kind, noun, name string) (Parameters, error) {
	if len(m) == 0 {
		return dst, nil
	}
	if dst == nil {
		dst = make(Parameters, 0, len(m))
	}
	start := len(dst)
	for key, p := range m {
		q := Parameter{Key: key}
		switch v := p.GetParameterChoice().(type) {
		case *inferencepb.InferParameter_BoolParam:
			q.Kind, q.Bool = ParamBool, v.BoolParam
		case *inferencepb.InferParameter_Int64Param:
			q.Kind, q.Int64 = ParamInt64, v.Int64Param
		case *inferencepb.InferParameter_StringParam:
			q.Kind, q.String = ParamString, v.StringParam
		case *inferencepb.InferParameter_DoubleParam:
			q.Kind, q.Double = ParamDouble, v.DoubleParam
		case *inferencepb.InferParameter_Uint64Param:
			q.Kind, q.Uint64 = ParamUint64, v.Uint64Param
		default:
			if noun == "" {
				return dst, Errorf(k, "parameter %q has no value", key)
			}
			return dst, Errorf(k, "%s %q: parameter %q has no value", noun, name, key)
		}
		dst = append(dst, q)
	}
	slices.SortFunc(dst[start:], func(a, b Parameter) int { return strings.Compare(a.Key, b.Key) })
	return dst, nil
}

// ParametersToProto returns ps as a gRPC parameter map, or nil when ps is
// empty. A later parameter with the same key wins, and a parameter whose Kind
// is not one of the five is left out, since it has no value to send.
func ParametersToProto(ps Parameters) map[string]*inferencepb.InferParameter {
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]*inferencepb.InferParameter, len(ps))
	vs := make([]inferencepb.InferParameter, len(ps))
	for i, p := range ps {
		v := &vs[i]
		switch p.Kind {
		case ParamBool:
			v.ParameterChoice = &inferencepb.InferParameter_BoolParam{BoolParam: p.Bool}
		case ParamInt64:
			v.ParameterChoice = &inferencepb.InferParameter_Int64Param{Int64Param: p.Int64}
		case ParamString:
			v.ParameterChoice = &inferencepb.InferParameter_StringParam{StringParam: p.String}
		case ParamDouble:
			v.ParameterChoice = &inferencepb.InferParameter_DoubleParam{DoubleParam: p.Double}
		case ParamUint64:
			v.ParameterChoice = &inferencepb.InferParameter_Uint64Param{Uint64Param: p.Uint64}
		default:
			continue
		}
		m[p.Key] = v
	}
	return m
}

// MetadataToProto converts md to a gRPC model metadata response. The result
// shares no memory with md.
func MetadataToProto(md *ModelMetadata) *inferencepb.ModelMetadataResponse {
	return &inferencepb.ModelMetadataResponse{
		Name:     md.Name,
		Versions: slices.Clone(md.Versions),
		Platform: md.Platform,
		Inputs:   tensorMetadataToProto(md.Inputs),
		Outputs:  tensorMetadataToProto(md.Outputs),
	}
}

func tensorMetadataToProto(ts []TensorMetadata) []*inferencepb.ModelMetadataResponse_TensorMetadata {
	if len(ts) == 0 {
		return nil
	}
	ps := make([]inferencepb.ModelMetadataResponse_TensorMetadata, len(ts))
	out := make([]*inferencepb.ModelMetadataResponse_TensorMetadata, len(ts))
	for i, t := range ts {
		ps[i].Name = t.Name
		ps[i].Datatype = t.Datatype.String()
		ps[i].Shape = slices.Clone(t.Shape)
		out[i] = &ps[i]
	}
	return out
}

// MetadataFromProto converts a runtime's gRPC model metadata response. The
// result shares no memory with m, and its Inputs, Outputs and shapes are
// empty rather than nil when absent, so that it encodes to JSON as [] and not
// null. A tensor with a datatype the protocol does not define is an *Error of
// KindInternal (the runtime is at fault) naming the model and the tensor.
func MetadataFromProto(m *inferencepb.ModelMetadataResponse) (*ModelMetadata, error) {
	md := &ModelMetadata{
		Name:     m.GetName(),
		Versions: slices.Clone(m.GetVersions()),
		Platform: m.GetPlatform(),
	}
	var err error
	if md.Inputs, err = tensorMetadataFromProto(md.Name, "input", m.GetInputs()); err != nil {
		return nil, err
	}
	if md.Outputs, err = tensorMetadataFromProto(md.Name, "output", m.GetOutputs()); err != nil {
		return nil, err
	}
	return md, nil
}

func tensorMetadataFromProto(model, noun string, ps []*inferencepb.ModelMetadataResponse_TensorMetadata) ([]TensorMetadata, error) {
	ts := make([]TensorMetadata, len(ps))
	for i, p := range ps {
		dt, ok := ParseDataType(p.GetDatatype())
		if !ok {
			return nil, Errorf(KindInternal, "model %q: %s %q: unknown datatype %q", model, noun, p.GetName(), p.GetDatatype())
		}
		ts[i] = TensorMetadata{Name: p.GetName(), Datatype: dt, Shape: append([]int64{}, p.GetShape()...)}
	}
	return ts, nil
}

// ServerMetadataToProto converts sm to a gRPC server metadata response. The
// result shares no memory with sm.
func ServerMetadataToProto(sm *ServerMetadata) *inferencepb.ServerMetadataResponse {
	return &inferencepb.ServerMetadataResponse{
		Name:       sm.Name,
		Version:    sm.Version,
		Extensions: slices.Clone(sm.Extensions),
	}
}

// ServerMetadataFromProto converts a gRPC server metadata response. The
// result shares no memory with m, and its Extensions are empty rather than
// nil when absent, so that it encodes to JSON as [].
func ServerMetadataFromProto(m *inferencepb.ServerMetadataResponse) *ServerMetadata {
	return &ServerMetadata{
		Name:       m.GetName(),
		Version:    m.GetVersion(),
		Extensions: append([]string{}, m.GetExtensions()...),
	}
}
