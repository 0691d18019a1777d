package autoscaler

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Metric is what the autoscaler watches for a model.
type Metric string

// The metrics the KPA decider scales on.
const (
	// MetricConcurrency is requests in flight, those the activator holds
	// included.
	MetricConcurrency Metric = "concurrency"
	// MetricRPS is requests arriving per second.
	MetricRPS Metric = "rps"
)

// Bounds of the settings, Knative's.
const (
	// WindowMin and WindowMax bound the stable window. Below 6s the panic
	// window would see too few samples between two decisions.
	WindowMin = 6 * time.Second
	WindowMax = time.Hour
	// TargetMin is the smallest per-replica target after utilization.
	TargetMin = 0.01
	// PanicWindowPercentageMin and Max bound the panic window as a
	// percentage of the stable window.
	PanicWindowPercentageMin = 1.0
	PanicWindowPercentageMax = 100.0
	// PanicThresholdPercentageMin and Max bound the panic threshold. Below
	// 110% the decider would panic at its own target and never scale down.
	PanicThresholdPercentageMin = 110.0
	PanicThresholdPercentageMax = 1000.0
)

// Settings are one model's autoscaling knobs: the KPA's, with Knative's
// names and defaults. Start from DefaultSettings, set the model's own
// values (minReplicas, maxReplicas, scaleTarget, scaleMetric,
// containerConcurrency of its InferenceService), apply its
// autoscaling.knative.dev annotations with SettingsFromAnnotations, and hand
// the result to Autoscaler.SetModels, which validates it. A Settings is a
// value; Decide and the Autoscaler never change one.
type Settings struct {
	// Metric is concurrency (the default) or rps.
	Metric Metric
	// Target is the value of Metric one replica should carry at full
	// utilization; 0 means the default: ContainerConcurrency when set,
	// else ConcurrencyTargetDefault, for concurrency; RPSTargetDefault for
	// rps. With the concurrency metric and ContainerConcurrency set, the
	// smaller of Target and ContainerConcurrency applies, so the decider
	// never aims above what a replica accepts.
	Target float64
	// TargetUtilization is the fraction of Target the decider aims for, in
	// (0, 1]; Knative's container-concurrency-target-percentage (70%).
	// The effective per-replica target is Target * TargetUtilization, at
	// least TargetMin.
	TargetUtilization float64
	// ContainerConcurrency is the hard limit of requests in flight per
	// replica (0: none).
	ContainerConcurrency int
	// ConcurrencyTargetDefault and RPSTargetDefault are the Targets used
	// when neither Target nor ContainerConcurrency is set (100 and 200).
	ConcurrencyTargetDefault float64
	RPSTargetDefault         float64
	// TargetBurstCapacity is how much of Metric the ready replicas should
	// be able to absorb on top of the panic average before the activator
	// needs to stay in the request path (200); 0 means none, -1 unlimited
	// (the activator always in the path). It only shapes
	// Decision.ExcessBurstCapacity.
	TargetBurstCapacity float64

	// MinReplicas is at least 0; 0 allows scale to zero.
	MinReplicas int
	// MaxReplicas is 0 (no bound) or at least MinReplicas.
	MaxReplicas int
	// InitialScale is the count a model starts with and keeps (when it is
	// above MinReplicas) until that many replicas have been ready once (1).
	InitialScale int
	// ActivationScale is the least count while there is any traffic, so
	// that a model scaling from zero gets at least this many replicas (1).
	ActivationScale int

	// StableWindow is the span averaged for ordinary decisions (60s),
	// whole seconds in [WindowMin, WindowMax].
	StableWindow time.Duration
	// PanicWindowPercentage sizes the panic window as a percentage of
	// StableWindow (10).
	PanicWindowPercentage float64
	// PanicThresholdPercentage is the ratio of the replicas the panic
	// window asks for to the ready ones, in percent, at which panic mode
	// starts (200).
	PanicThresholdPercentage float64
	// MaxScaleUpRate bounds one decision to ready*MaxScaleUpRate replicas
	// (1000); MaxScaleDownRate to ready/MaxScaleDownRate (2). Both > 1.
	MaxScaleUpRate   float64
	MaxScaleDownRate float64
	// ScaleDownDelay holds a higher count for this long after it was last
	// decided, whole seconds in [0, 1h] (0: scale down at once).
	ScaleDownDelay time.Duration
	// ScaleToZeroGracePeriod is how long a model with no traffic in its
	// stable window keeps one replica before going to zero (30s).
	ScaleToZeroGracePeriod time.Duration
	// ScaleToZeroPodRetentionPeriod, when longer than the grace period,
	// replaces it: the last replica stays this long (0).
	ScaleToZeroPodRetentionPeriod time.Duration
	// Tick is how often the Autoscaler decides the model's count (2s), at
	// least one second; decisions fall on the once-a-second sampling.
	Tick time.Duration
}

