package oip

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

func TestPeekModel(t *testing.T) {
	msg := &pb.ModelInferRequest{
		Id: "x",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "in", Datatype: "FP32", Shape: []int64{1, 2},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}}},
		RawInputContents: [][]byte{{1, 2, 3}},
		ModelName:        "iris",
		ModelVersion:     "3",
		Parameters:       map[string]*pb.InferParameter{"k": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 5}}},
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	name, version, err := PeekModel(b)
	if err != nil || string(name) != "iris" || string(version) != "3" {
		t.Errorf("PeekModel = %q, %q, %v; want iris, 3", name, version, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = PeekModel(b) }); n != 0 {
		t.Errorf("PeekModel allocates %v times", n)
	}
	if _, _, err := PeekModel(b[:len(b)-1]); err == nil || KindOf(err) != KindInvalidArgument {
		t.Errorf("truncated message: err = %v, want invalid argument", err)
	}
	if name, _, err := PeekModel(nil); err != nil || name != nil {
		t.Errorf("empty message: %q, %v", name, err)
	}
}

func TestCodecRawFrame(t *testing.T) {
	var c Codec
	in := &RawFrame{Bytes: []byte{0x0a, 0x04, 'i', 'r', 'i', 's'}}
	buf, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out pb.ModelInferRequest
	if err := c.Unmarshal(buf, &out); err != nil || out.GetModelName() != "iris" {
		t.Fatalf("proto decode of a raw frame: %q, %v", out.GetModelName(), err)
	}
	pbuf, err := c.Marshal(&out)
	if err != nil {
		t.Fatal(err)
	}
	var back RawFrame
	if err := c.Unmarshal(pbuf, &back); err != nil || string(back.Bytes) != string(in.Bytes) {
		t.Errorf("raw frame of a proto message = %x, want %x", back.Bytes, in.Bytes)
	}
}

func TestWithoutModelVersion(t *testing.T) {
	req := &pb.ModelInferRequest{ModelName: "iris", ModelVersion: "2", Id: "x", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "in", Datatype: "FP32", Shape: []int64{1}}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := WithoutModelVersion(b)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.ModelInferRequest
	if err := proto.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(req).(*pb.ModelInferRequest)
	want.ModelVersion = ""
	if !proto.Equal(&got, want) {
		t.Fatalf("got %v, want %v", &got, want)
	}
	if again, _ := WithoutModelVersion(out); &again[0] != &out[0] {
		t.Fatal("a request without a version was copied")
	}
	if _, err := WithoutModelVersion([]byte{0x12, 0x05, 'a'}); err == nil {
		t.Fatal("a truncated request was accepted")
	}
}
