package oip

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// ValidateRequest checks req against the model's metadata md before it is
// queued or forwarded, so that a malformed request fails at the edge with a
// message that names the tensor rather than deep inside a runtime.
//
// It checks, input by input in request order: that no name repeats, that md
// knows the input, that the datatype is md's, that the shape has md's rank
// and each of md's fixed dimensions (a negative dimension in md, -1 by the
// protocol, matches any size, while the request's own dimensions must not be
// negative), and that Data holds exactly the shape's elements: elements times
// the datatype's width for fixed-width types, and for BYTES well-formed
// length-prefixed elements whose count is checked. Then that every input of
// md is present, and that every requested output is one of md's, named once.
//
// The first failure is returned as an *Error of KindInvalidArgument whose
// message names the tensor; nil means req may be sent to the model. md is
// only read. The work is bounded by the size of md, not of req: a request
// with more inputs than md fails at the first unknown or repeated one.
func ValidateRequest(req *InferRequest, md *ModelMetadata) error {
	for i := range req.Inputs {
		t := &req.Inputs[i]
		if hasInput(req.Inputs[:i], t.Name) {
			return Errorf(KindInvalidArgument, "duplicate input %q", t.Name)
		}
		m := md.Input(t.Name)
		if m == nil {
			return Errorf(KindInvalidArgument, "unknown input %q; model %q %s", t.Name, md.Name, listNames("inputs", len(md.Inputs), func(i int) string { return md.Inputs[i].Name }))
		}
		if !t.Datatype.Valid() {
			return Errorf(KindInvalidArgument, "input %q: invalid datatype %s", t.Name, t.Datatype)
		}
		if t.Datatype != m.Datatype {
			return Errorf(KindInvalidArgument, "input %q: datatype %s, model expects %s", t.Name, t.Datatype, m.Datatype)
		}
		for _, d := range t.Shape {
			if d < 0 {
				return Errorf(KindInvalidArgument, "input %q: shape %s has a negative dimension", t.Name, FormatShape(t.Shape))
			}
		}
		if !ShapeMatches(t.Shape, m.Shape) {
			return Errorf(KindInvalidArgument, "input %q: shape %s, model expects %s", t.Name, FormatShape(t.Shape), FormatShape(m.Shape))
		}
		if err := CheckData(t); err != nil {
			return err
		}
	}
	// Every request input is now a distinct input of md, so when the counts
	// agree none can be missing.
	if len(req.Inputs) != len(md.Inputs) {
		for i := range md.Inputs {
			if req.Input(md.Inputs[i].Name) == nil {
				return Errorf(KindInvalidArgument, "missing input %q", md.Inputs[i].Name)
			}
		}
	}
	for i := range req.Outputs {
		o := &req.Outputs[i]
		for j := range i {
			if req.Outputs[j].Name == o.Name {
				return Errorf(KindInvalidArgument, "duplicate output %q", o.Name)
			}
		}
		if md.Output(o.Name) == nil {
			return Errorf(KindInvalidArgument, "unknown output %q; model %q %s", o.Name, md.Name, listNames("outputs", len(md.Outputs), func(i int) string { return md.Outputs[i].Name }))
		}
	}
	return nil
}

// CheckData checks that t.Data holds exactly the elements of t.Shape, which
// has no negative dimension: the error is an *Error of KindInvalidArgument
// naming the input.
func CheckData(t *Tensor) error {
	n := ShapeElements(t.Shape)
	if n < 0 {
		return Errorf(KindInvalidArgument, "input %q: shape %s has too many elements", t.Name, FormatShape(t.Shape))
	}
	if t.Datatype == BYTES {
		got, err := CountBytesElements(t.Data)
		if err != nil {
			return Errorf(KindInvalidArgument, "input %q: %s", t.Name, Message(err))
		}
		if got != n {
			return Errorf(KindInvalidArgument, "input %q: data has %d elements, shape %s needs %d", t.Name, got, FormatShape(t.Shape), n)
		}
		return nil
	}
	size := int64(t.Datatype.Size())
	if l := int64(len(t.Data)); l%size != 0 || l/size != n {
		if n > (1<<63-1)/size {
			return Errorf(KindInvalidArgument, "input %q: shape %s of %s is too large", t.Name, FormatShape(t.Shape), t.Datatype)
		}
		return Errorf(KindInvalidArgument, "input %q: data has %d bytes, shape %s of %s needs %d", t.Name, l, FormatShape(t.Shape), t.Datatype, n*size)
	}
	return nil
}

func hasInput(ts []Tensor, name string) bool {
	for i := range ts {
		if ts[i].Name == name {
			return true
		}
	}
	return false
}

// ShapeMatches reports whether shape has the rank of want and each of its
// fixed dimensions; a negative dimension in want (as in model metadata)
// matches any size.
func ShapeMatches(shape, want []int64) bool {
	if len(shape) != len(want) {
		return false
	}
	for i, d := range want {
		if d >= 0 && shape[i] != d {
			return false
		}
	}
	return true
}

