package modelserver

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// grpcClient serves s over an in-memory gRPC connection.
func grpcClient(t *testing.T, s *Server) pb.GRPCInferenceServiceClient {
	t.Helper()
	ln := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterGRPCInferenceServiceServer(srv, s.GRPCService())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn)
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != code || !strings.Contains(s.Message(), contains) {
		t.Errorf("%s: %v, want %v containing %q", what, err, code, contains)
	}
}

func grpcIndex(t *testing.T, c pb.GRPCInferenceServiceClient, readyOnly bool) []*pb.RepositoryIndexResponse_ModelIndex {
	t.Helper()
	resp, err := c.RepositoryIndex(context.Background(), &pb.RepositoryIndexRequest{Ready: readyOnly})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetModels()
}

// TestRepositoryGRPC drives the repository RPCs: a new version loaded with
// RepositoryModelLoad serves beside the old one under an "all" policy,
// RepositoryModelUnload makes inference UNAVAILABLE, and bad requests get
// the right codes.
func TestRepositoryGRPC(t *testing.T) {
	dir := irisRepository(t)
	s := repoServer(t, dir, Options{})
	c := grpcClient(t, s)
	ctx := context.Background()

	copyDir(t, filepath.Join(dir, "iris", "1"), filepath.Join(dir, "iris", "2"))
	writeFile(t, filepath.Join(dir, "iris", "config.json"), `{"name":"iris","version_policy":{"latest":2}}`)
	if _, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "iris", Parameters: map[string]*pb.ModelRepositoryParameter{
		"unknown": {ParameterChoice: &pb.ModelRepositoryParameter_BoolParam{BoolParam: true}},
	}}); err != nil {
		t.Fatal(err)
	}
	want := []*pb.RepositoryIndexResponse_ModelIndex{
		{Name: "iris", Version: "1", State: StateReady},
		{Name: "iris", Version: "2", State: StateReady},
	}
	if diff := cmp.Diff(want, grpcIndex(t, c, true), protocmp.Transform()); diff != "" {
		t.Errorf("index (-want +got):\n%s", diff)
	}
	for _, v := range []string{"1", "2"} {
		r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "iris", Version: v})
		if err != nil || !r.GetReady() {
			t.Errorf("version %s ready = %v, %v", v, r.GetReady(), err)
		}
	}
	md, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "iris"})
	if err != nil || !cmp.Equal(md.GetVersions(), []string{"1", "2"}) {
		t.Errorf("metadata versions = %v, %v; want [1 2]", md.GetVersions(), err)
	}

	if _, err := c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "iris"}); err != nil {
		t.Fatal(err)
	}
	r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "iris"})
	if err != nil || r.GetReady() {
		t.Errorf("ready after unload = %v, %v; want false", r.GetReady(), err)
	}
	_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "iris"})
	wantStatus(t, "infer after unload", err, codes.Unavailable, `model "iris" is unloaded`)
	want = []*pb.RepositoryIndexResponse_ModelIndex{
		{Name: "iris", Version: "1", State: StateUnavailable, Reason: ReasonUnloaded},
		{Name: "iris", Version: "2", State: StateUnavailable, Reason: ReasonUnloaded},
	}
	if diff := cmp.Diff(want, grpcIndex(t, c, false), protocmp.Transform()); diff != "" {
		t.Errorf("index after unload (-want +got):\n%s", diff)
	}

	tests := []struct {
		name     string
		call     func() error
		code     codes.Code
		contains string
	}{
		{"load unknown model", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "nope"})
			return err
		}, codes.NotFound, `model "nope" not found in repository`},
		{"load outside the repository", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "../iris"})
			return err
		}, codes.InvalidArgument, "cannot name a repository directory"},
		{"named repository", func() error {
			_, err := c.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{RepositoryName: "store"})
			return err
		}, codes.Unimplemented, "naming a repository is not supported"},
		{"KServe-shaped request", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{RepositoryName: "iris"})
			return err
		}, codes.InvalidArgument, "not KServe's"},
		{"config override", func() error {
			_, err := c.RepositoryModelLoad(ctx, &pb.RepositoryModelLoadRequest{ModelName: "iris", Parameters: map[string]*pb.ModelRepositoryParameter{
				"config": {ParameterChoice: &pb.ModelRepositoryParameter_StringParam{StringParam: "{}"}},
			}})
			return err
		}, codes.Unimplemented, `load parameter "config" is not supported`},
		{"unload unknown model", func() error {
			_, err := c.RepositoryModelUnload(ctx, &pb.RepositoryModelUnloadRequest{ModelName: "nope"})
			return err
		}, codes.NotFound, "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantStatus(t, tc.name, tc.call(), tc.code, tc.contains) })
	}

	off := grpcClient(t, repoServer(t, irisRepository(t), Options{DisableRepositoryAPI: true}))
	_, err = off.RepositoryIndex(ctx, &pb.RepositoryIndexRequest{})
	wantStatus(t, "index when disabled", err, codes.Unimplemented, "disabled")
}
