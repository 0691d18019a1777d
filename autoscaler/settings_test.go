package autoscaler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultSettings(t *testing.T) {
	s := DefaultSettings()
	if err := s.Validate(); err != nil {
		t.Fatalf("DefaultSettings: %v", err)
	}
	if got, want := s.PanicWindow(), 6*time.Second; got != want {
		t.Errorf("PanicWindow %v, want %v", got, want)
	}
	target, total := s.Targets()
	if target != 70 || total != 100 {
		t.Errorf("Targets %v, %v; want 70, 100", target, total)
	}
}

func TestSettingsTargets(t *testing.T) {
	tests := []struct {
		name          string
		mod           func(*Settings)
		target, total float64
	}{
		{name: "concurrency default", mod: func(*Settings) {}, target: 70, total: 100},
		{name: "container concurrency", mod: func(s *Settings) { s.ContainerConcurrency = 4 }, target: 2.8, total: 4},
		{name: "target below container concurrency", mod: func(s *Settings) { s.ContainerConcurrency = 4; s.Target = 2 }, target: 1.4, total: 2},
		{name: "target above container concurrency", mod: func(s *Settings) { s.ContainerConcurrency = 4; s.Target = 50 }, target: 2.8, total: 4},
		{name: "rps default", mod: func(s *Settings) { s.Metric = MetricRPS }, target: 140, total: 200},
		{name: "rps ignores container concurrency", mod: func(s *Settings) { s.Metric = MetricRPS; s.ContainerConcurrency = 1; s.Target = 10 }, target: 7, total: 10},
		{name: "floor", mod: func(s *Settings) { s.Target = 0.01; s.TargetUtilization = 0.01 }, target: TargetMin, total: 0.01},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			tc.mod(&s)
			target, total := s.Targets()
			if diff := cmp.Diff([]float64{tc.target, tc.total}, []float64{target, total}); diff != "" {
				t.Errorf("Targets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSettingsPanicWindow(t *testing.T) {
	for _, tc := range []struct {
		stable time.Duration
		pct    float64
		want   time.Duration
	}{
		{60 * time.Second, 10, 6 * time.Second},
		{6 * time.Second, 1, time.Second},
		{25 * time.Second, 10, 3 * time.Second}, // 2.5s rounds up
		{time.Hour, 100, time.Hour},
	} {
		s := DefaultSettings()
		s.StableWindow, s.PanicWindowPercentage = tc.stable, tc.pct
		if got := s.PanicWindow(); got != tc.want {
			t.Errorf("PanicWindow(%v, %v%%) = %v, want %v", tc.stable, tc.pct, got, tc.want)
		}
	}
}

func TestSettingsValidate(t *testing.T) {
	bad := DefaultSettings()
	bad.Metric = "cpu"
	bad.Target = 0.001
	bad.TargetUtilization = 1.5
	bad.MinReplicas = 3
	bad.MaxReplicas = 2
	bad.InitialScale = -1
	bad.ActivationScale = 0
	bad.StableWindow = 1500 * time.Millisecond
	bad.PanicWindowPercentage = 0
	bad.PanicThresholdPercentage = 100
	bad.MaxScaleUpRate = 1
	bad.MaxScaleDownRate = 0.5
	bad.ScaleDownDelay = 1500 * time.Millisecond
	bad.ScaleToZeroGracePeriod = 0
	bad.TargetBurstCapacity = -2
	bad.Tick = 0
	want := []string{
		`autoscaler: settings: Metric: "cpu" is not concurrency or rps`,
		`autoscaler: settings: Target: 0.001 is neither 0 (the default) nor at least 0.01`,
		`autoscaler: settings: TargetUtilization: 1.5 is outside [0.01, 1]`,
		`autoscaler: settings: TargetBurstCapacity: -2 is neither -1 (unlimited) nor at least 0`,
		`autoscaler: settings: MaxReplicas: 2 is less than MinReplicas (3)`,
		`autoscaler: settings: InitialScale: -1 is negative`,
		`autoscaler: settings: ActivationScale: 0 is less than 1`,
		`autoscaler: settings: StableWindow: 1.5s is outside [6s, 1h]`,
		`autoscaler: settings: PanicWindowPercentage: 0 is outside [1, 100]`,
		`autoscaler: settings: PanicThresholdPercentage: 100 is outside [110, 1000]`,
		`autoscaler: settings: MaxScaleUpRate: 1 is not more than 1`,
		`autoscaler: settings: MaxScaleDownRate: 0.5 is not more than 1`,
		`autoscaler: settings: ScaleDownDelay: 1.5s is not a whole number of seconds`,
		`autoscaler: settings: ScaleToZeroGracePeriod: 0s is outside (0s, 1h]`,
		`autoscaler: settings: Tick: 0s is outside [1s, StableWindow]`,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate: nil error")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("Validate (-want +got):\n%s", diff)
	}
	var se *SettingsError
	if !errors.As(err, &se) || se.Field != "Metric" {
		t.Errorf("errors.As: %#v", se)
	}

	odd := DefaultSettings()
	odd.StableWindow = 6500 * time.Millisecond
	odd.MaxReplicas = -1
	odd.Tick = time.Minute
	want = []string{
		`autoscaler: settings: MaxReplicas: -1 is negative`,
		`autoscaler: settings: StableWindow: 6.5s is not a whole number of seconds`,
		`autoscaler: settings: Tick: 1m0s is outside [1s, StableWindow]`,
	}
	if diff := cmp.Diff(want, strings.Split(odd.Validate().Error(), "\n")); diff != "" {
		t.Errorf("Validate (-want +got):\n%s", diff)
	}
}

func TestSettingsFromAnnotations(t *testing.T) {
	base := DefaultSettings()
	tests := []struct {
		name string
		base func(*Settings)
		ann  map[string]string
		want func(*Settings) // applied to base for the expected Settings
	}{
		{
			name: "none",
			ann:  nil,
			want: func(*Settings) {},
		},
		{
			name: "other prefixes are ignored",
			ann:  map[string]string{"infergate.io/endpoints": "x", "autoscaling.knative.devx/foo": "y", "serving.kserve.io/deploymentMode": "Serverless"},
			want: func(*Settings) {},
		},
		{
			name: "all of them",
			ann: map[string]string{
				AnnotationClass:                         "kpa.autoscaling.knative.dev",
				AnnotationMetric:                        "rps",
				AnnotationMetricAggregationAlgorithm:    "linear",
				AnnotationTarget:                        "25.5",
				AnnotationTargetUtilization:             "80",
				AnnotationTargetBurstCapacity:           "-1",
				AnnotationWindow:                        "2m",
				AnnotationPanicWindowPercentage:         "5",
				AnnotationPanicThresholdPercentage:      "150",
				AnnotationScaleDownDelay:                "15m",
				AnnotationMinScale:                      "0",
				AnnotationMaxScale:                      "10",
				AnnotationInitialScale:                  "0",
				AnnotationActivationScale:               "2",
				AnnotationScaleToZeroGracePeriod:        "45s",
				AnnotationScaleToZeroPodRetentionPeriod: "1m30s",
			},
			want: func(s *Settings) {
				s.Metric = MetricRPS
				s.Target = 25.5
				s.TargetUtilization = 0.8
				s.TargetBurstCapacity = -1
				s.StableWindow = 2 * time.Minute
				s.PanicWindowPercentage = 5
				s.PanicThresholdPercentage = 150
				s.ScaleDownDelay = 15 * time.Minute
				s.MinReplicas = 0
				s.MaxReplicas = 10
				s.InitialScale = 0
				s.ActivationScale = 2
				s.ScaleToZeroGracePeriod = 45 * time.Second
				s.ScaleToZeroPodRetentionPeriod = 90 * time.Second
			},
		},
		{
			name: "legacy spellings",
			ann: map[string]string{
				"autoscaling.knative.dev/minScale":                      "2",
				"autoscaling.knative.dev/maxScale":                      "4",
				"autoscaling.knative.dev/initialScale":                  "3",
				"autoscaling.knative.dev/targetUtilizationPercentage":   "50",
				"autoscaling.knative.dev/targetBurstCapacity":           "0",
				"autoscaling.knative.dev/panicWindowPercentage":         "20",
				"autoscaling.knative.dev/panicThresholdPercentage":      "300",
				"autoscaling.knative.dev/scaleDownDelay":                "10s",
				"autoscaling.knative.dev/scaleToZeroPodRetentionPeriod": "5s",
				"autoscaling.knative.dev/metricAggregationAlgorithm":    "linear",
			},
			want: func(s *Settings) {
				s.MinReplicas, s.MaxReplicas, s.InitialScale = 2, 4, 3
				s.TargetUtilization = 0.5
				s.TargetBurstCapacity = 0
				s.PanicWindowPercentage = 20
				s.PanicThresholdPercentage = 300
				s.ScaleDownDelay = 10 * time.Second
				s.ScaleToZeroPodRetentionPeriod = 5 * time.Second
			},
		},
		{
			name: "annotations override the spec's replicas",
			base: func(s *Settings) { s.MinReplicas, s.MaxReplicas = 1, 3 },
			ann:  map[string]string{AnnotationMinScale: "0", AnnotationMaxScale: "0"},
			want: func(s *Settings) { s.MinReplicas, s.MaxReplicas = 0, 0 },
		},
		{
			name: "spaces around values",
			ann:  map[string]string{AnnotationTarget: " 10 ", AnnotationWindow: " 30s"},
			want: func(s *Settings) { s.Target = 10; s.StableWindow = 30 * time.Second },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := base
			if tc.base != nil {
				tc.base(&b)
			}
			want := b
			tc.want(&want)
			got, err := SettingsFromAnnotations(b, tc.ann)
			if err != nil {
				t.Fatalf("SettingsFromAnnotations: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSettingsFromAnnotationsErrors(t *testing.T) {
	const p = AnnotationPrefix
	tests := []struct {
		name string
		base func(*Settings)
		ann  map[string]string
		want []string
	}{
		{
			name: "class",
			ann:  map[string]string{p + "class": "hpa.autoscaling.knative.dev"},
			want: []string{`annotation autoscaling.knative.dev/class: "hpa.autoscaling.knative.dev" is not supported: infergate's autoscaler is kpa.autoscaling.knative.dev`},
		},
		{
			name: "metric",
			ann:  map[string]string{p + "metric": "cpu"},
			want: []string{`annotation autoscaling.knative.dev/metric: "cpu" is not concurrency or rps`},
		},
		{
			name: "aggregation algorithm",
			ann:  map[string]string{p + "metric-aggregation-algorithm": "weightedExponential"},
			want: []string{`annotation autoscaling.knative.dev/metric-aggregation-algorithm: "weightedExponential" is not supported: infergate averages linearly`},
		},
		{
			name: "target",
			ann:  map[string]string{p + "target": "0"},
			want: []string{`annotation autoscaling.knative.dev/target: "0" is less than 0.01`},
		},
		{
			name: "target not a number",
			ann:  map[string]string{p + "target": "ten"},
			want: []string{`annotation autoscaling.knative.dev/target: "ten" is not a number`},
		},
		{
			name: "target NaN",
			ann:  map[string]string{p + "target": "NaN"},
			want: []string{`annotation autoscaling.knative.dev/target: "NaN" is not a number`},
		},
		{
			name: "utilization",
			ann:  map[string]string{p + "target-utilization-percentage": "0.7"},
			want: []string{`annotation autoscaling.knative.dev/target-utilization-percentage: "0.7" is outside [1, 100]`},
		},
		{
			name: "burst capacity",
			ann:  map[string]string{p + "target-burst-capacity": "-2"},
			want: []string{`annotation autoscaling.knative.dev/target-burst-capacity: "-2" is neither -1 (unlimited) nor at least 0`},
		},
		{
			name: "window too short",
			ann:  map[string]string{p + "window": "5s"},
			want: []string{`annotation autoscaling.knative.dev/window: "5s" is outside [6s, 1h]`},
		},
		{
			name: "window precision",
			ann:  map[string]string{p + "window": "6500ms"},
			want: []string{`annotation autoscaling.knative.dev/window: "6500ms" is not a whole number of seconds`},
		},
		{
			name: "window not a duration",
			ann:  map[string]string{p + "window": "60"},
			want: []string{`annotation autoscaling.knative.dev/window: "60" is not a duration (as 60s or 2m)`},
		},
		{
			name: "panic window",
			ann:  map[string]string{p + "panic-window-percentage": "101"},
			want: []string{`annotation autoscaling.knative.dev/panic-window-percentage: "101" is outside [1, 100]`},
		},
		{
			name: "panic threshold",
			ann:  map[string]string{p + "panic-threshold-percentage": "100"},
			want: []string{`annotation autoscaling.knative.dev/panic-threshold-percentage: "100" is outside [110, 1000]`},
		},
		{
			name: "scale-down delay",
			ann:  map[string]string{p + "scale-down-delay": "2h"},
			want: []string{`annotation autoscaling.knative.dev/scale-down-delay: "2h" is outside [0s, 1h]`},
		},
		{
			name: "negative scale-down delay",
			ann:  map[string]string{p + "scale-down-delay": "-1s"},
			want: []string{`annotation autoscaling.knative.dev/scale-down-delay: "-1s" is outside [0s, 1h]`},
		},
		{
			name: "min-scale negative",
			ann:  map[string]string{p + "min-scale": "-1"},
			want: []string{`annotation autoscaling.knative.dev/min-scale: "-1" is negative`},
		},
		{
			name: "max-scale not a whole number",
			ann:  map[string]string{p + "max-scale": "2.5"},
			want: []string{`annotation autoscaling.knative.dev/max-scale: "2.5" is not a whole number`},
		},
		{
			name: "initial-scale too large",
			ann:  map[string]string{p + "initial-scale": "99999999999"},
			want: []string{`annotation autoscaling.knative.dev/initial-scale: "99999999999" is too large`},
		},
		{
			name: "activation-scale",
			ann:  map[string]string{p + "activation-scale": "0"},
			want: []string{`annotation autoscaling.knative.dev/activation-scale: "0" is less than 1`},
		},
		{
			name: "grace period",
			ann:  map[string]string{p + "scale-to-zero-grace-period": "0s"},
			want: []string{`annotation autoscaling.knative.dev/scale-to-zero-grace-period: "0s" is not positive`},
		},
		{
			name: "retention",
			ann:  map[string]string{p + "scale-to-zero-pod-retention-period": "-5s"},
			want: []string{`annotation autoscaling.knative.dev/scale-to-zero-pod-retention-period: "-5s" is outside [0s, 1h]`},
		},
		{
			name: "max below min",
			ann:  map[string]string{p + "min-scale": "3", p + "max-scale": "2"},
			want: []string{`annotation autoscaling.knative.dev/max-scale: "2" is less than autoscaling.knative.dev/min-scale (3)`},
		},
		{
			name: "max-scale below minReplicas",
			base: func(s *Settings) { s.MinReplicas = 3 },
			ann:  map[string]string{p + "max-scale": "2"},
			want: []string{`annotation autoscaling.knative.dev/max-scale: "2" is less than minReplicas (3)`},
		},
		{
			name: "min-scale above maxReplicas",
			base: func(s *Settings) { s.MaxReplicas = 2 },
			ann:  map[string]string{p + "minScale": "5"},
			want: []string{`annotation autoscaling.knative.dev/minScale: "5" is more than maxReplicas (2)`},
		},
		{
			name: "both spellings",
			ann:  map[string]string{p + "min-scale": "1", p + "minScale": "1"},
			want: []string{`annotation autoscaling.knative.dev/minScale: set together with autoscaling.knative.dev/min-scale; set one`},
		},
		{
			name: "unknown",
			ann:  map[string]string{p + "min-replicas": "1"},
			want: []string{`annotation autoscaling.knative.dev/min-replicas: unknown autoscaling annotation (known: activation-scale, class, initial-scale, max-scale, metric, metric-aggregation-algorithm, min-scale, panic-threshold-percentage, panic-window-percentage, scale-down-delay, scale-to-zero-grace-period, scale-to-zero-pod-retention-period, target, target-burst-capacity, target-utilization-percentage, window)`},
		},
		{
			name: "every problem is reported",
			ann: map[string]string{
				p + "window":    "1s",
				p + "target":    "-1",
				p + "max-scale": "x",
				p + "bogus":     "1",
			},
			want: []string{
				`annotation autoscaling.knative.dev/bogus: unknown autoscaling annotation (known: activation-scale, class, initial-scale, max-scale, metric, metric-aggregation-algorithm, min-scale, panic-threshold-percentage, panic-window-percentage, scale-down-delay, scale-to-zero-grace-period, scale-to-zero-pod-retention-period, target, target-burst-capacity, target-utilization-percentage, window)`,
				`annotation autoscaling.knative.dev/target: "-1" is less than 0.01`,
				`annotation autoscaling.knative.dev/window: "1s" is outside [6s, 1h]`,
				`annotation autoscaling.knative.dev/max-scale: "x" is not a whole number`,
			},
		},
		{
			name: "a bad base is reported",
			base: func(s *Settings) { s.Tick = 0 },
			ann:  map[string]string{p + "target": "10"},
			want: []string{`autoscaler: settings: Tick: 0s is outside [1s, StableWindow]`},
		},
		{
			name: "a window shorter than the base tick",
			base: func(s *Settings) { s.Tick = 10 * time.Second },
			ann:  map[string]string{p + "window": "6s"},
			want: []string{`autoscaler: settings: Tick: 10s is outside [1s, StableWindow]`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := DefaultSettings()
			if tc.base != nil {
				tc.base(&base)
			}
			got, err := SettingsFromAnnotations(base, tc.ann)
			if err == nil {
				t.Fatalf("SettingsFromAnnotations: no error; got %+v", got)
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(base, got); diff != "" {
				t.Errorf("on error the Settings are not base (-base +got):\n%s", diff)
			}
		})
	}
}

func TestAnnotationErrorAs(t *testing.T) {
	_, err := SettingsFromAnnotations(DefaultSettings(), map[string]string{AnnotationWindow: "1s"})
	var ae *AnnotationError
	if !errors.As(err, &ae) {
		t.Fatalf("errors.As(%v) found no *AnnotationError", err)
	}
	if ae.Key != AnnotationWindow || ae.Msg != `"1s" is outside [6s, 1h]` {
		t.Errorf("AnnotationError %+v", *ae)
	}
}

// FuzzSettingsFromAnnotations checks that any annotation either is refused
// with an error or yields valid Settings, and that base is never changed on
// error.
func FuzzSettingsFromAnnotations(f *testing.F) {
	for _, k := range knownKeys {
		f.Add(strings.TrimPrefix(k, AnnotationPrefix), "1")
	}
	f.Add("window", "6s")
	f.Add("target", "1e309")
	f.Add("min-scale", "-0")
	f.Add("scale-down-delay", "1h0m0.5s")
	f.Fuzz(func(t *testing.T, name, value string) {
		base := DefaultSettings()
		got, err := SettingsFromAnnotations(base, map[string]string{AnnotationPrefix + name: value})
		if err != nil {
			if diff := cmp.Diff(base, got); diff != "" {
				t.Errorf("on error the Settings are not base (-base +got):\n%s", diff)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Errorf("accepted %s=%q into invalid Settings: %v", name, value, err)
		}
	})
}
