package sweep

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseParam(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       Param
	}{
		{"double", "lr=double:0.001..0.1", Param{Name: "lr", Kind: Double, Min: 0.001, Max: 0.1}},
		{"double log", "lr=double:1e-4..1e-1:log", Param{Name: "lr", Kind: Double, Min: 1e-4, Max: 0.1, Log: true}},
		{"negative double", "b=double:-1..1", Param{Name: "b", Kind: Double, Min: -1, Max: 1}},
		{"int", "hidden=int:4..32", Param{Name: "hidden", Kind: Int, Min: 4, Max: 32}},
		{"one int", "n=int:3..3", Param{Name: "n", Kind: Int, Min: 3, Max: 3}},
		{"negative int", "n=int:-3..-1", Param{Name: "n", Kind: Int, Min: -3, Max: -1}},
		{"categorical", "opt=categorical:adam|sgd", Param{Name: "opt", Kind: Categorical, Values: []string{"adam", "sgd"}}},
		{"one category", "opt=categorical:adam", Param{Name: "opt", Kind: Categorical, Values: []string{"adam"}}},
		{"underscore name", "_learning_rate2=double:0..1", Param{Name: "_learning_rate2", Kind: Double, Min: 0, Max: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseParam(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseParam(%q) (-want +got):\n%s", tc.spec, diff)
			}
			// String is the form ParseParam reads.
			again, err := ParseParam(got.String())
			if err != nil || !cmp.Equal(again, got) {
				t.Errorf("ParseParam(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseParamErrors(t *testing.T) {
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"no =", "lr", "want NAME=double"},
		{"no type", "lr=0.1..1", "want a type and a range"},
		{"unknown type", "lr=float:0..1", `unknown type "float"`},
		{"no range", "lr=double:0.1", `range "0.1": want MIN..MAX`},
		{"bad min", "lr=double:x..1", `MIN "x" is not a finite number`},
		{"bad max", "lr=double:0..", `MAX "" is not a finite number`},
		{"infinite", "lr=double:0..Inf", `MAX "Inf" is not a finite number`},
		{"NaN", "lr=double:NaN..1", `MIN "NaN" is not a finite number`},
		{"min above max", "lr=double:1..0.1", "MIN 1 is greater than MAX 0.1"},
		{"log from zero", "lr=double:0..1:log", "a log range needs MIN > 0, not 0"},
		{"unknown option", "lr=double:0..1:linear", `unknown option "linear"`},
		{"fractional int", "n=int:1.5..3", `MIN "1.5" is not a whole number`},
		{"int log", "n=int:1..3:log", `MAX "3:log" is not a whole number`},
		{"int too wide", "n=int:-9000000000000000000..9000000000000000000", "more than 2^52 values"},
		{"empty category", "o=categorical:a||b", "an empty value"},
		{"no categories", "o=categorical:", "an empty value"},
		{"duplicate category", "o=categorical:a|b|a", `value "a" is listed twice`},
		{"bad name", "learning-rate=double:0..1", `name "learning-rate"`},
		{"empty name", "=double:0..1", `name ""`},
		{"reserved name", "TrialDir=double:0..1", "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseParam(tc.spec)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("ParseParam(%q) = %v, want ErrInvalidOptions", tc.spec, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.spec) {
				t.Errorf("ParseParam(%q) = %q, want it to name the spec and say %q", tc.spec, err, tc.want)
			}
		})
	}
}

