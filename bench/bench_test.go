package bench

import (
	"context"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The generator's own cost per request, against trivial servers in this
// process: the figures include the server's side, so they bound what the
// generator takes from a real measurement from above.

func BenchmarkRESTTargetInMemory(b *testing.B) {
	body := IrisResponseJSON("iris")
	rt := newMemRESTTarget(b, func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(body) })
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := rt.Do(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRESTTargetLoopback(b *testing.B) {
	restAddr, _ := startUpstream(b, "iris")
	rt, err := NewRESTTarget(RESTOptions{Addr: restAddr, Body: IrisRequestJSON()})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := rt.Do(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGRPCTargetLoopback(b *testing.B) {
	_, grpcAddr := startUpstream(b, "iris")
	gt, err := NewGRPCTarget(GRPCOptions{Addr: grpcAddr, Request: IrisRequestProto("iris")})
	if err != nil {
		b.Fatal(err)
	}
	defer gt.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := gt.Do(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClosedLoopOverhead is the loop's own cost per request (clock
// reads, the count budget, recording) around a target that does nothing.
func BenchmarkClosedLoopOverhead(b *testing.B) {
	nop := TargetFunc(func(context.Context) error { return nil })
	b.ReportAllocs()
	b.ResetTimer()
	res, err := RunClosedLoop(context.Background(), nop, LoopOptions{Concurrency: 4, Requests: int64(b.N), Duration: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	if res.Requests != int64(b.N) {
		b.Fatalf("ran %d of %d", res.Requests, b.N)
	}
}

// BenchmarkClosedLoopREST is a whole closed loop against an in-memory
// server: what one measured request costs this process.
func BenchmarkClosedLoopREST(b *testing.B) {
	body := IrisResponseJSON("iris")
	rt := newMemRESTTarget(b, func(ctx *fasthttp.RequestCtx) { ctx.Response.SetBodyRaw(body) })
	b.ReportAllocs()
	b.ResetTimer()
	res, err := RunClosedLoop(context.Background(), rt, LoopOptions{Concurrency: 16, Requests: int64(b.N), Duration: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	if res.Requests != int64(b.N) || res.Errors != 0 {
		b.Fatalf("ran %d of %d, %d errors: %s", res.Requests, b.N, res.Errors, res.FirstError)
	}
}

// BenchmarkOpenLoopOverhead is the open loop's own cost per request (the
// schedule, the hand-off to a worker, two clock reads, recording) around
// a target that does nothing, at a rate it cannot reach so that it never
// waits.
func BenchmarkOpenLoopOverhead(b *testing.B) {
	nop := TargetFunc(func(context.Context) error { return nil })
	b.ReportAllocs()
	b.ResetTimer()
	res, err := RunOpenLoop(context.Background(), nop, OpenLoopOptions{Rate: 1e9, Requests: int64(b.N), Duration: time.Minute, MaxInflight: 8})
	if err != nil {
		b.Fatal(err)
	}
	if res.Requests != int64(b.N) {
		b.Fatalf("ran %d of %d", res.Requests, b.N)
	}
}

// BenchmarkRecord is what recording one measured request costs: the
// histograms, the counts and the timeline.
func BenchmarkRecord(b *testing.B) {
	for _, open := range []bool{false, true} {
		name := "closed"
		if open {
			name = "open"
		}
		b.Run(name, func(b *testing.B) {
			now := time.Now()
			rec := newRecorder(1, now, open, time.Millisecond, 0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				at := now.Add(time.Duration(i) * 10 * time.Microsecond)
				rec.record(0, at, at, at.Add(250*time.Microsecond), nil)
			}
		})
	}
}

// BenchmarkClosedLoopGRPC is a whole closed loop against the trivial gRPC
// runtime on loopback: what one measured gRPC request costs, both sides
// in this process.
func BenchmarkClosedLoopGRPC(b *testing.B) {
	_, grpcAddr := startUpstream(b, "iris")
	gt, err := NewGRPCTarget(GRPCOptions{Addr: grpcAddr, Request: IrisRequestProto("iris")})
	if err != nil {
		b.Fatal(err)
	}
	defer gt.Close()
	b.ReportAllocs()
	b.ResetTimer()
	res, err := RunClosedLoop(context.Background(), gt, LoopOptions{Concurrency: 16, Requests: int64(b.N), Duration: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	if res.Requests != int64(b.N) || res.Errors != 0 {
		b.Fatalf("ran %d of %d, %d errors: %s", res.Requests, b.N, res.Errors, res.FirstError)
	}
}
