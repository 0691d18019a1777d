package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what wrk printed at the end of a run with --latency.
type wrkResult struct {
	Requests int64         // completed requests, non-2xx included
	Elapsed  time.Duration // the run's length as wrk measured it
	RPS      float64       // Requests/sec
	P50, P99 time.Duration // from the latency distribution
	Non2xx   int64         // "Non-2xx or 3xx responses"
	// SocketErrors adds up connect, read, write and timeout errors.
	SocketErrors int64
}

// parseWrk reads wrk's report: "N requests in 2.00s, ...", the 50% and
// 99% lines of --latency, "Requests/sec:", and the error lines wrk prints
// only when there were errors.
func parseWrk(r io.Reader) (wrkResult, error) {
	var res wrkResult
	var seen struct{ requests, rps, p50, p99 bool }
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return res, fmt.Errorf("wrk: %q: %w", line, err)
			}
			el, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return res, fmt.Errorf("wrk: %q: %w", line, err)
			}
			res.Requests, res.Elapsed, seen.requests = n, el, true
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return res, fmt.Errorf("wrk: %q: %w", line, err)
			}
			res.RPS, seen.rps = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			v, err := parseWrkDuration(f[1])
			if err != nil {
				return res, fmt.Errorf("wrk: %q: %w", line, err)
			}
			if f[0] == "50%" {
				res.P50, seen.p50 = v, true
			} else {
				res.P99, seen.p99 = v, true
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return res, fmt.Errorf("wrk: %q: %w", line, err)
			}
			res.Non2xx = n
		case strings.HasPrefix(line, "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 5
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return res, fmt.Errorf("wrk: %q: cannot read %q", line, part)
				}
				n, err := strconv.ParseInt(kv[1], 10, 64)
				if err != nil {
					return res, fmt.Errorf("wrk: %q: %w", line, err)
				}
				res.SocketErrors += n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	if !seen.requests || !seen.rps {
		return res, errors.New("wrk: no \"requests in\" or \"Requests/sec\" line in its output")
	}
	if !seen.p50 || !seen.p99 {
		return res, errors.New("wrk: no latency distribution in its output (was --latency given?)")
	}
	return res, nil
}

// parseWrkDuration reads wrk's times: 202.00us, 2.15ms, 1.00s, 1.00m,
// 1.00h.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || math.IsInf(f, 0) {
				return 0, fmt.Errorf("bad time %q", s)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("bad time %q", s)
}

// wholeSeconds rounds d up to whole seconds, at least one: wrk takes
// durations and timeouts in seconds only.
func wholeSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// wrkLua is the script that makes wrk post the iris request.
func wrkLua(body []byte) string {
	return "wrk.method = \"POST\"\nwrk.body = " + strconv.Quote(string(body)) + "\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
}

// runWrk runs one measured window of wrk against t at conc connections.
// The proxy's figures are sampled just before wrk starts and just after it
// exits (wrk has no warm-up of its own; the caller warms the target up),
// wrk's own CPU comes from its rusage.
func (d *driver) runWrk(ctx context.Context, t *target, conc int) (*windowResult, error) {
	url := "http://" + t.addr + "/v2/models/" + t.model + "/infer"
	cmd := exec.CommandContext(ctx, d.f.wrk, "-t", strconv.Itoa(d.f.wrkThreads), "-c", strconv.Itoa(conc),
		"-d", strconv.Itoa(wholeSeconds(d.f.window))+"s", "--timeout", strconv.Itoa(wholeSeconds(d.f.timeout))+"s",
		"-s", d.wrkScript, "--latency", url)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	w := &windowResult{}
	w.before = d.snap(t, 0)
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	w.after = d.snap(t, 0)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("wrk against %s: %w: %s%s", t.label, err, firstLines(errOut.String(), 5), firstLines(out.String(), 5))
	}
	res, err := parseWrk(&out)
	if err != nil {
		return nil, fmt.Errorf("against %s: %w:\n%s", t.label, err, out.String())
	}
	w.genCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	w.genWall = wall
	w.requests = res.Requests
	w.errors = res.Non2xx + res.SocketErrors
	switch {
	case res.Non2xx > 0:
		w.firstErr = fmt.Sprintf("wrk: %d answers were not 2xx", res.Non2xx)
	case res.SocketErrors > 0:
		w.firstErr = fmt.Sprintf("wrk: %d socket errors", res.SocketErrors)
	case res.Requests == 0:
		w.errors = 1
		w.firstErr = "wrk: no request completed"
	}
	w.elapsed = res.Elapsed
	if res.Elapsed > 0 {
		w.rps = float64(res.Requests-res.Non2xx) / res.Elapsed.Seconds()
	}
	w.p50, w.p99 = res.P50, res.P99
	return w, nil
}
