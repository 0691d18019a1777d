package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/bench"
)

// memoryReport is the gateway's resident set size under a long load at a
// high concurrency, once per round, so that growth across rounds shows.
type memoryReport struct {
	Target      string     `json:"target"`
	Concurrency int        `json:"concurrency"`
	Window      string     `json:"window"`
	Rounds      []memRound `json:"rounds"`
}

// memRound is one round's load: RSS when it started, its largest sample
// and when it ended, in MiB.
type memRound struct {
	StartMiB float64 `json:"start_mib"`
	PeakMiB  float64 `json:"peak_mib"`
	EndMiB   float64 `json:"end_mib"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	RPS      float64 `json:"rps"`
}

// memorySampleEvery is how often RSS is read under load.
const memorySampleEvery = 250 * time.Millisecond

// measureMemory loads t with infergate's generator at conc for dur and
// samples the gateway's RSS from /proc meanwhile.
func (d *driver) measureMemory(ctx context.Context, t *target, conc int, dur time.Duration) (memRound, error) {
	pid := d.gateway.Pid()
	kb, err := rssKB(pid)
	if err != nil {
		return memRound{}, err
	}
	m := memRound{StartMiB: float64(kb) / 1024, PeakMiB: float64(kb) / 1024}
	client, err := t.client(conc)
	if err != nil {
		return memRound{}, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() {
		tick := time.NewTicker(memorySampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if kb, err := rssKB(pid); err == nil {
					mu.Lock()
					m.PeakMiB = max(m.PeakMiB, float64(kb)/1024)
					mu.Unlock()
				}
			}
		}
	})
	res, err := bench.RunClosedLoop(ctx, client, bench.LoopOptions{
		Concurrency: conc, Duration: dur, Requests: d.f.maxRequests * int64(max(1, dur/d.f.window)), StopTimeout: d.f.timeout,
	})
	close(stop)
	wg.Wait()
	if err != nil {
		return memRound{}, err
	}
	if ctx.Err() != nil {
		return memRound{}, ctx.Err()
	}
	if kb, err = rssKB(pid); err != nil {
		return memRound{}, fmt.Errorf("gateway: %w", err)
	}
	m.EndMiB = float64(kb) / 1024
	m.PeakMiB = max(m.PeakMiB, m.EndMiB)
	m.Requests, m.Errors, m.RPS = res.Requests, res.Errors, res.RPS
	return m, nil
}

func (mr *memoryReport) print(out io.Writer) {
	if len(mr.Rounds) == 0 {
		return
	}
	fmt.Fprintf(out, "\n== memory: the gateway's RSS (VmRSS, MiB) under %s at concurrency %d for %s, once per round (infergate generator)\n",
		mr.Target, mr.Concurrency, mr.Window)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tstart\tpeak\tend\treq/s\terrors\t")
	for i, r := range mr.Rounds {
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.1f\t%.0f\t%d\t\n", i+1, r.StartMiB, r.PeakMiB, r.EndMiB, r.RPS, r.Errors)
	}
	_ = tw.Flush()
}
