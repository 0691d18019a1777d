package runtimes

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
)

// KServeV1Platform is the platform a KServeV1Client reports in the model
// metadata it synthesizes.
const KServeV1Platform = "kserve_v1"

// DefaultKServeV1OutputName names the output tensor a KServeV1Client makes
// from a runtime's predictions when KServeV1Options does not name it.
const DefaultKServeV1OutputName = "predictions"

// Bounds on what one request may expand into as JSON. A shape with a zero
// dimension holds no elements yet asks for an empty array per index before
// that dimension ([1, 1e15, 0]), and every dimension past the first nests
// each element one array deeper; neither may turn a small request into an
// unbounded body. 64 is NumPy's own limit on dimensions.
const (
	v1MaxArrays = 1 << 24
	v1MaxRank   = 64
)

// KServeV1Options configures a KServeV1Client. Zero fields take the
// documented defaults.
type KServeV1Options struct {
	// Addr is the runtime's host:port. Required.
	Addr string
	// Name is how the client's errors, which may reach the gateway's
	// clients, name the replica (default "runtime"); they never name Addr.
	Name string
	// TLS and TLSConfig make the client speak HTTPS, as RESTOptions's do.
	TLS       bool
	TLSConfig *tls.Config
	// MaxConns bounds the open connections to the replica (default 1024).
	MaxConns int
	// MaxIdleConnDuration closes keep-alive connections idle this long
	// (default 30s).
	MaxIdleConnDuration time.Duration
	// MaxResponseBodySize bounds a response body (default 64 MiB).
	MaxResponseBodySize int
	// DefaultTimeout applies to calls whose context has no deadline
	// (default 60s).
	DefaultTimeout time.Duration
	// Dial opens a connection to Addr (default: TCP). Tests use it to
	// reach in-memory listeners.
	Dial func(addr string) (net.Conn, error)

	// OutputName names the one OIP output tensor made from the runtime's
	// predictions (default Outputs[0].Name when declared, else
	// "predictions").
	OutputName string
	// OutputDatatype is that tensor's datatype (default Outputs[0].Datatype
	// when declared). When it is zero too, each response decides: BOOL for
	// JSON booleans, BYTES for strings and FP32 for numbers, integral or
	// not, so that a model's output type does not change with the values it
	// happens to return. Set INT64 for class ids, FP64 for full precision.
	OutputDatatype oip.DataType

	// Inputs and Outputs declare the model's metadata, for which KServe v1
	// has no endpoint. At most one of each, since a v1 model takes one
	// tensor and returns one; each needs a name, a valid datatype and a
	// batch dimension (rank 1 or more). ModelMetadata reports them as
	// declared, and empty lists when they are not. When Inputs is declared
	// Infer validates each request against it as oip.ValidateRequest does;
	// when Outputs declares a shape, a response whose predictions do not fit
	// it is an internal error.
	Inputs  []oip.TensorMetadata
	Outputs []oip.TensorMetadata
}

// KServeV1Client is a Client for a runtime speaking KServe v1
// (POST /v1/models/{m}:predict with {"instances": [...]}, answered with
// {"predictions": [...]}), behind the gateway's OIP front. It is safe for
// concurrent use.
//
// Infer takes a request with one input tensor of shape [N, d1, ...] and
// sends it as N instances, each the nested JSON array of shape [d1, ...]
// (a bare value when the input has rank 1): numbers for the integer and
// float datatypes (FP16 and BF16 by value), booleans for BOOL, strings for
// BYTES (which must be UTF-8, as JSON strings are). The N predictions must
// all have one shape [e1, ...] and become one output tensor of shape
// [N, e1, ...], named and typed as KServeV1Options says, with its data in
// canonical form. The request's ID, model name and version are echoed; its
// parameters are not sent, since v1 has none, and neither is the version,
// since v1 has no versions.
type KServeV1Client struct {
	rc         *RESTClient
	outName    string
	outType    oip.DataType
	outShape   []int64 // declared, or nil
	inputs     []oip.TensorMetadata
	outputs    []oip.TensorMetadata
	validateMD *oip.ModelMetadata // for oip.ValidateRequest when Inputs are declared, or nil
}

var _ Client = (*KServeV1Client)(nil)

