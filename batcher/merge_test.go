package batcher

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/oip"
)

var update = flag.Bool("update", false, "rewrite the computed parts of the golden files under testdata/merge_split")

// allDatatypes are the datatypes every merge and split test covers.
var allDatatypes = []oip.DataType{
	oip.BOOL, oip.UINT8, oip.UINT16, oip.UINT32, oip.UINT64, oip.INT8, oip.INT16,
	oip.INT32, oip.INT64, oip.FP16, oip.FP32, oip.FP64, oip.BYTES, oip.BF16,
}

// golden is a file under testdata/merge_split. Requests (OIP JSON request
// bodies, one per line) are the input and are written by hand; the rest is
// what merge, the echo model and split make of them, rewritten by -update.
type golden struct {
	Requests  []json.RawMessage `json:"requests"`
	Merged    json.RawMessage   `json:"merged"`
	MergedHex map[string]string `json:"merged_hex"`
	Response  json.RawMessage   `json:"response"`
	Split     []json.RawMessage `json:"split"`
}

func goldenPath(dt oip.DataType) string {
	return filepath.Join("testdata", "merge_split", strings.ToLower(dt.String())+".json")
}

// readGolden reads the golden file of dt and decodes its requests.
func readGolden(t *testing.T, dt oip.DataType) (*golden, []*oip.InferRequest) {
	t.Helper()
	raw, err := os.ReadFile(goldenPath(dt))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("%s: %v", goldenPath(dt), err)
	}
	reqs := make([]*oip.InferRequest, len(g.Requests))
	for i, body := range g.Requests {
		reqs[i] = &oip.InferRequest{}
		if err := oip.DecodeInferRequest(body, -1, reqs[i]); err != nil {
			t.Fatalf("%s: request %d: %v", goldenPath(dt), i, err)
		}
		reqs[i].ModelName = "m"
	}
	return &g, reqs
}

// mergeAll checks reqs as Submit does, requires them to be compatible, and
// merges them.
func mergeAll(t *testing.T, reqs []*oip.InferRequest) (*oip.InferRequest, []int64, int64) {
	t.Helper()
	rows := make([]int64, len(reqs))
	var total int64
	var key0 string
	for i, r := range reqs {
		n, err := checkRequest(r)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		rows[i] = n
		total += n
		key := string(appendKey(nil, r))
		if i == 0 {
			key0 = key
		} else if key != key0 {
			t.Fatalf("request %d (%q) is not compatible with request 0", i, r.ID)
		}
	}
	return merge(reqs, total), rows, total
}

func TestMergeSplitGolden(t *testing.T) {
	for _, dt := range allDatatypes {
		t.Run(dt.String(), func(t *testing.T) {
			g, reqs := readGolden(t, dt)
			merged, rows, total := mergeAll(t, reqs)
			resp, err := echoModel(merged)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkResponse(resp, total, merged.Outputs, "m"); err != nil {
				t.Fatal(err)
			}
			parts := split(resp, idsOf(reqs), rows)

			// Whatever the golden file says, each caller must get its own
			// x back as y, its own id, and rows numbered from its offset.
			var off int64
			for i, p := range parts {
				r := reqs[i]
				if p.ID != r.ID {
					t.Errorf("caller %d: id %q, want %q", i, p.ID, r.ID)
				}
				y := p.Output("y")
				if y == nil || !bytes.Equal(y.Data, r.Inputs[0].Data) || !cmp.Equal(y.Shape, r.Inputs[0].Shape) {
					t.Errorf("caller %q: y = %+v, want its own x %+v", r.ID, y, r.Inputs[0])
				}
				for k := range rows[i] {
					if got := binary.LittleEndian.Uint64(p.Output("row").Data[8*k:]); got != uint64(off+k) {
						t.Errorf("caller %q: row %d numbered %d upstream, want %d", r.ID, k, got, off+k)
					}
				}
				off += rows[i]
			}

			got := renderGolden(t, g.Requests, merged, resp, parts)
			path := goldenPath(dt)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got); run go test ./batcher -run TestMergeSplitGolden -update:\n%s", path, diff)
			}
		})
	}
}

