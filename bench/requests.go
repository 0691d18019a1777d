package bench

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
)

// RequestOptions says how GenerateRequests builds requests from a model's
// metadata. Zero fields take the documented defaults.
type RequestOptions struct {
	// Batch replaces a variable (-1) first dimension (default 1).
	Batch int64
	// Shapes gives the whole shape of inputs by name, overriding the
	// metadata's; an input with a variable dimension other than the first
	// needs one.
	Shapes map[string][]int64
	// Distinct is the number of different random requests made (default
	// 16); a run cycles through them.
	Distinct int
	// Seed drives the random data.
	Seed uint64
	// StringLength is the length of each random BYTES element (default
	// 16).
	StringLength int
}

// ErrShapeNeeded is wrapped by the error GenerateRequests returns for an
// input with a variable dimension that neither Batch nor Shapes fixes.
var ErrShapeNeeded = errors.New("give the input's shape")

// randomIntRange bounds random integer elements: [0, 16) fits every integer
// datatype and is a valid index for small embeddings and lookup tables.
const randomIntRange = 16

// ResolveShapes returns the shape of each of md's inputs, in order: the
// metadata's, with a variable first dimension replaced by opts.Batch, or
// opts.Shapes' when given. An override must have the metadata's rank and
// fixed dimensions.
func ResolveShapes(md *oip.ModelMetadata, opts RequestOptions) ([][]int64, error) {
	if opts.Batch == 0 {
		opts.Batch = 1
	}
	if opts.Batch < 0 {
		return nil, fmt.Errorf("bench: batch %d is negative", opts.Batch)
	}
	for name := range opts.Shapes {
		if md.Input(name) == nil {
			return nil, fmt.Errorf("bench: shape given for %q, but model %q has no such input (inputs: %s)", name, md.Name, inputNames(md))
		}
	}
	if len(md.Inputs) == 0 {
		return nil, fmt.Errorf("bench: model %q has no inputs", md.Name)
	}
	batched := false
	out := make([][]int64, len(md.Inputs))
	for i, in := range md.Inputs {
		if s, ok := opts.Shapes[in.Name]; ok {
			if err := shapeFits(s, in.Shape); err != nil {
				return nil, fmt.Errorf("bench: input %q: shape %s %w", in.Name, oip.FormatShape(s), err)
			}
			out[i] = s
			batched = batched || (len(in.Shape) > 0 && in.Shape[0] < 0)
			continue
		}
		s := append([]int64(nil), in.Shape...)
		for d := range s {
			if s[d] >= 0 {
				continue
			}
			if d == 0 {
				s[d] = opts.Batch
				batched = true
				continue
			}
			return nil, fmt.Errorf("bench: input %q has shape %s with variable dimension %d: %w", in.Name, oip.FormatShape(in.Shape), d, ErrShapeNeeded)
		}
		out[i] = s
	}
	if opts.Batch > 1 && !batched {
		return nil, fmt.Errorf("bench: model %q does not batch (no input has a variable first dimension: %s); use a batch of 1", md.Name, describeInputs(md))
	}
	return out, nil
}

// shapeFits checks an explicit shape against the metadata's.
func shapeFits(s, want []int64) error {
	if len(s) != len(want) {
		return fmt.Errorf("has %d dimensions, the model's %s has %d", len(s), oip.FormatShape(want), len(want))
	}
	for i, d := range s {
		if d < 0 {
			return fmt.Errorf("has a negative dimension")
		}
		if want[i] >= 0 && d != want[i] {
			return fmt.Errorf("does not fit the model's %s", oip.FormatShape(want))
		}
	}
	return nil
}

