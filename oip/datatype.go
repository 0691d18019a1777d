package oip

import "fmt"

// DataType is an OIP tensor datatype. The zero value is Invalid.
type DataType uint8

// The OIP datatypes. BF16 and FP16 have no JSON form in the spec; infergate
// accepts and emits them as JSON numbers as a convenience, and as raw bytes
// everywhere else.
const (
	Invalid DataType = iota
	BOOL
	UINT8
	UINT16
	UINT32
	UINT64
	INT8
	INT16
	INT32
	INT64
	FP16
	FP32
	FP64
	BYTES
	BF16
)

var datatypeNames = [...]string{
	Invalid: "INVALID",
	BOOL:    "BOOL",
	UINT8:   "UINT8",
	UINT16:  "UINT16",
	UINT32:  "UINT32",
	UINT64:  "UINT64",
	INT8:    "INT8",
	INT16:   "INT16",
	INT32:   "INT32",
	INT64:   "INT64",
	FP16:    "FP16",
	FP32:    "FP32",
	FP64:    "FP64",
	BYTES:   "BYTES",
	BF16:    "BF16",
}

var datatypeSizes = [...]int{
	BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8,
	INT8: 1, INT16: 2, INT32: 4, INT64: 8,
	FP16: 2, FP32: 4, FP64: 8, BYTES: 0, BF16: 2,
}

// String returns the protocol's name of d, such as "FP32".
func (d DataType) String() string {
	if int(d) < len(datatypeNames) {
		return datatypeNames[d]
	}
	return fmt.Sprintf("DataType(%d)", uint8(d))
}

// Size returns the width in bytes of one element of d, or 0 for BYTES and
// Invalid, whose elements have no fixed width.
func (d DataType) Size() int {
	if int(d) < len(datatypeSizes) {
		return datatypeSizes[d]
	}
	return 0
}

// Valid reports whether d is one of the protocol's datatypes.
func (d DataType) Valid() bool { return d > Invalid && d <= BF16 }

// ParseDataType returns the DataType named s (case-sensitive, as the
// protocol says), or Invalid and false.
func ParseDataType(s string) (DataType, bool) {
	// A switch on the string compiles to a length-then-compare search and
	// allocates nothing, which matters on the decode path.
	switch s {
	case "BOOL":
		return BOOL, true
	case "UINT8":
		return UINT8, true
	case "UINT16":
		return UINT16, true
	case "UINT32":
		return UINT32, true
	case "UINT64":
		return UINT64, true
	case "INT8":
		return INT8, true
	case "INT16":
		return INT16, true
	case "INT32":
		return INT32, true
	case "INT64":
		return INT64, true
	case "FP16":
		return FP16, true
	case "FP32":
		return FP32, true
	case "FP64":
		return FP64, true
	case "BYTES":
		return BYTES, true
	case "BF16":
		return BF16, true
	}
	return Invalid, false
}

// MarshalText implements encoding.TextMarshaler so metadata types encode
// with the protocol's names.
func (d DataType) MarshalText() ([]byte, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("oip: invalid datatype %d", uint8(d))
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DataType) UnmarshalText(b []byte) error {
	v, ok := ParseDataType(string(b))
	if !ok {
		return fmt.Errorf("oip: unknown datatype %q", b)
	}
	*d = v
	return nil
}
