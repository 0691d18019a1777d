package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cycle is one model's trip from zero and back.
type cycle struct {
	// first is the first request's latency, as the client saw it; firstErr
	// its failure, if it failed.
	first    time.Duration
	firstErr string
	// startToReady is the runtime's start-to-ready time and gap the probe
	// gap; known says the split could be read.
	startToReady, gap time.Duration
	known, gapKnown   bool
	// replicas counts the replicas that became ready in the cycle.
	replicas int
	// sent and failed count the cycle's requests, the first included.
	sent, failed int64
	failure      string // the first failure's reason
	// warm are latencies of requests sent after the first answer.
	warm []time.Duration
	// toZero is the time from the end of the load to zero replicas; 0 for
	// the last cycle, which does not wait.
	toZero time.Duration
}

// modelRun is a model's cycles.
type modelRun struct {
	model, label string
	cycles       []cycle
	source       string // where the split came from: metrics or log
	err          error  // why the cycles stopped early, if they did
}

// bencher runs the cycles of every model against one gateway.
type bencher struct {
	f      flags
	gw     *gateway
	client *http.Client
	// active is held by the model whose cycle is under way, so that two
	// cold starts never overlap and the load of one does not slow the
	// other's start.
	active sync.Mutex
	log    io.Writer
}

// runModel runs f.cycles cycles of model, or fewer if ctx ends first.
func (b *bencher) runModel(ctx context.Context, model string) *modelRun {
	kind := modelKinds[model]
	run := &modelRun{model: model, label: kind.label}
	body, err := kind.body(b.f)
	if err != nil {
		run.err = err
		return run
	}
	url := "http://" + b.gw.rest + "/v2/models/" + model + "/infer"
	loadEnd := time.Time{}
	for i := range b.f.cycles {
		z, err := b.waitZero(ctx, model)
		if err != nil {
			run.err = fmt.Errorf("cycle %d: %w", i+1, err)
			return run
		}
		if i > 0 {
			run.cycles[i-1].toZero = z.Sub(loadEnd)
		}
		c, end, source, err := b.once(ctx, model, url, body)
		if err != nil {
			run.err = fmt.Errorf("cycle %d: %w", i+1, err)
			return run
		}
		loadEnd = end
		if source != "" {
			run.source = source
		}
		run.cycles = append(run.cycles, c)
		split := "start-to-ready unknown"
		if c.known {
			split = fmt.Sprintf("runtime start-to-ready %s, gateway %s", ms(c.startToReady), ms(c.first-c.startToReady))
			if c.gapKnown {
				split += ", probe gap " + ms(c.gap)
			}
		}
		fmt.Fprintf(b.log, "%-5s cycle %2d/%d: first request %s (%s); %d requests, %d failed\n",
			model, i+1, b.f.cycles, ms(c.first), split, c.sent, c.failed)
	}
	return run
}

// waitZero waits until model has no replica desired, running or ready,
// and returns when it saw that.
func (b *bencher) waitZero(ctx context.Context, model string) (time.Time, error) {
	deadline := time.Now().Add(b.f.zeroTimeout)
	for {
		r, err := b.gw.row(ctx, model)
		if err == nil && r.Desired == 0 && r.Running == 0 && r.Ready == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("desired %d, running %d, ready %d", r.Desired, r.Running, r.Ready)
			}
			return time.Time{}, fmt.Errorf("%s not at zero replicas after %s: %w", model, b.f.zeroTimeout, err)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-b.gw.proc.Done():
			return time.Time{}, fmt.Errorf("infergate serve exited (%v)%s", b.gw.proc.Err(), b.gw.logTail())
		case <-time.After(50 * time.Millisecond): // polling the admin API's state
		}
	}
}

