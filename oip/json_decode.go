package oip

import (
	"encoding/binary"
	"math"
	"strconv"
)

// The JSON decoder is a hand-written scanner over the body: no reflection,
// no intermediate tree, no per-element allocation. Tensor data is converted
// straight into the canonical little-endian form as it is scanned.
//
// Leniency: unknown fields are skipped (but must be valid JSON), "null" for
// an optional field means absent, and invalid UTF-8 in strings is replaced
// with U+FFFD as encoding/json does. Strictness: duplicate known fields,
// type mismatches, malformed JSON and data that does not fit the datatype
// or the shape are errors.
//
// Non-finite floats have no JSON form; the strings "NaN", "Infinity" and
// "-Infinity" are accepted as elements of FP16, FP32, FP64 and BF16 data,
// and are what the encoder emits for them.

// DecodeInferRequest parses an OIP REST inference request body into req.
//
// headerLen is the value of the Inference-Header-Content-Length header, or
// -1 when the header is absent, in which case the whole body is JSON. With
// headerLen > 0 the JSON header is body[:headerLen] and the binary tensors
// of Triton's binary tensor data extension follow it, concatenated in the
// order in which the inputs carrying a "binary_data_size" parameter appear;
// each such parameter is removed once its data is attached, and every byte
// after the header must belong to one of them. headerLen == 0 is Triton's
// raw binary request, which needs the model's metadata to interpret: this
// function rejects it, and a caller that supports it builds the request
// itself.
//
// JSON "data" may be flat or nested to any depth; only its element count
// is checked against the shape. Integers must be integral JSON numbers in
// the datatype's range; floats are parsed exactly as strconv.ParseFloat
// parses them at the datatype's width (FP16 and BF16 round to nearest-even
// from float64), finite values that overflow are errors, and the strings
// "NaN", "Infinity" and "-Infinity" stand for the non-finite values. BOOL
// takes true and false only, BYTES takes strings only. Parameters of
// numeric value become ParamInt64, ParamUint64 above MaxInt64, or
// ParamDouble when not integral; a repeated parameter key keeps its last
// value, any other repeated field is an error, and unknown fields are
// skipped.
//
// req is reset first, as by Reset, so ModelName and ModelVersion must be
// set after decoding. The capacity of req's slices, and of the Shape, Data
// and Parameters of the tensors in that capacity, is reused: anything still
// holding slices of req's previous contents must be done with them. The
// decoded request never aliases body, which the caller may reuse at once.
//
// Every error is an *Error of KindInvalidArgument whose message says what
// is wrong and, when it concerns a tensor, names it. On error req holds a
// partial result and must not be used. DecodeInferRequest keeps no state
// between calls: calls on different requests may run concurrently.
func DecodeInferRequest(body []byte, headerLen int, req *InferRequest) error {
	req.Reset()
	d, err := newDecoder(body, headerLen)
	if err != nil {
		return err
	}
	if err := d.request(req); err != nil {
		return err
	}
	return d.finish()
}

// DecodeInferResponse parses an OIP REST inference response body into resp,
// with the same framing rules, reuse, aliasing and error contract as
// DecodeInferRequest; the binary tensors belong to the outputs that carry a
// "binary_data_size" parameter.
func DecodeInferResponse(body []byte, headerLen int, resp *InferResponse) error {
	resp.Reset()
	d, err := newDecoder(body, headerLen)
	if err != nil {
		return err
	}
	if err := d.response(resp); err != nil {
		return err
	}
	return d.finish()
}

// tensorCtx names a tensor in error messages.
type tensorCtx struct {
	what string // "input", "output" or "requested output"
	idx  int
	name string
}

func (tc *tensorCtx) label() string {
	if tc.name != "" {
		return tc.what + " " + strconv.Quote(tc.name)
	}
	return tc.what + " " + strconv.Itoa(tc.idx)
}

// wrap prefixes err's message with the tensor's label.
func (tc *tensorCtx) wrap(err error) error {
	if e, ok := err.(*Error); ok {
		return &Error{Kind: e.Kind, Msg: tc.label() + ": " + e.Msg, Err: e.Err}
	}
	return err
}

func (tc *tensorCtx) errorf(format string, args ...any) error {
	return tc.wrap(Errorf(KindInvalidArgument, format, args...))
}

