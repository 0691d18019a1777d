package controlplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Defaults of the infergate.io/rollout annotation's fields.
const (
	// DefaultStepMinDuration is a step's minDuration when not set.
	DefaultStepMinDuration = time.Minute
	// DefaultStepMinRequests is a step's minRequests when not set: enough
	// for an error rate of 1% to show as one error or more.
	DefaultStepMinRequests = 100
	// DefaultMaxErrorRateIncrease is maxErrorRateIncrease when not set:
	// one percentage point over the stable revision's error rate.
	DefaultMaxErrorRateIncrease = 0.01
	// DefaultMaxLatencyRatio is maxLatencyRatio when not set: loose
	// enough that the noise of a quantile over a few hundred requests
	// does not roll back a good canary.
	DefaultMaxLatencyRatio = 1.5
	// DefaultQuantile is quantile when not set. The 95th percentile
	// rather than the 99th: over DefaultStepMinRequests requests the 99th
	// is about the slowest request, mostly noise.
	DefaultQuantile = 0.95
	// MaxRolloutSteps bounds the steps of a rollout.
	MaxRolloutSteps = 20
	// MaxStepDuration bounds a step's minDuration.
	MaxStepDuration = 24 * time.Hour
)

// defaultRolloutSteps are the weights of the steps of a rollout that
// lists none, each with the default minDuration and minRequests.
var defaultRolloutSteps = []int64{10, 50}

// Rollout is a progressive rollout policy: the value, in JSON, of the
// infergate.io/rollout annotation (config.AnnotationRollout), with
// defaults applied. A model whose latest declaration has one rolls each
// new revision out step by step instead of following
// canaryTrafficPercent. Every field may be left out:
//
//	{
//	  "steps": [                          // default: weights 10 and 50
//	    {"weight": 10, "minDuration": "30s", "minRequests": 100},
//	    {"weight": 50, "minDuration": "1m", "minRequests": 200}
//	  ],
//	  "maxErrorRateIncrease": 0.01,       // default 0.01
//	  "maxLatencyRatio": 1.5,             // default 1.5; 0 turns the latency gate off
//	  "quantile": 0.95                    // default 0.95
//	}
//
// At each step the new revision (the canary) gets the step's weight and
// the stable revision the rest. A step ends when it has lasted
// minDuration and the canary has answered minRequests judged requests
// (client errors do not count): it passes if the canary's error rate is
// at most the stable's plus maxErrorRateIncrease and the canary's
// quantile latency at most maxLatencyRatio times the stable's; the
// rollout then moves to the next step, or promotes the canary after the
// last. Otherwise it rolls back. See Deployments.Tick for the details.
type Rollout struct {
	// Steps are at least one, at most MaxRolloutSteps.
	Steps []Step `json:"steps"`
	// MaxErrorRateIncrease is how much the canary's error rate (server
	// errors over judged requests) may exceed the stable's, in [0, 1].
	MaxErrorRateIncrease float64 `json:"maxErrorRateIncrease"`
	// MaxLatencyRatio is how many times the stable's quantile latency
	// the canary's may be: 0 (no latency gate) or at least 1.
	MaxLatencyRatio float64 `json:"maxLatencyRatio"`
	// Quantile is the latency quantile compared, in (0, 1].
	Quantile float64 `json:"quantile"`
}

// Step is one step of a Rollout. In JSON MinDuration is a Go duration
// string ("30s", "2m").
type Step struct {
	// Weight is the canary's percent of the traffic, in [1, 100].
	Weight int64 `json:"weight"`
	// MinDuration is how long the step lasts at least, in [0,
	// MaxStepDuration]; default DefaultStepMinDuration.
	MinDuration time.Duration `json:"minDuration"`
	// MinRequests is how many judged requests the canary answers in the
	// step at least, 0 or more; default DefaultStepMinRequests. It is also
	// how many the stable revision needs for its figures to be compared
	// with the canary's.
	MinRequests int64 `json:"minRequests"`
}

// stepJSON is Step as written.
type stepJSON struct {
	Weight      *int64  `json:"weight"`
	MinDuration *string `json:"minDuration"`
	MinRequests *int64  `json:"minRequests"`
}

// MarshalJSON writes MinDuration as a duration string.
func (s Step) MarshalJSON() ([]byte, error) {
	d := s.MinDuration.String()
	return json.Marshal(stepJSON{Weight: &s.Weight, MinDuration: &d, MinRequests: &s.MinRequests})
}

// UnmarshalJSON reads what MarshalJSON writes. It checks nor defaults
// nothing: ParseRollout does.
func (s *Step) UnmarshalJSON(b []byte) error {
	var j stepJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Step{}
	if j.Weight != nil {
		s.Weight = *j.Weight
	}
	if j.MinRequests != nil {
		s.MinRequests = *j.MinRequests
	}
	if j.MinDuration != nil {
		d, err := time.ParseDuration(*j.MinDuration)
		if err != nil {
			return fmt.Errorf("minDuration: %w", err)
		}
		s.MinDuration = d
	}
	return nil
}

