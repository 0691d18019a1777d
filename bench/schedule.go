package bench

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// The open loop's arrival schedules.
const (
	// ArrivalsConstant sends at a fixed interval, 1/rate apart.
	ArrivalsConstant = "constant"
	// ArrivalsPoisson sends with exponentially distributed gaps of mean
	// 1/rate (a Poisson process), as independent clients would.
	ArrivalsPoisson = "poisson"
)

// Schedule yields the intended send times of an open loop, as offsets from
// its start. It is a pure function of its arrivals, rate and seed: the same
// three give the same sequence, so a run can be reproduced and the
// schedule tested without a clock. A Schedule is not safe for concurrent
// use; one scheduler goroutine owns it.
type Schedule struct {
	rate    float64
	poisson bool
	rng     *rand.Rand
	i       int64   // constant: the next arrival's index
	at      float64 // poisson: the next arrival, in nanoseconds
}

// NewSchedule returns the schedule of rate requests per second with the
// given arrivals (ArrivalsConstant or ArrivalsPoisson); seed drives the
// Poisson gaps.
func NewSchedule(arrivals string, rate float64, seed uint64) (*Schedule, error) {
	if !(rate > 0) || rate > 1e9 {
		return nil, fmt.Errorf("bench: rate %v is not a positive number of requests per second up to 1e9", rate)
	}
	s := &Schedule{rate: rate}
	switch arrivals {
	case ArrivalsConstant, "":
	case ArrivalsPoisson:
		s.poisson = true
		s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	default:
		return nil, fmt.Errorf("bench: arrivals %q: want %s or %s", arrivals, ArrivalsConstant, ArrivalsPoisson)
	}
	return s, nil
}

// Next returns the offset of the next intended send. The first is at 0.
// Constant offsets are computed from the arrival's index, so they do not
// drift however long the run.
func (s *Schedule) Next() time.Duration {
	if !s.poisson {
		d := time.Duration(float64(s.i) * 1e9 / s.rate)
		s.i++
		return d
	}
	d := time.Duration(s.at)
	s.at += s.rng.ExpFloat64() * 1e9 / s.rate
	return d
}
