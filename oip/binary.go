package oip

import (
	"encoding/binary"
	"strconv"
)

// This file holds the framing of Triton's binary tensor data extension: the
// split of a body into its JSON header and binary part, the attaching of
// binary data to the tensors that announce it, and the checks that data in
// canonical form fits its shape.

// newDecoder splits body by headerLen as DecodeInferRequest documents.
func newDecoder(body []byte, headerLen int) (decoder, error) {
	switch {
	case headerLen < 0:
		if headerLen != -1 {
			return decoder{}, Errorf(KindInvalidArgument, "invalid Inference-Header-Content-Length %d", headerLen)
		}
		return decoder{buf: body}, nil
	case headerLen == 0:
		return decoder{}, Errorf(KindInvalidArgument,
			"Inference-Header-Content-Length 0 (a raw binary request) is not supported here: it needs the model's metadata")
	case headerLen > len(body):
		return decoder{}, Errorf(KindInvalidArgument,
			"Inference-Header-Content-Length %d exceeds the body length %d", headerLen, len(body))
	}
	return decoder{buf: body[:headerLen], bin: body[headerLen:], hasBin: true}, nil
}

// finish checks that nothing follows the JSON value and that every byte of
// the binary part was claimed by a tensor.
func (d *decoder) finish() error {
	d.ws()
	if d.pos < len(d.buf) {
		return d.syntaxErrorAt(d.pos, "unexpected "+quoteByte(d.buf[d.pos])+" after the top-level value")
	}
	if left := len(d.bin) - d.binPos; left > 0 {
		return Errorf(KindInvalidArgument,
			"%d bytes of binary data follow the JSON header but no tensor claims them with binary_data_size", left)
	}
	return nil
}

// finishTensor attaches a tensor's binary data, if it announced some, and
// checks that its data fits its shape. n is the number of elements the
// shape needs, count the number of JSON elements read when hasData.
func (d *decoder) finishTensor(t *Tensor, tc *tensorCtx, hasData bool, count, n int64) error {
	p, hasSize := t.Parameters.Get(ParamBinaryDataSize)
	if !hasSize {
		if !hasData {
			return tc.errorf(`missing "data" (and no %s parameter)`, ParamBinaryDataSize)
		}
		if count != n {
			return tc.errorf("data has %d elements, shape %s needs %d", count, FormatShape(t.Shape), n)
		}
		return nil
	}
	if hasData {
		return tc.errorf(`has both "data" and a %s parameter`, ParamBinaryDataSize)
	}
	size, ok := Parameters{p}.Int64(ParamBinaryDataSize)
	if !ok || size < 0 {
		return tc.errorf("%s must be a non-negative integer", ParamBinaryDataSize)
	}
	if !d.hasBin {
		return tc.errorf("%s %d but the body has no binary part (no Inference-Header-Content-Length)", ParamBinaryDataSize, size)
	}
	if left := len(d.bin) - d.binPos; size > int64(left) {
		return tc.errorf("%s %d exceeds the %d bytes left in the body", ParamBinaryDataSize, size, left)
	}
	chunk := d.bin[d.binPos : d.binPos+int(size)]
	if err := checkCanonical(t.Datatype, t.Shape, n, chunk); err != nil {
		return tc.errorf("%s %d: %s", ParamBinaryDataSize, size, err.(*Error).Msg)
	}
	if t.Datatype == BOOL {
		for i, b := range chunk {
			if b > 1 {
				return tc.errorf("BOOL element %d is %d, want 0 or 1", i, b)
			}
		}
	}
	t.Data = append(t.Data[:0], chunk...)
	d.binPos += int(size)
	t.Parameters = t.Parameters.Delete(ParamBinaryDataSize)
	return nil
}

// checkCanonical checks that data, in canonical form, holds exactly the n
// elements of shape at datatype dt.
func checkCanonical(dt DataType, shape []int64, n int64, data []byte) error {
	if dt == BYTES {
		return checkBytes(data, n)
	}
	size := int64(dt.Size())
	if n > int64(len(data))/size || n*size != int64(len(data)) {
		return Errorf(KindInvalidArgument, "data is %d bytes, shape %s of %s needs %s",
			len(data), FormatShape(shape), dt, bytesNeeded(n, size))
	}
	return nil
}

func bytesNeeded(n, size int64) string {
	if n > (1<<63-1)/size {
		return "more than 2^63"
	}
	return strconv.FormatInt(n*size, 10)
}

// checkBytes checks that data is exactly n length-prefixed BYTES elements.
func checkBytes(data []byte, n int64) error {
	var i int64
	for off := 0; off < len(data); i++ {
		if len(data)-off < 4 {
			return Errorf(KindInvalidArgument, "BYTES element %d: %d bytes left, too few for its 4-byte length", i, len(data)-off)
		}
		l := binary.LittleEndian.Uint32(data[off:])
		off += 4
		if uint64(l) > uint64(len(data)-off) {
			return Errorf(KindInvalidArgument, "BYTES element %d: length %d exceeds the %d bytes left", i, l, len(data)-off)
		}
		off += int(l)
	}
	if i != n {
		return Errorf(KindInvalidArgument, "data has %d BYTES elements, shape needs %d", i, n)
	}
	return nil
}