func mustParams(t *testing.T, specs ...string) []Param {
	t.Helper()
	var ps []Param
	for _, s := range specs {
		p, err := ParseParam(s)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestSuggestGrid(t *testing.T) {
	space := mustParams(t, "lr=double:0.001..0.1:log", "hidden=int:8..9", "opt=categorical:adam|sgd")
	got, err := Suggest(space, Grid, 20, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	var want []Values
	for _, lr := range []float64{0.001, 0.01, 0.1} {
		for _, h := range []int64{8, 9} {
			for _, o := range []string{"adam", "sgd"} {
				want = append(want, Values{"lr": lr, "hidden": h, "opt": o})
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("grid (-want +got):\n%s", diff)
	}

	linear, err := Suggest(mustParams(t, "x=double:0..1"), Grid, 5, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Values{{"x": 0.0}, {"x": 0.25}, {"x": 0.5}, {"x": 0.75}, {"x": 1.0}}, linear); diff != "" {
		t.Errorf("linear grid (-want +got):\n%s", diff)
	}
	one, err := Suggest(mustParams(t, "x=double:1..100:log"), Grid, 5, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Values{{"x": 10.0}}, one); diff != "" {
		t.Errorf("one grid point is the (geometric) middle (-want +got):\n%s", diff)
	}
}

func TestSuggestGridLargerThanBudget(t *testing.T) {
	space := mustParams(t, "lr=double:0..1", "n=int:1..1000000000")
	for _, tc := range []struct {
		name   string
		trials int
		want   string
	}{
		{"exact size", 2, "the grid has 3 points, more than the budget of 2 trials"},
		{"saturated size", MaxTrials, "more than 10000 points"},
	} {
		sp := space[:1]
		if tc.name == "saturated size" {
			sp = space
		}
		_, err := Suggest(sp, Grid, tc.trials, 0, 3)
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidOptions saying %q", tc.name, err, tc.want)
		}
	}
}

func TestSuggestRandom(t *testing.T) {
	space := mustParams(t, "lr=double:0.0001..0.1:log", "drop=double:0.1..0.5", "hidden=int:4..32", "opt=categorical:adam|sgd|rmsprop")
	a, err := Suggest(space, Random, 200, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Suggest(space, Random, 200, 7, 0)
	if !cmp.Equal(a, b) {
		t.Fatal("the same seed gave different trials")
	}
	c, _ := Suggest(space, Random, 200, 8, 0)
	if cmp.Equal(a, c) {
		t.Fatal("seeds 7 and 8 gave the same trials")
	}
	seen := map[string]bool{}
	belowGeoMid := 0
	for i, v := range a {
		lr, drop, hidden, opt := v["lr"].(float64), v["drop"].(float64), v["hidden"].(int64), v["opt"].(string)
		if lr < 0.0001 || lr > 0.1 || drop < 0.1 || drop > 0.5 || hidden < 4 || hidden > 32 {
			t.Fatalf("trial %d: %v out of the space", i, v)
		}
		if r, _ := strconv.ParseFloat(strconv.FormatFloat(lr, 'g', 6, 64), 64); r != lr {
			t.Errorf("trial %d: lr %v has more than 6 significant digits", i, lr)
		}
		seen[opt] = true
		if lr < math.Sqrt(0.0001*0.1) {
			belowGeoMid++
		}
	}
	if len(seen) != 3 {
		t.Errorf("200 draws saw the categories %v, want all 3", seen)
	}
	// Log-uniform: about half the draws below the geometric middle (a
	// uniform draw would put about 3% there).
	if belowGeoMid < 60 || belowGeoMid > 140 {
		t.Errorf("%d of 200 log-uniform draws below the geometric middle, want about 100", belowGeoMid)
	}
}

func TestSuggestErrors(t *testing.T) {
	lr := mustParams(t, "lr=double:0..1")
	for _, tc := range []struct {
		name  string
		space []Param
		alg   Algorithm
		n     int
		grid  int
		want  string
	}{
		{"empty space", nil, Random, 1, 0, "an empty search space"},
		{"duplicate", append(lr, lr...), Random, 1, 0, "param lr is given twice"},
		{"no trials", lr, Random, 0, 0, "trials 0"},
		{"too many trials", lr, Random, MaxTrials + 1, 0, "trials 10001"},
		{"unknown algorithm", lr, "bayesian", 1, 0, `algorithm "bayesian"`},
		{"no grid points", lr, Grid, 3, 0, "grid points 0"},
		{"hand-made bad param", []Param{{Name: "x", Kind: Double, Min: 2, Max: 1}}, Random, 1, 0, "MIN 2 is greater than MAX 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Suggest(tc.space, tc.alg, tc.n, 1, tc.grid)
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalidOptions saying %q", err, tc.want)
			}
		})
	}
}