// params reads a parameters object (or null) into ps[:0], reusing the key
// strings already in ps's capacity when they match.
func (d *decoder) params(ps Parameters) (Parameters, error) {
	ps = ps[:0]
	if isNull, err := d.null(); isNull || err != nil {
		return ps, err
	}
	var index map[string]int // past a few keys, finds duplicates in O(1)
	more, err := d.beginObject("parameters object")
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			return ps, err
		}
		key := ""
		if len(ps) < cap(ps) && ps[:len(ps)+1][len(ps)].Key == string(k) {
			key = ps[:len(ps)+1][len(ps)].Key
		} else {
			key = string(k)
		}
		p := Parameter{Key: key}
		if err = d.paramValue(&p); err != nil {
			return ps, err
		}
		// A repeated key replaces the earlier value, as encoding/json
		// does, keeping its place.
		i := -1
		if len(ps) >= 16 && index == nil {
			index = make(map[string]int, 2*len(ps))
			for j := range ps {
				index[ps[j].Key] = j
			}
		}
		if index != nil {
			if j, ok := index[key]; ok {
				i = j
			}
		} else {
			for j := range ps {
				if ps[j].Key == key {
					i = j
					break
				}
			}
		}
		if i >= 0 {
			ps[i] = p
		} else {
			ps = append(ps, p)
			if index != nil {
				index[key] = len(ps) - 1
			}
		}
		more, err = d.nextMember()
	}
	return ps, err
}

// paramValue reads a string, number or boolean into p.
func (d *decoder) paramValue(p *Parameter) error {
	switch c := d.peek(); {
	case c == '"':
		s, err := d.str()
		if err != nil {
			return err
		}
		p.Kind, p.String = ParamString, string(s)
	case c == 't':
		p.Kind, p.Bool = ParamBool, true
		return d.literal("true")
	case c == 'f':
		p.Kind, p.Bool = ParamBool, false
		return d.literal("false")
	case c == '-' || c >= '0' && c <= '9':
		start := d.pos
		text, isInt, err := d.scanNumber()
		if err != nil {
			return err
		}
		s := unsafeString(text)
		if isInt {
			if v, err := strconv.ParseInt(s, 10, 64); err == nil {
				p.Kind, p.Int64 = ParamInt64, v
				return nil
			}
			if v, err := strconv.ParseUint(s, 10, 64); err == nil {
				p.Kind, p.Uint64 = ParamUint64, v
				return nil
			}
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Errorf(KindInvalidArgument, "parameter %q: number %s at offset %d is out of range", p.Key, text, start)
		}
		p.Kind, p.Double = ParamDouble, v
	default:
		return Errorf(KindInvalidArgument, "parameter %q at offset %d: value must be a string, number or boolean", p.Key, d.pos)
	}
	return nil
}

// field bits record which known members an object had, to reject
// duplicates (whose meaning JSON leaves open).
type fields uint16

const (
	fName fields = 1 << iota
	fShape
	fDatatype
	fParameters
	fData
	fID
	fInputs
	fOutputs
	fModelName
	fModelVersion
)

// see records f and reports a duplicate as an error.
func (d *decoder) see(seen *fields, f fields, key []byte) error {
	if *seen&f != 0 {
		return Errorf(KindInvalidArgument, "duplicate field %q at offset %d", key, d.pos)
	}
	*seen |= f
	return nil
}

func (d *decoder) request(req *InferRequest) error {
	more, err := d.beginObject("request object")
	var seen fields
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			return err
		}
		switch string(k) {
		case "id":
			if err = d.see(&seen, fID, k); err == nil {
				req.ID, err = d.optString()
			}
		case "parameters":
			if err = d.see(&seen, fParameters, k); err == nil {
				req.Parameters, err = d.params(req.Parameters)
			}
		case "inputs":
			if err = d.see(&seen, fInputs, k); err == nil {
				err = d.tensors(&req.Inputs, "input")
			}
		case "outputs":
			if err = d.see(&seen, fOutputs, k); err == nil {
				err = d.requestedOutputs(&req.Outputs)
			}
		default:
			err = d.skipValue(0)
		}
		if err != nil {
			return err
		}
		more, err = d.nextMember()
	}
	return err
}

