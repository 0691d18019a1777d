package oip_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

func TestPeekPriority(t *testing.T) {
	for _, tc := range []struct {
		body string
		want uint64
	}{
		{`{"parameters":{"priority":2},"inputs":[]}`, 2},
		{`{"inputs":[{"name":"x","parameters":{"priority":9}}],"parameters":{"priority":1}}`, 1},
		{`{"inputs":[{"name":"x","parameters":{"priority":9}}]}`, 0},
		{`{"parameters":{"priority":-3}}`, 0},
		{`{"parameters":{"priority":"high"}}`, 0},
		{`not json`, 0},
	} {
		if got := oip.PeekPriority([]byte(tc.body), 0); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.body, got, tc.want)
		}
	}
	// Binary tensors after the JSON header.
	body := []byte(`{"parameters":{"priority":3}}` + "\x00\x01\x02")
	if got := oip.PeekPriority(body, len(body)-3); got != 3 {
		t.Errorf("with binary data: %d, want 3", got)
	}
}

func TestPeekPriorityProto(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  *pb.ModelInferRequest
		want uint64
	}{
		{"int64", &pb.ModelInferRequest{ModelName: "m", Parameters: map[string]*pb.InferParameter{
			"priority": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 2}},
			"other":    {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 7}},
		}}, 2},
		{"uint64", &pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{
			"priority": {ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: 4}},
		}}, 4},
		{"negative", &pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{
			"priority": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: -1}},
		}}, 0},
		{"a string", &pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{
			"priority": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "1"}},
		}}, 0},
		{"none", &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x",
			Parameters: map[string]*pb.InferParameter{"priority": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 5}}}}}}, 0},
	} {
		b, err := proto.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := oip.PeekPriorityProto(b); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := oip.PeekPriorityProto([]byte{0x22, 0x7f}); got != 0 {
		t.Errorf("malformed: %d", got)
	}
}

func FuzzPeekPriorityProto(f *testing.F) {
	b, _ := proto.Marshal(&pb.ModelInferRequest{Parameters: map[string]*pb.InferParameter{
		"priority": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 2}}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { oip.PeekPriorityProto(b) })
}
