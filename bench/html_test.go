package bench

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// svgYs returns the y coordinates in an SVG fragment: y attributes, cy
// attributes and the y of each point of a polyline.
func svgYs(t *testing.T, frag string) []float64 {
	t.Helper()
	var ys []float64
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("coordinate %q: %v", s, err)
		}
		return v
	}
	for _, m := range regexp.MustCompile(` c?y[12]?="([-0-9.]+)"`).FindAllStringSubmatch(frag, -1) {
		ys = append(ys, num(m[1]))
	}
	for _, m := range regexp.MustCompile(` points="([^"]*)"`).FindAllStringSubmatch(frag, -1) {
		for _, pt := range strings.Fields(m[1]) {
			_, y, _ := strings.Cut(pt, ",")
			ys = append(ys, num(y))
		}
	}
	return ys
}

// TestChartLegendBelowEverything: every chart's legend has a strip of its
// own below everything else drawn on it (the plot, its points and their
// labels, the axes and their labels), so that it covers no line, whatever
// the data.
func TestChartLegendBelowEverything(t *testing.T) {
	rep := closedSweepReport()
	lat, thr := rep.timelineCharts()
	entryRe := regexp.MustCompile(`<rect x="[^"]*" y="([^"]*)" width="12" height="12" fill="[^"]*"/><text x="[^"]*" y="[^"]*">([^<]*)</text>`)
	for _, c := range []*chart{rep.throughputLatencyChart(), lat, thr} {
		t.Run(c.id, func(t *testing.T) {
			svg := c.svg()
			entries := entryRe.FindAllStringSubmatch(svg, -1)
			var names []string
			legendTop := math.Inf(1)
			for _, e := range entries {
				names = append(names, e[2])
				y, err := strconv.ParseFloat(e[1], 64)
				if err != nil {
					t.Fatal(err)
				}
				legendTop = min(legendTop, y)
			}
			var want []string
			for _, s := range c.series {
				want = append(want, s.name)
			}
			slices.Sort(names)
			slices.Sort(want)
			if strings.Join(names, ",") != strings.Join(want, ",") {
				t.Fatalf("legend entries %q, want %q", names, want)
			}
			// Text is drawn above its baseline: leave a line's height
			// between the lowest baseline and the legend's boxes.
			const textHeight = 12
			for _, y := range svgYs(t, entryRe.ReplaceAllString(svg, "")) {
				if y > legendTop-textHeight {
					t.Fatalf("something is drawn at y=%v, not above the legend (top %v)", y, legendTop)
				}
			}
			if legendTop+12 > chartH {
				t.Errorf("legend at y=%v runs off the %d-high chart", legendTop, chartH)
			}
		})
	}
}

// TestChartSaysWhenClipped: the latency-over-time chart scales its y axis
// to p50 and p99; when max goes above it, the chart says so with the
// highest max, and marks each point above the axis on its top edge.
func TestChartSaysWhenClipped(t *testing.T) {
	line := func(name string, ys ...float64) series {
		s := series{name: name}
		for i, y := range ys {
			s.xs = append(s.xs, float64(i))
			s.ys = append(s.ys, y)
		}
		return s
	}
	ms := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "ms" }
	for _, tc := range []struct {
		name    string
		max     []float64
		notice  string // "" for none
		cutMark int
	}{
		{"max within the axis", []float64{1, 4, 5, math.NaN()}, "", 0},
		{"max above the axis", []float64{1, 37, 5, 12}, "y-axis clipped at 5.0ms, the scale of p50 and p99: ▲ marks max above it, up to 37.0ms", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &chart{id: "c", scaleBy: []string{"p50", "p99"}, value: ms, series: []series{
				line("max", tc.max...),
				line("p50", 0.5, 0.6, 0.5, 0.7),
				line("p99", 2, 4.5, 3, 2.5), // the axis ends at 5
			}}
			svg := c.svg()
			got := ""
			if m := regexp.MustCompile(`<text class="clipped"[^>]*>([^<]*)</text>`).FindStringSubmatch(svg); m != nil {
				got = strings.ReplaceAll(m[1], "&#39;", "'")
			}
			if got != tc.notice {
				t.Errorf("notice %q, want %q", got, tc.notice)
			}
			if n := strings.Count(svg, `class="cut"`); n != tc.cutMark {
				t.Errorf("%d points marked above the axis, want %d", n, tc.cutMark)
			}
		})
	}
	// A chart that every series scales is never clipped.
	c := &chart{id: "all", series: []series{line("p50", 1, 2), line("max", 3, 40)}}
	if svg := c.svg(); strings.Contains(svg, "clipped") || strings.Contains(svg, `class="cut"`) {
		t.Errorf("a chart scaled by all its series says it is clipped:\n%s", svg)
	}
}
