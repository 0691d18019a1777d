package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// fixedResult builds a Result whose figures come from a known set of
// latencies, as a run would summarize them.
func fixedResult(mode string, load float64, base time.Duration, n int, errs []ErrorCount) *Result {
	r := &Result{Mode: mode, Latency: new(Histogram), Elapsed: 3 * time.Second, TimelineInterval: 500 * time.Millisecond}
	if mode == ModeOpen {
		r.TargetRate, r.Arrivals = load, ArrivalsPoisson
		r.Concurrency = 12
		r.ServiceP50, r.ServiceP99 = base, 3*base
		r.SendLagP50, r.SendLagP99 = 8*time.Microsecond, 40*time.Microsecond
		r.Late = 3
	} else {
		r.Concurrency = int(load)
	}
	for i := range n {
		// A spread with a long tail: most near base, one in a hundred at 10x.
		d := base + time.Duration(i%50)*base/50
		if i%100 == 99 {
			d = 10 * base
		}
		r.Latency.Record(d)
	}
	var failed int64
	for _, e := range errs {
		failed += e.Count
	}
	r.Requests, r.Errors, r.ErrorKinds = int64(n)+failed, failed, errs
	if len(errs) > 0 {
		r.FirstError = "bench: " + errs[0].Kind
	}
	r.BytesSent, r.BytesReceived = int64(n+int(failed))*228, int64(n+int(failed))*265
	for i := range 6 {
		r.Timeline = append(r.Timeline, TimePoint{
			Offset: time.Duration(i) * 500 * time.Millisecond, Requests: int64(n / 6), Errors: failed / 6,
			P50: base + time.Duration(i)*base/20, P99: 3*base + time.Duration(i%3)*base, Max: 10 * base,
		})
	}
	r.summarize()
	return r
}

func closedSweepReport() *Report {
	rep := &Report{
		Tool: "infergate bench", Version: "test", Started: "2026-01-02T03:04:05Z",
		URL: "http://127.0.0.1:8080", Model: "iris", Protocol: "rest", Encoding: "json", Batch: 1,
		Inputs: "inputs input FP32 [1,4]", Data: "random data, 16 distinct requests (seed 1)",
		Mode: ModeClosed, Warmup: time.Second, Duration: 3 * time.Second,
		Sweep: "concurrency 1:8:x2", LatencyStat: "p99", LatencyLimit: 1500 * time.Microsecond,
		Points: []*Result{
			fixedResult(ModeClosed, 1, 300*time.Microsecond, 9000, nil),
			fixedResult(ModeClosed, 2, 350*time.Microsecond, 16000, nil),
			fixedResult(ModeClosed, 4, 500*time.Microsecond, 22000, []ErrorCount{{Kind: "HTTP 503: no ready runtime replica", Count: 12}}),
			fixedResult(ModeClosed, 8, 900*time.Microsecond, 25000, []ErrorCount{{Kind: "HTTP 503: no ready runtime replica", Count: 40}, {Kind: "timeout", Count: 2}}),
		},
	}
	_, rep.Stopped = StopRule{Stat: "p99", Limit: rep.LatencyLimit}.Check(rep.Points[len(rep.Points)-1])
	return rep
}

func openReport() *Report {
	return &Report{
		Tool: "infergate bench", Version: "test", Started: "2026-01-02T03:04:05Z",
		URL: "grpc://127.0.0.1:8081", Model: "textclass", Protocol: "grpc", Encoding: "raw", Batch: 4,
		Inputs: "inputs tokens INT64 [4,16]", Data: "requests from requests.json (3)",
		Mode: ModeOpen, Arrivals: ArrivalsPoisson, Warmup: 2 * time.Second, Requests: 5000,
		Points:      []*Result{fixedResult(ModeOpen, 1500, 2*time.Millisecond, 4500, nil)},
		Interrupted: true,
		Notes:       []string{"stopped at -max-duration 1m0s"},
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); rerun with -update if the change is meant:\n%s", path, diff)
	}
}

func TestReportOutputsGolden(t *testing.T) {
	reports := map[string]*Report{"closed-sweep": closedSweepReport(), "open": openReport()}
	formats := []struct {
		ext   string
		write func(*Report, *bytes.Buffer) error
	}{
		{"txt", func(r *Report, b *bytes.Buffer) error { return r.WriteText(b) }},
		{"json", func(r *Report, b *bytes.Buffer) error { return r.WriteJSON(b) }},
		{"csv", func(r *Report, b *bytes.Buffer) error { return r.WriteCSV(b) }},
		{"html", func(r *Report, b *bytes.Buffer) error { return r.WriteHTML(b) }},
	}
	for _, name := range []string{"closed-sweep", "open"} {
		for _, f := range formats {
			t.Run(name+"."+f.ext, func(t *testing.T) {
				var b bytes.Buffer
				if err := f.write(reports[name], &b); err != nil {
					t.Fatal(err)
				}
				golden(t, "report-"+name+"."+f.ext, b.Bytes())
				// Equal reports print equal bytes.
				var again bytes.Buffer
				if err := f.write(reports[name], &again); err != nil || !bytes.Equal(b.Bytes(), again.Bytes()) {
					t.Error("a second rendering differs from the first")
				}
			})
		}
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	rep := closedSweepReport()
	path := filepath.Join(t.TempDir(), "r.json")
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Latency" }, cmp.Ignore())); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"points": []}`, `not json`} {
		p := filepath.Join(t.TempDir(), "bad.json")
		_ = os.WriteFile(p, []byte(bad), 0o644)
		if _, err := ReadReport(p); err == nil {
			t.Errorf("ReadReport(%q) = nil error", bad)
		}
	}
}

func TestReportHTMLIsSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := closedSweepReport().WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, banned := range []string{"<script src", "<link", "http://cdn", "https://", "@import"} {
		if strings.Contains(page, banned) {
			t.Errorf("the page holds %q: it must not load anything", banned)
		}
	}
	if n := strings.Count(page, "<svg"); n != 3 {
		t.Errorf("%d charts, want 3", n)
	}
}

func TestCompareGolden(t *testing.T) {
	old := closedSweepReport()
	cur := closedSweepReport()
	cur.Points = cur.Points[:3]
	cur.Points[0] = fixedResult(ModeClosed, 1, 250*time.Microsecond, 11000, nil)
	cur.Points[2] = fixedResult(ModeClosed, 4, 600*time.Microsecond, 20000, nil)
	cur.Points = append(cur.Points, fixedResult(ModeClosed, 16, time.Millisecond, 26000, nil))
	var b bytes.Buffer
	if err := Compare(&b, "old.json", old, "new.json", cur); err != nil {
		t.Fatal(err)
	}
	golden(t, "compare.txt", b.Bytes())
}

func TestFormatDurationAndBytes(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"}, {850, "850ns"}, {12300, "12.3µs"}, {301 * time.Microsecond, "301µs"}, {1250 * time.Microsecond, "1.25ms"},
		{2 * time.Second, "2.00s"}, {123456 * time.Millisecond, "123s"},
	} {
		if got := FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%d) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0B"}, {999, "999B"}, {12300, "12.3kB"}, {1_200_000, "1.20MB"}, {45_600_000_000, "45.6GB"}} {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestFormatProgress(t *testing.T) {
	got := FormatProgress("concurrency 8", Progress{Elapsed: 3449 * time.Millisecond, Requests: 41234, Errors: 2}, 10*time.Second, 13301.4)
	if want := "concurrency 8  3.4s/10s  41234 requests  13301/s  2 errors"; got != want {
		t.Errorf("FormatProgress = %q, want %q", got, want)
	}
}
