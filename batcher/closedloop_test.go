package batcher

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infergate/infergate/oip"
)

// The closed-loop tests run the bench's batching setup in a synctest
// bubble: one replica of a simulated model that takes simBase + simPerRow
// per row for a batch and serves one batch at a time, behind a batcher of
// MaxBatchSize 64 and MaxQueueDelay 5ms (maxLatency 5 in the bench), driven
// by clients that each send one request, wait for its answer, and send the
// next after a think time of their own (the gateway's and the network's
// share of a round trip). Time in the bubble is exact, so the figures are
// the policy's alone.
const (
	simBase   = 5 * time.Millisecond
	simPerRow = 50 * time.Microsecond
	simMax    = 64
	simDelay  = 5 * time.Millisecond
	// simThink is the first client's think time; client i thinks i
	// microseconds longer, so that no two clients come back at the same
	// instant and the run is deterministic.
	simThink  = 20 * time.Microsecond
	simWarmup = 50 * time.Millisecond
	simWindow = 300 * time.Millisecond
)

// simService is the simulated model's time for a batch of n rows.
func simService(n int64) time.Duration { return simBase + time.Duration(n)*simPerRow }

// loopRun is what one closed-loop run measured in its window (after the
// warm-up).
type loopRun struct {
	batches   []int64         // rows of each batch dispatched, in order
	answered  int             // requests answered in the window
	latencies []time.Duration // of those, Submit to answer
}

// rps is the run's throughput in requests per (bubble) second.
func (r loopRun) rps() float64 { return float64(r.answered) / simWindow.Seconds() }

func (r loopRun) meanBatch() float64 {
	var sum int64
	for _, n := range r.batches {
		sum += n
	}
	return float64(sum) / float64(max(len(r.batches), 1))
}

// histogram counts the batches by size, in the buckets of
// infergate_batcher_batch_size (1, 2, 4, ... 64: a batch counts in the
// first bucket it fits).
func (r loopRun) histogram() map[int64]int {
	h := map[int64]int{}
	for _, n := range r.batches {
		le := int64(1)
		for le < n {
			le *= 2
		}
		h[le]++
	}
	return h
}

// runClosedLoop runs clients closed-loop clients against the simulated
// model for simWarmup + simWindow of bubble time; with batched false the
// clients call the model directly, without a batcher (one slot: they take
// turns).
func runClosedLoop(t *testing.T, clients int, batched bool) loopRun {
	t.Helper()
	return runLoop(t, loopConfig{clients: clients, slots: 1, batched: batched})
}

// loopConfig describes a closed-loop run.
type loopConfig struct {
	clients int
	slots   int  // replicas of the model, the batcher's MaxBatchesInFlight
	batched bool // through a batcher, or straight to the model
	// cpu, when set, is each request's round trip on a machine of two
	// cores: after its answer, each client takes one of two cores for cpu
	// before it thinks, so that answers delivered together come back
	// spread out, as on a gateway whose CPU they share.
	cpu time.Duration
}

func runLoop(t *testing.T, cfg loopConfig) loopRun {
	clients, slots, batched := cfg.clients, cfg.slots, cfg.batched
	t.Helper()
	var run loopRun
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		warm, end := begin.Add(simWarmup), begin.Add(simWarmup+simWindow)
		var mu sync.Mutex
		// The model's slots; a channel, not a mutex, so that a caller
		// waiting for it is durably blocked and the bubble's time moves.
		slot := make(chan struct{}, slots)
		model := func(ctx context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
			slot <- struct{}{}
			defer func() { <-slot }()
			x := &r.Inputs[0]
			if now := time.Now(); !now.Before(warm) && now.Before(end) {
				mu.Lock()
				run.batches = append(run.batches, x.Shape[0])
				mu.Unlock()
			}
			time.Sleep(simService(x.Shape[0]))
			return &oip.InferResponse{ModelName: r.ModelName, ID: r.ID, Outputs: []oip.Tensor{
				{Name: "y", Datatype: x.Datatype, Shape: x.Shape, Data: x.Data},
			}}, nil
		}
		call := model
		if batched {
			b := start(t, Options{
				Model:              "sim",
				MaxBatchSize:       simMax,
				MaxQueueDelay:      simDelay,
				MaxQueueSize:       4 * simMax * 4,
				Dispatch:           model,
				MaxBatchesInFlight: func() int { return slots },
				Logger:             discardLogger,
			}, nil)
			call = b.Submit
		}
		cores := make(chan struct{}, 2)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				think := simThink + time.Duration(i)*time.Microsecond
				r := &oip.InferRequest{ModelName: "sim", Inputs: []oip.Tensor{
					{Name: "x", Datatype: oip.FP32, Shape: []int64{1, 4}, Data: make([]byte, 16)},
				}}
				time.Sleep(think)
				// Bounded in count as well as in time: a client cannot
				// send more than one request per service time.
				for range int((simWarmup+simWindow)/simBase) + 1 {
					sent := time.Now()
					if !sent.Before(end) {
						return
					}
					if _, err := call(t.Context(), r); err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					if now := time.Now(); !now.Before(warm) && now.Before(end) {
						mu.Lock()
						run.answered++
						run.latencies = append(run.latencies, now.Sub(sent))
						mu.Unlock()
					}
					if cfg.cpu > 0 {
						cores <- struct{}{}
						time.Sleep(cfg.cpu)
						<-cores
					}
					time.Sleep(think)
				}
			})
		}
		wg.Wait()
	})
	return run
}