func (d *decoder) response(resp *InferResponse) error {
	more, err := d.beginObject("response object")
	var seen fields
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			return err
		}
		switch string(k) {
		case "model_name":
			if err = d.see(&seen, fModelName, k); err == nil {
				resp.ModelName, err = d.optString()
			}
		case "model_version":
			if err = d.see(&seen, fModelVersion, k); err == nil {
				resp.ModelVersion, err = d.optString()
			}
		case "id":
			if err = d.see(&seen, fID, k); err == nil {
				resp.ID, err = d.optString()
			}
		case "parameters":
			if err = d.see(&seen, fParameters, k); err == nil {
				resp.Parameters, err = d.params(resp.Parameters)
			}
		case "outputs":
			if err = d.see(&seen, fOutputs, k); err == nil {
				err = d.tensors(&resp.Outputs, "output")
			}
		default:
			err = d.skipValue(0)
		}
		if err != nil {
			return err
		}
		more, err = d.nextMember()
	}
	if err == nil && seen&fOutputs == 0 {
		// The protocol requires it: an answer without it is no answer.
		err = Errorf(KindInvalidArgument, "response has no \"outputs\"")
	}
	return err
}

// optString reads a string or null (as "").
func (d *decoder) optString() (string, error) {
	if isNull, err := d.null(); isNull || err != nil {
		return "", err
	}
	return d.stringValue("")
}

// nextTensor extends *ts by one tensor, reusing the slices of the element
// already in its capacity.
func nextTensor(ts *[]Tensor) *Tensor {
	s := *ts
	if len(s) < cap(s) {
		s = s[:len(s)+1]
		t := &s[len(s)-1]
		*t = Tensor{Name: t.Name, Shape: t.Shape[:0], Parameters: t.Parameters[:0], Data: t.Data[:0]}
		*ts = s
		return t
	}
	*ts = append(s, Tensor{})
	return &(*ts)[len(s)]
}

func (d *decoder) tensors(ts *[]Tensor, what string) error {
	*ts = (*ts)[:0]
	if isNull, err := d.null(); isNull || err != nil {
		return err
	}
	more, err := d.beginArray(what + "s array")
	for i := 0; more && err == nil; i++ {
		if err = d.tensor(nextTensor(ts), tensorCtx{what: what, idx: i}); err != nil {
			return err
		}
		more, err = d.nextElement()
	}
	return err
}

func (d *decoder) requestedOutputs(outs *[]RequestedOutput) error {
	*outs = (*outs)[:0]
	if isNull, err := d.null(); isNull || err != nil {
		return err
	}
	more, err := d.beginArray("outputs array")
	for i := 0; more && err == nil; i++ {
		var o *RequestedOutput
		if s := *outs; len(s) < cap(s) {
			s = s[:len(s)+1]
			o = &s[len(s)-1]
			*o = RequestedOutput{Name: o.Name, Parameters: o.Parameters[:0]}
			*outs = s
		} else {
			*outs = append(s, RequestedOutput{})
			o = &(*outs)[len(s)]
		}
		if err = d.requestedOutput(o, tensorCtx{what: "requested output", idx: i}); err != nil {
			return err
		}
		more, err = d.nextElement()
	}
	return err
}

func (d *decoder) requestedOutput(o *RequestedOutput, tc tensorCtx) error {
	oldName := o.Name
	o.Name = ""
	more, err := d.beginObject("requested output object")
	var seen fields
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			return tc.wrap(err)
		}
		switch string(k) {
		case "name":
			if err = d.see(&seen, fName, k); err == nil {
				o.Name, err = d.stringValue(oldName)
				tc.name = o.Name
			}
		case "parameters":
			if err = d.see(&seen, fParameters, k); err == nil {
				o.Parameters, err = d.params(o.Parameters)
			}
		default:
			err = d.skipValue(0)
		}
		if err != nil {
			return tc.wrap(err)
		}
		more, err = d.nextMember()
	}
	if err != nil {
		return tc.wrap(err)
	}
	if o.Name == "" {
		return tc.errorf(`missing "name"`)
	}
	return nil
}

