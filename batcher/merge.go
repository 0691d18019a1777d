package batcher

import (
	"encoding/binary"
	"math"

	"github.com/infergate/infergate/oip"
)

// Parameters the batcher reads or that must not travel in a merged request.
const (
	paramSequenceID    = "sequence_id"
	paramSequenceStart = "sequence_start"
	paramSequenceEnd   = "sequence_end"
	paramShmRegion     = "shared_memory_region"
	paramShmByteSize   = "shared_memory_byte_size"
	paramShmOffset     = "shared_memory_offset"
)

// The compatibility key. Two requests may share a batch exactly when their
// keys are equal. The key holds, with every string length-prefixed so that
// no two different requests encode alike:
//
//   - the model name and version;
//   - the request's parameters, sorted by key, except "priority" and
//     "timeout" (scheduling, read by the batcher) and "binary_data_output"
//     (the encoding of the caller's own response); every other parameter,
//     known or not, is kept, since the batcher cannot tell whether it
//     changes the result;
//   - the inputs sorted by name, each with its datatype, its rank, its
//     dimensions after the first, and its parameters sorted by key except
//     "binary_data_size" (framing only);
//   - the requested outputs sorted by name, each with its parameters sorted
//     by key except "binary_data" (encoding only); "classification" and any
//     other parameter are kept. A request that names no outputs differs from
//     one that names them all.
//
// The request's id is not part of the key: each caller gets its own back.
//
// Some requests are never merged, because merging them would be wrong
// rather than merely less efficient: those carrying Triton's sequence
// parameters ("sequence_id", "sequence_start", "sequence_end": the runtime
// keeps state per sequence, and a merged request has one sequence), and
// those using shared memory ("shared_memory_region", "_byte_size",
// "_offset" on an input or requested output: their data is not in the
// request). They are sent alone, unchanged; see unbatchable.

func requestKeyExcluded(k string) bool {
	return k == oip.ParamPriority || k == oip.ParamTimeout || k == oip.ParamBinaryDataOutput
}

func inputKeyExcluded(k string) bool  { return k == oip.ParamBinaryDataSize }
func outputKeyExcluded(k string) bool { return k == oip.ParamBinaryData }

func isShm(k string) bool {
	return k == paramShmRegion || k == paramShmByteSize || k == paramShmOffset
}

// unbatchable reports whether req must be sent alone, unchanged.
func unbatchable(req *oip.InferRequest) bool {
	for _, p := range req.Parameters {
		if p.Key == paramSequenceID || p.Key == paramSequenceStart || p.Key == paramSequenceEnd {
			return true
		}
	}
	for i := range req.Inputs {
		for _, p := range req.Inputs[i].Parameters {
			if isShm(p.Key) {
				return true
			}
		}
	}
	for i := range req.Outputs {
		for _, p := range req.Outputs[i].Parameters {
			if isShm(p.Key) {
				return true
			}
		}
	}
	return false
}

// checkRequest returns the batch size of req, the dimension 0 every input
// shares, after checking that its inputs can be concatenated along it: at
// least one input, names not repeated, valid datatypes, a first dimension
// that agrees, no negative dimension, and data that holds exactly the
// shape's elements. A request that fails would corrupt the rows of every
// other request in its batch, so each failure is an *oip.Error of
// KindInvalidArgument naming the input.
func checkRequest(req *oip.InferRequest) (int64, error) {
	rows, err := oip.RequestBatchSize(req)
	if err != nil {
		return 0, err
	}
	for i := range req.Inputs {
		t := &req.Inputs[i]
		for j := range i {
			if req.Inputs[j].Name == t.Name {
				return 0, oip.Errorf(oip.KindInvalidArgument, "duplicate input %q", t.Name)
			}
		}
		if !t.Datatype.Valid() {
			return 0, oip.Errorf(oip.KindInvalidArgument, "input %q: invalid datatype %s", t.Name, t.Datatype)
		}
		if oip.ShapeElements(t.Shape) < 0 {
			return 0, oip.Errorf(oip.KindInvalidArgument, "input %q: shape %s has a negative dimension or too many elements", t.Name, oip.FormatShape(t.Shape))
		}
		if err := oip.CheckData(t); err != nil {
			return 0, err
		}
	}
	return rows, nil
}