// GenerateRequests returns opts.Distinct valid requests for md, with random
// data of each input's datatype and the shape ResolveShapes gives: floats
// uniform in [0, 1), integers in [0, 16), BOOL true or false, BYTES
// elements of StringLength random lowercase letters. The same options give
// the same requests. ModelName is md.Name; no outputs are named, so the
// server returns them all.
func GenerateRequests(md *oip.ModelMetadata, opts RequestOptions) ([]*oip.InferRequest, error) {
	shapes, err := ResolveShapes(md, opts)
	if err != nil {
		return nil, err
	}
	if opts.Distinct <= 0 {
		opts.Distinct = 16
	}
	if opts.StringLength <= 0 {
		opts.StringLength = 16
	}
	var elems int64
	for i, in := range md.Inputs {
		if !in.Datatype.Valid() {
			return nil, fmt.Errorf("bench: input %q has datatype %s", in.Name, in.Datatype)
		}
		n := oip.ShapeElements(shapes[i])
		if n < 0 || n > 1<<28 {
			return nil, fmt.Errorf("bench: input %q: shape %s is too large to generate", in.Name, oip.FormatShape(shapes[i]))
		}
		elems += n
	}
	if elems*int64(opts.Distinct) > 1<<28 {
		opts.Distinct = max(1, int(int64(1<<28)/max(elems, 1)))
	}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5bd1e995))
	reqs := make([]*oip.InferRequest, opts.Distinct)
	for k := range reqs {
		r := &oip.InferRequest{ModelName: md.Name, Inputs: make([]oip.Tensor, len(md.Inputs))}
		for i, in := range md.Inputs {
			r.Inputs[i] = oip.Tensor{
				Name:     in.Name,
				Datatype: in.Datatype,
				Shape:    shapes[i],
				Data:     randomData(rng, in.Datatype, oip.ShapeElements(shapes[i]), opts.StringLength),
			}
		}
		if err := oip.ValidateRequest(r, md); err != nil {
			return nil, fmt.Errorf("bench: a generated request does not fit the metadata: %w", err)
		}
		reqs[k] = r
	}
	return reqs, nil
}

// randomData returns n random elements of dt in canonical form.
func randomData(rng *rand.Rand, dt oip.DataType, n int64, strLen int) []byte {
	le := binary.LittleEndian
	if dt == oip.BYTES {
		b := make([]byte, 0, n*int64(4+strLen))
		for range n {
			b = le.AppendUint32(b, uint32(strLen))
			for range strLen {
				b = append(b, byte('a'+rng.IntN(26)))
			}
		}
		return b
	}
	b := make([]byte, 0, n*int64(dt.Size()))
	for range n {
		switch dt {
		case oip.BOOL:
			b = append(b, byte(rng.IntN(2)))
		case oip.UINT8, oip.INT8:
			b = append(b, byte(rng.IntN(randomIntRange)))
		case oip.UINT16, oip.INT16:
			b = le.AppendUint16(b, uint16(rng.IntN(randomIntRange)))
		case oip.UINT32, oip.INT32:
			b = le.AppendUint32(b, uint32(rng.IntN(randomIntRange)))
		case oip.UINT64, oip.INT64:
			b = le.AppendUint64(b, uint64(rng.IntN(randomIntRange)))
		case oip.FP16:
			b = le.AppendUint16(b, oip.Float32ToFP16(rng.Float32()))
		case oip.BF16:
			b = le.AppendUint16(b, oip.Float32ToBF16(rng.Float32()))
		case oip.FP32:
			b = le.AppendUint32(b, math.Float32bits(rng.Float32()))
		case oip.FP64:
			b = le.AppendUint64(b, math.Float64bits(rng.Float64()))
		}
	}
	return b
}

