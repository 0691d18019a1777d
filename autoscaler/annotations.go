package autoscaler

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AnnotationPrefix starts the Knative autoscaling annotations users already
// write on an InferenceService.
const AnnotationPrefix = "autoscaling.knative.dev/"

// The annotations SettingsFromAnnotations reads, by their current Knative
// names. Knative's older camelCase spellings (minScale, maxScale,
// initialScale, targetUtilizationPercentage, targetBurstCapacity,
// panicWindowPercentage, panicThresholdPercentage, scaleDownDelay,
// scaleToZeroPodRetentionPeriod, metricAggregationAlgorithm) are read too.
const (
	// AnnotationClass must be kpa.autoscaling.knative.dev when set: the
	// KPA is the only autoscaler infergate has.
	AnnotationClass = AnnotationPrefix + "class"
	// AnnotationMetric is concurrency or rps.
	AnnotationMetric = AnnotationPrefix + "metric"
	// AnnotationTarget is Settings.Target, at least 0.01.
	AnnotationTarget = AnnotationPrefix + "target"
	// AnnotationTargetUtilization is Settings.TargetUtilization in
	// percent, in [1, 100].
	AnnotationTargetUtilization = AnnotationPrefix + "target-utilization-percentage"
	// AnnotationTargetBurstCapacity is Settings.TargetBurstCapacity: -1
	// or at least 0.
	AnnotationTargetBurstCapacity = AnnotationPrefix + "target-burst-capacity"
	// AnnotationWindow is Settings.StableWindow: a duration of whole
	// seconds in [6s, 1h].
	AnnotationWindow = AnnotationPrefix + "window"
	// AnnotationPanicWindowPercentage is in [1, 100].
	AnnotationPanicWindowPercentage = AnnotationPrefix + "panic-window-percentage"
	// AnnotationPanicThresholdPercentage is in [110, 1000].
	AnnotationPanicThresholdPercentage = AnnotationPrefix + "panic-threshold-percentage"
	// AnnotationScaleDownDelay is a duration of whole seconds in [0, 1h].
	AnnotationScaleDownDelay = AnnotationPrefix + "scale-down-delay"
	// AnnotationInitialScale is at least 0.
	AnnotationInitialScale = AnnotationPrefix + "initial-scale"
	// AnnotationActivationScale is at least 1.
	AnnotationActivationScale = AnnotationPrefix + "activation-scale"
	// AnnotationMinScale and AnnotationMaxScale are MinReplicas and
	// MaxReplicas (0: no bound); they take precedence over the
	// InferenceService's minReplicas and maxReplicas in base.
	AnnotationMinScale = AnnotationPrefix + "min-scale"
	AnnotationMaxScale = AnnotationPrefix + "max-scale"
	// AnnotationScaleToZeroPodRetentionPeriod is a duration in [0, 1h].
	AnnotationScaleToZeroPodRetentionPeriod = AnnotationPrefix + "scale-to-zero-pod-retention-period"
	// AnnotationScaleToZeroGracePeriod is infergate's own: Knative sets
	// the grace period cluster-wide (config-autoscaler's
	// scale-to-zero-grace-period), infergate per model too. A duration in
	// (0, 1h].
	AnnotationScaleToZeroGracePeriod = AnnotationPrefix + "scale-to-zero-grace-period"
	// AnnotationMetricAggregationAlgorithm may only be linear, the
	// averaging infergate does.
	AnnotationMetricAggregationAlgorithm = AnnotationPrefix + "metric-aggregation-algorithm"
)

// classKPA is the one autoscaler class infergate implements.
const classKPA = "kpa.autoscaling.knative.dev"

// legacyKeys maps Knative's older spellings to the current ones.
var legacyKeys = map[string]string{
	AnnotationPrefix + "minScale":                      AnnotationMinScale,
	AnnotationPrefix + "maxScale":                      AnnotationMaxScale,
	AnnotationPrefix + "initialScale":                  AnnotationInitialScale,
	AnnotationPrefix + "targetUtilizationPercentage":   AnnotationTargetUtilization,
	AnnotationPrefix + "targetBurstCapacity":           AnnotationTargetBurstCapacity,
	AnnotationPrefix + "panicWindowPercentage":         AnnotationPanicWindowPercentage,
	AnnotationPrefix + "panicThresholdPercentage":      AnnotationPanicThresholdPercentage,
	AnnotationPrefix + "scaleDownDelay":                AnnotationScaleDownDelay,
	AnnotationPrefix + "scaleToZeroPodRetentionPeriod": AnnotationScaleToZeroPodRetentionPeriod,
	AnnotationPrefix + "metricAggregationAlgorithm":    AnnotationMetricAggregationAlgorithm,
}