// appendKey appends the compatibility key of req, which checkRequest has
// accepted, to dst.
func appendKey(dst []byte, req *oip.InferRequest) []byte {
	dst = appendString(dst, req.ModelName)
	dst = appendString(dst, req.ModelVersion)
	dst = appendParams(dst, req.Parameters, requestKeyExcluded)

	var buf [8]int
	idx := sortedIndex(buf[:0], len(req.Inputs), func(i int) string { return req.Inputs[i].Name })
	dst = binary.AppendUvarint(dst, uint64(len(idx)))
	for _, i := range idx {
		t := &req.Inputs[i]
		dst = appendString(dst, t.Name)
		dst = append(dst, byte(t.Datatype))
		dst = binary.AppendUvarint(dst, uint64(len(t.Shape)))
		for _, d := range t.Shape[1:] {
			dst = binary.AppendUvarint(dst, uint64(d))
		}
		dst = appendParams(dst, t.Parameters, inputKeyExcluded)
	}

	idx = sortedIndex(buf[:0], len(req.Outputs), func(i int) string { return req.Outputs[i].Name })
	dst = binary.AppendUvarint(dst, uint64(len(idx)))
	for _, i := range idx {
		o := &req.Outputs[i]
		dst = appendString(dst, o.Name)
		dst = appendParams(dst, o.Parameters, outputKeyExcluded)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendParams appends the parameters of ps that excluded does not name,
// sorted by key, each with its kind and value.
func appendParams(dst []byte, ps oip.Parameters, excluded func(string) bool) []byte {
	var buf [8]int
	idx := buf[:0]
	for i := range ps {
		if !excluded(ps[i].Key) {
			idx = append(idx, i)
		}
	}
	sortIdx(idx, func(i int) string { return ps[i].Key })
	dst = binary.AppendUvarint(dst, uint64(len(idx)))
	for _, i := range idx {
		p := &ps[i]
		dst = appendString(dst, p.Key)
		dst = append(dst, byte(p.Kind))
		switch p.Kind {
		case oip.ParamString:
			dst = appendString(dst, p.String)
		case oip.ParamInt64:
			dst = binary.AppendVarint(dst, p.Int64)
		case oip.ParamBool:
			if p.Bool {
				dst = append(dst, 1)
			} else {
				dst = append(dst, 0)
			}
		case oip.ParamDouble:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.Double))
		case oip.ParamUint64:
			dst = binary.AppendUvarint(dst, p.Uint64)
		}
	}
	return dst
}

// sortedIndex returns 0..n-1 in dst, ordered by name.
func sortedIndex(dst []int, n int, name func(int) string) []int {
	for i := range n {
		dst = append(dst, i)
	}
	sortIdx(dst, name)
	return dst
}

// sortIdx sorts idx by name with an insertion sort: the lists are a few
// tensors or parameters long, and sort.Slice would allocate.
func sortIdx(idx []int, name func(int) string) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && name(idx[j]) < name(idx[j-1]); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
}

// without returns a copy of ps without the parameters excluded names, or
// nil when none is left. It copies even when it drops nothing: a merged
// request or a split response must not share a list with a caller, who
// may reuse its request as soon as Submit returns.
func without(ps oip.Parameters, excluded func(string) bool) oip.Parameters {
	var out oip.Parameters
	for _, p := range ps {
		if !excluded(p.Key) {
			if out == nil {
				out = make(oip.Parameters, 0, len(ps))
			}
			out = append(out, p)
		}
	}
	return out
}

