package sweep

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidOptions is wrapped by every error New and ParseParam return for
// options a retry cannot fix: a malformed search space, an unknown
// algorithm or goal, a bad template, a budget out of range. The message
// names the option and the value.
var ErrInvalidOptions = errors.New("invalid sweep options")

// Kind is the type of a hyperparameter.
type Kind string

// The kinds of hyperparameters, as Katib names them.
const (
	Double      Kind = "double"      // a float64 in [Min, Max], uniform or log-uniform
	Int         Kind = "int"         // an int64 in [Min, Max], both included
	Categorical Kind = "categorical" // one of Values
)

// Param is one dimension of the search space.
type Param struct {
	// Name is what the templates call the value ({{.Name}}) and the
	// file the best value is written to: a letter or '_', then letters,
	// digits and '_'.
	Name string
	Kind Kind
	// Min and Max bound a Double or Int (Int's are whole numbers).
	Min, Max float64
	// Log draws a Double log-uniformly (grid points spaced evenly in
	// log space); Min must then be positive.
	Log bool
	// Values are a Categorical's choices, in the order the grid visits
	// them.
	Values []string
}

// Limits that keep a typo from asking for a sweep that never ends.
const (
	// MaxTrials bounds Options.Trials and the size of a grid.
	MaxTrials = 10000
	// MaxGridPoints bounds Options.GridPoints.
	MaxGridPoints = 1000
	// maxIntSpan bounds MAX-MIN of an Int, so that MAX-MIN+1 and the
	// draws stay exact in an int64 and a float64.
	maxIntSpan = 1 << 52
)

// paramName is what a parameter may be called: a template field name
// and a plain file name.
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedNames are the template fields the sweep fills itself.
var reservedNames = []string{"TrialDir", "Trial"}

// ParseParam reads one dimension of the search space from its command-line
// form:
//
//	NAME=double:MIN..MAX        uniform in [MIN, MAX]
//	NAME=double:MIN..MAX:log    log-uniform in [MIN, MAX], MIN > 0
//	NAME=int:MIN..MAX           a whole number in [MIN, MAX]
//	NAME=categorical:a|b|c      one of the values
//
// Errors name the spec and what is wrong with it, and wrap
// ErrInvalidOptions.
func ParseParam(spec string) (Param, error) {
	bad := func(format string, args ...any) (Param, error) {
		return Param{}, fmt.Errorf("%w: param %q: %s", ErrInvalidOptions, spec, fmt.Sprintf(format, args...))
	}
	name, def, ok := strings.Cut(spec, "=")
	if !ok {
		return bad("want NAME=double:MIN..MAX[:log], NAME=int:MIN..MAX or NAME=categorical:A|B|...")
	}
	kind, rest, ok := strings.Cut(def, ":")
	if !ok {
		return bad("want a type and a range after %q: double:MIN..MAX[:log], int:MIN..MAX or categorical:A|B|...", name+"=")
	}
	p := Param{Name: name, Kind: Kind(kind)}
	switch p.Kind {
	case Double:
		rng, opt, hasOpt := strings.Cut(rest, ":")
		if hasOpt {
			if opt != "log" {
				return bad("unknown option %q after the range (want :log or nothing)", opt)
			}
			p.Log = true
		}
		lo, hi, ok := strings.Cut(rng, "..")
		if !ok {
			return bad("range %q: want MIN..MAX", rng)
		}
		var err error
		if p.Min, err = parseFinite(lo); err != nil {
			return bad("MIN %q is not a finite number", lo)
		}
		if p.Max, err = parseFinite(hi); err != nil {
			return bad("MAX %q is not a finite number", hi)
		}
	case Int:
		lo, hi, ok := strings.Cut(rest, "..")
		if !ok {
			return bad("range %q: want MIN..MAX", rest)
		}
		l, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			return bad("MIN %q is not a whole number", lo)
		}
		h, err := strconv.ParseInt(hi, 10, 64)
		if err != nil {
			return bad("MAX %q is not a whole number", hi)
		}
		p.Min, p.Max = float64(l), float64(h)
		if l <= h && uint64(h-l) > maxIntSpan {
			return bad("the range holds more than 2^52 values")
		}
	case Categorical:
		p.Values = strings.Split(rest, "|")
	default:
		return bad("unknown type %q (want double, int or categorical)", kind)
	}
	if err := p.validate(); err != nil {
		return bad("%s", err)
	}
	return p, nil
}

