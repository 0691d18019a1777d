//go:build long

package long

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// Protocols a request kind uses.
const (
	protoREST = "rest"
	protoGRPC = "grpc"
)

// reqKind is one kind of request a load sends: a model over a protocol,
// with its prepared body.
type reqKind struct {
	// name labels the kind in tallies: "iris rest".
	name  string
	proto string
	// path and body are a REST request's; header is added to it.
	path   string
	body   []byte
	header map[string]string
	// grpc is a gRPC request's.
	grpc *pb.ModelInferRequest
	// expect, when set, are the only statuses this kind should get
	// ("200", "OK", "400"...); answers with others are counted as
	// unexpected.
	expect []string
	// weight is the kind's share of a mix (default 1).
	weight int
}

// restInfer is a REST infer request for model with body.
func restInfer(name, model string, body []byte) *reqKind {
	return &reqKind{name: name, proto: protoREST, path: "/v2/models/" + model + "/infer", body: body, expect: []string{"200"}}
}

// grpcInfer is a gRPC infer request.
func grpcInfer(name string, req *pb.ModelInferRequest) *reqKind {
	return &reqKind{name: name, proto: protoGRPC, grpc: req, expect: []string{"OK"}}
}

// irisBody is a valid iris REST request.
var irisBody = []byte(`{"id":"long","inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`)

// irisGRPC is a valid iris gRPC request for model.
func irisGRPC(model string) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName: model,
		Id:        "long",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &pb.InferTensorContents{Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2}},
		}},
	}
}

// irisMix is the fault cases' load on an iris-shaped model: three REST
// requests for every gRPC one (the gRPC ones are translated for the REST
// runtime).
func irisMix(model string) []*reqKind {
	r := restInfer(model+" rest", model, irisBody)
	r.weight = 3
	return []*reqKind{r, grpcInfer(model+" grpc", irisGRPC(model))}
}

// loadOptions shapes an open-loop load.
type loadOptions struct {
	// rate is the arrivals per second, constant.
	rate float64
	// mix is the request kinds, cycled in proportion to their weights.
	mix []*reqKind
	// maxInFlight bounds the requests outstanding; an arrival that finds
	// as many is not sent and counts as skipped (default 1024).
	maxInFlight int
	// timeout is the client's patience per request (default 20s: the
	// cases' 10s model timeout plus 10s of grace).
	timeout time.Duration
	// maxConns bounds the REST connections (default 0: one per request
	// outstanding, up to maxInFlight).
	maxConns int
}

// load is an open-loop load on one gateway: requests go out on a fixed
// schedule whatever the gateway does, each recorded in the phase current
// when it started.
type load struct {
	cl       *clients
	tally    *tally
	phaseNow atomic.Pointer[string]
	inFlight atomic.Int64
	sem      chan struct{}
	stop     chan struct{}
	stopped  chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// defaultTimeout is the client's patience: the 10s the cases give each
// model as its timeout, plus 10s for the gateway to answer once that
// deadline passed.
const defaultTimeout = 20 * time.Second

// startLoad starts an open loop against s; stop it with finish.
func startLoad(t *testing.T, s *server, opts loadOptions) *load {
	t.Helper()
	if opts.maxInFlight == 0 {
		opts.maxInFlight = 1024
	}
	if opts.timeout == 0 {
		opts.timeout = defaultTimeout
	}
	l := &load{
		cl:      newClients(t, s.rest, s.grpc, opts.maxInFlight, opts.maxConns, opts.timeout),
		tally:   newTally(),
		sem:     make(chan struct{}, opts.maxInFlight),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	l.setPhase("start")
	kinds := expand(opts.mix)
	go l.run(opts.rate, kinds)
	t.Cleanup(func() { l.finish() })
	return l
}

// expand repeats each kind by its weight.
func expand(mix []*reqKind) []*reqKind {
	var out []*reqKind
	for _, k := range mix {
		w := k.weight
		if w == 0 {
			w = 1
		}
		for range w {
			out = append(out, k)
		}
	}
	return out
}

func (l *load) setPhase(name string) {
	l.phaseNow.Store(&name)
}

func (l *load) run(rate float64, kinds []*reqKind) {
	defer close(l.stopped)
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; ; {
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-l.stop:
				return
			case <-timer.C:
			}
		} else {
			select {
			case <-l.stop:
				return
			default:
			}
		}
		for now := time.Now(); !next.After(now); next = next.Add(interval) {
			k := kinds[i%len(kinds)]
			i++
			phase := *l.phaseNow.Load()
			select {
			case l.sem <- struct{}{}:
				l.wg.Add(1)
				l.inFlight.Add(1)
				go func() {
					defer l.wg.Done()
					started := time.Now()
					o := l.cl.do(k)
					l.inFlight.Add(-1)
					<-l.sem
					l.tally.record(phase, k, o, started)
				}()
			default:
				l.tally.skip(phase, k)
			}
		}
	}
}

// finish stops sending, waits for every request in flight to end (each is
// bounded by the client's timeout) and returns the tally.
func (l *load) finish() *tally {
	l.stopOnce.Do(func() {
		close(l.stop)
		<-l.stopped
		l.wg.Wait()
		l.cl.close()
	})
	return l.tally
}

// closedLoop runs workers that each send one request after another for
// warmup+d, and returns the requests/s answered OK in the measured part
// with its counts.
func closedLoop(t *testing.T, s *server, mix []*reqKind, workers int, warmup, d time.Duration) (float64, *counts) {
	t.Helper()
	cl := newClients(t, s.rest, s.grpc, workers, 0, defaultTimeout)
	defer cl.close()
	kinds := expand(mix)
	tl := newTally()
	start := time.Now()
	measureAt, endAt := start.Add(warmup), start.Add(warmup+d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i++ {
				began := time.Now()
				if !began.Before(endAt) {
					return
				}
				k := kinds[i%len(kinds)]
				o := cl.do(k)
				if began.After(measureAt) {
					tl.record("measured", k, o, began)
				} else {
					tl.record("warm-up", k, o, began)
				}
			}
		})
	}
	wg.Wait()
	c := tl.phase("measured")
	return float64(c.ok()) / d.Seconds(), c
}