// DefaultSettings returns Knative's defaults: concurrency, target 100 at
// 70% utilization, stable window 60s, panic window 10% of it, panic
// threshold 200%, scale-up rate 1000, scale-down rate 2, burst capacity
// 200, grace period 30s, no scale-down delay, initial and activation scale
// 1, minReplicas 1 (the InferenceService default), no maxReplicas, tick 2s.
func DefaultSettings() Settings {
	return Settings{
		Metric:                   MetricConcurrency,
		TargetUtilization:        0.7,
		ConcurrencyTargetDefault: 100,
		RPSTargetDefault:         200,
		TargetBurstCapacity:      200,
		MinReplicas:              1,
		InitialScale:             1,
		ActivationScale:          1,
		StableWindow:             60 * time.Second,
		PanicWindowPercentage:    10,
		PanicThresholdPercentage: 200,
		MaxScaleUpRate:           1000,
		MaxScaleDownRate:         2,
		ScaleToZeroGracePeriod:   30 * time.Second,
		Tick:                     2 * time.Second,
	}
}

// PanicWindow is StableWindow * PanicWindowPercentage / 100, rounded up to
// whole seconds (the samples' granularity), at least one second.
func (s Settings) PanicWindow() time.Duration {
	w := time.Duration(math.Ceil(float64(s.StableWindow) * s.PanicWindowPercentage / 100 / float64(time.Second)))
	return max(w, 1) * time.Second
}

// Targets returns the per-replica value the decider aims for (after
// utilization, at least TargetMin) and the per-replica value at full
// utilization, which sizes the excess burst capacity.
func (s Settings) Targets() (target, total float64) {
	switch s.Metric {
	case MetricRPS:
		total = s.RPSTargetDefault
	default:
		total = float64(s.ContainerConcurrency)
		if total == 0 {
			total = s.ConcurrencyTargetDefault
		}
	}
	if s.Target > 0 {
		total = s.Target
		if s.Metric != MetricRPS && s.ContainerConcurrency > 0 {
			total = min(total, float64(s.ContainerConcurrency))
		}
	}
	return max(TargetMin, total*s.TargetUtilization), total
}

// scaleToZeroWait is how long a model without traffic keeps its last
// replica.
func (s Settings) scaleToZeroWait() time.Duration {
	return max(s.ScaleToZeroGracePeriod, s.ScaleToZeroPodRetentionPeriod)
}

// SettingsError is one invalid field of a Settings.
type SettingsError struct {
	// Field is the Settings field's name, as StableWindow.
	Field string
	// Msg says what is wrong, with the bad value.
	Msg string
}

func (e *SettingsError) Error() string { return "autoscaler: settings: " + e.Field + ": " + e.Msg }

