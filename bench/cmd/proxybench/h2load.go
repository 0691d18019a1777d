package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/bench"
)

// grpcPrefixLen is the length prefix of a gRPC message: a compression
// flag and a big-endian uint32 length.
const grpcPrefixLen = 5

// grpcFrame returns m as one uncompressed, length-prefixed gRPC message:
// the body h2load posts.
func grpcFrame(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := make([]byte, grpcPrefixLen+len(b))
	binary.BigEndian.PutUint32(out[1:grpcPrefixLen], uint32(len(b)))
	copy(out[grpcPrefixLen:], b)
	return out, nil
}

// h2loadResult is what h2load printed at the end of a run.
type h2loadResult struct {
	// Requests counts the requests done in the measured duration;
	// Succeeded those answered 2xx or 3xx; Failed those that were not
	// (errors included: h2load counts a stream error as failed and
	// errored); Timeout those that timed out.
	Requests, Succeeded, Failed, Errored, Timeout int64
	RPS                                           float64 // "finished in ..., N req/s"
	// DataBytes counts the DATA payload received over the whole run,
	// warm-up included: a gRPC error comes as trailers only, without a
	// message, so a run whose answers all carried one received at least
	// Requests times the answer's size.
	DataBytes int64
}

var h2loadTraffic = regexp.MustCompile(`\((\d+)\) (\w+)`)

// parseH2load reads h2load's summary: the "finished in", "requests:" and
// "traffic:" lines.
func parseH2load(r io.Reader) (h2loadResult, error) {
	var res h2loadResult
	var seen struct{ finished, requests, traffic bool }
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "finished in "):
			// finished in 3.00s, 47775.50 req/s, 4.56MB/s
			parts := strings.Split(line, ",")
			if len(parts) < 2 {
				return res, fmt.Errorf("h2load: %q: no req/s", line)
			}
			v, ok := strings.CutSuffix(strings.TrimSpace(parts[1]), " req/s")
			if !ok {
				return res, fmt.Errorf("h2load: %q: no req/s", line)
			}
			rps, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return res, fmt.Errorf("h2load: %q: %w", line, err)
			}
			res.RPS, seen.finished = rps, true
		case strings.HasPrefix(line, "requests:"):
			// requests: 95551 total, 95551 started, 95551 done, 95551 succeeded, 0 failed, 0 errored, 0 timeout
			counts, err := countsByWord(strings.TrimPrefix(line, "requests:"))
			if err != nil {
				return res, fmt.Errorf("h2load: %q: %w", line, err)
			}
			res.Requests, res.Succeeded, res.Failed = counts["done"], counts["succeeded"], counts["failed"]
			res.Errored, res.Timeout = counts["errored"], counts["timeout"]
			seen.requests = true
		case strings.HasPrefix(line, "traffic:"):
			// traffic: 9.12MB (9558218) total, 277.37KB (284022) headers (space savings 94.74%), 9.07MB (9514335) data
			for _, m := range h2loadTraffic.FindAllStringSubmatch(line, -1) {
				if m[2] == "data" {
					n, err := strconv.ParseInt(m[1], 10, 64)
					if err != nil {
						return res, fmt.Errorf("h2load: %q: %w", line, err)
					}
					res.DataBytes, seen.traffic = n, true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	if !seen.finished || !seen.requests || !seen.traffic {
		return res, errors.New(`h2load: its output lacks a "finished in", "requests:" or "traffic:" line`)
	}
	return res, nil
}

// countsByWord reads "95551 total, 95551 started, 0 failed" into a map.
func countsByWord(s string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			return nil, fmt.Errorf("cannot read %q", part)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, err
		}
		out[f[1]] = n
	}
	return out, nil
}

// errors returns the requests that did not succeed.
func (r h2loadResult) errorCount() int64 { return max(r.Failed, r.Timeout) }

// parseH2loadLog reads h2load's --log-file (one line per request done in
// the measured duration: start time in microseconds since the epoch, HTTP
// status, duration in microseconds), records the duration of every 200
// into h and returns how many lines it read and how many were not 200.
func parseH2loadLog(r io.Reader, h *bench.Histogram) (n, bad int64, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			return n, bad, fmt.Errorf("h2load log: line %d: %q is not start, status, duration", n+1, sc.Text())
		}
		n++
		if f[1] != "200" {
			bad++
			continue
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || us < 0 {
			return n, bad, fmt.Errorf("h2load log: line %d: bad duration %q", n, f[2])
		}
		h.Record(time.Duration(us) * time.Microsecond)
	}
	return n, bad, sc.Err()
}