// inputOf returns the input of req named name, looking first at index i,
// where it is when req lists its inputs in the same order as the first
// request of the batch.
func inputOf(req *oip.InferRequest, i int, name string) *oip.Tensor {
	if i < len(req.Inputs) && req.Inputs[i].Name == name {
		return &req.Inputs[i]
	}
	return req.Input(name)
}

// Merge returns one request that carries the rows of reqs, in order, along
// dimension 0. The requests must be compatible (equal compatibility keys,
// see the package comment) and each must have passed the batcher's checks;
// rows is the sum of their batch sizes.
//
// Each input's data is the concatenation of the requests' canonical bytes,
// which is right for every datatype, BYTES included, because BYTES elements
// carry their own length prefixes. The merged request has no id, the first
// request's model, inputs order and requested outputs, and the parameters
// the requests share, less "priority", "timeout", "binary_data_output",
// "binary_data_size" and "binary_data", which are about one caller's
// scheduling or encoding. It shares no memory with reqs (strings aside),
// so the callers may reuse their requests once it returns.
func merge(reqs []*oip.InferRequest, rows int64) *oip.InferRequest {
	first := reqs[0]
	m := &oip.InferRequest{
		ModelName:    first.ModelName,
		ModelVersion: first.ModelVersion,
		Parameters:   without(first.Parameters, requestKeyExcluded),
		Inputs:       make([]oip.Tensor, len(first.Inputs)),
	}
	dims := 0
	for i := range first.Inputs {
		dims += len(first.Inputs[i].Shape)
	}
	arena := make([]int64, dims)
	for i := range first.Inputs {
		in := &first.Inputs[i]
		size := 0
		for _, r := range reqs {
			size += len(inputOf(r, i, in.Name).Data)
		}
		data := make([]byte, 0, size)
		for _, r := range reqs {
			data = append(data, inputOf(r, i, in.Name).Data...)
		}
		shape := arena[:len(in.Shape):len(in.Shape)]
		arena = arena[len(in.Shape):]
		shape[0] = rows
		copy(shape[1:], in.Shape[1:])
		m.Inputs[i] = oip.Tensor{
			Name:       in.Name,
			Datatype:   in.Datatype,
			Shape:      shape,
			Parameters: without(in.Parameters, inputKeyExcluded),
			Data:       data,
		}
	}
	if len(first.Outputs) > 0 {
		m.Outputs = make([]oip.RequestedOutput, len(first.Outputs))
		for i, o := range first.Outputs {
			m.Outputs[i] = oip.RequestedOutput{Name: o.Name, Parameters: without(o.Parameters, outputKeyExcluded)}
		}
	}
	return m
}

// checkResponse checks that resp answers a merged request of rows rows
// that asked for want (nil: any outputs): every output has a valid
// datatype, dimension 0 equal to rows, and data that fits its shape, and
// every wanted output is present. A failure is an *oip.Error of
// KindInternal, since the runtime is at fault, and fails the whole batch
// rather than give anyone rows that may not be theirs.
func checkResponse(resp *oip.InferResponse, rows int64, want []oip.RequestedOutput, model string) error {
	if resp == nil {
		return oip.Errorf(oip.KindInternal, "model %q: runtime returned no response and no error", model)
	}
	for i := range resp.Outputs {
		t := &resp.Outputs[i]
		if !t.Datatype.Valid() {
			return oip.Errorf(oip.KindInternal, "model %q: runtime returned output %q with invalid datatype %s", model, t.Name, t.Datatype)
		}
		if len(t.Shape) == 0 {
			return oip.Errorf(oip.KindInternal, "model %q: runtime returned output %q with shape [] for a batch of %d", model, t.Name, rows)
		}
		if t.Shape[0] != rows {
			return oip.Errorf(oip.KindInternal, "model %q: runtime returned %d rows for a batch of %d in output %q", model, t.Shape[0], rows, t.Name)
		}
		n := oip.ShapeElements(t.Shape)
		if n < 0 {
			return oip.Errorf(oip.KindInternal, "model %q: runtime returned output %q with shape %v", model, t.Name, t.Shape)
		}
		if t.Datatype == oip.BYTES {
			got, err := oip.CountBytesElements(t.Data)
			if err != nil || got != n {
				return oip.Errorf(oip.KindInternal, "model %q: runtime returned output %q whose BYTES data does not hold the %d elements of shape %v", model, t.Name, n, t.Shape)
			}
		} else if size := int64(t.Datatype.Size()); int64(len(t.Data)) != n*size {
			return oip.Errorf(oip.KindInternal, "model %q: runtime returned output %q with %d bytes, shape %v of %s needs %d", model, t.Name, len(t.Data), t.Shape, t.Datatype, n*size)
		}
	}
	for _, o := range want {
		if resp.Output(o.Name) == nil {
			return oip.Errorf(oip.KindInternal, "model %q: runtime returned no output %q for a batch of %d", model, o.Name, rows)
		}
	}
	return nil
}

