//go:build long

package long

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// Soak bounds: after the warm-up the gateway's RSS may grow by at most
// soakRSSGrowthMB; once the load has stopped and its connections are
// closed, its goroutines must come back within soakGoroutineSlack of
// the idle baseline and its open files within soakFDSlack, in a minute
// (keep-alive connections to runtimes close after 30s idle).
const (
	soakRSSGrowthMB    = 64
	soakGoroutineSlack = 50
	soakFDSlack        = 32
	soakSampleEvery    = 5 * time.Second
)

// soakMix is the soak's traffic: iris and digits over REST and gRPC,
// sticky sessions, and a few requests the gateway must turn down (an
// unknown model, a body that is not JSON), each with the status it must
// get.
func soakMix(t *testing.T) []*reqKind {
	irisREST := restInfer("iris rest", "iris", irisBody)
	irisREST.weight = 40
	irisGRPC := grpcInfer("iris grpc", irisGRPC("iris"))
	irisGRPC.weight = 20
	sticky := restInfer("iris rest sticky", "iris", irisBody)
	sticky.header, sticky.weight = map[string]string{"X-Session-Key": "user-42"}, 10
	digitsBody := make([]float32, 64)
	for i := range digitsBody {
		digitsBody[i] = float32(i%17) / 16
	}
	digitsREST := restInfer("digits rest", "digits", []byte(fmt.Sprintf(`{"inputs":[{"name":"image","datatype":"FP32","shape":[1,1,8,8],"data":%s}]}`, jsonFloats(digitsBody))))
	digitsREST.weight = 15
	digitsGRPC := grpcInfer("digits grpc", digitsRequest(digitsBody))
	digitsGRPC.weight = 10
	unknown := restInfer("unknown model", "no-such-model", irisBody)
	unknown.expect, unknown.weight = []string{"404"}, 2
	badJSON := restInfer("bad json", "iris", []byte(`{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2,`))
	badJSON.expect, badJSON.weight = []string{"400"}, 3
	return []*reqKind{irisREST, irisGRPC, sticky, digitsREST, digitsGRPC, unknown, badJSON}
}