// tensor reads one input or output tensor object into t, including its
// binary data when it has a binary_data_size parameter.
func (d *decoder) tensor(t *Tensor, tc tensorCtx) error {
	oldName := t.Name
	t.Name = ""
	var seen fields
	dataAt := -1 // offset of data seen before the datatype
	var count int64
	more, err := d.beginObject(tc.what + " object")
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			return tc.wrap(err)
		}
		switch string(k) {
		case "name":
			if err = d.see(&seen, fName, k); err == nil {
				t.Name, err = d.stringValue(oldName)
				tc.name = t.Name
			}
		case "shape":
			if err = d.see(&seen, fShape, k); err == nil {
				t.Shape, err = d.shape(t.Shape[:0])
			}
		case "datatype":
			if err = d.see(&seen, fDatatype, k); err == nil {
				err = d.datatype(t)
			}
		case "parameters":
			if err = d.see(&seen, fParameters, k); err == nil {
				t.Parameters, err = d.params(t.Parameters)
			}
		case "data":
			var isNull bool
			if isNull, err = d.null(); isNull || err != nil {
				break
			}
			if err = d.see(&seen, fData, k); err != nil {
				break
			}
			if seen&fDatatype != 0 {
				count, err = d.data(t, seen&fShape != 0)
			} else {
				dataAt = d.pos
				err = d.skipValue(0)
			}
		default:
			err = d.skipValue(0)
		}
		if err != nil {
			return tc.wrap(err)
		}
		more, err = d.nextMember()
	}
	if err != nil {
		return tc.wrap(err)
	}
	switch {
	case t.Name == "":
		return tc.errorf(`missing "name"`)
	case seen&fDatatype == 0:
		return tc.errorf(`missing "datatype"`)
	case seen&fShape == 0:
		return tc.errorf(`missing "shape"`)
	}
	n := ShapeElements(t.Shape)
	if n < 0 {
		return tc.errorf("shape %s has too many elements", FormatShape(t.Shape))
	}
	if dataAt >= 0 {
		end := d.pos
		d.pos = dataAt
		count, err = d.data(t, true)
		d.pos = end
		if err != nil {
			return tc.wrap(err)
		}
	}
	return d.finishTensor(t, &tc, seen&fData != 0, count, n)
}

func (d *decoder) datatype(t *Tensor) error {
	at := d.pos
	s, err := d.str()
	if err != nil {
		return err
	}
	dt, ok := ParseDataType(unsafeString(s))
	if !ok {
		return Errorf(KindInvalidArgument, "unknown datatype %q at offset %d", s, at)
	}
	t.Datatype = dt
	return nil
}

// shape reads an array of non-negative int64 dimensions into dims.
func (d *decoder) shape(dims []int64) ([]int64, error) {
	more, err := d.beginArray("shape array")
	for more && err == nil {
		d.ws()
		at := d.pos
		var text []byte
		var isInt bool
		if text, isInt, err = d.scanNumber(); err != nil {
			return dims, err
		}
		v, perr := strconv.ParseInt(unsafeString(text), 10, 64)
		switch {
		case !isInt || perr != nil:
			return dims, Errorf(KindInvalidArgument, "shape dimension %s at offset %d is not an int64", text, at)
		case v < 0:
			return dims, Errorf(KindInvalidArgument, "negative shape dimension %d at offset %d", v, at)
		}
		dims = append(dims, v)
		more, err = d.nextElement()
	}
	return dims, err
}

// data reads a tensor's JSON data, flat or nested to any depth, appending
// the elements to t.Data in canonical form, and returns how many it read.
// Nesting is walked with a depth counter, not recursion, and is not
// checked against the shape: only the element count is.
func (d *decoder) data(t *Tensor, haveShape bool) (int64, error) {
	t.Data = t.Data[:0]
	d.ws()
	if d.peek() != '[' {
		return 0, d.unexpected(`array for "data"`)
	}
	if haveShape {
		d.reserve(t)
	}
	d.pos++
	d.ws()
	if d.peek() == ']' {
		d.pos++
		return 0, nil
	}
	depth := 1
	var n int64
	for {
		d.ws()
		if c := d.peek(); c == ']' {
			return n, d.unexpected("value")
		} else if c == '[' {
			d.pos++
			depth++
			d.ws()
			if d.peek() != ']' {
				continue
			}
			d.pos++ // an empty nested array is a complete value
			depth--
		} else {
			if err := d.element(t, n); err != nil {
				return n, err
			}
			n++
		}
		for {
			d.ws()
			c := d.peek()
			if c == ',' {
				d.pos++
				break
			}
			if c != ']' {
				return n, d.unexpected("',' or ']' in data")
			}
			d.pos++
			depth--
			if depth == 0 {
				return n, nil
			}
		}
	}
}