// LoadRequests reads requests for md from a JSON document in one of three
// forms: one OIP inference request ({"inputs": [...]}); a JSON array of
// them; or perf_analyzer's input data ({"data": [{"INPUT": [...]}, ...]},
// where each input is a flat array of its elements, an object with
// "content" and "shape", or {"b64": ...} holding its canonical bytes; the
// shape defaults to the metadata's with a variable first dimension of 1).
// Every request is checked against md with oip.ValidateRequest, and the
// first that does not fit is an error naming it and the tensor. ModelName
// is md.Name.
func LoadRequests(doc []byte, md *oip.ModelMetadata) ([]*oip.InferRequest, error) {
	doc = bytes.TrimSpace(doc)
	var bodies [][]byte
	switch {
	case len(doc) == 0:
		return nil, errors.New("the file is empty")
	case doc[0] == '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(doc, &raws); err != nil {
			return nil, fmt.Errorf("not a JSON array of requests: %w", err)
		}
		for _, r := range raws {
			bodies = append(bodies, r)
		}
	case doc[0] == '{':
		var probe struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		if len(probe.Data) > 0 && probe.Data[0] == '[' {
			var err error
			if bodies, err = perfAnalyzerBodies(probe.Data, md); err != nil {
				return nil, err
			}
		} else {
			bodies = [][]byte{doc}
		}
	default:
		return nil, errors.New("not a JSON object or array")
	}
	if len(bodies) == 0 {
		return nil, errors.New("the file holds no request")
	}
	reqs := make([]*oip.InferRequest, len(bodies))
	for i, b := range bodies {
		r := new(oip.InferRequest)
		if err := oip.DecodeInferRequest(b, -1, r); err != nil {
			return nil, fmt.Errorf("request %d: %s", i+1, oip.Message(err))
		}
		r.ModelName = md.Name
		if err := oip.ValidateRequest(r, md); err != nil {
			return nil, fmt.Errorf("request %d does not fit model %q (%s): %s", i+1, md.Name, describeInputs(md), oip.Message(err))
		}
		reqs[i] = r
	}
	return reqs, nil
}

// perfAnalyzerBodies turns perf_analyzer's {"data": [...]} entries into OIP
// request bodies.
func perfAnalyzerBodies(data json.RawMessage, md *oip.ModelMetadata) ([][]byte, error) {
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf(`"data" is not an array of objects: %w`, err)
	}
	out := make([][]byte, 0, len(entries))
	for i, e := range entries {
		var b bytes.Buffer
		b.WriteString(`{"inputs":[`)
		for j, in := range md.Inputs {
			v, ok := e[in.Name]
			if !ok {
				return nil, fmt.Errorf("data entry %d has no input %q", i+1, in.Name)
			}
			shape := defaultShape(in.Shape)
			content := v
			if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '{' {
				var obj struct {
					Content json.RawMessage `json:"content"`
					Shape   []int64         `json:"shape"`
					B64     *string         `json:"b64"`
				}
				if err := json.Unmarshal(t, &obj); err != nil {
					return nil, fmt.Errorf("data entry %d, input %q: %w", i+1, in.Name, err)
				}
				if obj.Shape != nil {
					shape = obj.Shape
				}
				switch {
				case obj.B64 != nil:
					raw, err := base64.StdEncoding.DecodeString(*obj.B64)
					if err != nil {
						return nil, fmt.Errorf("data entry %d, input %q: b64: %w", i+1, in.Name, err)
					}
					if content, err = canonicalToJSON(in.Datatype, raw); err != nil {
						return nil, fmt.Errorf("data entry %d, input %q: %w", i+1, in.Name, err)
					}
				case obj.Content != nil:
					content = obj.Content
				default:
					return nil, fmt.Errorf(`data entry %d, input %q: want an array, {"content", "shape"} or {"b64"}`, i+1, in.Name)
				}
			}
			if shape == nil {
				return nil, fmt.Errorf("data entry %d, input %q: the model's shape %s has a variable dimension: give \"shape\"", i+1, in.Name, oip.FormatShape(in.Shape))
			}
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":%s,"datatype":%q,"shape":%s,"data":%s}`, strconv.Quote(in.Name), in.Datatype, oip.FormatShape(shape), content)
		}
		b.WriteString(`]}`)
		out = append(out, b.Bytes())
	}
	return out, nil
}

// defaultShape returns shape with a variable first dimension of 1, or nil
// when another dimension is variable.
func defaultShape(shape []int64) []int64 {
	s := append([]int64(nil), shape...)
	for d := range s {
		if s[d] < 0 {
			if d > 0 {
				return nil
			}
			s[d] = 1
		}
	}
	return s
}