// NewKServeV1Client returns a client for the v1 runtime at opts.Addr. It
// dials lazily: a runtime that is not up yet is not an error here.
func NewKServeV1Client(opts KServeV1Options) (*KServeV1Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("runtimes: KServeV1Options.Addr is empty")
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("runtimes: KServeV1Options.Addr %q: %w", opts.Addr, err)
	}
	if err := checkV1Metadata("Inputs", opts.Inputs); err != nil {
		return nil, err
	}
	if err := checkV1Metadata("Outputs", opts.Outputs); err != nil {
		return nil, err
	}
	if opts.OutputDatatype != oip.Invalid && !opts.OutputDatatype.Valid() {
		return nil, fmt.Errorf("runtimes: KServeV1Options.OutputDatatype %s is not a datatype", opts.OutputDatatype)
	}
	c := &KServeV1Client{outName: opts.OutputName, outType: opts.OutputDatatype}
	if len(opts.Outputs) == 1 {
		o := opts.Outputs[0]
		switch {
		case c.outName == "":
			c.outName = o.Name
		case c.outName != o.Name:
			return nil, fmt.Errorf("runtimes: KServeV1Options.OutputName %q differs from Outputs[0].Name %q", c.outName, o.Name)
		}
		switch {
		case c.outType == oip.Invalid:
			c.outType = o.Datatype
		case c.outType != o.Datatype:
			return nil, fmt.Errorf("runtimes: KServeV1Options.OutputDatatype %s differs from Outputs[0].Datatype %s", c.outType, o.Datatype)
		}
	}
	if c.outName == "" {
		c.outName = DefaultKServeV1OutputName
	}
	c.inputs = cloneTensorMetadata(opts.Inputs)
	c.outputs = cloneTensorMetadata(opts.Outputs)
	if len(c.outputs) == 1 {
		c.outShape = c.outputs[0].Shape
	}
	if len(c.inputs) > 0 {
		c.validateMD = &oip.ModelMetadata{Inputs: c.inputs, Outputs: []oip.TensorMetadata{{Name: c.outName}}}
	}
	rc, err := NewRESTClient(RESTOptions{
		Addr:                opts.Addr,
		Name:                opts.Name,
		TLS:                 opts.TLS,
		TLSConfig:           opts.TLSConfig,
		MaxConns:            opts.MaxConns,
		MaxIdleConnDuration: opts.MaxIdleConnDuration,
		MaxResponseBodySize: opts.MaxResponseBodySize,
		DefaultTimeout:      opts.DefaultTimeout,
		Dial:                opts.Dial,
	})
	if err != nil {
		return nil, err
	}
	c.rc = rc
	return c, nil
}

func checkV1Metadata(field string, ts []oip.TensorMetadata) error {
	if len(ts) > 1 {
		return fmt.Errorf("runtimes: KServeV1Options.%s has %d tensors; a KServe v1 model has one", field, len(ts))
	}
	for i := range ts {
		t := &ts[i]
		switch {
		case t.Name == "":
			return fmt.Errorf("runtimes: KServeV1Options.%s[%d].Name is empty", field, i)
		case !t.Datatype.Valid():
			return fmt.Errorf("runtimes: KServeV1Options.%s[%d].Datatype %s is not a datatype", field, i, t.Datatype)
		case len(t.Shape) == 0:
			return fmt.Errorf("runtimes: KServeV1Options.%s[%d].Shape is [], with no batch dimension", field, i)
		}
	}
	return nil
}

// cloneTensorMetadata deep-copies ts so that the caller's options and the
// metadata handed out cannot change the client's own. It never returns nil,
// so that metadata encodes empty lists as [].
func cloneTensorMetadata(ts []oip.TensorMetadata) []oip.TensorMetadata {
	out := make([]oip.TensorMetadata, len(ts))
	for i, t := range ts {
		t.Shape = append([]int64(nil), t.Shape...)
		out[i] = t
	}
	return out
}

// Protocol returns KServeV1.

// Addr returns the replica's host:port.
func (c *KServeV1Client) Addr() string { return c.rc.addr }

// Close closes idle connections.
func (c *KServeV1Client) Close() error { return c.rc.Close() }

// v1ModelPath returns /v1/models/{model} followed by suffix ("" or
// ":predict").
func v1ModelPath(model, suffix string) string { return "/v1/models/" + model + suffix }