// rolloutJSON is Rollout as written; nil is a field left out.
type rolloutJSON struct {
	Steps                []stepJSON `json:"steps"`
	MaxErrorRateIncrease *float64   `json:"maxErrorRateIncrease"`
	MaxLatencyRatio      *float64   `json:"maxLatencyRatio"`
	Quantile             *float64   `json:"quantile"`
}

// ParseRollout reads the value of the infergate.io/rollout annotation (see
// Rollout), strictly: an unknown field, a value out of range or trailing
// data is an error that names the field and the value. It returns every
// problem it finds, separated by "; ".
func ParseRollout(value string) (Rollout, error) {
	dec := json.NewDecoder(strings.NewReader(value))
	dec.DisallowUnknownFields()
	var j rolloutJSON
	if err := dec.Decode(&j); err != nil {
		return Rollout{}, fmt.Errorf("not a rollout object: %v", jsonError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Rollout{}, errors.New("not a rollout object: data after the object")
	}
	if bytes.HasPrefix(bytes.TrimSpace([]byte(value)), []byte("null")) {
		return Rollout{}, errors.New("not a rollout object: null")
	}

	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	r := Rollout{
		MaxErrorRateIncrease: DefaultMaxErrorRateIncrease,
		MaxLatencyRatio:      DefaultMaxLatencyRatio,
		Quantile:             DefaultQuantile,
	}
	switch {
	case j.Steps == nil:
		for _, w := range defaultRolloutSteps {
			r.Steps = append(r.Steps, Step{Weight: w, MinDuration: DefaultStepMinDuration, MinRequests: DefaultStepMinRequests})
		}
	case len(j.Steps) == 0:
		bad("steps", "empty: list one step at least, or leave steps out for the default")
	case len(j.Steps) > MaxRolloutSteps:
		bad("steps", "%d steps, more than %d", len(j.Steps), MaxRolloutSteps)
	}
	for i, sj := range j.Steps {
		if len(j.Steps) > MaxRolloutSteps {
			break
		}
		field := fmt.Sprintf("steps[%d].", i)
		s := Step{MinDuration: DefaultStepMinDuration, MinRequests: DefaultStepMinRequests}
		switch {
		case sj.Weight == nil:
			bad(field+"weight", "required")
		case *sj.Weight < 1 || *sj.Weight > 100:
			bad(field+"weight", "%d is not between 1 and 100", *sj.Weight)
		default:
			s.Weight = *sj.Weight
		}
		if sj.MinDuration != nil {
			d, err := time.ParseDuration(*sj.MinDuration)
			switch {
			case err != nil:
				bad(field+"minDuration", "%s is not a duration like \"30s\" or \"2m\"", strconv.Quote(*sj.MinDuration))
			case d < 0 || d > MaxStepDuration:
				bad(field+"minDuration", "%s is not between 0s and %s", strconv.Quote(*sj.MinDuration), MaxStepDuration)
			default:
				s.MinDuration = d
			}
		}
		if sj.MinRequests != nil {
			if *sj.MinRequests < 0 {
				bad(field+"minRequests", "%d is negative", *sj.MinRequests)
			}
			s.MinRequests = *sj.MinRequests
		}
		r.Steps = append(r.Steps, s)
	}
	if p := j.MaxErrorRateIncrease; p != nil {
		if !(*p >= 0 && *p <= 1) {
			bad("maxErrorRateIncrease", "%v is not between 0 and 1 (0.01 is one percentage point)", *p)
		}
		r.MaxErrorRateIncrease = *p
	}
	if p := j.MaxLatencyRatio; p != nil {
		if !(*p == 0 || *p >= 1 && !math.IsInf(*p, 0)) {
			bad("maxLatencyRatio", "%v is neither 0 (no latency gate) nor at least 1", *p)
		}
		r.MaxLatencyRatio = *p
	}
	if p := j.Quantile; p != nil {
		if !(*p > 0 && *p <= 1) {
			bad("quantile", "%v is not in (0, 1] (0.95 is the 95th percentile)", *p)
		}
		r.Quantile = *p
	}
	if len(problems) > 0 {
		return Rollout{}, errors.New(strings.Join(problems, "; "))
	}
	return r, nil
}

// jsonError words a decoding error without Go type names.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Sprintf("want an object, got %s", te.Value)
		}
		return fmt.Sprintf("%s: %s is not %s", te.Field, te.Value, jsonKind(te.Type.Kind().String()))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"):
		return "a whole number"
	case strings.HasPrefix(goKind, "float"):
		return "a number"
	case goKind == "string":
		return "a string"
	case goKind == "slice":
		return "a list"
	case goKind == "struct":
		return "an object"
	}
	return "a " + goKind
}
