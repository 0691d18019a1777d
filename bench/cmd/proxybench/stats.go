package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/bench"
)

// snapshot is what is sampled just before and just after a measured
// window: CPU times, the proxy's wake-ups and, for the gateway, its Go
// runtime's counters.
type snapshot struct {
	// proxyCPU is the proxy's (0 when direct), upstreamCPU the runtime's,
	// driverCPU this process's (infergate's generator), genCPU an outside
	// generator's (when its pid was given).
	proxyCPU, upstreamCPU, driverCPU, genCPU time.Duration
	// wakeups are the voluntary context switches of every thread of the
	// proxy: each is a thread that blocked and was woken up again.
	wakeups int64
	gw      goCounters
}

// goCounters are the gateway's Go runtime counters from its /metrics.
type goCounters struct {
	ok       bool
	mallocs  float64 // go_memstats_mallocs_total
	gcCycles float64 // go_gc_duration_seconds_count
}

// snap samples the figures of t's proxy, of the runtime, of this process
// and of the process genPid (an outside generator; 0 for none).
func (d *driver) snap(t *target, genPid int) snapshot {
	var s snapshot
	// A process that exited is caught after the window; a read that
	// fails otherwise leaves 0, which the table would show as no CPU.
	if t.proxy != nil {
		s.proxyCPU, _ = t.proxy.cpu()
		s.wakeups = wakeups(t.proxy.pids())
	}
	s.upstreamCPU, _ = d.upstream.cpu()
	s.driverCPU, _ = bench.ProcessCPU(os.Getpid())
	if genPid > 0 {
		s.genCPU, _ = bench.ProcessCPU(genPid)
	}
	if t.gateway {
		s.gw, _ = scrapeGoCounters(d.gwAddrs.admin)
	}
	return s
}

// wakeups sums voluntary_ctxt_switches over every thread of pids, from
// /proc/<pid>/task/*/status. Threads that exited are not counted.
func wakeups(pids []int) int64 {
	var n int64
	for _, pid := range pids {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "status"))
		for _, path := range tasks {
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			if v, ok := statusField(b, "voluntary_ctxt_switches:"); ok {
				n += v
			}
		}
	}
	return n
}

// statusField returns the number after name in a /proc status file.
func statusField(b []byte, name string) (int64, bool) {
	i := bytes.Index(b, []byte("\n"+name))
	if i < 0 {
		if !bytes.HasPrefix(b, []byte(name)) {
			return 0, false
		}
	} else {
		b = b[i+1:]
	}
	line, _, _ := bytes.Cut(b[len(name):], []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	return v, err == nil
}

// rssKB returns the resident set size of pid in KiB (VmRSS).
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	v, ok := statusField(b, "VmRSS:")
	if !ok {
		return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return v, nil
}

// scrapeGoCounters reads the gateway's Go runtime counters from its admin
// /metrics.
func scrapeGoCounters(admin string) (goCounters, error) {
	code, body, err := fasthttp.GetTimeout(nil, "http://"+admin+"/metrics", 5*time.Second)
	if err != nil {
		return goCounters{}, err
	}
	if code != fasthttp.StatusOK {
		return goCounters{}, fmt.Errorf("GET /metrics: status %d", code)
	}
	return parseGoCounters(bytes.NewReader(body))
}

// parseGoCounters reads go_memstats_mallocs_total and
// go_gc_duration_seconds_count from Prometheus's text format.
func parseGoCounters(r io.Reader) (goCounters, error) {
	var c goCounters
	var mallocs, gcs bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		var dst *float64
		switch f[0] {
		case "go_memstats_mallocs_total":
			dst, mallocs = &c.mallocs, true
		case "go_gc_duration_seconds_count":
			dst, gcs = &c.gcCycles, true
		default:
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return goCounters{}, fmt.Errorf("/metrics: %s %q: %w", f[0], f[1], err)
		}
		*dst = v
	}
	if err := sc.Err(); err != nil {
		return goCounters{}, err
	}
	if !mallocs || !gcs {
		return goCounters{}, errors.New("/metrics: no go_memstats_mallocs_total or go_gc_duration_seconds_count")
	}
	c.ok = true
	return c, nil
}

// scrapeCost measures the allocations one /metrics scrape makes in the
// gateway itself (scrapes back to back, with no load, the smallest
// difference), so that the allocations per request leave it out.
func scrapeCost(admin string) float64 {
	prev, err := scrapeGoCounters(admin)
	if err != nil {
		return 0
	}
	best := -1.0
	for range 3 {
		c, err := scrapeGoCounters(admin)
		if err != nil {
			return 0
		}
		if d := c.mallocs - prev.mallocs; best < 0 || d < best {
			best = d
		}
		prev = c
	}
	return max(best, 0)
}
