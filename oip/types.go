package oip

// ParamKind says which field of a Parameter holds its value.
type ParamKind uint8

// The parameter kinds: the spec's three, and the two Triton adds.
const (
	ParamString ParamKind = iota + 1
	ParamInt64
	ParamBool
	ParamDouble
	ParamUint64
)

// Parameter is one named OIP parameter. Exactly the field that Kind names
// holds the value.
type Parameter struct {
	Key    string
	Kind   ParamKind
	String string
	Int64  int64
	Bool   bool
	Double float64
	Uint64 uint64
}

// Parameters is an ordered list of parameters. A slice, not a map: requests
// carry few parameters, a slice keeps their order for echoing, and it costs
// one allocation where a map costs several.
type Parameters []Parameter

// Get returns the parameter named key.
func (ps Parameters) Get(key string) (Parameter, bool) {
	for _, p := range ps {
		if p.Key == key {
			return p, true
		}
	}
	return Parameter{}, false
}

// Int64 returns the integer value of key, accepting an int64, uint64 or an
// integral double (JSON numbers arrive as any of them).
func (ps Parameters) Int64(key string) (int64, bool) {
	p, ok := ps.Get(key)
	if !ok {
		return 0, false
	}
	switch p.Kind {
	case ParamInt64:
		return p.Int64, true
	case ParamUint64:
		if p.Uint64 <= 1<<63-1 {
			return int64(p.Uint64), true
		}
	case ParamDouble:
		if p.Double == float64(int64(p.Double)) {
			return int64(p.Double), true
		}
	}
	return 0, false
}

// Bool returns the boolean value of key.
func (ps Parameters) Bool(key string) (value, ok bool) {
	p, found := ps.Get(key)
	if !found || p.Kind != ParamBool {
		return false, false
	}
	return p.Bool, true
}

// Set replaces or appends a parameter and returns the list.
func (ps Parameters) Set(p Parameter) Parameters {
	for i := range ps {
		if ps[i].Key == p.Key {
			ps[i] = p
			return ps
		}
	}
	return append(ps, p)
}

// Delete removes the parameter named key and returns the list.
func (ps Parameters) Delete(key string) Parameters {
	for i := range ps {
		if ps[i].Key == key {
			return append(ps[:i], ps[i+1:]...)
		}
	}
	return ps
}

// Names of parameters defined by Triton's extensions that infergate acts on.
const (
	ParamBinaryDataSize   = "binary_data_size"
	ParamBinaryData       = "binary_data"
	ParamBinaryDataOutput = "binary_data_output"
	ParamPriority         = "priority"
	ParamTimeout          = "timeout"
)

// Tensor is an input or output tensor. Data holds the elements in the
// canonical form described in the package comment; for BYTES each element is
// a 4-byte little-endian length followed by that many bytes.
type Tensor struct {
	Name       string
	Datatype   DataType
	Shape      []int64
	Parameters Parameters
	Data       []byte
}

// ShapeElements returns the product of shape (1 for a scalar), or -1 when a
// dimension is negative or the product overflows int64.
func ShapeElements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > (1<<62)/d {
			return -1
		}
		n *= d
	}
	return n
}

// RequestedOutput names an output the client asks for.
type RequestedOutput struct {
	Name       string
	Parameters Parameters
}

// InferRequest is an OIP inference request. ModelName and ModelVersion come
// from the URL over REST and from the message over gRPC.
type InferRequest struct {
	ModelName    string
	ModelVersion string
	ID           string
	Parameters   Parameters
	Inputs       []Tensor
	Outputs      []RequestedOutput
}

// Input returns the input named name, or nil.
func (r *InferRequest) Input(name string) *Tensor {
	for i := range r.Inputs {
		if r.Inputs[i].Name == name {
			return &r.Inputs[i]
		}
	}
	return nil
}

// BinaryOutput reports whether the output named name should be returned in
// binary form under Triton's extension: the output's own "binary_data"
// parameter wins over the request's "binary_data_output".
func (r *InferRequest) BinaryOutput(name string) bool {
	for i := range r.Outputs {
		if r.Outputs[i].Name == name {
			if v, ok := r.Outputs[i].Parameters.Bool(ParamBinaryData); ok {
				return v
			}
			break
		}
	}
	v, _ := r.Parameters.Bool(ParamBinaryDataOutput)
	return v
}

// Reset clears r for reuse, keeping the capacity of its slices.
func (r *InferRequest) Reset() {
	*r = InferRequest{Inputs: r.Inputs[:0], Outputs: r.Outputs[:0], Parameters: r.Parameters[:0]}
}

// InferResponse is an OIP inference response.
type InferResponse struct {
	ModelName    string
	ModelVersion string
	ID           string
	Parameters   Parameters
	Outputs      []Tensor
}

// Output returns the output named name, or nil.
func (r *InferResponse) Output(name string) *Tensor {
	for i := range r.Outputs {
		if r.Outputs[i].Name == name {
			return &r.Outputs[i]
		}
	}
	return nil
}

// Reset clears r for reuse, keeping the capacity of its slices.
func (r *InferResponse) Reset() {
	*r = InferResponse{Outputs: r.Outputs[:0], Parameters: r.Parameters[:0]}
}

// ServerMetadata is the answer to GET /v2.
type ServerMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

// TensorMetadata describes one input or output of a model; -1 in Shape is a
// dimension of any size.
type TensorMetadata struct {
	Name     string   `json:"name"`
	Datatype DataType `json:"datatype"`
	Shape    []int64  `json:"shape"`
}

// ModelMetadata is the answer to GET /v2/models/{m}.
type ModelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions,omitempty"`
	Platform string           `json:"platform"`
	Inputs   []TensorMetadata `json:"inputs"`
	Outputs  []TensorMetadata `json:"outputs"`
}

// Input returns the metadata of the input named name, or nil.
func (m *ModelMetadata) Input(name string) *TensorMetadata {
	for i := range m.Inputs {
		if m.Inputs[i].Name == name {
			return &m.Inputs[i]
		}
	}
	return nil
}

// Output returns the metadata of the output named name, or nil.
func (m *ModelMetadata) Output(name string) *TensorMetadata {
	for i := range m.Outputs {
		if m.Outputs[i].Name == name {
			return &m.Outputs[i]
		}
	}
	return nil
}