// listNames returns `has inputs "a", "b"`, or `has no inputs`.
func listNames(what string, n int, name func(int) string) string {
	if n == 0 {
		return "has no " + what
	}
	var b strings.Builder
	b.WriteString("has ")
	b.WriteString(what)
	b.WriteByte(' ')
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(name(i)))
	}
	return b.String()
}

// FormatShape prints a shape as "[2,3]", as OIP messages write it.
func FormatShape(shape []int64) string {
	b := make([]byte, 0, 2+4*len(shape))
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return string(append(b, ']'))
}

// ErrNotBatchable is wrapped by the error BatchSize returns when the model's
// metadata gives some tensor no variable first dimension, so that a caller
// can tell "do not batch this model" from a bad request with errors.Is.
var ErrNotBatchable = errors.New("model does not batch")

// BatchSize returns the batch size of req: the first dimension its inputs
// share. md must give every input and every output -1 (any negative value)
// as its first dimension, since a batcher concatenates inputs and splits
// outputs along it; otherwise the error is an *Error of KindInternal that
// wraps ErrNotBatchable, since it is the configuration and not the request
// that is at fault.
//
// A request with no inputs, an input with no dimensions or a negative first
// dimension, or inputs that disagree on the first dimension is an *Error of
// KindInvalidArgument naming the input. BatchSize does not otherwise
// validate req; call ValidateRequest first.
func BatchSize(req *InferRequest, md *ModelMetadata) (int64, error) {
	if len(md.Inputs) == 0 {
		return 0, &Error{Kind: KindInternal, Msg: "model " + strconv.Quote(md.Name) + " has no inputs", Err: ErrNotBatchable}
	}
	for k, ts := range [2][]TensorMetadata{md.Inputs, md.Outputs} {
		for i := range ts {
			if s := ts[i].Shape; len(s) == 0 || s[0] >= 0 {
				return 0, &Error{
					Kind: KindInternal,
					Msg:  "model " + strconv.Quote(md.Name) + ": " + [2]string{"input ", "output "}[k] + strconv.Quote(ts[i].Name) + " has shape " + FormatShape(s) + " with no variable first dimension",
					Err:  ErrNotBatchable,
				}
			}
		}
	}
	return RequestBatchSize(req)
}

// RequestBatchSize returns the first dimension req's inputs share. A
// request with no inputs, an input with no dimensions or a negative first
// dimension, or inputs that disagree on it is an *Error of
// KindInvalidArgument naming the input.
func RequestBatchSize(req *InferRequest) (int64, error) {
	if len(req.Inputs) == 0 {
		return 0, Errorf(KindInvalidArgument, "request has no inputs")
	}
	var batch int64
	for i := range req.Inputs {
		t := &req.Inputs[i]
		if len(t.Shape) == 0 {
			return 0, Errorf(KindInvalidArgument, "input %q: shape [] has no batch dimension", t.Name)
		}
		b := t.Shape[0]
		if b < 0 {
			return 0, Errorf(KindInvalidArgument, "input %q: negative batch size %d", t.Name, b)
		}
		if i == 0 {
			batch = b
		} else if b != batch {
			return 0, Errorf(KindInvalidArgument, "input %q: batch size %d, input %q has %d", t.Name, b, req.Inputs[0].Name, batch)
		}
	}
	return batch, nil
}

// CountBytesElements returns the number of elements in data, the canonical
// form of a BYTES tensor: each element a 4-byte little-endian length followed
// by that many bytes. A buffer that ends inside a length prefix or inside an
// element is an *Error of KindInvalidArgument saying which element and where;
// callers add the tensor's name. An empty buffer has zero elements.
func CountBytesElements(data []byte) (int64, error) {
	n, off, ok := walkBytes(data)
	if ok {
		return n, nil
	}
	left := len(data) - off
	if left < 4 {
		return n, Errorf(KindInvalidArgument, "BYTES element %d at byte %d: length prefix truncated, %d of 4 bytes", n, off, left)
	}
	l := binary.LittleEndian.Uint32(data[off:])
	return n, Errorf(KindInvalidArgument, "BYTES element %d at byte %d: length %d runs past the end, %d bytes left", n, off, l, left-4)
}

// walkBytes walks the length-prefixed elements of data. It returns the
// number of complete elements and, when data is malformed, false and the
// offset of the element that does not fit.
func walkBytes(data []byte) (n int64, off int, ok bool) {
	for off < len(data) {
		if len(data)-off < 4 {
			return n, off, false
		}
		l := uint64(binary.LittleEndian.Uint32(data[off:]))
		if l > uint64(len(data)-off-4) {
			return n, off, false
		}
		off += 4 + int(l)
		n++
	}
	return n, off, true
}