// once runs one cycle of a model at zero: the first request, with the
// load's clients started at the same moment, then the rest of the load.
// It returns the cycle, when the load ended and where the split came from.
func (b *bencher) once(ctx context.Context, model, url string, body []byte) (c cycle, loadEnd time.Time, source string, err error) {
	b.active.Lock()
	defer b.active.Unlock()
	before, beforeGap, err := b.gw.metrics(ctx, model)
	if err != nil {
		return c, loadEnd, "", err
	}
	_, logFrom := b.gw.readyEvents(model, 0)

	var (
		sent, failed atomic.Int64
		failMu       sync.Mutex
		failure      string
		warmMu       sync.Mutex
		warm         []time.Duration
		answered     atomic.Bool
	)
	fail := func(reason string) {
		failed.Add(1)
		failMu.Lock()
		if failure == "" {
			failure = reason
		}
		failMu.Unlock()
	}
	start := time.Now()
	end := start.Add(b.f.load)
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		sent.Add(1)
		d, err := b.post(ctx, url, body)
		if err != nil {
			c.firstErr = err.Error()
			fail(err.Error())
		}
		c.first = d
		answered.Store(true)
	}()
	var wg sync.WaitGroup
	for range b.f.concurrency {
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				warmMu.Lock()
				warm = append(warm, mine...)
				warmMu.Unlock()
			}()
			for range b.f.maxRequests {
				if time.Now().After(end) || ctx.Err() != nil {
					return
				}
				after := answered.Load()
				sent.Add(1)
				d, err := b.post(ctx, url, body)
				if err != nil {
					fail(err.Error())
				} else if after {
					mine = append(mine, d)
				}
			}
		})
	}
	<-firstDone
	wg.Wait()
	loadEnd = time.Now()
	if ctx.Err() != nil {
		return c, loadEnd, "", ctx.Err()
	}
	c.sent, c.failed, c.failure, c.warm = sent.Load(), failed.Load(), failure, warm

	// The split: the start-to-ready time of the replica that served the
	// first request, from the histogram when there is one, else the log.
	after, afterGap, err := b.gw.metrics(ctx, model)
	if err != nil {
		return c, loadEnd, "", err
	}
	if after.found {
		source = "metrics"
		n := after.count - before.count
		c.replicas = int(n)
		if n == 1 {
			c.startToReady, c.known = seconds(after.sum-before.sum), true
			if afterGap.found {
				c.gap, c.gapKnown = seconds(afterGap.sum-beforeGap.sum), true
			}
		}
		return c, loadEnd, source, nil
	}
	source = "log"
	// The supervisor logs before the request is let go, but the log is read
	// by another goroutine: give it a moment.
	var events []readyEvent
	for wait := time.Now().Add(2 * time.Second); time.Now().Before(wait); {
		if events, _ = b.gw.readyEvents(model, logFrom); len(events) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.replicas = len(events)
	if len(events) > 0 {
		// The first replica to be ready is the one the first request
		// waited for.
		c.startToReady, c.known = events[0].startToReady, true
		c.gap, c.gapKnown = events[0].gap, events[0].hasGap
	}
	return c, loadEnd, source, nil
}

// post sends one inference request and returns its latency, or why it
// failed (transport error or a status other than 200).
func (b *bencher) post(ctx context.Context, url string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, err
	}
	msg, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return d, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// runBench starts the gateway, runs every model's cycles at once (their
// active phases one at a time) and prints the report.
func runBench(ctx context.Context, f flags, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "coldstart-")
	if err != nil {
		return err
	}
	if f.keep {
		fmt.Fprintln(stderr, "coldstart: keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	models := strings.Split(f.models, ",")
	config, err := writeConfig(dir, f, models)
	if err != nil {
		return err
	}
	gw, err := startGateway(ctx, f, dir, config)
	if err != nil {
		return err
	}
	defer gw.stop()
	b := &bencher{
		f:  f,
		gw: gw,
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: f.concurrency + 1, IdleConnTimeout: time.Minute},
			Timeout:   time.Minute,
		},
		log: stderr,
	}
	fmt.Fprintf(stdout, "%d cycles per model, each from zero replicas: one request, and %d clients sending back to back for %s alongside it\n",
		f.cycles, f.concurrency, f.load)
	runs := make([]*modelRun, len(models))
	var wg sync.WaitGroup
	for i, m := range models {
		wg.Go(func() { runs[i] = b.runModel(ctx, m) })
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !isDeadline(ctx) {
		return err
	}
	report(stdout, f, runs)
	return nil
}

func isDeadline(ctx context.Context) bool { return ctx.Err() == context.DeadlineExceeded }
