package modelserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
)

// doubler is a scripted model: y = 2x over FP32 [-1,2], and a second output
// z = x+1, so requested-output filtering can be seen.
type doubler struct{}

func (doubler) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Platform: "test",
		Inputs:   []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 2}}},
		Outputs: []oip.TensorMetadata{
			{Name: "y", Datatype: oip.FP32, Shape: []int64{-1, 2}},
			{Name: "z", Datatype: oip.FP32, Shape: []int64{-1, 2}},
		},
	}
}

func (doubler) Run(_ context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	x := in[0]
	y := make([]byte, len(x.Data))
	z := make([]byte, len(x.Data))
	for i := 0; i < len(x.Data); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(x.Data[i:]))
		binary.LittleEndian.PutUint32(y[i:], math.Float32bits(2*v))
		binary.LittleEndian.PutUint32(z[i:], math.Float32bits(v+1))
	}
	return []oip.Tensor{
		{Name: "y", Datatype: oip.FP32, Shape: x.Shape, Data: y},
		{Name: "z", Datatype: oip.FP32, Shape: x.Shape, Data: z},
	}, nil
}

func (doubler) Close() error { return nil }

type panicky struct{ doubler }

func (panicky) Run(context.Context, []oip.Tensor) ([]oip.Tensor, error) { panic("kaboom") }

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Options{
		Models: []ModelSource{
			{Name: "double", Config: ModelConfig{MaxBatchSize: 4}, Versions: []VersionSource{{Version: "1"}, {Version: "2"}}},
			{Name: "broken", Versions: []VersionSource{{Version: "1", Path: "/nowhere/model.onnx"}}},
			{Name: "panics", Versions: []VersionSource{{Version: "1"}}},
		},
		Load: func(src ModelSource, v VersionSource) (Model, error) {
			switch src.Name {
			case "broken":
				return nil, errors.New("protobuf: cannot parse " + v.Path)
			case "panics":
				return panicky{}, nil
			}
			return doubler{}, nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LoadAll(context.Background()); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("LoadAll = %v, want the broken model's error", err)
	}
	return s
}

func do(s *Server, method, path, body string, header ...string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	ctx.Request.SetBodyString(body)
	for i := 0; i+1 < len(header); i += 2 {
		ctx.Request.Header.Set(header[i], header[i+1])
	}
	s.HandleREST(&ctx)
	return &ctx
}

func TestServerREST(t *testing.T) {
	s := newTestServer(t)
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantBody                 string
	}{
		{"live", "GET", "/v2/health/live", "", 200, ""},
		{"not ready with a broken model", "GET", "/v2/health/ready", "", 503, ""},
		{"metadata serves highest version", "GET", "/v2/models/double", "", 200, `"versions":["2"]`},
		{"ready", "GET", "/v2/models/double/ready", "", 200, ""},
		{"broken not ready", "GET", "/v2/models/broken/ready", "", 503, ""},
		{"broken metadata says why", "GET", "/v2/models/broken", "", 503, "cannot parse /nowhere/model.onnx"},
		{"unknown model", "GET", "/v2/models/nope", "", 404, `model \"nope\" not found; this server has \"broken\", \"double\", \"panics\"`},
		{"unknown version", "GET", "/v2/models/double/versions/7", "", 404, `no version \"7\"`},
		{"infer all outputs", "POST", "/v2/models/double/infer", `{"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`, 200, `"id":"a","outputs":[{"name":"y","shape":[1,2],"datatype":"FP32","data":[2,4]},{"name":"z"`},
		{"infer requested output", "POST", "/v2/models/double/infer", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}],"outputs":[{"name":"z"}]}`, 200, `"outputs":[{"name":"z","shape":[1,2],"datatype":"FP32","data":[2,3]}]}`},
		{"batch over max", "POST", "/v2/models/double/infer", `{"inputs":[{"name":"x","datatype":"FP32","shape":[5,2],"data":[1,2,3,4,5,6,7,8,9,10]}]}`, 400, "exceeds max_batch_size 4"},
		{"invalid shape", "POST", "/v2/models/double/infer", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}`, 400, `input \"x\"`},
		{"broken infer", "POST", "/v2/models/broken/infer", `{"inputs":[]}`, 503, "not ready"},
		{"panic becomes 500", "POST", "/v2/models/panics/infer", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]}`, 500, "kaboom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := do(s, tc.method, tc.path, tc.body)
			if got := ctx.Response.StatusCode(); got != tc.wantCode {
				t.Errorf("status = %d, want %d (%s)", got, tc.wantCode, ctx.Response.Body())
			}
			if !bytes.Contains(ctx.Response.Body(), []byte(tc.wantBody)) {
				t.Errorf("body = %s\nwant it to contain %s", ctx.Response.Body(), tc.wantBody)
			}
		})
	}
}

// TestServerBinaryOutput asks for binary outputs and reads them back with
// the extension's framing.
func TestServerBinaryOutput(t *testing.T) {
	s := newTestServer(t)
	ctx := do(s, "POST", "/v2/models/double/infer",
		`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1.5,-2]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	n, err := fasthttp.ParseUint(ctx.Response.Header.Peek("Inference-Header-Content-Length"))
	if err != nil {
		t.Fatalf("no Inference-Header-Content-Length: %v", err)
	}
	body := ctx.Response.Body()
	if !bytes.Contains(body[:n], []byte(`"binary_data_size":8`)) {
		t.Errorf("JSON header %s lacks binary_data_size 8", body[:n])
	}
	raw := body[n:]
	if len(raw) != 8 || math.Float32frombits(binary.LittleEndian.Uint32(raw)) != 3 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != -4 {
		t.Errorf("binary output = %v, want 3, -4 as little-endian FP32", raw)
	}
}

func TestScanRepository(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/1/model.onnx", "x")
	write("a/10/model.onnx", "x")
	write("a/2/model.onnx", "x")
	write("a/config.json", `{"name":"alpha","max_batch_size":8}`)
	write("b/model.onnx", "x")
	got, err := ScanRepository(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "alpha" || got[0].Config.MaxBatchSize != 8 || got[1].Name != "b" {
		t.Fatalf("ScanRepository = %+v", got)
	}
	var versions []string
	for _, v := range got[0].Versions {
		versions = append(versions, v.Version)
	}
	if strings.Join(versions, ",") != "1,2,10" {
		t.Errorf("versions = %v, want numeric order 1,2,10", versions)
	}

	write("c/config.json", `{"nmae":"typo"}`)
	if _, err := ScanRepository(dir); err == nil || !strings.Contains(err.Error(), "nmae") {
		t.Errorf("unknown config field: err = %v, want it named", err)
	}
}

// TestCorruptONNXLeavesOthersServing loads a real sample model beside a
// corrupt file through the ONNX engine.
func TestCorruptONNXLeavesOthersServing(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.onnx")
	if err := os.WriteFile(bad, []byte("this is not a protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	iris, err := ScanModel("iris", "../../examples/models/iris")
	if err != nil {
		t.Fatal(err)
	}
	broken, err := ScanModel("bad", bad)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Models: []ModelSource{iris, broken}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.LoadAll(context.Background()); err == nil || !strings.Contains(err.Error(), "bad.onnx") {
		t.Errorf("LoadAll = %v, want an error naming bad.onnx", err)
	}
	if ok, _ := s.ModelReady("bad", ""); ok {
		t.Error("corrupt model reports ready")
	}
	ctx := do(s, "POST", "/v2/models/iris/infer", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("iris beside a corrupt model: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}
