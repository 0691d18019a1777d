package sweep

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func curve(vals ...float64) []point {
	c := make([]point, len(vals))
	for i, v := range vals {
		c[i] = point{epoch: i + 1, value: v}
	}
	return c
}

func TestMedianStop(t *testing.T) {
	// Values exact in binary, so that "equal" means equal. Running
	// averages up to epoch 2: 0.5, 0.625, 0.75 (median 0.625); up to epoch
	// 4: 0.625, 0.8125, 0.875 (median 0.8125).
	completed := [][]point{curve(0.25, 0.75, 0.75, 0.75), curve(0.5, 0.75, 1, 1), curve(0.75, 0.75, 1, 1)}
	for _, tc := range []struct {
		name      string
		goal      Goal
		trial     []point
		completed [][]point
		after     int
		minTrials int
		want      medianVerdict
	}{
		{"no progress yet", Maximize, nil, completed, 2, 3, medianVerdict{}},
		{"before the first epoch judged", Maximize, curve(0.125), completed, 2, 3, medianVerdict{epoch: 1}},
		{"worse than the median", Maximize, curve(0.25, 0.5), completed, 2, 3, medianVerdict{stop: true, epoch: 2, best: 0.5, median: 0.625, n: 3}},
		{"best so far counts, not the last", Maximize, curve(0.75, 0.25), completed, 2, 3, medianVerdict{epoch: 2, best: 0.75, median: 0.625, n: 3}},
		{"equal to the median is not worse", Maximize, curve(0.625, 0), completed, 2, 3, medianVerdict{epoch: 2, best: 0.625, median: 0.625, n: 3}},
		{"later epoch, later averages", Maximize, curve(0.25, 0.5, 0.5, 0.75), completed, 2, 3, medianVerdict{stop: true, epoch: 4, best: 0.75, median: 0.8125, n: 3}},
		{"too few completed trials", Maximize, curve(0.125, 0.125), completed[:2], 2, 3, medianVerdict{epoch: 2, best: 0.125, n: 2}},
		{"one completed trial is enough when asked", Maximize, curve(0.125, 0.125), completed[:1], 2, 1, medianVerdict{stop: true, epoch: 2, best: 0.125, median: 0.5, n: 1}},
		{"even count: the mean of the middle two", Maximize, curve(0.5, 0.5), completed[1:], 2, 2, medianVerdict{stop: true, epoch: 2, best: 0.5, median: 0.6875, n: 2}},
		{"minimize: higher is worse", Minimize, curve(0.75, 1), completed, 2, 3, medianVerdict{stop: true, epoch: 2, best: 0.75, median: 0.625, n: 3}},
		{"minimize: lower is kept", Minimize, curve(0.75, 0.5), completed, 2, 3, medianVerdict{epoch: 2, best: 0.5, median: 0.625, n: 3}},
		{"completed trials without early epochs do not count", Maximize, curve(0.125),
			[][]point{{{epoch: 5, value: 1}}, {{epoch: 5, value: 1}}, {{epoch: 5, value: 1}}}, 1, 3, medianVerdict{epoch: 1, best: 0.125}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := medianStop(tc.goal, tc.trial, tc.completed, tc.after, tc.minTrials)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(medianVerdict{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestProgressReader reads a progress file as a trial appends to it: a
// line caught half-written waits for its end, and lines it cannot use are
// reported, not dropped silently.
func TestProgressReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "progress.jsonl")
	r := &progressReader{path: path, objective: "acc"}
	if err := r.read(); err != nil || len(r.curve) != 0 {
		t.Fatalf("a file not written yet: %v, %v", r.curve, err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(s string) {
		t.Helper()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"epoch": 1, "loss": 1.2, "acc": 0.5}` + "\n" + `{"epoch": 2, "acc": 0.`)
	if err := r.read(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]point{{1, 0.5}}, r.curve, cmp.AllowUnexported(point{})); diff != "" {
		t.Fatalf("after a line and a half (-want +got):\n%s", diff)
	}
	write("75}\n\nnot json\n" + `{"epoch": 3, "loss": 0.4}` + "\n" + `{"epoch": 2, "acc": 0.9}` + "\n" + `{"epoch": 4, "acc": 0.8}` + "\n")
	if err := r.read(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]point{{1, 0.5}, {2, 0.75}, {4, 0.8}}, r.curve, cmp.AllowUnexported(point{})); diff != "" {
		t.Fatalf("after the rest (-want +got):\n%s", diff)
	}
	problems := strings.Join(r.takeProblems(), "\n")
	for _, want := range []string{"line 4 is not a JSON object", `line 5 has no number "acc"`, "line 6: epoch 2 does not follow epoch 2"} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems %q do not say %q", problems, want)
		}
	}
	if p := r.takeProblems(); p != nil {
		t.Errorf("problems reported twice: %q", p)
	}
}