// split returns one response per request of a merged batch, cutting each
// output of resp, which checkResponse has accepted, along dimension 0 by
// the requests' batch sizes, given in rows. Each response has the
// runtime's model name and version and parameters, its own request's id
// (from ids), and every output of resp in resp's order with that request's
// rows.
//
// Output data is not copied: each response's Data is a sub-slice of resp's
// whose capacity is capped at its own rows, so a caller may append to it or
// write its own rows without touching another caller's. Shapes and
// parameter lists are each response's own.
func split(resp *oip.InferResponse, ids []string, rows []int64) []*oip.InferResponse {
	out := make([]*oip.InferResponse, len(ids))
	dims := 0
	for i := range resp.Outputs {
		dims += len(resp.Outputs[i].Shape)
	}
	// One allocation each for the responses, their tensors and shapes.
	resps := make([]oip.InferResponse, len(ids))
	tensors := make([]oip.Tensor, len(ids)*len(resp.Outputs))
	arena := make([]int64, len(ids)*dims)
	for k, id := range ids {
		resps[k] = oip.InferResponse{
			ModelName:    resp.ModelName,
			ModelVersion: resp.ModelVersion,
			ID:           id,
			Parameters:   without(resp.Parameters, noParam),
			Outputs:      tensors[k*len(resp.Outputs) : (k+1)*len(resp.Outputs) : (k+1)*len(resp.Outputs)],
		}
		out[k] = &resps[k]
	}
	var bounds []int // byte offsets of each request's rows, reused per output
	for j := range resp.Outputs {
		t := &resp.Outputs[j]
		perRow := oip.ShapeElements(t.Shape[1:])
		bounds = rowBounds(bounds[:0], t, perRow, rows)
		for k := range ids {
			shape := arena[:len(t.Shape):len(t.Shape)]
			arena = arena[len(t.Shape):]
			shape[0] = rows[k]
			copy(shape[1:], t.Shape[1:])
			lo, hi := bounds[k], bounds[k+1]
			out[k].Outputs[j] = oip.Tensor{
				Name:       t.Name,
				Datatype:   t.Datatype,
				Shape:      shape,
				Parameters: without(t.Parameters, inputKeyExcluded), // binary_data_size
				Data:       t.Data[lo:hi:hi],
			}
		}
	}
	return out
}

// rowBounds appends to dst the byte offset in t.Data at which each group of
// rows starts, and the end: len(rows)+1 offsets. Fixed-width data is cut by
// arithmetic; BYTES data is walked element by element.
func rowBounds(dst []int, t *oip.Tensor, perRow int64, rows []int64) []int {
	dst = append(dst, 0)
	if t.Datatype != oip.BYTES {
		rowBytes := int(perRow) * t.Datatype.Size()
		off := 0
		for _, r := range rows {
			off += int(r) * rowBytes
			dst = append(dst, off)
		}
		return dst
	}
	off := 0
	for _, r := range rows {
		for range r * perRow {
			off += 4 + int(binary.LittleEndian.Uint32(t.Data[off:]))
		}
		dst = append(dst, off)
	}
	return dst
}

func noParam(string) bool { return false }