// renderGolden writes a golden file with one JSON value per line, so that
// diffs show which request or response changed.
func renderGolden(t *testing.T, requests []json.RawMessage, merged *oip.InferRequest, resp *oip.InferResponse, parts []*oip.InferResponse) []byte {
	t.Helper()
	line := func(raw []byte) []byte {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	var out bytes.Buffer
	out.WriteString("{\n\t\"requests\": [\n")
	for i, r := range requests {
		out.WriteString("\t\t")
		out.Write(line(r))
		if i < len(requests)-1 {
			out.WriteByte(',')
		}
		out.WriteByte('\n')
	}
	body, _, err := oip.AppendInferRequest(nil, merged, false)
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("\t],\n\t\"merged\": ")
	out.Write(line(body))
	out.WriteString(",\n\t\"merged_hex\": {")
	for i, in := range merged.Inputs {
		if i > 0 {
			out.WriteString(", ")
		}
		name, _ := json.Marshal(in.Name)
		out.Write(name)
		out.WriteString(": \"" + hex.EncodeToString(in.Data) + "\"")
	}
	body, _, err = oip.AppendInferResponse(nil, resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("},\n\t\"response\": ")
	out.Write(line(body))
	out.WriteString(",\n\t\"split\": [\n")
	for i, p := range parts {
		body, _, err := oip.AppendInferResponse(nil, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("\t\t")
		out.Write(line(body))
		if i < len(parts)-1 {
			out.WriteByte(',')
		}
		out.WriteByte('\n')
	}
	out.WriteString("\t]\n}\n")
	return out.Bytes()
}

// TestMergeEncodings checks that a request merges to the same bytes
// whichever encoding it arrived in: JSON, Triton's binary extension, or
// gRPC (typed contents or raw), since all decode to the canonical form.
func TestMergeEncodings(t *testing.T) {
	encodings := []struct {
		name string
		via  func(t *testing.T, r *oip.InferRequest) *oip.InferRequest
	}{
		{"binary extension", func(t *testing.T, r *oip.InferRequest) *oip.InferRequest {
			body, n, err := oip.AppendInferRequest(nil, r, true)
			if err != nil {
				t.Fatal(err)
			}
			out := &oip.InferRequest{}
			if err := oip.DecodeInferRequest(body, n, out); err != nil {
				t.Fatal(err)
			}
			out.ModelName = r.ModelName
			return out
		}},
		{"gRPC raw", func(t *testing.T, r *oip.InferRequest) *oip.InferRequest {
			out := &oip.InferRequest{}
			if err := oip.RequestFromProto(oip.RequestToProto(r), out); err != nil {
				t.Fatal(err)
			}
			return out
		}},
	}
	for _, dt := range allDatatypes {
		for _, enc := range encodings {
			t.Run(dt.String()+"/"+enc.name, func(t *testing.T) {
				_, reqs := readGolden(t, dt)
				want, _, _ := mergeAll(t, reqs)
				other := make([]*oip.InferRequest, len(reqs))
				for i, r := range reqs {
					other[i] = enc.via(t, r)
				}
				got, _, _ := mergeAll(t, other)
				for i := range want.Inputs {
					w, g := &want.Inputs[i], got.Input(want.Inputs[i].Name)
					if g == nil || !bytes.Equal(w.Data, g.Data) || !cmp.Equal(w.Shape, g.Shape) {
						t.Errorf("input %q merged differently via %s", w.Name, enc.name)
					}
				}
			})
		}
	}
}

func TestSplitDoesNotShareCapacity(t *testing.T) {
	reqs := []*oip.InferRequest{req("a", 2, "a0"), req("b", 2, "b0", "b1")}
	merged := merge(reqs, 3)
	resp, err := echoModel(merged)
	if err != nil {
		t.Fatal(err)
	}
	parts := split(resp, idsOf(reqs), []int64{1, 2})
	before := bytes.Clone(parts[1].Output("y").Data)
	y0 := parts[0].Output("y")
	y0.Data = append(y0.Data, 0xff, 0xff, 0xff, 0xff)
	y0.Shape[0] = 99
	if !bytes.Equal(parts[1].Output("y").Data, before) {
		t.Error("appending to caller 0's output changed caller 1's")
	}
	if parts[1].Output("y").Shape[0] != 2 {
		t.Error("callers share a shape")
	}
	parts[0].Parameters[0].String = "changed"
	if parts[1].Parameters[0].String != "fake" {
		t.Error("callers share response parameters")
	}
}

func TestCompatibilityKey(t *testing.T) {
	base := func() *oip.InferRequest {
		return &oip.InferRequest{
			ModelName: "m", ID: "1",
			Parameters: oip.Parameters{{Key: "mode", Kind: oip.ParamString, String: "fast"}},
			Inputs: []oip.Tensor{
				{Name: "a", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: fp32(1, 2)},
				{Name: "b", Datatype: oip.BYTES, Shape: []int64{1}, Data: bytesData("x")},
			},
			Outputs: []oip.RequestedOutput{
				{Name: "p", Parameters: oip.Parameters{{Key: "classification", Kind: oip.ParamInt64, Int64: 3}}},
				{Name: "q"},
			},
		}
	}
	boolParam := func(k string) oip.Parameter { return oip.Parameter{Key: k, Kind: oip.ParamBool, Bool: true} }
	tests := []struct {
		name   string
		change func(r *oip.InferRequest)
		same   bool
	}{
		{"identical", func(r *oip.InferRequest) {}, true},
		{"other id", func(r *oip.InferRequest) { r.ID = "2" }, true},
		{"other batch size", func(r *oip.InferRequest) {
			r.Inputs[0].Shape[0], r.Inputs[0].Data = 2, fp32(1, 2, 3, 4)
			r.Inputs[1].Shape[0], r.Inputs[1].Data = 2, bytesData("x", "yy")
		}, true},
		{"priority", func(r *oip.InferRequest) { r.Parameters = r.Parameters.Set(intParam("priority", 1)) }, true},
		{"timeout", func(r *oip.InferRequest) { r.Parameters = r.Parameters.Set(intParam("timeout", 100)) }, true},
		{"binary_data_output", func(r *oip.InferRequest) { r.Parameters = r.Parameters.Set(boolParam("binary_data_output")) }, true},
		{"binary_data on an output", func(r *oip.InferRequest) { r.Outputs[1].Parameters = oip.Parameters{boolParam("binary_data")} }, true},
		{"binary_data_size on an input", func(r *oip.InferRequest) { r.Inputs[0].Parameters = oip.Parameters{intParam("binary_data_size", 8)} }, true},
		{"inputs in another order", func(r *oip.InferRequest) { r.Inputs[0], r.Inputs[1] = r.Inputs[1], r.Inputs[0] }, true},
		{"outputs in another order", func(r *oip.InferRequest) { r.Outputs[0], r.Outputs[1] = r.Outputs[1], r.Outputs[0] }, true},
		{"request parameters in another order", func(r *oip.InferRequest) {
			r.Parameters = oip.Parameters{intParam("z", 1), r.Parameters[0]}
		}, false},
		{"other model version", func(r *oip.InferRequest) { r.ModelVersion = "2" }, false},
		{"other request parameter value", func(r *oip.InferRequest) { r.Parameters[0].String = "slow" }, false},
		{"unknown request parameter", func(r *oip.InferRequest) { r.Parameters = r.Parameters.Set(boolParam("explain")) }, false},
		{"parameter of another kind", func(r *oip.InferRequest) {
			r.Parameters[0] = oip.Parameter{Key: "mode", Kind: oip.ParamInt64, Int64: 0}
		}, false},
		{"other datatype", func(r *oip.InferRequest) { r.Inputs[0].Datatype, r.Inputs[0].Data = oip.INT32, fp32(1, 2) }, false},
		{"other inner dimension", func(r *oip.InferRequest) {
			r.Inputs[0].Shape = []int64{2, 1}
		}, false},
		{"other rank", func(r *oip.InferRequest) { r.Inputs[0].Shape = []int64{1, 2, 1} }, false},
		{"other input name", func(r *oip.InferRequest) { r.Inputs[0].Name = "c" }, false},
		{"input parameter", func(r *oip.InferRequest) {
			r.Inputs[0].Parameters = oip.Parameters{{Key: "content_type", Kind: oip.ParamString, String: "np"}}
		}, false},
		{"classification differs", func(r *oip.InferRequest) { r.Outputs[0].Parameters[0].Int64 = 5 }, false},
		{"fewer outputs", func(r *oip.InferRequest) { r.Outputs = r.Outputs[:1] }, false},
		{"no outputs named", func(r *oip.InferRequest) { r.Outputs = nil }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.change(r)
			a, b := string(appendKey(nil, base())), string(appendKey(nil, r))
			if got := a == b; got != tc.same {
				t.Errorf("compatible = %v, want %v", got, tc.same)
			}
		})
	}
	// "request parameters in another order" above adds a parameter; the
	// order alone must not matter.
	r1, r2 := base(), base()
	r1.Parameters = oip.Parameters{r1.Parameters[0], intParam("z", 1)}
	r2.Parameters = oip.Parameters{intParam("z", 1), r2.Parameters[0]}
	if string(appendKey(nil, r1)) != string(appendKey(nil, r2)) {
		t.Error("the order of request parameters changes the key")
	}
}

func TestUnbatchable(t *testing.T) {
	shm := oip.Parameter{Key: "shared_memory_region", Kind: oip.ParamString, String: "r"}
	tests := []struct {
		name   string
		change func(r *oip.InferRequest)
		want   bool
	}{
		{"plain", func(r *oip.InferRequest) {}, false},
		{"sequence_id", func(r *oip.InferRequest) { r.Parameters = oip.Parameters{intParam("sequence_id", 7)} }, true},
		{"sequence_start", func(r *oip.InferRequest) {
			r.Parameters = oip.Parameters{{Key: "sequence_start", Kind: oip.ParamBool, Bool: true}}
		}, true},
		{"sequence_end", func(r *oip.InferRequest) {
			r.Parameters = oip.Parameters{{Key: "sequence_end", Kind: oip.ParamBool, Bool: true}}
		}, true},
		{"shared memory input", func(r *oip.InferRequest) { r.Inputs[0].Parameters = oip.Parameters{shm} }, true},
		{"shared memory output", func(r *oip.InferRequest) {
			r.Outputs = []oip.RequestedOutput{{Name: "y", Parameters: oip.Parameters{shm}}}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req("a", 2, "t")
			tc.change(r)
			if got := unbatchable(r); got != tc.want {
				t.Errorf("unbatchable = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *oip.InferRequest)
		want   string // substring of the error, "" for none
		rows   int64
	}{
		{"valid", func(r *oip.InferRequest) {}, "", 2},
		{"zero rows", func(r *oip.InferRequest) {
			r.Inputs[0].Shape[0], r.Inputs[0].Data = 0, nil
			r.Inputs[1].Shape[0], r.Inputs[1].Data = 0, nil
		}, "", 0},
		{"no inputs", func(r *oip.InferRequest) { r.Inputs = nil }, "no inputs", 0},
		{"duplicate input", func(r *oip.InferRequest) { r.Inputs[1] = r.Inputs[0] }, `duplicate input "x"`, 0},
		{"invalid datatype", func(r *oip.InferRequest) { r.Inputs[0].Datatype = oip.Invalid }, "invalid datatype", 0},
		{"scalar", func(r *oip.InferRequest) { r.Inputs[0].Shape = nil }, "no batch dimension", 0},
		{"batch sizes disagree", func(r *oip.InferRequest) { r.Inputs[1].Shape[0] = 3 }, "batch size 3", 0},
		{"negative dimension", func(r *oip.InferRequest) { r.Inputs[0].Shape[1] = -3 }, "negative dimension", 0},
		{"short data", func(r *oip.InferRequest) { r.Inputs[0].Data = r.Inputs[0].Data[:7] }, "data has 7 bytes", 0},
		{"BYTES count", func(r *oip.InferRequest) { r.Inputs[1].Data = bytesData("only one") }, "data has 1 elements", 0},
		{"BYTES truncated", func(r *oip.InferRequest) { r.Inputs[1].Data = r.Inputs[1].Data[:5] }, "runs past the end", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req("a", 2, "t0", "t1")
			tc.change(r)
			rows, err := checkRequest(r)
			if tc.want == "" {
				if err != nil || rows != tc.rows {
					t.Fatalf("checkRequest = %d, %v; want %d, nil", rows, err, tc.rows)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || oip.KindOf(err) != oip.KindInvalidArgument {
				t.Fatalf("checkRequest error = %v; want invalid argument containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckResponse(t *testing.T) {
	good := func() *oip.InferResponse {
		return &oip.InferResponse{Outputs: []oip.Tensor{
			{Name: "y", Datatype: oip.FP32, Shape: []int64{3, 1}, Data: fp32(1, 2, 3)},
			{Name: "s", Datatype: oip.BYTES, Shape: []int64{3}, Data: bytesData("a", "", "c")},
		}}
	}
	want := []oip.RequestedOutput{{Name: "y"}, {Name: "s"}}
	tests := []struct {
		name   string
		change func(r *oip.InferResponse) *oip.InferResponse
		want   string
	}{
		{"matches", func(r *oip.InferResponse) *oip.InferResponse { return r }, ""},
		{"no response", func(r *oip.InferResponse) *oip.InferResponse { return nil }, "no response"},
		{"fewer rows", func(r *oip.InferResponse) *oip.InferResponse {
			r.Outputs[0].Shape[0], r.Outputs[0].Data = 2, fp32(1, 2)
			return r
		}, "runtime returned 2 rows for a batch of 3"},
		{"more rows", func(r *oip.InferResponse) *oip.InferResponse {
			r.Outputs[1].Shape[0], r.Outputs[1].Data = 4, bytesData("a", "b", "c", "d")
			return r
		}, "runtime returned 4 rows for a batch of 3"},
		{"missing output", func(r *oip.InferResponse) *oip.InferResponse { r.Outputs = r.Outputs[:1]; return r }, `no output "s"`},
		{"scalar output", func(r *oip.InferResponse) *oip.InferResponse {
			r.Outputs[0].Shape, r.Outputs[0].Data = nil, fp32(1)
			return r
		}, "shape []"},
		{"data does not fit", func(r *oip.InferResponse) *oip.InferResponse { r.Outputs[0].Data = fp32(1, 2); return r }, "with 8 bytes"},
		{"BYTES does not fit", func(r *oip.InferResponse) *oip.InferResponse { r.Outputs[1].Data = bytesData("a"); return r }, "BYTES data"},
		{"invalid datatype", func(r *oip.InferResponse) *oip.InferResponse { r.Outputs[0].Datatype = 99; return r }, "invalid datatype"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkResponse(tc.change(good()), 3, want, "m")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || oip.KindOf(err) != oip.KindInternal {
				t.Fatalf("checkResponse = %v; want internal error containing %q", err, tc.want)
			}
		})
	}
}

func TestMergeInputsInAnyOrder(t *testing.T) {
	a, b := req("a", 2, "a0"), req("b", 2, "b0", "b1")
	b.Inputs[0], b.Inputs[1] = b.Inputs[1], b.Inputs[0]
	merged, _, total := mergeAll(t, []*oip.InferRequest{a, b})
	if total != 3 {
		t.Fatalf("total rows %d, want 3", total)
	}
	want := []oip.Tensor{
		{Name: "x", Datatype: oip.FP32, Shape: []int64{3, 2}, Data: append(bytes.Clone(a.Inputs[0].Data), b.Inputs[1].Data...)},
		{Name: "tag", Datatype: oip.BYTES, Shape: []int64{3}, Data: bytesData("a0", "b0", "b1")},
	}
	if diff := cmp.Diff(want, merged.Inputs); diff != "" {
		t.Errorf("merged inputs (-want +got):\n%s", diff)
	}
}

func idsOf(reqs []*oip.InferRequest) []string {
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}
	return ids
}