// h2loadArgs are the arguments of one h2load run against t: conc
// concurrent streams over conns connections, for the window after a
// warm-up of its own, or n requests when n > 0.
func (d *driver) h2loadArgs(t *target, conc int, n int, logPath string) []string {
	conns := d.grpcConns(conc)
	streams := (conc + conns - 1) / conns
	args := []string{"-t", strconv.Itoa(min(d.f.h2loadThreads, conns)), "-c", strconv.Itoa(conns), "-m", strconv.Itoa(streams)}
	if n > 0 {
		args = append(args, "-n", strconv.Itoa(n))
	} else {
		args = append(args, "-D", strconv.FormatInt(d.f.window.Milliseconds(), 10)+"ms")
		if d.f.winWarmup > 0 {
			args = append(args, "--warm-up-time", strconv.FormatInt(d.f.winWarmup.Milliseconds(), 10)+"ms")
		}
	}
	if logPath != "" {
		args = append(args, "--log-file", logPath)
	}
	return append(args, "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", t.h2loadBody,
		"http://"+t.addr+"/inference.GRPCInferenceService/ModelInfer")
}

// checkH2load runs n requests of h2load through t once and checks that
// every one succeeded and carried exactly the answer the decoded call got:
// h2load counts HTTP statuses, and a gRPC error is a 200 whose trailers
// say so, without a message.
func (d *driver) checkH2load(ctx context.Context, t *target, n int) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, d.f.h2load, d.h2loadArgs(t, min(16, n), n, "")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("h2load: %w: %s", err, firstLines(string(out), 10))
	}
	res, err := parseH2load(strings.NewReader(string(out)))
	if err != nil {
		return err
	}
	if res.Requests != int64(n) || res.Succeeded != int64(n) || res.errorCount() != 0 {
		return fmt.Errorf("h2load: %d of %d requests done, %d succeeded, %d failed", res.Requests, n, res.Succeeded, res.Failed)
	}
	if want := int64(n) * t.answerSize; res.DataBytes != want {
		return fmt.Errorf("h2load: %d bytes of messages for %d answers of %d bytes (%d): some answers were gRPC errors, or not the runtime's",
			res.DataBytes, n, t.answerSize, want)
	}
	return nil
}

// runH2load runs one measured window of h2load against t at conc
// concurrent streams. The figures are sampled when h2load says its
// measured duration starts and ends (after its own warm-up), so neither
// the warm-up nor its connection setup count.
func (d *driver) runH2load(ctx context.Context, t *target, conc int) (*windowResult, error) {
	logPath := filepath.Join(d.dir, "h2load-requests.log")
	if err := os.Remove(logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, d.f.h2load, d.h2loadArgs(t, conc, 0, logPath)...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	w := &windowResult{}
	pre := d.snap(t, 0)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("h2load: %w", err)
	}
	pid := cmd.Process.Pid
	var out strings.Builder
	var started, over bool
	var t0, t1 time.Time
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		switch {
		case !started && strings.HasPrefix(line, "Main benchmark duration is started"):
			w.before, t0, started = d.snap(t, pid), time.Now(), true
		case strings.HasPrefix(line, "Main benchmark duration is over"):
			w.after, t1, over = d.snap(t, pid), time.Now(), true
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("h2load against %s: %w: %s%s", t.label, err, firstLines(errOut.String(), 5), firstLines(out.String(), 20))
	}
	if !started || !over {
		// An h2load that does not say when it measures: the whole run
		// counts, warm-up included, and h2load's CPU is not known.
		w.before, w.after = pre, d.snap(t, 0)
		d.noteOnce("h2load-markers", "h2load did not print when its measured duration started and ended: the proxies' CPU of its rows counts its warm-up too")
	} else {
		w.genWall = t1.Sub(t0)
		w.genCPU = w.after.genCPU - w.before.genCPU
	}
	res, err := parseH2load(strings.NewReader(out.String()))
	if err != nil {
		return nil, fmt.Errorf("against %s: %w", t.label, err)
	}
	w.requests, w.errors = res.Requests, res.errorCount()
	switch {
	case w.errors > 0:
		w.firstErr = fmt.Sprintf("h2load: %d failed, %d errored, %d timed out", res.Failed, res.Errored, res.Timeout)
	case res.Requests == 0:
		w.errors, w.firstErr = 1, "h2load: no request completed"
		if e := strings.TrimSpace(errOut.String()); e != "" {
			w.firstErr += ": " + firstLines(e, 3)
		}
	}
	// The messages received, warm-up included, must cover every answer
	// counted: fewer means some answers were trailers only (gRPC errors).
	if want := res.Succeeded * t.answerSize; res.DataBytes < want {
		missing := (want - res.DataBytes + t.answerSize - 1) / t.answerSize
		w.errors += missing
		if w.firstErr == "" {
			w.firstErr = fmt.Sprintf("h2load: at least %d answers carried no message (a gRPC error status)", missing)
		}
	}
	if res.RPS > 0 {
		w.elapsed = time.Duration(float64(res.Requests) / res.RPS * float64(time.Second))
		w.rps = float64(res.Succeeded) / w.elapsed.Seconds()
	}
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w.hist = new(bench.Histogram)
	if _, _, err := parseH2loadLog(f, w.hist); err != nil {
		return nil, err
	}
	w.p50, w.p99 = w.hist.Quantile(0.5), w.hist.Quantile(0.99)
	return w, nil
}