// fullBatchRPS is the physical limit of the simulated model: full batches
// back to back.
var fullBatchRPS = float64(simMax) / simService(simMax).Seconds()

func TestClosedLoopBatching(t *testing.T) {
	tests := []struct {
		name    string
		clients int
		cpu     time.Duration // see loopConfig
		// check the batched run (and, for one client, the unbatched one).
		check func(t *testing.T, batched, unbatched loopRun)
	}{
		{"c1", 1, 0, func(t *testing.T, batched, unbatched loopRun) {
			// A lone client never waits: each request goes upstream at
			// its arrival, so its latency is the service time of one row,
			// exactly as without the batcher.
			for i, l := range batched.latencies {
				if l != simService(1) {
					t.Fatalf("request %d took %s, want %s (the service time: no wait added)", i, l, simService(1))
				}
			}
			if got, want := batched.answered, unbatched.answered; got != want {
				t.Errorf("answered %d requests, unbatched %d", got, want)
			}
		}},
		{"c8", 8, 0, func(t *testing.T, batched, _ loopRun) {
			// Fewer clients than MaxBatchSize: the batch goes when all
			// of them are in, not when the delay runs out, and not as one
			// lone request followed by the rest.
			if got := batched.meanBatch(); got < 0.8*8 {
				t.Errorf("mean batch size %.1f, want >= 6.4; batch sizes %v", got, batched.batches)
			}
			if limit := 8 / simService(8).Seconds(); batched.rps() < 0.8*limit {
				t.Errorf("throughput %.0f requests/s, want >= 0.8 of %.0f (batches of 8 back to back)", batched.rps(), limit)
			}
		}},
		{"c64", 64, 0, checkFull},
		{"c256", 256, 0, checkFull},
		{"c64 with 100us of CPU per round trip", 64, 100 * time.Microsecond, func(t *testing.T, batched, _ loopRun) {
			// The 64 answers come back over 3.2ms of two cores' time,
			// less than the 5ms a second batch would cost: one batch of
			// all of them is still best, and what it can do is 64 per
			// 8.2ms + 3.2ms.
			limit := float64(simMax) / (simService(simMax) + simMax*100*time.Microsecond/2).Seconds()
			if got := batched.meanBatch(); got < 0.8*simMax {
				t.Errorf("mean batch size %.1f, want >= %.1f", got, 0.8*simMax)
			}
			if batched.rps() < 0.95*limit {
				t.Errorf("throughput %.0f requests/s, want >= 0.95 of %.0f (one batch of 64 per service and return)", batched.rps(), limit)
			}
		}},
		{"c64 with 300us of CPU per round trip", 64, 300 * time.Microsecond, func(t *testing.T, batched, _ loopRun) {
			// The answers take 9.6ms to come back: waiting for all of
			// them would cost more than a second batch. Two batches
			// served back to back, each while the other's callers come
			// back, do 64 per 2 x 5ms + 64 x 0.05ms; the batcher must
			// not hold the slot idle for the stragglers instead.
			limit := float64(simMax) / (2*simBase + simMax*simPerRow).Seconds()
			if batched.rps() < 0.9*limit {
				t.Errorf("throughput %.0f requests/s, want >= 0.9 of %.0f (two batches overlapping the returns)", batched.rps(), limit)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			batched := runLoop(t, loopConfig{clients: tc.clients, slots: 1, batched: true, cpu: tc.cpu})
			t.Logf("%s: batched %.0f requests/s, %.2f of the full-batch limit %.0f; p50 %s; mean batch %.1f; batch sizes (le: count) %v",
				tc.name, batched.rps(), batched.rps()/fullBatchRPS, fullBatchRPS,
				p50(batched.latencies), batched.meanBatch(), batched.histogram())
			var unbatched loopRun
			if tc.clients == 1 {
				unbatched = runClosedLoop(t, tc.clients, false)
				t.Logf("c1 unbatched: %.0f requests/s, p50 %s", unbatched.rps(), p50(unbatched.latencies))
			}
			tc.check(t, batched, unbatched)
		})
	}
}

// checkFull checks that a closed loop of at least MaxBatchSize clients
// keeps the batches full: at least 0.8 of the physical limit, and no batch
// of one (the split of the clients into one lone request and the rest).
func checkFull(t *testing.T, batched, _ loopRun) {
	t.Helper()
	if got := batched.rps() / fullBatchRPS; got < 0.8 {
		t.Errorf("throughput %.0f requests/s is %.2f of the full-batch limit %.0f, want >= 0.8", batched.rps(), got, fullBatchRPS)
	}
	if got := batched.meanBatch(); got < 0.8*simMax {
		t.Errorf("mean batch size %.1f, want >= %.1f", got, 0.8*simMax)
	}
	if n := batched.histogram()[1]; n > 0 {
		t.Errorf("%d batches of one in steady state; batch sizes %v", n, batched.batches)
	}
}

func p50(ls []time.Duration) time.Duration {
	if len(ls) == 0 {
		return 0
	}
	s := slices.Clone(ls)
	slices.Sort(s)
	return s[len(s)/2]
}