// ModelReady reports whether GET /v1/models/{model} answers 200 with
// {"ready": true}. Any other status is false with no error, as for an OIP
// runtime; a 200 whose body has no boolean "ready" is false with an internal
// error. version is ignored: v1 has no versions.
func (c *KServeV1Client) ModelReady(ctx context.Context, model, _ string) (bool, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(v1ModelPath(model, ""))
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := c.rc.Forward(req, resp, c.rc.deadline(ctx)); err != nil {
		return false, err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return false, nil
	}
	var r struct {
		Ready *bool `json:"ready"`
	}
	if err := json.Unmarshal(resp.Body(), &r); err != nil || r.Ready == nil {
		return false, oip.Errorf(oip.KindInternal, "%s answered model %q ready without a boolean \"ready\" field", c.rc.name, model)
	}
	return *r.Ready, nil
}

// ModelMetadata returns the metadata declared in KServeV1Options, with
// platform "kserve_v1" and empty lists for what was not declared; KServe v1
// has no metadata endpoint, so it asks the runtime nothing. The result is
// the caller's to keep.
func (c *KServeV1Client) ModelMetadata(_ context.Context, model, _ string) (*oip.ModelMetadata, error) {
	return &oip.ModelMetadata{
		Name:     model,
		Platform: KServeV1Platform,
		Inputs:   cloneTensorMetadata(c.inputs),
		Outputs:  cloneTensorMetadata(c.outputs),
	}, nil
}

// Infer sends r's one input to the runtime as instances and returns its
// predictions as one output tensor. A request the v1 form cannot carry (not
// exactly one input, no batch dimension, an empty batch, a non-finite float,
// BYTES that are not UTF-8, a requested output other than the client's) is
// an *oip.Error of KindInvalidArgument naming the problem; predictions that
// cannot be mapped back (a count other than the batch size, ragged rows,
// values that do not fit the output datatype) are KindInternal, naming the
// prediction. Runtime error statuses keep their kind and message, and an
// unreachable runtime is unavailable with ErrUnreachable in the chain.
func (c *KServeV1Client) Infer(ctx context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
	t, err := c.checkRequest(r)
	if err != nil {
		return nil, err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(v1ModelPath(r.ModelName, ":predict"))
	req.Header.SetContentType("application/json")
	body, err := appendV1Instances(req.Body()[:0], t)
	if err != nil {
		return nil, err
	}
	req.SetBodyRaw(body)
	if err := c.rc.do(ctx, req, resp); err != nil {
		return nil, err
	}
	out, err := c.decodePredictions(resp.Body(), t.Shape[0])
	if err != nil {
		return nil, err
	}
	return &oip.InferResponse{
		ModelName:    r.ModelName,
		ModelVersion: r.ModelVersion,
		ID:           r.ID,
		Outputs:      []oip.Tensor{out},
	}, nil
}

// checkRequest returns r's one input once it is known to be sendable:
// validated against declared inputs, with a batch dimension and data that
// matches its shape, so that encoding cannot run off its data.
func (c *KServeV1Client) checkRequest(r *oip.InferRequest) (*oip.Tensor, error) {
	if len(r.Inputs) != 1 {
		return nil, oip.Errorf(oip.KindInvalidArgument, "a KServe v1 runtime takes one input tensor; request has %d", len(r.Inputs))
	}
	for i := range r.Outputs {
		if name := r.Outputs[i].Name; name != c.outName {
			return nil, oip.Errorf(oip.KindInvalidArgument, "unknown output %q; model %q has outputs %q", name, r.ModelName, c.outName)
		}
	}
	if c.validateMD != nil {
		md := *c.validateMD
		md.Name = r.ModelName
		if err := oip.ValidateRequest(r, &md); err != nil {
			return nil, err
		}
	}
	t := &r.Inputs[0]
	if !t.Datatype.Valid() {
		return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: invalid datatype %s", t.Name, t.Datatype)
	}
	if len(t.Shape) == 0 {
		return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: shape [] has no batch dimension; a KServe v1 runtime takes one instance per row", t.Name)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: shape %s has a negative dimension", t.Name, oip.FormatShape(t.Shape))
		}
	}
	if t.Shape[0] == 0 {
		return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: batch of 0; a KServe v1 runtime needs at least one instance", t.Name)
	}
	if len(t.Shape) > v1MaxRank {
		return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: rank %d is more than a KServe v1 runtime takes (%d)", t.Name, len(t.Shape), v1MaxRank)
	}
	n := oip.ShapeElements(t.Shape)
	if n < 0 {
		return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: shape %s has too many elements", t.Name, oip.FormatShape(t.Shape))
	}
	if n == 0 {
		// Without elements the arrays are not bounded by the data.
		arrays := int64(1)
		for _, d := range t.Shape[:len(t.Shape)-1] {
			if d == 0 {
				break
			}
			if arrays > v1MaxArrays/d {
				return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: shape %s has too many empty arrays to send as JSON", t.Name, oip.FormatShape(t.Shape))
			}
			arrays *= d
		}
	}
	if t.Datatype == oip.BYTES {
		got, err := oip.CountBytesElements(t.Data)
		if err != nil {
			return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: %s", t.Name, oip.Message(err))
		}
		if got != n {
			return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: data has %d elements, shape %s needs %d", t.Name, got, oip.FormatShape(t.Shape), n)
		}
		return t, nil
	}
	size := int64(t.Datatype.Size())
	if l := int64(len(t.Data)); l%size != 0 || l/size != n {
		return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: data has %d bytes, shape %s of %s needs %d elements of %d bytes", t.Name, l, oip.FormatShape(t.Shape), t.Datatype, n, size)
	}
	return t, nil
}

