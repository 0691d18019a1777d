package pipelines

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/registry"
)

// benchSteps is the size of the benchmark pipelines.
const benchSteps = 200

// benchPipeline returns a pipeline of n `true` steps: a chain (each
// depends on the one before) or n independent steps.
func benchPipeline(b *testing.B, n int, chain bool) *Pipeline {
	var s strings.Builder
	s.WriteString("apiVersion: infergate.io/v1alpha1\nkind: Pipeline\nmetadata: {name: bench}\nspec:\n  steps:\n")
	for i := range n {
		fmt.Fprintf(&s, "    - name: s%d\n      command: [\"true\"]\n", i)
		if chain && i > 0 {
			fmt.Fprintf(&s, "      dependsOn: [s%d]\n", i-1)
		}
	}
	p, err := Parse([]byte(s.String()))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchEngine(b *testing.B) *Engine {
	dir := b.TempDir()
	reg, err := registry.Open(b.Context(), registry.Options{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	e, err := Open(b.Context(), Options{Registry: reg, DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		e.Close()
		reg.Close()
	})
	return e
}

// BenchmarkChain200 runs a chain of 200 `true` steps (caching off) and
// reports, per step, the engine's overhead (the run's wall time minus the
// processes' own, divided by the steps) and the time from a step's process
// exit to its successor's process start.
func BenchmarkChain200(b *testing.B) {
	e := benchEngine(b)
	p := benchPipeline(b, benchSteps, true)
	b.ReportAllocs()
	var overhead, gaps []time.Duration
	for b.Loop() {
		start := time.Now()
		run := submitWaitBench(b, e, p)
		wall := time.Since(start)
		var procs time.Duration
		var prevEnd time.Time
		for i, s := range run.Steps {
			a := s.Attempts[0]
			procs += a.EndTime.Sub(a.StartTime)
			if i > 0 {
				gaps = append(gaps, a.StartTime.Sub(prevEnd))
			}
			prevEnd = a.EndTime
		}
		overhead = append(overhead, (wall-procs)/benchSteps)
	}
	b.ReportMetric(ms(median(overhead)), "overhead-ms/step")
	b.ReportMetric(ms(median(gaps)), "end-to-start-ms")
	b.ReportMetric(ms(percentile(gaps, 0.99)), "end-to-start-p99-ms")
}

// BenchmarkWide200 runs 200 independent `true` steps (caching off) and
// reports the wall time per step.
func BenchmarkWide200(b *testing.B) {
	e := benchEngine(b)
	p := benchPipeline(b, benchSteps, false)
	b.ReportAllocs()
	var per []time.Duration
	for b.Loop() {
		start := time.Now()
		submitWaitBench(b, e, p)
		per = append(per, time.Since(start)/benchSteps)
	}
	b.ReportMetric(ms(median(per)), "wall-ms/step")
}

func submitWaitBench(b *testing.B, e *Engine, p *Pipeline) *Run {
	id, err := e.Submit(b.Context(), p, nil, SubmitOptions{DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	run, err := e.Wait(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	if run.State != RunSucceeded {
		b.Fatalf("run %s: %s", run.State, run.Reason)
	}
	return run
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration { return percentile(ds, 0.5) }

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