func parseFinite(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
		err = errors.New("not finite")
	}
	return v, err
}

// validate checks a Param built by hand or by ParseParam.
func (p Param) validate() error {
	if !paramName.MatchString(p.Name) {
		return fmt.Errorf("name %q: want a letter or '_', then letters, digits or '_'", p.Name)
	}
	if slices.Contains(reservedNames, p.Name) {
		return fmt.Errorf("name %q is reserved for the sweep's own template fields (%s)", p.Name, strings.Join(reservedNames, ", "))
	}
	switch p.Kind {
	case Double, Int:
		if math.IsNaN(p.Min) || math.IsNaN(p.Max) || math.IsInf(p.Min, 0) || math.IsInf(p.Max, 0) {
			return fmt.Errorf("range [%v, %v] is not finite", p.Min, p.Max)
		}
		if p.Min > p.Max {
			return fmt.Errorf("MIN %v is greater than MAX %v", p.Min, p.Max)
		}
		if p.Kind == Int && (p.Min != math.Trunc(p.Min) || p.Max != math.Trunc(p.Max)) {
			return fmt.Errorf("int range [%v, %v] is not whole numbers", p.Min, p.Max)
		}
		if p.Kind == Int && p.Max-p.Min > maxIntSpan {
			return errors.New("the range holds more than 2^52 values")
		}
		if p.Log && p.Kind != Double {
			return errors.New(":log applies to double parameters only")
		}
		if p.Log && p.Min <= 0 {
			return fmt.Errorf("a log range needs MIN > 0, not %v", p.Min)
		}
	case Categorical:
		if len(p.Values) == 0 {
			return errors.New("no values")
		}
		seen := make(map[string]bool, len(p.Values))
		for _, v := range p.Values {
			if v == "" {
				return fmt.Errorf("an empty value in %q", strings.Join(p.Values, "|"))
			}
			if seen[v] {
				return fmt.Errorf("value %q is listed twice", v)
			}
			seen[v] = true
		}
	default:
		return fmt.Errorf("unknown type %q (want double, int or categorical)", p.Kind)
	}
	return nil
}

// String returns the command-line form ParseParam reads.
func (p Param) String() string {
	switch p.Kind {
	case Double:
		s := fmt.Sprintf("%s=double:%s..%s", p.Name, formatFloat(p.Min), formatFloat(p.Max))
		if p.Log {
			s += ":log"
		}
		return s
	case Int:
		return fmt.Sprintf("%s=int:%d..%d", p.Name, int64(p.Min), int64(p.Max))
	case Categorical:
		return fmt.Sprintf("%s=categorical:%s", p.Name, strings.Join(p.Values, "|"))
	}
	return p.Name + "=?"
}

// Algorithm is how trials' parameters are chosen.
type Algorithm string

const (
	// Random draws every parameter of every trial independently from a
	// PCG generator seeded with Options.Seed: uniformly (log-uniformly
	// for a :log double) for numbers, with equal odds for categories.
	Random Algorithm = "random"
	// Grid visits every combination of the ints' values, the
	// categoricals' values and GridPoints evenly spaced values of each
	// double (log-spaced for :log; the middle of the range when
	// GridPoints is 1), the last parameter varying fastest.
	Grid Algorithm = "grid"
)

// Values are one trial's parameters by name: a float64 for a Double, an
// int64 for an Int, a string for a Categorical.
type Values map[string]any

// Suggest returns the parameters of up to n trials over space, in the
// order they run: the same arguments always give the same trials. A grid
// runs each of its points once, so it returns fewer than n trials when it
// has fewer points, and an error when it has more (raise n, lower
// gridPoints or draw at random). Doubles are rounded to 6 significant
// digits (and kept within their range), which is plenty for a
// hyperparameter and reads well in file names, logs and flags.
func Suggest(space []Param, alg Algorithm, n int, seed uint64, gridPoints int) ([]Values, error) {
	if err := validateSpace(space); err != nil {
		return nil, err
	}
	if n < 1 || n > MaxTrials {
		return nil, fmt.Errorf("%w: trials %d: want 1 to %d", ErrInvalidOptions, n, MaxTrials)
	}
	switch alg {
	case Random:
		return suggestRandom(space, n, seed), nil
	case Grid:
		if gridPoints < 1 || gridPoints > MaxGridPoints {
			return nil, fmt.Errorf("%w: grid points %d: want 1 to %d", ErrInvalidOptions, gridPoints, MaxGridPoints)
		}
		return suggestGrid(space, n, gridPoints)
	}
	return nil, fmt.Errorf("%w: algorithm %q: want grid or random", ErrInvalidOptions, alg)
}

