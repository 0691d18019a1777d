package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WriteHTML writes the report as one self-contained HTML page: the header,
// a throughput-versus-latency chart over the points, latency and
// throughput over time across the whole run, the table of points and the
// errors. The charts are inline SVG drawn here: no script, no external
// file, so the page opens anywhere and can be mailed or archived as is.
func (r *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	title := "infergate bench: " + r.Model
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(title))
	b.WriteString(htmlStyle)
	b.WriteString("</head>\n<body>\n")
	fmt.Fprintf(&b, "<h1>%s</h1>\n<p class=\"meta\">", esc(title))
	meta := r.describe()
	if r.Started != "" {
		meta = append([]string{r.Started}, meta...)
	}
	for i, l := range meta {
		if i > 0 {
			b.WriteString("<br>\n")
		}
		b.WriteString(esc(l))
	}
	b.WriteString("</p>\n")
	if r.Interrupted {
		b.WriteString("<p class=\"warn\">Interrupted: the last point is partial.</p>\n")
	}
	if r.Stopped != "" {
		fmt.Fprintf(&b, "<p class=\"warn\">Sweep stopped at %s %s: %s.</p>\n", esc(r.loadName()), esc(r.Load(r.Points[len(r.Points)-1])), esc(r.Stopped))
	}

	b.WriteString("<h2>Throughput and latency</h2>\n")
	b.WriteString(r.throughputLatencyChart().svg())
	if r.open() {
		b.WriteString("<p class=\"note\">Latency runs from each request's intended send time, so time spent waiting behind a slow server counts (coordinated omission corrected).</p>\n")
	}
	lat, thr := r.timelineCharts()
	b.WriteString("<h2>Latency over time</h2>\n")
	b.WriteString(lat.svg())
	b.WriteString("<h2>Throughput over time</h2>\n")
	b.WriteString(thr.svg())

	b.WriteString("<h2>Points</h2>\n<table>\n<tr>")
	head := []string{r.loadName()}
	if r.open() {
		head = append(head, "achieved/s")
	}
	head = append(head, "infer/s", "requests", "errors", "p50", "p90", "p95", "p99", "p99.9", "max", "mean")
	if r.open() {
		head = append(head, "sent p99", "send lag p99", "late")
	}
	head = append(head, "sent", "received")
	for _, h := range head {
		fmt.Fprintf(&b, "<th>%s</th>", esc(h))
	}
	b.WriteString("</tr>\n")
	for _, p := range r.Points {
		row := []string{r.Load(p)}
		if r.open() {
			row = append(row, formatNumber(p.AchievedRate))
		}
		row = append(row, formatNumber(r.Inferences(p)), strconv.FormatInt(p.Requests, 10), strconv.FormatInt(p.Errors, 10),
			FormatDuration(p.P50), FormatDuration(p.P90), FormatDuration(p.P95), FormatDuration(p.P99), FormatDuration(p.P999),
			FormatDuration(p.Max), FormatDuration(p.Mean))
		if r.open() {
			row = append(row, FormatDuration(p.ServiceP99), FormatDuration(p.SendLagP99), strconv.FormatInt(p.Late, 10))
		}
		row = append(row, FormatBytes(p.BytesSent), FormatBytes(p.BytesReceived))
		b.WriteString("<tr>")
		for _, c := range row {
			fmt.Fprintf(&b, "<td>%s</td>", esc(c))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
	for _, p := range r.Points {
		if len(p.ErrorKinds) == 0 {
			continue
		}
		fmt.Fprintf(&b, "<h3>Errors at %s %s</h3>\n<table>\n<tr><th>count</th><th>kind</th></tr>\n", esc(r.loadName()), esc(r.Load(p)))
		for _, e := range p.ErrorKinds {
			fmt.Fprintf(&b, "<tr><td>%d</td><td class=\"kind\">%s</td></tr>\n", e.Count, esc(e.Kind))
		}
		b.WriteString("</table>\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "<p class=\"note\">%s</p>\n", esc(n))
	}
	b.WriteString("</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

const htmlStyle = `<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 2em auto; max-width: 60em; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; }
.meta { color: #555; }
.warn { background: #fff4e0; border-left: 4px solid #e69500; padding: .4em .8em; }
.note { color: #555; font-size: .92em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f6f6f6; }
td.kind { text-align: left; font-family: ui-monospace, monospace; }
svg { display: block; margin: .5em 0; }
svg text { font: 12px system-ui, sans-serif; fill: #333; }
svg .grid { stroke: #e8e8e8; }
svg .axis { stroke: #888; }
svg .sep { stroke: #bbb; stroke-dasharray: 4 3; }
svg text.clipped { fill: #a35200; }
</style>
`

func esc(s string) string { return html.EscapeString(s) }

// Series colours, by name.
var seriesColor = map[string]string{
	"p50": "#1f77b4", "p90": "#2ca02c", "p99": "#d62728", "p99.9": "#9467bd", "max": "#999999",
	"requests/s": "#1f77b4", "errors/s": "#d62728",
}

// series is a line on a chart; a NaN y breaks the line.
type series struct {
	name   string
	xs, ys []float64
	tips   []string // a tooltip per point, when markers are drawn
	marker bool
	thin   bool
}

// vline is a labelled vertical separator.
type vline struct {
	x     float64
	label string
}

// note is a text at a data point, drawn just above it.
type note struct {
	x, y float64
	text string
}

type chart struct {
	id             string // unique in the page, for the clip path
	xLabel, yLabel string
	series         []series
	vlines         []vline
	notes          []note
	empty          string // shown instead of a chart with no data
	// scaleBy names the series that set the y axis (default all); the
	// others are clipped to it, so that one spike does not flatten the
	// lines that matter. A chart that clips says so above the plot, with
	// the highest value it cut.
	scaleBy []string
	// value formats a y value for that notice and the marks of cut
	// points (default: the number).
	value func(float64) string
}

// The chart's layout: the plot area is inset by the pads. Above it, a
// strip for the clipping notice (and the labels of the highest points);
// below it, the x axis's ticks and label, then the legend, so that the
// legend never covers a line, a point or a label.
const (
	chartW, chartH                 = 760, 344
	padL, padR, padT, padB float64 = 64, 32, 28, 68
	// legendY is the top of the legend's colour boxes.
	legendY float64 = chartH - 18
)

// niceScale returns a tick step and an axis end for data up to hi: steps
// of 1, 2 or 5 times a power of ten, about five ticks.
func niceScale(hi float64) (step, end float64) {
	if !(hi > 0) || math.IsInf(hi, 0) {
		return 1, 1
	}
	raw := hi / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		step = p
	case f <= 2:
		step = 2 * p
	case f <= 5:
		step = 5 * p
	default:
		step = 10 * p
	}
	return step, math.Ceil(hi/step-1e-9) * step
}

// tickLabel writes v with the decimals that step needs.
func tickLabel(v, step float64) string {
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

func coord(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// clips says whether the y axis may cut the named series: it is not one of
// scaleBy.
func (c *chart) clips(name string) bool {
	return len(c.scaleBy) > 0 && !slices.Contains(c.scaleBy, name)
}

// format writes a y value for the clipping notice.
func (c *chart) format(v float64) string {
	if c.value != nil {
		return c.value(v)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func (c *chart) svg() string {
	var xMax, yMax float64
	points := 0
	// The highest value of a series that does not set the y axis, and
	// its name: if it is above the axis, the chart says so.
	var cutMax float64
	var cutName string
	for _, s := range c.series {
		scales := !c.clips(s.name)
		for i, x := range s.xs {
			if math.IsNaN(s.ys[i]) {
				continue
			}
			xMax = math.Max(xMax, x)
			if scales {
				yMax = math.Max(yMax, s.ys[i])
			} else if s.ys[i] > cutMax {
				cutMax, cutName = s.ys[i], s.name
			}
			points++
		}
	}
	for _, v := range c.vlines {
		xMax = math.Max(xMax, v.x)
	}
	var b strings.Builder
	if points == 0 {
		msg := c.empty
		if msg == "" {
			msg = "no data"
		}
		fmt.Fprintf(&b, "<p class=\"note\">%s</p>\n", esc(msg))
		return b.String()
	}
	xStep, xEnd := niceScale(xMax)
	yStep, yEnd := niceScale(yMax)
	plotW, plotH := chartW-padL-padR, chartH-padT-padB
	px := func(x float64) float64 { return padL + x/xEnd*plotW }
	py := func(y float64) float64 { return padT + plotH - y/yEnd*plotH }

	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, "<clipPath id=\"%s\"><rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\"/></clipPath>\n", c.id, coord(padL), coord(padT-4), coord(plotW+4), coord(plotH+4))
	for y := 0.0; y <= yEnd+yStep/2; y += yStep {
		fmt.Fprintf(&b, "<line class=\"grid\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", coord(padL), coord(py(y)), coord(padL+plotW), coord(py(y)))
		fmt.Fprintf(&b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n", coord(padL-6), coord(py(y)+4), tickLabel(y, yStep))
	}
	for x := 0.0; x <= xEnd+xStep/2; x += xStep {
		fmt.Fprintf(&b, "<line class=\"grid\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", coord(px(x)), coord(padT), coord(px(x)), coord(padT+plotH))
		fmt.Fprintf(&b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", coord(px(x)), coord(padT+plotH+16), tickLabel(x, xStep))
	}
	fmt.Fprintf(&b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", coord(padL), coord(padT+plotH), coord(padL+plotW), coord(padT+plotH))
	fmt.Fprintf(&b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", coord(padL), coord(padT), coord(padL), coord(padT+plotH))
	fmt.Fprintf(&b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", coord(padL+plotW/2), coord(padT+plotH+36), esc(c.xLabel))
	fmt.Fprintf(&b, "<text x=\"14\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 14 %s)\">%s</text>\n", coord(padT+plotH/2), coord(padT+plotH/2), esc(c.yLabel))
	for _, v := range c.vlines {
		fmt.Fprintf(&b, "<line class=\"sep\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", coord(px(v.x)), coord(padT), coord(px(v.x)), coord(padT+plotH))
		fmt.Fprintf(&b, "<text x=\"%s\" y=\"%s\">%s</text>\n", coord(px(v.x)+3), coord(padT+11), esc(v.label))
	}
	for _, s := range c.series {
		color := seriesColor[s.name]
		width := "2"
		if s.thin {
			width = "1"
		}
		var pts []string
		flush := func() {
			if len(pts) > 1 {
				fmt.Fprintf(&b, "<polyline clip-path=\"url(#%s)\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"%s\"/>\n", c.id, color, width, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for i, x := range s.xs {
			if math.IsNaN(s.ys[i]) {
				flush()
				continue
			}
			pts = append(pts, coord(px(x))+","+coord(py(s.ys[i])))
		}
		flush()
		if c.clips(s.name) {
			// A point above the axis: a mark on the plot's top edge, its
			// value on hover.
			for i, x := range s.xs {
				if y := s.ys[i]; y > yEnd {
					fmt.Fprintf(&b, "<path class=\"cut\" d=\"M%s %sl4 6h-8z\" fill=\"%s\"><title>%s</title></path>\n", coord(px(x)), coord(padT-6), color, esc(s.name+" "+c.format(y)))
				}
			}
		}
		if s.marker {
			for i, x := range s.xs {
				if math.IsNaN(s.ys[i]) {
					continue
				}
				fmt.Fprintf(&b, "<circle cx=\"%s\" cy=\"%s\" r=\"3.5\" fill=\"%s\"><title>%s</title></circle>\n", coord(px(x)), coord(py(s.ys[i])), color, esc(s.tips[i]))
			}
		}
	}
	for _, n := range c.notes {
		if math.IsNaN(n.y) {
			continue
		}
		fmt.Fprintf(&b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", coord(px(n.x)), coord(py(n.y)-8), esc(n.text))
	}
	if cutMax > yEnd {
		fmt.Fprintf(&b, "<text class=\"clipped\" x=\"%s\" y=\"14\">%s</text>\n", coord(padL),
			esc(fmt.Sprintf("y-axis clipped at %s, the scale of %s: \u25b2 marks %s above it, up to %s",
				c.format(yEnd), strings.Join(c.scaleBy, " and "), cutName, c.format(cutMax))))
	}
	// The legend, left-aligned below the x axis's label.
	b.WriteString("<g class=\"legend\">")
	lx := padL
	for _, s := range c.series {
		fmt.Fprintf(&b, "<rect x=\"%s\" y=\"%s\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%s\" y=\"%s\">%s</text>", coord(lx), coord(legendY), seriesColor[s.name], coord(lx+16), coord(legendY+10), esc(s.name))
		lx += float64(len(s.name))*7 + 30
	}
	b.WriteString("</g>\n</svg>\n")
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// throughputLatencyChart plots each point's latencies against its
// throughput: the curve that shows where a server saturates.
func (r *Report) throughputLatencyChart() *chart {
	c := &chart{id: "tl", xLabel: "throughput (inferences/s)", yLabel: "latency (ms)"}
	for _, q := range []string{"p50", "p90", "p99", "p99.9"} {
		s := series{name: q, marker: true}
		for _, p := range r.Points {
			v, _ := p.Stat(q)
			y := ms(v)
			if p.Requests == p.Errors {
				y = math.NaN()
			}
			s.xs = append(s.xs, r.Inferences(p))
			s.ys = append(s.ys, y)
			s.tips = append(s.tips, fmt.Sprintf("%s %s: %s inferences/s, %s %s", r.loadName(), r.Load(p), formatNumber(r.Inferences(p)), q, FormatDuration(v)))
		}
		c.series = append(c.series, s)
	}
	top := c.series[len(c.series)-1]
	for i, p := range r.Points {
		c.notes = append(c.notes, note{x: top.xs[i], y: top.ys[i], text: r.shortLoad(p)})
	}
	return c
}

// shortLoad labels a point on a chart: "c=8" or "1000/s".
func (r *Report) shortLoad(p *Result) string {
	if r.open() {
		return r.Load(p)
	}
	return "c=" + r.Load(p)
}

// timelineCharts plots latency and throughput over the run, the points one
// after the other with a separator at the start of each.
func (r *Report) timelineCharts() (lat, thr *chart) {
	lat = &chart{id: "lot", xLabel: "time (s) from the start of the first measured window", yLabel: "latency (ms)",
		empty: "no timeline recorded", scaleBy: []string{"p50", "p99"},
		value: func(v float64) string { return FormatDuration(time.Duration(v * 1e6)) }}
	thr = &chart{id: "tot", xLabel: lat.xLabel, yLabel: "per second", empty: lat.empty}
	p50 := series{name: "p50"}
	p99 := series{name: "p99"}
	mx := series{name: "max", thin: true}
	rps := series{name: "requests/s"}
	eps := series{name: "errors/s", thin: true}
	base := time.Duration(0)
	anyErrors := false
	for _, p := range r.Points {
		if len(r.Points) > 1 {
			v := vline{x: base.Seconds(), label: r.shortLoad(p)}
			lat.vlines = append(lat.vlines, v)
			thr.vlines = append(thr.vlines, v)
		}
		span := p.Elapsed
		iv := p.TimelineInterval
		for i, tp := range p.Timeline {
			x := (base + tp.Offset + iv/2).Seconds()
			if i == 0 && len(p50.xs) > 0 {
				// Break the lines between points.
				for _, s := range []*series{&p50, &p99, &mx, &rps, &eps} {
					s.xs = append(s.xs, x)
					s.ys = append(s.ys, math.NaN())
				}
			}
			ok := tp.Requests > tp.Errors
			p50.xs, p99.xs, mx.xs = append(p50.xs, x), append(p99.xs, x), append(mx.xs, x)
			if ok {
				p50.ys, p99.ys, mx.ys = append(p50.ys, ms(tp.P50)), append(p99.ys, ms(tp.P99)), append(mx.ys, ms(tp.Max))
			} else {
				p50.ys, p99.ys, mx.ys = append(p50.ys, math.NaN()), append(p99.ys, math.NaN()), append(mx.ys, math.NaN())
			}
			secs := iv.Seconds()
			rps.xs, eps.xs = append(rps.xs, x), append(eps.xs, x)
			rps.ys = append(rps.ys, float64(tp.Requests-tp.Errors)/secs)
			eps.ys = append(eps.ys, float64(tp.Errors)/secs)
			if tp.Errors > 0 {
				anyErrors = true
			}
			span = max(span, tp.Offset+iv)
		}
		base += span
	}
	lat.series = []series{mx, p50, p99}
	thr.series = []series{rps}
	if anyErrors {
		thr.series = append(thr.series, eps)
	}
	return lat, thr
}