// canonicalToJSON writes canonical tensor bytes as a flat JSON array, by
// encoding them as a one-tensor request and cutting its data out.
func canonicalToJSON(dt oip.DataType, raw []byte) ([]byte, error) {
	n := int64(0)
	if dt == oip.BYTES {
		c, err := oip.CountBytesElements(raw)
		if err != nil {
			return nil, err
		}
		n = c
	} else if dt.Size() > 0 {
		if len(raw)%dt.Size() != 0 {
			return nil, fmt.Errorf("%d bytes is not a whole number of %s elements", len(raw), dt)
		}
		n = int64(len(raw) / dt.Size())
	}
	r := &oip.InferRequest{Inputs: []oip.Tensor{{Name: "x", Datatype: dt, Shape: []int64{n}, Data: raw}}}
	b, _, err := oip.AppendInferRequest(nil, r, false)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(b, []byte(`"data":`))
	j := bytes.LastIndexByte(b, ']')
	if i < 0 || j < 0 {
		return nil, errors.New("cannot encode the data")
	}
	end := bytes.LastIndexByte(b[:j], ']')
	return b[i+len(`"data":`) : end+1], nil
}

// RESTRequests encodes reqs as REST request bodies: JSON, or with binary
// set Triton's binary tensor extension for the inputs (with its
// Inference-Header-Content-Length header) and binary outputs asked for with
// "binary_data_output". reqs are not modified.
func RESTRequests(reqs []*oip.InferRequest, binary bool) ([]RESTRequest, error) {
	out := make([]RESTRequest, len(reqs))
	for i, r := range reqs {
		c := *r
		if binary {
			c.Parameters = append(oip.Parameters(nil), r.Parameters...).Set(oip.Parameter{Key: oip.ParamBinaryDataOutput, Kind: oip.ParamBool, Bool: true})
			c.Inputs = make([]oip.Tensor, len(r.Inputs))
			for j := range r.Inputs {
				c.Inputs[j] = r.Inputs[j]
				c.Inputs[j].Parameters = append(oip.Parameters(nil), r.Inputs[j].Parameters...)
			}
		}
		body, jsonLen, err := oip.AppendInferRequest(nil, &c, binary)
		if err != nil {
			return nil, fmt.Errorf("bench: encoding request %d: %w", i+1, err)
		}
		out[i] = RESTRequest{Body: body, ContentType: rest.ContentTypeJSON}
		if binary {
			out[i].ContentType = rest.ContentTypeBinary
			out[i].Header = [][2]string{{rest.HeaderInferenceHeaderContentLength, strconv.Itoa(jsonLen)}}
		}
	}
	return out, nil
}

// GRPCRequests converts reqs to gRPC requests for model and version: with
// raw set, each input's data in raw_input_contents; otherwise in the typed
// contents field of its datatype, which FP16 and BF16 do not have (the
// error says to use raw). reqs must not be modified while the messages are
// in use: they share memory.
func GRPCRequests(reqs []*oip.InferRequest, model, version string, raw bool) ([]*pb.ModelInferRequest, error) {
	out := make([]*pb.ModelInferRequest, len(reqs))
	for i, r := range reqs {
		c := *r
		c.ModelName, c.ModelVersion = model, version
		if raw {
			out[i] = oip.RequestToProto(&c)
			continue
		}
		for _, t := range c.Inputs {
			if t.Datatype == oip.FP16 || t.Datatype == oip.BF16 {
				return nil, fmt.Errorf("bench: input %q is %s, which gRPC carries only in raw_input_contents: send it raw", t.Name, t.Datatype)
			}
		}
		m := oip.RequestToProto(&c)
		// The typed form is the response converter's: the same contents
		// fields serve both directions.
		typed := oip.ResponseToProto(&oip.InferResponse{Outputs: c.Inputs}, false)
		for j, o := range typed.GetOutputs() {
			m.Inputs[j].Contents = o.GetContents()
		}
		m.RawInputContents = nil
		out[i] = m
	}
	return out, nil
}

// describeInputs lists md's inputs with their datatypes and shapes, for
// error messages: `input FP32 [-1,4]`.
func describeInputs(md *oip.ModelMetadata) string {
	parts := make([]string, len(md.Inputs))
	for i, in := range md.Inputs {
		parts[i] = in.Name + " " + in.Datatype.String() + " " + oip.FormatShape(in.Shape)
	}
	return "inputs " + strings.Join(parts, ", ")
}

func inputNames(md *oip.ModelMetadata) string {
	parts := make([]string, len(md.Inputs))
	for i, in := range md.Inputs {
		parts[i] = strconv.Quote(in.Name)
	}
	return strings.Join(parts, ", ")
}
