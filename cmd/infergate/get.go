package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/runtimes/supervisor"
)

// modelStatus is one row of GET /api/v1/models on the admin port and of
// `infergate get models`.
type modelStatus struct {
	Name     string `json:"name"`
	Desired  int    `json:"desired"`
	Running  int    `json:"running"`
	Ready    int    `json:"ready"`
	Restarts int    `json:"restarts"`
	Failed   bool   `json:"failed,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// The autoscaler's view, for supervised models.
	Metric        string  `json:"metric,omitempty"`
	Target        float64 `json:"target,omitempty"`
	Panic         bool    `json:"panic"`
	StableAverage float64 `json:"stableAverage"`
	PanicAverage  float64 `json:"panicAverage"`
	Decision      string  `json:"decision,omitempty"`
}

// modelsHandler serves the supervised models' state as JSON.
func modelsHandler(sups *supervisor.Set, scaler *autoscaler.Autoscaler, names []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		out := []modelStatus{}
		for _, name := range names {
			row := modelStatus{Name: name}
			if s := sups.Get(name); s != nil {
				st := s.Status()
				row.Desired, row.Running, row.Ready, row.Restarts = st.Desired, st.Running, st.Ready, st.Restarts
				row.Failed, row.Reason = st.Failed, st.Reason
			}
			if a, ok := scaler.Status(name); ok {
				row.Metric, row.Target, row.Panic = string(a.Metric), a.Target, a.Panic
				row.StableAverage, row.PanicAverage, row.Decision = a.StableAverage, a.PanicAverage, a.Reason
			}
			out = append(out, row)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// runGet runs `infergate get models`: the models of a running gateway with
// their replicas and the autoscaler's decision, from its admin port.
func runGet(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "127.0.0.1:8090", "the gateway's admin address")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: infergate get models [-admin HOST:PORT] [-json]")
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "models" {
		fs.Usage()
		return errors.New("get: say what to get: models")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*admin+"/api/v1/models", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get models: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get models: %s answered %s", *admin, resp.Status)
	}
	var rows []modelStatus
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		return fmt.Errorf("get models: %w", err)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tDESIRED\tREADY\tRUNNING\tRESTARTS\tPANIC\tSTABLE\tPANIC AVG\tTARGET\tSTATE")
	for _, r := range rows {
		state := "ok"
		if r.Failed {
			state = "failed: " + firstLine(r.Reason)
		} else if r.Decision != "" {
			state = r.Decision
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%v\t%.2f\t%.2f\t%.1f %s\t%s\n", r.Name, r.Desired, r.Ready, r.Running, r.Restarts, r.Panic, r.StableAverage, r.PanicAverage, r.Target, r.Metric, state)
	}
	return tw.Flush()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
