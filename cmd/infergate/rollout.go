package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/internal/cliflags"
)

// runRollout runs `infergate rollout status|promote|rollback|pause|resume
// MODEL` against a running gateway's admin API. Flags may come before,
// between or after the action and the model, as users type them.
func runRollout(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := adminFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: infergate rollout status|promote|rollback|pause|resume MODEL [-admin HOST:PORT] [-json]")
		fmt.Fprintln(stderr, "Flags may come before or after the action and MODEL.")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err // -h: flag.ErrHelp, after the usage
	}
	switch {
	case len(pos) < 2:
		fs.Usage()
		return errors.New("rollout: say what to do and to which model")
	case len(pos) > 2:
		fs.Usage()
		return fmt.Errorf("rollout: unexpected argument %q after the model", pos[2])
	}
	action, model := pos[0], pos[1]
	path := "/api/v1/rollouts/" + url.PathEscape(model)
	var st controlplane.RolloutStatus
	switch action {
	case "status":
		err = adminCall(*admin, http.MethodGet, path, nil, &st)
	case "promote", "rollback", "pause", "resume":
		err = adminCall(*admin, http.MethodPost, path+"/"+action, []byte("{}"), &st)
	default:
		fs.Usage()
		return fmt.Errorf("rollout: unknown action %q", action)
	}
	if err != nil {
		return fmt.Errorf("rollout %s %s: %w", action, model, err)
	}
	if *asJSON {
		return writeIndented(stdout, st)
	}
	printRollout(stdout, st)
	return nil
}

// parseInterspersed is cliflags.ParseInterspersed: flags anywhere among
// the positional arguments.
var parseInterspersed = cliflags.ParseInterspersed

// printRollout shows a rollout: its state, the steps with the current one
// marked, the weights, the last gate figures and the decisions.
func printRollout(w io.Writer, st controlplane.RolloutStatus) {
	fmt.Fprintf(w, "Model:    %s\n", st.Model)
	if st.Source != "" {
		fmt.Fprintf(w, "Source:   %s\n", st.Source)
	}
	if st.Overrides != "" {
		fmt.Fprintf(w, "Overrides: %s (apply or an action by hand changed the model after this file was read; the file wins again once its declaration changes)\n", st.Overrides)
	}
	if st.Pending != "" {
		fmt.Fprintf(w, "Pending:  %s (takes its traffic once a replica is ready)\n", st.Pending)
	}
	fmt.Fprintf(w, "Traffic:  %s\n", controlplane.FormatTraffic(st.Weights))
	if len(st.Revisions) > 0 {
		fmt.Fprintln(w, "Revisions:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, r := range st.Revisions {
			status := string(r.Status)
			if r.Reason != "" {
				status += ": " + firstLine(r.Reason)
			}
			fmt.Fprintf(tw, "  %s\t%s\n", r.Name, status)
		}
		tw.Flush()
	}
	if st.State != "" {
		printSteps(w, st)
	}
	if len(st.Decisions) > 0 {
		fmt.Fprintln(w, "Decisions:")
		for _, d := range st.Decisions {
			by := ""
			if d.Manual {
				by = " (by hand)"
			}
			fmt.Fprintf(w, "  %s  step %d  %s%s: %s; traffic %s\n", d.Time.Format(time.TimeOnly), d.Step, d.Verdict, by, d.Reason, controlplane.FormatTraffic(d.Weights))
		}
	}
}

// printSteps shows a model's latest rollout: its revisions and state, the
// gates, the steps with the current one marked and the last figures.
func printSteps(w io.Writer, st controlplane.RolloutStatus) {
	fmt.Fprintf(w, "Canary:   %s (stable %s)\n", st.Canary, st.Stable)
	state := string(st.State)
	if st.Reason != "" {
		state += ": " + st.Reason
	}
	fmt.Fprintf(w, "State:    %s\n", state)
	p := st.Policy
	gates := fmt.Sprintf("error rate <= stable + %.2g", p.MaxErrorRateIncrease)
	if p.MaxLatencyRatio > 0 {
		gates += fmt.Sprintf(", p%g latency <= %.2gx stable", 100*p.Quantile, p.MaxLatencyRatio)
	}
	fmt.Fprintf(w, "Gates:    %s\n", gates)
	fmt.Fprintln(w, "Steps:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  \tSTEP\tWEIGHT\tMIN DURATION\tMIN REQUESTS")
	for i, s := range p.Steps {
		mark := " "
		if i+1 == st.Step {
			mark = ">"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d%%\t%s\t%d\n", mark, i+1, s.Weight, s.MinDuration, s.MinRequests)
	}
	tw.Flush()
	if g := st.Gate; g != nil {
		fmt.Fprintf(w, "Last gate (step %d, %.0fs into it):\n", g.Step, g.ElapsedSeconds)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  \tREQUESTS\tERROR RATE\tLATENCY\tCLIENT ERRORS")
		fmt.Fprintf(tw, "  canary\t%d\t%.2f%%\t%s\t%.2f%%\n", g.CanaryRequests, 100*g.CanaryErrorRate, seconds(g.CanaryLatencySeconds), 100*g.CanaryClientErrorRate)
		fmt.Fprintf(tw, "  stable\t%d\t%.2f%%\t%s\t%.2f%%\n", g.StableRequests, 100*g.StableErrorRate, seconds(g.StableLatencySeconds), 100*g.StableClientErrorRate)
		tw.Flush()
		if !g.Compared {
			fmt.Fprintln(w, "  (the stable revision had too few requests to compare; the canary is held to the error rate limit alone)")
		}
	}
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(10 * time.Microsecond).String()
}

// writeIndented prints v as indented JSON.
func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