// reserve sizes t.Data for the elements the shape promises, trusting the
// shape only as far as the remaining JSON could hold that many elements
// (each takes at least two bytes), so a lying shape cannot force a large
// allocation.
func (d *decoder) reserve(t *Tensor) {
	n := ShapeElements(t.Shape)
	if n <= 0 {
		return
	}
	n = min(n, int64(len(d.buf)-d.pos)/2+1)
	size := t.Datatype.Size()
	if size == 0 { // BYTES: a length prefix at least
		size = 4
	}
	if need := int(n) * size; cap(t.Data) < need {
		t.Data = make([]byte, 0, need)
	}
}

// element reads one scalar of t's datatype and appends it to t.Data.
func (d *decoder) element(t *Tensor, idx int64) error {
	switch dt := t.Datatype; dt {
	case FP32:
		f, err := d.float(32, dt, idx)
		t.Data = binary.LittleEndian.AppendUint32(t.Data, math.Float32bits(float32(f)))
		return err
	case FP64:
		f, err := d.float(64, dt, idx)
		t.Data = binary.LittleEndian.AppendUint64(t.Data, math.Float64bits(f))
		return err
	case FP16, BF16:
		f, err := d.float(64, dt, idx)
		if err != nil {
			return err
		}
		var h uint16
		if dt == FP16 {
			h = Float64ToFP16(f)
		} else {
			h = Float64ToBF16(f)
		}
		if h&0x7fff == 0x7c00 && dt == FP16 || h&0x7fff == 0x7f80 && dt == BF16 {
			if !math.IsInf(f, 0) {
				return Errorf(KindInvalidArgument, "element %d: %g is out of range for %s", idx, f, dt)
			}
		}
		t.Data = binary.LittleEndian.AppendUint16(t.Data, h)
		return nil
	case BOOL:
		switch d.peek() {
		case 't':
			t.Data = append(t.Data, 1)
			return d.literal("true")
		case 'f':
			t.Data = append(t.Data, 0)
			return d.literal("false")
		}
		return Errorf(KindInvalidArgument, "element %d at offset %d: BOOL data must be true or false", idx, d.pos)
	case BYTES:
		if d.peek() != '"' {
			return Errorf(KindInvalidArgument, "element %d at offset %d: BYTES data must be strings", idx, d.pos)
		}
		s, err := d.str()
		if err != nil {
			return err
		}
		t.Data = binary.LittleEndian.AppendUint32(t.Data, uint32(len(s)))
		t.Data = append(t.Data, s...)
		return nil
	}
	return d.intElement(t, idx)
}

// intElement reads one integer element of t's integer datatype.
func (d *decoder) intElement(t *Tensor, idx int64) error {
	at := d.pos
	text, isInt, err := d.scanNumber()
	if err != nil {
		if d.peek() == 0 || at != d.pos {
			return err
		}
		return Errorf(KindInvalidArgument, "element %d at offset %d: %s data must be numbers", idx, at, t.Datatype)
	}
	dt := t.Datatype
	if !isInt {
		return Errorf(KindInvalidArgument, "element %d: %s is not an integer, as %s needs", idx, text, dt)
	}
	neg := text[0] == '-'
	digits := text
	if neg {
		digits = text[1:]
	}
	var mag uint64
	overflow := len(digits) > 20
	for _, c := range digits {
		v := uint64(c - '0')
		if mag > (math.MaxUint64-v)/10 {
			overflow = true
			break
		}
		mag = mag*10 + v
	}
	var limit uint64 // the largest magnitude allowed for this sign
	switch dt {
	case UINT8:
		limit = math.MaxUint8
	case UINT16:
		limit = math.MaxUint16
	case UINT32:
		limit = math.MaxUint32
	case UINT64:
		limit = math.MaxUint64
	case INT8:
		limit = math.MaxInt8
	case INT16:
		limit = math.MaxInt16
	case INT32:
		limit = math.MaxInt32
	case INT64:
		limit = math.MaxInt64
	}
	signed := dt >= INT8 && dt <= INT64
	if neg && signed {
		limit++
	}
	if neg && !signed && mag != 0 || overflow || mag > limit {
		return Errorf(KindInvalidArgument, "element %d: %s is out of range for %s", idx, text, dt)
	}
	v := mag
	if neg {
		v = -mag
	}
	switch dt.Size() {
	case 1:
		t.Data = append(t.Data, byte(v))
	case 2:
		t.Data = binary.LittleEndian.AppendUint16(t.Data, uint16(v))
	case 4:
		t.Data = binary.LittleEndian.AppendUint32(t.Data, uint32(v))
	default:
		t.Data = binary.LittleEndian.AppendUint64(t.Data, v)
	}
	return nil
}