func validateSpace(space []Param) error {
	if len(space) == 0 {
		return fmt.Errorf("%w: an empty search space: give at least one parameter", ErrInvalidOptions)
	}
	seen := make(map[string]bool, len(space))
	for _, p := range space {
		if err := p.validate(); err != nil {
			return fmt.Errorf("%w: param %s: %s", ErrInvalidOptions, p.Name, err)
		}
		if seen[p.Name] {
			return fmt.Errorf("%w: param %s is given twice", ErrInvalidOptions, p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// randomStream is the PCG stream Random draws from, so that a seed shared
// with the training steps draws different numbers here.
const randomStream = 0x7377656570 // "sweep"

func suggestRandom(space []Param, n int, seed uint64) []Values {
	r := rand.New(rand.NewPCG(seed, randomStream))
	out := make([]Values, n)
	for i := range out {
		v := make(Values, len(space))
		for _, p := range space {
			switch p.Kind {
			case Double:
				u := r.Float64()
				if p.Log {
					v[p.Name] = p.double(math.Exp(math.Log(p.Min) + u*(math.Log(p.Max)-math.Log(p.Min))))
				} else {
					v[p.Name] = p.double(p.Min + u*(p.Max-p.Min))
				}
			case Int:
				v[p.Name] = int64(p.Min) + r.Int64N(int64(p.Max-p.Min)+1)
			case Categorical:
				v[p.Name] = p.Values[r.IntN(len(p.Values))]
			}
		}
		out[i] = v
	}
	return out
}

// double rounds x to 6 significant digits within p's range.
func (p Param) double(x float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 6, 64), 64)
	return min(max(r, p.Min), p.Max)
}

// gridSize is how many values a parameter takes in a grid.
func (p Param) gridSize(points int) int64 {
	switch p.Kind {
	case Double:
		if p.Min == p.Max {
			return 1
		}
		return int64(points)
	case Int:
		return int64(p.Max-p.Min) + 1
	default:
		return int64(len(p.Values))
	}
}

// gridValue is p's i-th grid value, i < p.gridSize(points).
func (p Param) gridValue(i int64, points int) any {
	switch p.Kind {
	case Double:
		if p.Min == p.Max {
			return p.Min
		}
		f := 0.5
		if points > 1 {
			f = float64(i) / float64(points-1)
		}
		if p.Log {
			return p.double(math.Exp(math.Log(p.Min) + f*(math.Log(p.Max)-math.Log(p.Min))))
		}
		return p.double(p.Min + f*(p.Max-p.Min))
	case Int:
		return int64(p.Min) + i
	default:
		return p.Values[i]
	}
}

func suggestGrid(space []Param, n, points int) ([]Values, error) {
	sizes := make([]int64, len(space))
	total := int64(1)
	for i, p := range space {
		sizes[i] = p.gridSize(points)
		// Saturate: past MaxTrials the exact size no longer matters.
		if total > MaxTrials/sizes[i] {
			total = MaxTrials + 1
		} else {
			total *= sizes[i]
		}
	}
	if total > int64(n) {
		size := strconv.FormatInt(total, 10)
		if total > MaxTrials {
			size = "more than " + strconv.Itoa(MaxTrials)
		}
		return nil, fmt.Errorf("%w: the grid has %s points, more than the budget of %d trials: raise the trials, lower the grid points or draw at random", ErrInvalidOptions, size, n)
	}
	out := make([]Values, total)
	for k := range out {
		v := make(Values, len(space))
		rest := int64(k)
		for i := len(space) - 1; i >= 0; i-- { // the last parameter varies fastest
			v[space[i].Name] = space[i].gridValue(rest%sizes[i], points)
			rest /= sizes[i]
		}
		out[k] = v
	}
	return out, nil
}

// formatValue writes a parameter value as templates and files show it:
// a double in Go's shortest form, an int in decimal, a string as it is.
func formatValue(v any) string {
	switch x := v.(type) {
	case float64:
		return formatFloat(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// formatValues writes vals as NAME=VALUE pairs in the order of space, for
// logs.
func formatValues(space []Param, vals Values) string {
	parts := make([]string, 0, len(space))
	for _, p := range space {
		parts = append(parts, p.Name+"="+formatValue(vals[p.Name]))
	}
	return strings.Join(parts, " ")
}