// appendV1Instances appends {"instances":[...]} for t, whose shape is
// [N, ...] and whose data checkRequest found to match it: one instance per
// index of the first dimension.
func appendV1Instances(dst []byte, t *oip.Tensor) ([]byte, error) {
	e := v1Encoder{t: t}
	dst = append(dst, `{"instances":[`...)
	var err error
	for i := int64(0); i < t.Shape[0]; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = e.appendArray(dst, t.Shape[1:]); err != nil {
			return nil, err
		}
	}
	return append(dst, "]}"...), nil
}

// v1Encoder writes a tensor's elements in order as JSON values.
type v1Encoder struct {
	t   *oip.Tensor
	off int   // byte offset of the next element in t.Data
	idx int64 // index of the next element in the tensor
}

// appendArray appends the nested array of shape dims that starts at the
// next element, or the element itself when dims is empty.
func (e *v1Encoder) appendArray(dst []byte, dims []int64) ([]byte, error) {
	if len(dims) == 0 {
		return e.appendElem(dst)
	}
	dst = append(dst, '[')
	var err error
	for j := int64(0); j < dims[0]; j++ {
		if j > 0 {
			dst = append(dst, ',')
		}
		if dst, err = e.appendArray(dst, dims[1:]); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

func (e *v1Encoder) appendElem(dst []byte) ([]byte, error) {
	le := binary.LittleEndian
	d := e.t.Data[e.off:]
	dt := e.t.Datatype
	size := dt.Size()
	switch dt {
	case oip.BOOL:
		dst = strconv.AppendBool(dst, d[0] != 0)
	case oip.UINT8:
		dst = strconv.AppendUint(dst, uint64(d[0]), 10)
	case oip.UINT16:
		dst = strconv.AppendUint(dst, uint64(le.Uint16(d)), 10)
	case oip.UINT32:
		dst = strconv.AppendUint(dst, uint64(le.Uint32(d)), 10)
	case oip.UINT64:
		dst = strconv.AppendUint(dst, le.Uint64(d), 10)
	case oip.INT8:
		dst = strconv.AppendInt(dst, int64(int8(d[0])), 10)
	case oip.INT16:
		dst = strconv.AppendInt(dst, int64(int16(le.Uint16(d))), 10)
	case oip.INT32:
		dst = strconv.AppendInt(dst, int64(int32(le.Uint32(d))), 10)
	case oip.INT64:
		dst = strconv.AppendInt(dst, int64(le.Uint64(d)), 10)
	case oip.FP16, oip.BF16, oip.FP32, oip.FP64:
		var f float64
		bits := 32
		switch dt {
		case oip.FP16:
			f = float64(oip.FP16ToFloat32(le.Uint16(d)))
		case oip.BF16:
			f = float64(oip.BF16ToFloat32(le.Uint16(d)))
		case oip.FP32:
			f = float64(math.Float32frombits(le.Uint32(d)))
		default:
			f, bits = math.Float64frombits(le.Uint64(d)), 64
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: element %d is %v, which a KServe v1 runtime cannot take as JSON", e.t.Name, e.idx, f)
		}
		dst = appendV1Float(dst, f, bits)
	case oip.BYTES:
		l := int(le.Uint32(d))
		s := d[4 : 4+l]
		if !utf8.Valid(s) {
			return nil, oip.Errorf(oip.KindInvalidArgument, "input %q: BYTES element %d is not UTF-8, which a KServe v1 runtime cannot take as a JSON string", e.t.Name, e.idx)
		}
		dst = oip.AppendJSONString(dst, string(s))
		size = 4 + l
	}
	e.off += size
	e.idx++
	return dst, nil
}

// appendV1Float appends f in its shortest form at the given bit size, with
// ".0" when that form reads as an integer, so that a Python runtime builds
// float arrays from float tensors.
func appendV1Float(dst []byte, f float64, bits int) []byte {
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, 'g', -1, bits)
	if bytes.IndexAny(dst[n:], ".e") < 0 {
		dst = append(dst, ".0"...)
	}
	return dst
}

// decodePredictions maps {"predictions": [...]} for n instances to the
// output tensor.
func (c *KServeV1Client) decodePredictions(body []byte, n int64) (oip.Tensor, error) {
	var r struct {
		Predictions *[]any `json:"predictions"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return oip.Tensor{}, &oip.Error{Kind: oip.KindInternal, Msg: c.rc.name + " sent a malformed v1 response", Err: err}
	}
	if r.Predictions == nil {
		return oip.Tensor{}, oip.Errorf(oip.KindInternal, "%s sent a v1 response without \"predictions\"", c.rc.name)
	}
	preds := *r.Predictions
	if int64(len(preds)) != n {
		return oip.Tensor{}, oip.Errorf(oip.KindInternal, "%s returned %d predictions for %d instances", c.rc.name, len(preds), n)
	}
	// Prediction 0 sets the row shape, by its first elements down to the
	// first non-array; every row, itself included, must then fill it.
	var dims []int64
	leaf := preds[0]
	for {
		a, ok := leaf.([]any)
		if !ok {
			break
		}
		dims = append(dims, int64(len(a)))
		if len(a) == 0 {
			leaf = nil
			break
		}
		leaf = a[0]
	}
	shape := append([]int64{n}, dims...)
	if c.outShape != nil && !oip.ShapeMatches(shape, c.outShape) {
		return oip.Tensor{}, oip.Errorf(oip.KindInternal, "%s: predictions have shape %s, output %q is declared %s", c.rc.name, oip.FormatShape(shape), c.outName, oip.FormatShape(c.outShape))
	}
	dt := c.outType
	if dt == oip.Invalid {
		switch leaf.(type) {
		case bool:
			dt = oip.BOOL
		case string:
			dt = oip.BYTES
		default: // numbers, and what the walk below rejects
			dt = oip.FP32
		}
	}
	d := v1Decoder{replica: c.rc.name, name: c.outName, dt: dt}
	if elems := oip.ShapeElements(shape); dt != oip.BYTES && elems > 0 {
		d.data = make([]byte, 0, elems*int64(dt.Size()))
	}
	for i, p := range preds {
		d.row, d.idx = i, 0
		if err := d.walk(p, dims); err != nil {
			return oip.Tensor{}, err
		}
	}
	return oip.Tensor{Name: c.outName, Datatype: dt, Shape: shape, Data: d.data}, nil
}

// v1Decoder converts predictions, decoded with json.Decoder.UseNumber, to
// canonical tensor data.
type v1Decoder struct {
	replica string // how errors name the replica
	name    string // the output's
	dt      oip.DataType
	data    []byte
	row     int   // the prediction being walked
	idx     int64 // the element of the row being walked
}

func (d *v1Decoder) walk(v any, dims []int64) error {
	a, isArray := v.([]any)
	if len(dims) == 0 {
		if isArray {
			return d.ragged()
		}
		return d.leaf(v)
	}
	if !isArray || int64(len(a)) != dims[0] {
		return d.ragged()
	}
	for _, x := range a {
		if err := d.walk(x, dims[1:]); err != nil {
			return err
		}
	}
	return nil
}

func (d *v1Decoder) ragged() error {
	if d.row == 0 {
		return oip.Errorf(oip.KindInternal, "%s: prediction 0 is ragged (its arrays differ in length or depth), so it has no tensor shape", d.replica)
	}
	return oip.Errorf(oip.KindInternal, "%s: prediction %d does not have the shape of prediction 0, so the predictions make no tensor", d.replica, d.row)
}

func (d *v1Decoder) leaf(v any) error {
	var what string
	switch x := v.(type) {
	case json.Number:
		if d.dt != oip.BOOL && d.dt != oip.BYTES {
			var err error
			if d.data, err = appendV1Number(d.data, string(x), d.dt); err != nil {
				return oip.Errorf(oip.KindInternal, "%s: prediction %d: element %d (%s) %s", d.replica, d.row, d.idx, x, err.Error())
			}
			d.idx++
			return nil
		}
		what = "a number"
	case string:
		if d.dt == oip.BYTES {
			d.data = binary.LittleEndian.AppendUint32(d.data, uint32(len(x)))
			d.data = append(d.data, x...)
			d.idx++
			return nil
		}
		what = "a string"
	case bool:
		if d.dt == oip.BOOL {
			b := byte(0)
			if x {
				b = 1
			}
			d.data = append(d.data, b)
			d.idx++
			return nil
		}
		what = "a boolean"
	case nil:
		what = "null"
	default:
		return oip.Errorf(oip.KindInternal, "%s: prediction %d: element %d is an object; only arrays of numbers, strings or booleans map to a tensor", d.replica, d.row, d.idx)
	}
	return oip.Errorf(oip.KindInternal, "%s: prediction %d: element %d is %s, output %q is %s", d.replica, d.row, d.idx, what, d.name, d.dt)
}

var (
	errV1NotInteger = errors.New("is not an integer")
	errV1Range      = errors.New("is out of range")
)

// appendV1Number appends the JSON number s as an element of the numeric
// datatype dt. Integer datatypes take integral values written either way
// (3 or 3.0, as Python writes a float); floats round to nearest.
func appendV1Number(dst []byte, s string, dt oip.DataType) ([]byte, error) {
	le := binary.LittleEndian
	switch dt {
	case oip.FP32:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return dst, fmt.Errorf("%w for %s", errV1Range, dt)
		}
		return le.AppendUint32(dst, math.Float32bits(float32(f))), nil
	case oip.FP64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return dst, fmt.Errorf("%w for %s", errV1Range, dt)
		}
		return le.AppendUint64(dst, math.Float64bits(f)), nil
	case oip.FP16, oip.BF16:
		f, err := strconv.ParseFloat(s, 64)
		var h uint16
		if dt == oip.FP16 {
			h = oip.Float64ToFP16(f)
		} else {
			h = oip.Float64ToBF16(f)
		}
		if err != nil || math.IsInf(float64(halfToFloat32(h, dt)), 0) {
			return dst, fmt.Errorf("%w for %s", errV1Range, dt)
		}
		return le.AppendUint16(dst, h), nil
	case oip.INT8, oip.INT16, oip.INT32, oip.INT64:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(s, 64)
			switch {
			case ferr == nil && f != math.Trunc(f):
				return dst, errV1NotInteger
			case ferr != nil || f < -(1<<63) || f >= 1<<63:
				return dst, fmt.Errorf("%w for %s", errV1Range, dt)
			}
			v = int64(f)
		}
		bits := 8 * dt.Size()
		if bits < 64 && (v < -(1<<(bits-1)) || v >= 1<<(bits-1)) {
			return dst, fmt.Errorf("%w for %s", errV1Range, dt)
		}
		return appendLE(dst, uint64(v), dt.Size()), nil
	case oip.UINT8, oip.UINT16, oip.UINT32, oip.UINT64:
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(s, 64)
			switch {
			case ferr == nil && f != math.Trunc(f):
				return dst, errV1NotInteger
			case ferr != nil || f < 0 || f >= 1<<64:
				return dst, fmt.Errorf("%w for %s", errV1Range, dt)
			}
			v = uint64(f)
		}
		bits := 8 * dt.Size()
		if bits < 64 && v >= 1<<bits {
			return dst, fmt.Errorf("%w for %s", errV1Range, dt)
		}
		return appendLE(dst, v, dt.Size()), nil
	}
	return dst, fmt.Errorf("cannot be %s", dt)
}

func halfToFloat32(h uint16, dt oip.DataType) float32 {
	if dt == oip.FP16 {
		return oip.FP16ToFloat32(h)
	}
	return oip.BF16ToFloat32(h)
}

// appendLE appends the low size bytes of v, little-endian.
func appendLE(dst []byte, v uint64, size int) []byte {
	for i := range size {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// CloseConns closes every connection open to the replica; see
// RESTClient.CloseConns.
func (c *KServeV1Client) CloseConns() { c.rc.CloseConns() }
