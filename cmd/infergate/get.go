package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/infergate/infergate/controlplane"
)

// runGet runs `infergate get models`: the models of a running gateway with
// their replicas and the autoscaler's decision, from its admin port.
func runGet(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := adminFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: infergate get models [-admin HOST:PORT] [-json]")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "models" {
		fs.Usage()
		return errors.New("get: say what to get: models")
	}
	var rows []controlplane.RevisionRow
	if err := adminCall(*admin, http.MethodGet, "/api/v1/models", nil, &rows); err != nil {
		return fmt.Errorf("get models: %w", err)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	if *asJSON {
		return writeIndented(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tREVISION\tTRAFFIC\tTAGS\tDESIRED\tREADY\tRUNNING\tRESTARTS\tPANIC\tSTABLE\tPANIC AVG\tTARGET\tSTATE")
	for _, r := range rows {
		state := r.Status
		switch {
		case r.Failed:
			state = "failed: " + firstLine(r.Reason)
		case r.Pending:
			state = "pending: takes its traffic once ready"
		case r.Decision != "":
			state += ": " + r.Decision
		}
		tags := strings.Join(r.Tags, ",")
		if tags == "" {
			tags = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d%%\t%s\t%d\t%d\t%d\t%d\t%v\t%.2f\t%.2f\t%.1f %s\t%s\n", r.Name, r.Revision, r.Traffic, tags, r.Desired, r.Ready, r.Running, r.Restarts, r.Panic, r.StableAverage, r.PanicAverage, r.Target, r.Metric, state)
	}
	return tw.Flush()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