// testSoak measures the gateway's capacity with a short closed loop of
// the soak's mix, then runs an open loop at 70% of it for LONG_SOAK
// (default 20m), sampling the gateway's RSS, goroutines and open files
// every 5s. Every request must get the status its kind expects (200, or
// the 404 / 400 of the requests meant to fail), none lost; RSS may grow
// by at most 64 MB after the warm-up (a tenth of the soak, at least
// 10s); goroutines and open files must come back near their idle
// baseline once the load stops.
func testSoak(t *testing.T) {
	r := newReport(t)
	if dl, ok := t.Deadline(); ok && time.Until(dl) < soakDuration+5*time.Minute {
		t.Fatalf("LONG_SOAK=%s does not fit in the %s left before the test binary's -timeout: run make test-long, raise -timeout, or set a shorter LONG_SOAK", soakDuration, time.Until(dl).Round(time.Second))
	}
	s := startServer(t, irisModel(t, "iris", "iris", 1, 2, 10, "")+"---\n"+irisModel(t, "digits", "digits", 1, 1, 10, ""))
	if !s.waitReady(t, "iris", 1, time.Minute) || !s.waitReady(t, "digits", 1, time.Minute) {
		return
	}
	mix := soakMix(t)
	s.pause(3 * time.Second)
	since := time.Now()
	base := s.sample(since)
	r.notef("idle baseline: RSS %.0f MB, %d goroutines, %d open files", base.rssMB, base.goroutines, base.fds)

	capacity, cc := closedLoop(t, s, mix, 16, 2*time.Second, 10*time.Second)
	r.notef("capacity: %.0f requests/s answered as expected (closed loop, 16 workers, 10s): %s", capacity, tableLine("capacity", cc))
	if cc.lostTotal() > 0 {
		r.errorf("LOST %d requests while measuring capacity: %s", cc.lostTotal(), formatMap(cc.lost))
	}
	rate := 0.7 * capacity
	if rate < 50 {
		t.Fatalf("measured capacity %.0f/s is too low to soak at 70%% of it", capacity)
	}
	// REST over at most 64 connections, as a client's pool: requests
	// beyond wait in the client, and the connections the gateway sees
	// stay bounded whatever the latency does.
	l := startLoad(t, s, loadOptions{rate: rate, mix: mix, maxInFlight: 4096, maxConns: 64})
	warmup := max(soakDuration/10, 10*time.Second)
	l.setPhase("warm-up")
	start := time.Now()
	var samples []procSample
	lastLog := time.Now()
	for time.Since(start) < soakDuration {
		if !s.pause(min(soakSampleEvery, soakDuration-time.Since(start))) {
			r.errorf("infergate serve exited (%v) %s into the soak", s.waitErr, time.Since(start).Round(time.Second))
			break
		}
		if time.Since(start) >= warmup {
			l.setPhase("soak")
		}
		p := s.sample(start)
		samples = append(samples, p)
		if time.Since(lastLog) >= time.Minute || time.Since(start) >= soakDuration {
			lastLog = time.Now()
			r.notef("soak +%s: RSS %.0f MB, %d goroutines, %d open files; %d requests so far", p.at.Round(time.Second), p.rssMB, p.goroutines, p.fds, l.tally.sum(nil).sent)
		}
	}
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.alive(s)
	r.phases(tl)
	r.notef("soak: %s at %.0f requests/s (70%% of %.0f), %d samples", soakDuration, rate, capacity, len(samples))
	if n := sum(c.unexpected); n > 0 {
		r.errorf("%d answers with a status their kind does not expect: %s (reasons: %s)", n, formatMap(c.unexpected), formatMap(c.reasons))
	}
	if n := sum(c.notSent); n > 0 {
		r.errorf("%d requests could not be sent: %s", n, formatMap(c.notSent))
	}
	if c.skipped > 0 {
		r.notef("%d arrivals were not sent because 4096 requests were outstanding", c.skipped)
	}

	// RSS growth: the median of the last five samples against the median
	// of the first five after the warm-up.
	var after []procSample
	for _, p := range samples {
		if p.at >= warmup {
			after = append(after, p)
		}
	}
	if len(after) >= 2 {
		k := min(5, len(after)/2)
		first, last := medianRSS(after[:k]), medianRSS(after[len(after)-k:])
		r.notef("RSS after the warm-up: %.0f MB, at the end: %.0f MB (medians of %d samples), max %.0f MB", first, last, k, maxRSS(samples))
		if last-first > soakRSSGrowthMB {
			r.errorf("the gateway's RSS grew by %.0f MB during the soak after the warm-up (%.0f to %.0f MB), more than %d MB", last-first, first, last, soakRSSGrowthMB)
		}
	} else {
		r.errorf("too few samples after the warm-up (%d) to judge RSS growth: lengthen LONG_SOAK", len(after))
	}

	// Back to baseline once the load and its connections are gone.
	deadline := time.Now().Add(time.Minute)
	for {
		p := s.sample(since)
		if p.goroutines >= 0 && p.goroutines <= base.goroutines+soakGoroutineSlack && p.fds <= base.fds+soakFDSlack {
			r.notef("after the load: %d goroutines, %d open files, RSS %.0f MB, %s after it stopped", p.goroutines, p.fds, p.rssMB, (time.Minute - time.Until(deadline)).Round(time.Second))
			break
		}
		if time.Now().After(deadline) || s.hasExited() {
			r.errorf("a minute after the load stopped the gateway has %d goroutines (baseline %d, allowed +%d) and %d open files (baseline %d, allowed +%d); its sockets: %s",
				p.goroutines, base.goroutines, soakGoroutineSlack, p.fds, base.fds, soakFDSlack, s.sockets())
			break
		}
		time.Sleep(time.Second)
	}
}

func medianRSS(ps []procSample) float64 {
	v := make([]float64, len(ps))
	for i, p := range ps {
		v[i] = p.rssMB
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func maxRSS(ps []procSample) float64 {
	m := 0.0
	for _, p := range ps {
		m = max(m, p.rssMB)
	}
	return m
}

// jsonFloats writes v as a JSON array.
func jsonFloats(v []float32) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// digitsRequest is a gRPC digits request with image v (64 pixels).
func digitsRequest(v []float32) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName: "digits",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "image", Datatype: "FP32", Shape: []int64{1, 1, 8, 8},
			Contents: &pb.InferTensorContents{Fp32Contents: v},
		}},
	}
}
