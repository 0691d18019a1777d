package bench

import (
	"time"
)

// Loop modes, as Result.Mode reports them.
const (
	ModeClosed = "closed" // fixed concurrency
	ModeOpen   = "open"   // fixed arrival rate
)

// Result is what a run measured. Latencies are of successful requests only;
// failures are counted by kind.
type Result struct {
	// Mode is ModeClosed or ModeOpen.
	Mode string `json:"mode,omitempty"`
	// Concurrency is the closed loop's number of workers; in an open loop,
	// the most requests that were in flight at once.
	Concurrency int `json:"concurrency"`
	// TargetRate is the open loop's intended rate in requests per second,
	// and Arrivals its schedule ("constant" or "poisson").
	TargetRate float64 `json:"target_rate,omitempty"`
	Arrivals   string  `json:"arrivals,omitempty"`
	// Requests counts the requests sent in the measured window that
	// completed, errors included.
	Requests int64 `json:"requests"`
	// Errors counts those that failed; FirstError is the first failure and
	// ErrorKinds the count of each kind (ErrorKind), most frequent first.
	Errors     int64        `json:"errors"`
	FirstError string       `json:"first_error,omitempty"`
	ErrorKinds []ErrorCount `json:"errors_by_kind,omitempty"`
	// Elapsed runs from the start of the measured window until the last
	// request finished.
	Elapsed time.Duration `json:"elapsed_ns"`
	// RPS is successful requests per second of Elapsed; AchievedRate counts
	// every completed request (errors included), to compare with
	// TargetRate.
	RPS          float64 `json:"rps"`
	AchievedRate float64 `json:"achieved_rate"`
	// Latency quantiles of the successful requests, in nanoseconds. In an
	// open loop latency runs from each request's intended send time, so a
	// request the generator or the server held back counts the wait
	// (coordinated omission corrected).
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P95  time.Duration `json:"p95_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	Min  time.Duration `json:"min_ns"`
	Mean time.Duration `json:"mean_ns"`
	// Open loop only: the latency from the actual send (what a closed-loop
	// tool would report), how far sends lagged behind schedule, and how
	// many lagged by more than the loop's LateAfter.
	ServiceP50 time.Duration `json:"service_p50_ns,omitempty"`
	ServiceP99 time.Duration `json:"service_p99_ns,omitempty"`
	SendLagP50 time.Duration `json:"send_lag_p50_ns,omitempty"`
	SendLagP99 time.Duration `json:"send_lag_p99_ns,omitempty"`
	Late       int64         `json:"late,omitempty"`
	// BytesSent and BytesReceived are the wire bytes (headers and framing
	// included) moved during the measured window, when the target counts
	// them (ByteCounter).
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
	// Timeline is the run over time, TimelineInterval per point.
	TimelineInterval time.Duration `json:"timeline_interval_ns,omitempty"`
	Timeline         []TimePoint   `json:"timeline,omitempty"`
	// Latency holds every successful request's latency.
	Latency *Histogram `json:"-"`
}

// Merge adds o to r, as if both had run one after the other: counts,
// elapsed time, bytes and latencies add up, and the figures are
// recomputed. Timelines and the open loop's service and lag figures are
// not merged.
func (r *Result) Merge(o *Result) {
	if r.Latency == nil {
		r.Latency = new(Histogram)
	}
	if r.Concurrency == 0 {
		r.Concurrency = o.Concurrency
	}
	if r.Mode == "" {
		r.Mode, r.TargetRate, r.Arrivals = o.Mode, o.TargetRate, o.Arrivals
	}
	r.Requests += o.Requests
	r.Errors += o.Errors
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
	if len(o.ErrorKinds) > 0 {
		var t errorTally
		for _, e := range r.ErrorKinds {
			t.add(e.Kind, e.Count)
		}
		for _, e := range o.ErrorKinds {
			t.add(e.Kind, e.Count)
		}
		r.ErrorKinds = t.sorted()
	}
	r.Late += o.Late
	r.BytesSent += o.BytesSent
	r.BytesReceived += o.BytesReceived
	r.Elapsed += o.Elapsed
	if o.Latency != nil {
		r.Latency.Merge(o.Latency)
	}
	r.summarize()
}

func (r *Result) summarize() {
	r.RPS, r.AchievedRate = 0, 0
	if r.Elapsed > 0 {
		r.RPS = float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
		r.AchievedRate = float64(r.Requests) / r.Elapsed.Seconds()
	}
	h := r.Latency
	r.P50, r.P90, r.P95, r.P99, r.P999 = h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.95), h.Quantile(0.99), h.Quantile(0.999)
	r.Max, r.Min, r.Mean = h.Max(), h.Min(), h.Mean()
}

// Stat returns the latency statistic named name: p50, p90, p95, p99,
// p99.9, max or mean; ok is false for another name.
func (r *Result) Stat(name string) (d time.Duration, ok bool) {
	switch name {
	case "p50":
		return r.P50, true
	case "p90":
		return r.P90, true
	case "p95":
		return r.P95, true
	case "p99":
		return r.P99, true
	case "p99.9", "p999":
		return r.P999, true
	case "max":
		return r.Max, true
	case "mean", "avg":
		return r.Mean, true
	}
	return 0, false
}

// LatencyStats are the names Stat accepts, for flag help and errors.
const LatencyStats = "p50, p90, p95, p99, p99.9, max or mean"
