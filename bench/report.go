package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// Report is a whole `infergate bench` run: what was measured, how, and one
// Result per point (one point, or one per load of a sweep). It is what the
// JSON output holds and what Compare reads back. Every output is a
// function of the Report alone, so equal reports print equal bytes.
type Report struct {
	Tool    string `json:"tool"`
	Version string `json:"version,omitempty"`
	// Started is when the run began (RFC 3339), as the caller sets it.
	Started string `json:"started,omitempty"`
	// URL, Model and ModelVersion say what was measured.
	URL          string `json:"url"`
	Model        string `json:"model"`
	ModelVersion string `json:"model_version,omitempty"`
	// Protocol is "rest" or "grpc"; Encoding "json", "binary" (REST),
	// "contents" or "raw" (gRPC).
	Protocol string `json:"protocol"`
	Encoding string `json:"encoding"`
	// Batch is the batch size of each request: inferences per request.
	Batch int64 `json:"batch"`
	// Inputs describes the request's tensors, Data where their values came
	// from.
	Inputs string `json:"inputs,omitempty"`
	Data   string `json:"data,omitempty"`
	// Mode is ModeClosed or ModeOpen, Arrivals the open loop's schedule.
	Mode     string `json:"mode"`
	Arrivals string `json:"arrivals,omitempty"`
	// Warmup precedes each point; Duration and Requests bound each point's
	// measured window (0: not bounded that way).
	Warmup   time.Duration `json:"warmup_ns"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Requests int64         `json:"requests_per_point,omitempty"`
	// Sweep is the swept range ("concurrency 1:32:x2"), empty for one
	// point; LatencyStat and LatencyLimit its stop rule.
	Sweep        string        `json:"sweep,omitempty"`
	LatencyStat  string        `json:"latency_stat,omitempty"`
	LatencyLimit time.Duration `json:"latency_limit_ns,omitempty"`
	// Points are the measured points, in the order they ran.
	Points []*Result `json:"points"`
	// Stopped says why a sweep ended before its range did.
	Stopped string `json:"stopped,omitempty"`
	// Interrupted is set when the run was cut short (Ctrl-C, or the
	// overall time limit): the last point may be partial.
	Interrupted bool `json:"interrupted,omitempty"`
	// Notes are remarks for the reader, such as an overloaded generator.
	Notes []string `json:"notes,omitempty"`
}

// ReadReport reads a Report written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: not an infergate bench report: %w", path, err)
	}
	if len(r.Points) == 0 {
		return nil, fmt.Errorf("%s: the report has no points", path)
	}
	return &r, nil
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// open reports whether the points are an open loop's.
func (r *Report) open() bool { return r.Mode == ModeOpen }

// loadName is the name of what a point varies: "concurrency" or "rate".
func (r *Report) loadName() string {
	if r.open() {
		return "rate"
	}
	return "concurrency"
}

// Load returns the load of point p: its concurrency, or its target rate.
func (r *Report) Load(p *Result) string {
	if r.open() {
		return strconv.FormatFloat(p.TargetRate, 'f', -1, 64) + "/s"
	}
	return strconv.Itoa(p.Concurrency)
}

// Inferences returns the inferences per second of p: successful requests
// per second times the batch size.
func (r *Report) Inferences(p *Result) float64 {
	return p.RPS * float64(max(r.Batch, 1))
}

// describe is the report's header: what, how, how long.
func (r *Report) describe() []string {
	enc := r.Protocol
	switch r.Protocol + " " + r.Encoding {
	case "rest json":
		enc = "REST with JSON tensors"
	case "rest binary":
		enc = "REST with binary tensors"
	case "grpc contents":
		enc = "gRPC with typed contents"
	case "grpc raw":
		enc = "gRPC with raw_input_contents"
	}
	model := r.Model
	if r.ModelVersion != "" {
		model += " version " + r.ModelVersion
	}
	lines := []string{fmt.Sprintf("model %s at %s, %s, batch %d", model, r.URL, enc, max(r.Batch, 1))}
	if r.Inputs != "" || r.Data != "" {
		lines = append(lines, strings.Join(nonEmpty(r.Inputs, r.Data), "; "))
	}
	var how []string
	if r.open() {
		how = append(how, "open loop ("+r.Arrivals+" arrivals)")
	} else {
		how = append(how, "closed loop")
	}
	var bound []string
	if r.Duration > 0 {
		bound = append(bound, r.Duration.String())
	}
	if r.Requests > 0 {
		bound = append(bound, strconv.FormatInt(r.Requests, 10)+" requests")
	}
	per := strings.Join(bound, " or ")
	if r.Sweep != "" {
		per += " per point"
	}
	if r.Warmup > 0 {
		per += " after " + r.Warmup.String() + " of warm-up"
	}
	how = append(how, per)
	if r.Sweep != "" {
		s := "sweep " + r.Sweep
		if r.LatencyLimit > 0 {
			s += fmt.Sprintf(", stopping when %s passes %s", r.LatencyStat, r.LatencyLimit)
		}
		how = append(how, s)
	}
	return append(lines, strings.Join(how, ", "))
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// WriteText writes the report for a terminal: a header, a table of the
// points, the errors of each point by kind, and why a sweep stopped.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	title := r.Tool
	if title == "" {
		title = "infergate bench"
	}
	if r.Started != "" {
		title += ", " + r.Started
	}
	b.WriteString(title + "\n")
	for _, l := range r.describe() {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{r.loadName()}
	if r.open() {
		head = append(head, "achieved/s")
	}
	head = append(head, "infer/s", "requests", "errors", "p50", "p90", "p95", "p99", "p99.9", "max")
	if r.open() {
		head = append(head, "sent p99", "send lag p99", "late")
	}
	head = append(head, "sent", "received")
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, p := range r.Points {
		row := []string{r.Load(p)}
		if r.open() {
			row = append(row, formatNumber(p.AchievedRate))
		}
		row = append(row, formatNumber(r.Inferences(p)), strconv.FormatInt(p.Requests, 10), strconv.FormatInt(p.Errors, 10),
			FormatDuration(p.P50), FormatDuration(p.P90), FormatDuration(p.P95), FormatDuration(p.P99), FormatDuration(p.P999), FormatDuration(p.Max))
		if r.open() {
			row = append(row, FormatDuration(p.ServiceP99), FormatDuration(p.SendLagP99), strconv.FormatInt(p.Late, 10))
		}
		row = append(row, FormatBytes(p.BytesSent), FormatBytes(p.BytesReceived))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.open() {
		b.WriteString("\nLatency runs from each request's intended send time, so waiting behind a slow\n" +
			"server counts (coordinated omission corrected); \"sent p99\" is from the actual send.\n")
	}
	for _, p := range r.Points {
		if len(p.ErrorKinds) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nerrors at %s %s:\n", r.loadName(), r.Load(p))
		for _, e := range p.ErrorKinds {
			fmt.Fprintf(&b, "  %8d  %s\n", e.Count, e.Kind)
		}
	}
	if r.Stopped != "" {
		fmt.Fprintf(&b, "\nsweep stopped at %s %s: %s\n", r.loadName(), r.Load(r.Points[len(r.Points)-1]), r.Stopped)
	}
	if r.Interrupted {
		b.WriteString("\ninterrupted: the last point is partial\n")
	}
	for _, n := range r.Notes {
		b.WriteString("\nnote: " + n + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCSV writes one line per point with perf_analyzer's column names
// where they mean the same thing (latencies in microseconds), then
// columns of its own.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := []string{"Concurrency"}
	if r.open() {
		head = []string{"Request Rate"}
	}
	head = append(head, "Inferences/Second", "p50 latency", "p90 latency", "p95 latency", "p99 latency", "Avg latency",
		"p99.9 latency", "Max latency", "Requests/Second", "Requests", "Errors", "Bytes Sent", "Bytes Received")
	if r.open() {
		head = append(head, "Achieved Rate", "Late Sends", "Sent p99 latency")
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	us := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Microsecond), 10) }
	num := func(f float64) string { return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64) }
	for _, p := range r.Points {
		row := []string{strconv.Itoa(p.Concurrency)}
		if r.open() {
			row = []string{num(p.TargetRate)}
		}
		row = append(row, num(r.Inferences(p)), us(p.P50), us(p.P90), us(p.P95), us(p.P99), us(p.Mean),
			us(p.P999), us(p.Max), num(p.RPS), strconv.FormatInt(p.Requests, 10), strconv.FormatInt(p.Errors, 10),
			strconv.FormatInt(p.BytesSent, 10), strconv.FormatInt(p.BytesReceived, 10))
		if r.open() {
			row = append(row, num(p.AchievedRate), strconv.FormatInt(p.Late, 10), us(p.ServiceP99))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Compare writes the differences between an old and a new report, point by
// point (points are matched by load), with the ratio new/old of each
// figure: above 1 is more throughput or more latency.
func Compare(w io.Writer, oldName string, old *Report, newName string, cur *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "old: %s: %s\n", oldName, old.describe()[0])
	fmt.Fprintf(&b, "new: %s: %s\n", newName, cur.describe()[0])
	if old.Mode != cur.Mode {
		fmt.Fprintf(&b, "note: the old run is a %s loop, the new one a %s loop\n", old.Mode, cur.Mode)
	}
	byLoad := map[string]*Result{}
	for _, p := range old.Points {
		byLoad[old.Load(p)] = p
	}
	matched := map[string]bool{}
	for _, np := range cur.Points {
		load := cur.Load(np)
		op := byLoad[load]
		if op == nil {
			continue
		}
		matched[load] = true
		fmt.Fprintf(&b, "\n%-16s%s%s%s\n", cur.loadName()+" "+load, padLeft("old", 10), padLeft("new", 10), padLeft("new/old", 9))
		row := func(name, o, n string, ratio float64) {
			fmt.Fprintf(&b, "  %-14s%s%s%s\n", name, padLeft(o, 10), padLeft(n, 10), padLeft(formatRatio(ratio), 9))
		}
		row("infer/s", formatNumber(old.Inferences(op)), formatNumber(cur.Inferences(np)), ratio(old.Inferences(op), cur.Inferences(np)))
		for _, s := range []struct {
			name string
			o, n time.Duration
		}{{"p50", op.P50, np.P50}, {"p90", op.P90, np.P90}, {"p95", op.P95, np.P95}, {"p99", op.P99, np.P99}, {"p99.9", op.P999, np.P999}, {"max", op.Max, np.Max}} {
			row(s.name, FormatDuration(s.o), FormatDuration(s.n), ratio(float64(s.o), float64(s.n)))
		}
		row("errors", strconv.FormatInt(op.Errors, 10), strconv.FormatInt(np.Errors, 10), ratio(float64(op.Errors), float64(np.Errors)))
	}
	var only []string
	for _, p := range old.Points {
		if !matched[old.Load(p)] {
			only = append(only, "old "+old.loadName()+" "+old.Load(p))
		}
	}
	for _, p := range cur.Points {
		if !matched[cur.Load(p)] {
			only = append(only, "new "+cur.loadName()+" "+cur.Load(p))
		}
	}
	if len(matched) == 0 {
		b.WriteString("\nno point of one run has the load of a point of the other\n")
	}
	if len(only) > 0 {
		b.WriteString("\nunmatched: " + strings.Join(only, ", ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// padLeft right-aligns s in w characters (µ is one character, two bytes).
func padLeft(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return strings.Repeat(" ", w-n) + s
	}
	return s
}

// ratio returns n/o, NaN when o is zero (shown as "-").
func ratio(o, n float64) float64 {
	if o == 0 {
		if n == 0 {
			return 1
		}
		return math.NaN()
	}
	return n / o
}

func formatRatio(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// FormatDuration writes d with three significant digits in the unit that
// suits it: 850ns, 12.3µs, 301µs, 1.25ms, 2.00s.
func FormatDuration(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	units := []struct {
		name string
		size time.Duration
	}{{"s", time.Second}, {"ms", time.Millisecond}, {"µs", time.Microsecond}}
	for _, u := range units {
		if d >= u.size {
			return sig3(float64(d)/float64(u.size)) + u.name
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

// sig3 writes v (>= 1) with three significant digits.
func sig3(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// FormatBytes writes n in SI units: 950B, 12.3kB, 1.20MB.
func FormatBytes(n int64) string {
	if n < 1000 {
		return strconv.FormatInt(n, 10) + "B"
	}
	v := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		v /= 1000
		if v < 1000 {
			return sig3(v) + u
		}
	}
	return sig3(v) + "PB"
}

// formatNumber writes a rate with one decimal.
func formatNumber(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