// knownKeys are the current names, in the order SettingsFromAnnotations
// reports their problems.
var knownKeys = []string{
	AnnotationClass,
	AnnotationMetric,
	AnnotationMetricAggregationAlgorithm,
	AnnotationTarget,
	AnnotationTargetUtilization,
	AnnotationTargetBurstCapacity,
	AnnotationWindow,
	AnnotationPanicWindowPercentage,
	AnnotationPanicThresholdPercentage,
	AnnotationScaleDownDelay,
	AnnotationMinScale,
	AnnotationMaxScale,
	AnnotationInitialScale,
	AnnotationActivationScale,
	AnnotationScaleToZeroGracePeriod,
	AnnotationScaleToZeroPodRetentionPeriod,
}

// AnnotationError is one bad autoscaling annotation.
type AnnotationError struct {
	// Key is the annotation as written (a legacy spelling stays one).
	Key string
	// Msg says what is wrong, quoting the bad value.
	Msg string
}

func (e *AnnotationError) Error() string { return "annotation " + e.Key + ": " + e.Msg }

// SettingsFromAnnotations returns base with the autoscaling.knative.dev
// annotations applied, and validated. Annotations under other prefixes are
// ignored; an unknown one under autoscaling.knative.dev, a key set in both
// its current and its legacy spelling, and a bad value are errors. Every
// problem is reported, each an *AnnotationError (or a *SettingsError for a
// problem of base itself), joined with errors.Join; on error the returned
// Settings is base.
func SettingsFromAnnotations(base Settings, annotations map[string]string) (Settings, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &AnnotationError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	// written maps each current name to the key the user wrote it under.
	written := make(map[string]string)
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if !strings.HasPrefix(k, AnnotationPrefix) {
			continue
		}
		canon := k
		if c, ok := legacyKeys[k]; ok {
			canon = c
		} else if !slices.Contains(knownKeys, k) {
			bad(k, "unknown autoscaling annotation (known: %s)", knownNames())
			continue
		}
		if prev, dup := written[canon]; dup {
			legacy, current := prev, k
			if canon == prev {
				legacy, current = k, prev
			}
			bad(legacy, "set together with %s; set one", current)
			continue
		}
		written[canon] = k
	}

	s := base
	for _, canon := range knownKeys {
		key, ok := written[canon]
		if !ok {
			continue
		}
		v := annotations[key]
		fail := func(format string, args ...any) { bad(key, "%q "+format, append([]any{v}, args...)...) }
		switch canon {
		case AnnotationClass:
			if v != classKPA {
				fail("is not supported: infergate's autoscaler is %s", classKPA)
			}
		case AnnotationMetric:
			switch Metric(v) {
			case MetricConcurrency, MetricRPS:
				s.Metric = Metric(v)
			default:
				fail("is not %s or %s", MetricConcurrency, MetricRPS)
			}
		case AnnotationMetricAggregationAlgorithm:
			if v != "linear" {
				fail("is not supported: infergate averages linearly")
			}
		case AnnotationTarget:
			if f, ok := parseFloat(v, fail); ok {
				if f < TargetMin {
					fail("is less than %g", TargetMin)
				} else {
					s.Target = f
				}
			}
		case AnnotationTargetUtilization:
			if f, ok := parseFloatIn(v, 1, 100, fail); ok {
				s.TargetUtilization = f / 100
			}
		case AnnotationTargetBurstCapacity:
			if f, ok := parseFloat(v, fail); ok {
				if f < 0 && f != -1 {
					fail("is neither -1 (unlimited) nor at least 0")
				} else {
					s.TargetBurstCapacity = f
				}
			}
		case AnnotationWindow:
			if d, ok := parseDuration(v, WindowMin, WindowMax, true, fail); ok {
				s.StableWindow = d
			}
		case AnnotationPanicWindowPercentage:
			if f, ok := parseFloatIn(v, PanicWindowPercentageMin, PanicWindowPercentageMax, fail); ok {
				s.PanicWindowPercentage = f
			}
		case AnnotationPanicThresholdPercentage:
			if f, ok := parseFloatIn(v, PanicThresholdPercentageMin, PanicThresholdPercentageMax, fail); ok {
				s.PanicThresholdPercentage = f
			}
		case AnnotationScaleDownDelay:
			if d, ok := parseDuration(v, 0, WindowMax, true, fail); ok {
				s.ScaleDownDelay = d
			}
		case AnnotationMinScale:
			if n, ok := parseCount(v, 0, fail); ok {
				s.MinReplicas = n
			}
		case AnnotationMaxScale:
			if n, ok := parseCount(v, 0, fail); ok {
				s.MaxReplicas = n
			}
		case AnnotationInitialScale:
			if n, ok := parseCount(v, 0, fail); ok {
				s.InitialScale = n
			}
		case AnnotationActivationScale:
			if n, ok := parseCount(v, 1, fail); ok {
				s.ActivationScale = n
			}
		case AnnotationScaleToZeroGracePeriod:
			if d, ok := parseDuration(v, 0, WindowMax, false, fail); ok {
				if d == 0 {
					fail("is not positive")
				} else {
					s.ScaleToZeroGracePeriod = d
				}
			}
		case AnnotationScaleToZeroPodRetentionPeriod:
			if d, ok := parseDuration(v, 0, WindowMax, false, fail); ok {
				s.ScaleToZeroPodRetentionPeriod = d
			}
		}
	}
	if len(errs) == 0 && s.MaxReplicas > 0 && s.MaxReplicas < s.MinReplicas {
		// Blame an annotation, the max-scale one first: base alone was
		// consistent or Validate below says so.
		minKey, minSet := written[AnnotationMinScale]
		maxKey, maxSet := written[AnnotationMaxScale]
		switch {
		case maxSet && minSet:
			bad(maxKey, "%q is less than %s (%d)", annotations[maxKey], minKey, s.MinReplicas)
		case maxSet:
			bad(maxKey, "%q is less than minReplicas (%d)", annotations[maxKey], s.MinReplicas)
		case minSet:
			bad(minKey, "%q is more than maxReplicas (%d)", annotations[minKey], s.MaxReplicas)
		}
	}
	if len(errs) == 0 {
		if err := s.Validate(); err != nil {
			return base, err
		}
		return s, nil
	}
	return base, errors.Join(errs...)
}

