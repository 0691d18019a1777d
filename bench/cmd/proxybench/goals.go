package main

import (
	"fmt"
	"io"
)

// The goals of issue 14, judged on the rows of outside generators (wrk
// for REST, h2load for gRPC) of one run.
const (
	// stretchRESTCPUus is the REST stretch goal: under 15 us of proxy CPU
	// per request at c64.
	stretchRESTCPUus = 15
	// wellAhead is what "well ahead of nginx's grpc_pass" means here: at
	// least 1.2 times its ratio.
	wellAhead = 1.2
	// stretchGRPCRatio is the gRPC stretch goal: 0.6 of direct.
	stretchGRPCRatio = 0.6
	// memoryGrowth is the most a later round's peak RSS may exceed the
	// first round's by, as a fraction, for "no growth across rounds".
	memoryGrowth = 0.10
)

// goalLine is one goal's verdict: PASS, FAIL or SKIP (not measured).
type goalLine struct {
	Status string `json:"status"`
	Goal   string `json:"goal"`
	Detail string `json:"detail"`
}

// checkGoals judges the goals at each concurrency from rows, and the
// memory goal from mem (nil when not measured). It is a pure function of
// its arguments.
func checkGoals(rows []row, concs []int, mem *memoryReport) []goalLine {
	find := func(key, gen string, conc int) *row {
		for i := range rows {
			if rows[i].Key == key && rows[i].Generator == gen && rows[i].Concurrency == conc {
				return &rows[i]
			}
		}
		return nil
	}
	var out []goalLine
	// cmp adds a line comparing the gateway's row with another's: ok says
	// whether the gateway's figure passes against the other's.
	cmp := func(goal string, gw, other *row, otherName, gen string, fig func(*row) float64, unit string, ok func(g, o float64) bool) {
		switch {
		case gw == nil:
			out = append(out, goalLine{"SKIP", goal, "the gateway's row was not measured with " + gen})
		case other == nil:
			out = append(out, goalLine{"SKIP", goal, otherName + " was not measured with " + gen})
		default:
			g, o := fig(gw), fig(other)
			st := verdict(ok(g, o) && gw.Errors == 0)
			d := fmt.Sprintf("gateway %s, %s %s", fmtFig(g, unit), otherName, fmtFig(o, unit))
			if gw.Errors > 0 {
				d += fmt.Sprintf(" (the gateway had %d errors)", gw.Errors)
			}
			out = append(out, goalLine{st, goal, d})
		}
	}
	ratio := func(r *row) float64 { return r.Ratio }
	cpu := func(r *row) float64 { return r.ProxyCPUus }
	p99 := func(r *row) float64 { return r.P99us }
	atLeast := func(g, o float64) bool { return g >= o }
	atMost := func(g, o float64) bool { return g <= o }
	for _, c := range concs {
		gw, ng, hp := find(tGatewayREST, genWrk, c), find(tNginx, genWrk, c), find(tHAProxy, genWrk, c)
		p := fmt.Sprintf("REST c%d (wrk): ", c)
		cmp(p+"throughput >= nginx's", gw, ng, "nginx", genWrk, ratio, "ratio", atLeast)
		cmp(p+"throughput >= haproxy's", gw, hp, "haproxy", genWrk, ratio, "ratio", atLeast)
		cmp(p+"proxy CPU/req <= nginx's", gw, ng, "nginx", genWrk, cpu, "us", atMost)
		cmp(p+"p99 <= nginx's", gw, ng, "nginx", genWrk, p99, "us", atMost)
		if c == 64 {
			if gw == nil {
				out = append(out, goalLine{"SKIP", p + fmt.Sprintf("stretch: proxy CPU/req < %d us", stretchRESTCPUus), "the gateway's row was not measured with wrk"})
			} else {
				out = append(out, goalLine{verdict(gw.ProxyCPUus < stretchRESTCPUus), p + fmt.Sprintf("stretch: proxy CPU/req < %d us", stretchRESTCPUus),
					"gateway " + fmtFig(gw.ProxyCPUus, "us")})
			}
		}
	}
	for _, c := range concs {
		gw, ng, hp := find(tGatewayGRPC, genH2load, c), find(tNginxGRPC, genH2load, c), find(tHAProxyGRPC, genH2load, c)
		p := fmt.Sprintf("gRPC %d streams (h2load): ", c)
		cmp(p+"throughput >= haproxy-grpc's", gw, hp, "haproxy", genH2load, ratio, "ratio", atLeast)
		cmp(p+"proxy CPU/req <= haproxy-grpc's", gw, hp, "haproxy", genH2load, cpu, "us", atMost)
		cmp(p+fmt.Sprintf("throughput >= %.1fx nginx-grpc's", wellAhead), gw, ng, "nginx", genH2load, ratio, "ratio",
			func(g, o float64) bool { return g >= wellAhead*o })
		if gw == nil {
			out = append(out, goalLine{"SKIP", p + fmt.Sprintf("stretch: ratio >= %.1f", stretchGRPCRatio), "the gateway's row was not measured with h2load"})
		} else {
			out = append(out, goalLine{verdict(gw.Ratio >= stretchGRPCRatio), p + fmt.Sprintf("stretch: ratio >= %.1f", stretchGRPCRatio),
				"gateway " + fmtFig(gw.Ratio, "ratio")})
		}
	}
	g := fmt.Sprintf("memory: no growth across rounds (each round's peak RSS within %.0f%% of the first's)", memoryGrowth*100)
	switch {
	case mem == nil || len(mem.Rounds) == 0:
		out = append(out, goalLine{"SKIP", g, "not measured"})
	case len(mem.Rounds) < 2:
		out = append(out, goalLine{"SKIP", g, fmt.Sprintf("one round only (peak %.1f MiB)", mem.Rounds[0].PeakMiB)})
	default:
		first, worst := mem.Rounds[0].PeakMiB, 0.0
		for _, r := range mem.Rounds[1:] {
			worst = max(worst, r.PeakMiB)
		}
		out = append(out, goalLine{verdict(worst <= first*(1+memoryGrowth)), g,
			fmt.Sprintf("first round %.1f MiB, largest later %.1f MiB", first, worst)})
	}
	return out
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func fmtFig(v float64, unit string) string {
	if unit == "ratio" {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func printGoals(out io.Writer, goals []goalLine) {
	if len(goals) == 0 {
		return
	}
	fmt.Fprintln(out, "\n== goals of issue 14 (from the wrk and h2load rows of this run; a report: the exit status does not depend on them)")
	for _, g := range goals {
		fmt.Fprintf(out, "%s  %s: %s\n", g.Status, g.Goal, g.Detail)
	}
}