// Validate reports every invalid field, each a *SettingsError, joined
// with errors.Join; nil when the Settings can be decided on.
func (s Settings) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &SettingsError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

	switch s.Metric {
	case MetricConcurrency, MetricRPS:
	default:
		bad("Metric", "%q is not %s or %s", s.Metric, MetricConcurrency, MetricRPS)
	}
	if !finite(s.Target) || s.Target != 0 && s.Target < TargetMin {
		bad("Target", "%g is neither 0 (the default) nor at least %g", s.Target, TargetMin)
	}
	if !finite(s.TargetUtilization) || s.TargetUtilization < 0.01 || s.TargetUtilization > 1 {
		bad("TargetUtilization", "%g is outside [0.01, 1]", s.TargetUtilization)
	}
	if s.ContainerConcurrency < 0 {
		bad("ContainerConcurrency", "%d is negative", s.ContainerConcurrency)
	}
	if !finite(s.ConcurrencyTargetDefault) || s.ConcurrencyTargetDefault < TargetMin {
		bad("ConcurrencyTargetDefault", "%g is less than %g", s.ConcurrencyTargetDefault, TargetMin)
	}
	if !finite(s.RPSTargetDefault) || s.RPSTargetDefault < TargetMin {
		bad("RPSTargetDefault", "%g is less than %g", s.RPSTargetDefault, TargetMin)
	}
	if !finite(s.TargetBurstCapacity) || s.TargetBurstCapacity < 0 && s.TargetBurstCapacity != -1 {
		bad("TargetBurstCapacity", "%g is neither -1 (unlimited) nor at least 0", s.TargetBurstCapacity)
	}

	if s.MinReplicas < 0 {
		bad("MinReplicas", "%d is negative", s.MinReplicas)
	}
	if s.MaxReplicas < 0 {
		bad("MaxReplicas", "%d is negative", s.MaxReplicas)
	} else if s.MaxReplicas > 0 && s.MaxReplicas < s.MinReplicas {
		bad("MaxReplicas", "%d is less than MinReplicas (%d)", s.MaxReplicas, s.MinReplicas)
	}
	if s.InitialScale < 0 {
		bad("InitialScale", "%d is negative", s.InitialScale)
	}
	if s.ActivationScale < 1 {
		bad("ActivationScale", "%d is less than 1", s.ActivationScale)
	}

	if s.StableWindow < WindowMin || s.StableWindow > WindowMax {
		bad("StableWindow", "%v is outside [6s, 1h]", s.StableWindow)
	} else if s.StableWindow%time.Second != 0 {
		bad("StableWindow", "%v is not a whole number of seconds", s.StableWindow)
	}
	if !finite(s.PanicWindowPercentage) || s.PanicWindowPercentage < PanicWindowPercentageMin || s.PanicWindowPercentage > PanicWindowPercentageMax {
		bad("PanicWindowPercentage", "%g is outside [1, 100]", s.PanicWindowPercentage)
	}
	if !finite(s.PanicThresholdPercentage) || s.PanicThresholdPercentage < PanicThresholdPercentageMin || s.PanicThresholdPercentage > PanicThresholdPercentageMax {
		bad("PanicThresholdPercentage", "%g is outside [110, 1000]", s.PanicThresholdPercentage)
	}
	if !finite(s.MaxScaleUpRate) || s.MaxScaleUpRate <= 1 {
		bad("MaxScaleUpRate", "%g is not more than 1", s.MaxScaleUpRate)
	}
	if !finite(s.MaxScaleDownRate) || s.MaxScaleDownRate <= 1 {
		bad("MaxScaleDownRate", "%g is not more than 1", s.MaxScaleDownRate)
	}
	if s.ScaleDownDelay < 0 || s.ScaleDownDelay > WindowMax {
		bad("ScaleDownDelay", "%v is outside [0s, 1h]", s.ScaleDownDelay)
	} else if s.ScaleDownDelay%time.Second != 0 {
		bad("ScaleDownDelay", "%v is not a whole number of seconds", s.ScaleDownDelay)
	}
	if s.ScaleToZeroGracePeriod <= 0 || s.ScaleToZeroGracePeriod > WindowMax {
		bad("ScaleToZeroGracePeriod", "%v is outside (0s, 1h]", s.ScaleToZeroGracePeriod)
	}
	if s.ScaleToZeroPodRetentionPeriod < 0 || s.ScaleToZeroPodRetentionPeriod > WindowMax {
		bad("ScaleToZeroPodRetentionPeriod", "%v is outside [0s, 1h]", s.ScaleToZeroPodRetentionPeriod)
	}
	if s.Tick < time.Second || s.Tick > s.StableWindow && s.StableWindow >= WindowMin {
		bad("Tick", "%v is outside [1s, StableWindow]", s.Tick)
	}
	return errors.Join(errs...)
}