// knownNames lists the annotations' names after the prefix.
func knownNames() string {
	names := make([]string, len(knownKeys))
	for i, k := range knownKeys {
		names[i] = strings.TrimPrefix(k, AnnotationPrefix)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func parseFloat(v string, fail func(string, ...any)) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		fail("is not a number")
		return 0, false
	}
	return f, true
}

// parseCount reads a replica count of at least least.
// parseFloatIn is parseFloat for a value that must be in [lo, hi].
func parseFloatIn(v string, lo, hi float64, fail func(string, ...any)) (float64, bool) {
	f, ok := parseFloat(v, fail)
	if ok && (f < lo || f > hi) {
		fail("is outside [%g, %g]", lo, hi)
		return 0, false
	}
	return f, ok
}

func parseCount(v string, least int, fail func(string, ...any)) (int, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	switch {
	case errors.Is(err, strconv.ErrRange):
		fail("is too large")
	case err != nil:
		fail("is not a whole number")
	case n < int64(least) && least == 0:
		fail("is negative")
	case n < int64(least):
		fail("is less than %d", least)
	default:
		return int(n), true
	}
	return 0, false
}

// parseDuration reads a duration in [lo, hi], of whole seconds when
// wholeSeconds.
func parseDuration(v string, lo, hi time.Duration, wholeSeconds bool, fail func(string, ...any)) (time.Duration, bool) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	switch {
	case err != nil:
		fail("is not a duration (as 60s or 2m)")
	case d < lo || d > hi:
		fail("is outside [%s, %s]", shortDuration(lo), shortDuration(hi))
	case wholeSeconds && d%time.Second != 0:
		fail("is not a whole number of seconds")
	default:
		return d, true
	}
	return 0, false
}

// shortDuration writes 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
