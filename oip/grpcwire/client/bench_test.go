package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// serveEnv makes the test binary a benchmark runtime: it serves on a
// loopback port, prints the address, and exits when stdin closes. The
// benchmarks run it in a child process so that their allocations and CPU
// time are the client's alone.
const serveEnv = "GRPCWIRE_BENCH_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" {
		serveBench()
		return
	}
	os.Exit(m.Run())
}

// irisService answers every ModelInfer with one fixed iris-shaped
// response, as bench.Upstream does.
type irisService struct {
	pb.UnimplementedGRPCInferenceServiceServer
	resp *pb.ModelInferResponse
}

func (s irisService) ModelInfer(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return s.resp, nil
}

func newIrisService() irisService {
	return irisService{resp: &pb.ModelInferResponse{
		ModelName: "iris", ModelVersion: "1", Id: "bench",
		Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 3}}},
		RawOutputContents: [][]byte{float32s(0.99877673, 0.001223306, 1.0885588e-15)},
	}}
}

func irisRequest(t testing.TB) []byte {
	return marshal(t, &pb.ModelInferRequest{
		ModelName:        "iris",
		Id:               "bench",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}}},
		RawInputContents: [][]byte{float32s(5.1, 3.5, 1.4, 0.2)},
	})
}

func float32s(v ...float32) []byte {
	var b []byte
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

func serveBench() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	pb.RegisterGRPCInferenceServiceServer(srv, newIrisService())
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin) // until stdin closes
	srv.Stop()
}

// benchRuntime starts the benchmark runtime in a child process.
// GRPCWIRE_BENCH_ADDR names a runtime started apart instead (for
// counting the client's syscalls alone).
func benchRuntime(b testing.TB) string {
	b.Helper()
	if addr := os.Getenv("GRPCWIRE_BENCH_ADDR"); addr != "" {
		return addr
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("benchmark runtime: %v", err)
	}
	return strings.TrimSpace(line)
}

// invoker is one client under benchmark.
type invoker func(ctx context.Context, req []byte) error

func wireInvoker(b *testing.B, addr string) invoker {
	c := newClient(b, addr, Options{})
	return func(ctx context.Context, req []byte) error {
		_, err := c.Invoke(ctx, inferMethod, req, nil)
		return err
	}
}

func grpcInvoker(b *testing.B, addr string) invoker {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return func(ctx context.Context, req []byte) error {
		var resp oip.RawFrame
		return conn.Invoke(ctx, inferMethod, &oip.RawFrame{Bytes: req}, &resp, grpc.ForceCodecV2(oip.Codec{}))
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInvoke compares this client with grpc-go's ClientConn.Invoke
// (raw codec, as runtimes.GRPCClient used it) against the same grpc-go
// runtime: in a child process (allocs/op and cpu-ns/op are the client's
// own), sequential and with 16 calls at once; and in this process.
func BenchmarkInvoke(b *testing.B) {
	clients := []struct {
		name string
		new  func(*testing.B, string) invoker
	}{{"wire", wireInvoker}, {"grpc-go", grpcInvoker}}
	child := benchRuntime(b)
	ln := listen(b)
	serveGRPC(b, ln, newIrisService())
	inproc := ln.Addr().String()
	req := irisRequest(b)
	for _, srv := range []struct{ name, addr string }{{"child", child}, {"inproc", inproc}} {
		for _, par := range []int{1, 16} {
			for _, cl := range clients {
				b.Run(fmt.Sprintf("runtime=%s/conc=%d/%s", srv.name, par, cl.name), func(b *testing.B) {
					call := cl.new(b, srv.addr)
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					if err := call(ctx, req); err != nil { // connect
						b.Fatal(err)
					}
					b.ReportAllocs()
					cpu0 := cpuTime()
					b.ResetTimer()
					if par == 1 {
						for b.Loop() {
							if err := call(ctx, req); err != nil {
								b.Fatal(err)
							}
						}
					} else {
						b.SetParallelism(max(1, par/runtime.GOMAXPROCS(0)))
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								if err := call(ctx, req); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					b.StopTimer()
					b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
				})
			}
		}
	}
}

// TestInvokeAllocs guards the allocations of a call: the response's bytes
// only. The runtime runs in a child process, whose allocations the count
// would otherwise include.
func TestInvokeAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	c := newClient(t, benchRuntime(t), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := irisRequest(t)
	var err error
	call := func() {
		if err == nil {
			_, err = c.Invoke(ctx, inferMethod, req, nil)
		}
	}
	call() // connect
	if n := testing.AllocsPerRun(500, call); n > 1 {
		t.Errorf("%v allocations per call, want 1 (the response)", n)
	}
	if err != nil {
		t.Fatal(err)
	}
}
