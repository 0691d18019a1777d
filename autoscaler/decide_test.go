package autoscaler

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at is t0 plus sec seconds.
func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// tableSettings are Knative's defaults with scale to zero allowed and no
// burst capacity, so that ExcessBurstCapacity is 0 unless a case sets it.
// The per-replica target is 100 * 70% = 70.
func tableSettings(mod ...func(*Settings)) Settings {
	s := DefaultSettings()
	s.MinReplicas = 0
	s.TargetBurstCapacity = 0
	for _, f := range mod {
		f(&s)
	}
	return s
}

func TestDecide(t *testing.T) {
	ready := State{Initialized: true}
	with := func(st State, f func(*State)) State { f(&st); return st }
	tests := []struct {
		name string
		now  time.Time
		in   Inputs
		want Decision
	}{
		{
			name: "steady state",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: 140, Panic: 140, Ready: 2, State: with(ready, func(s *State) { s.Desired = 2 })},
			want: Decision{Desired: 2, StableAverage: 140, PanicAverage: 140, Reason: "demand",
				State: State{Initialized: true, Desired: 2}},
		},
		{
			name: "scale up",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: 210, Panic: 210, Ready: 2, State: ready},
			want: Decision{Desired: 3, StableAverage: 210, PanicAverage: 210, Reason: "demand",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "scale-up rate limit",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.MaxScaleUpRate = 1.5; s.PanicThresholdPercentage = 1000 }),
				Stable: 700, Panic: 700, Ready: 2, State: ready},
			want: Decision{Desired: 3, StableAverage: 700, PanicAverage: 700, Reason: "scale-up rate limit",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "scale-down rate limit halves at most",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: 70, Panic: 70, Ready: 10, State: ready},
			want: Decision{Desired: 5, StableAverage: 70, PanicAverage: 70, Reason: "scale-down rate limit",
				State: State{Initialized: true, Desired: 5}},
		},
		{
			name: "panic entry",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: 70, Panic: 210, Ready: 1, State: ready},
			want: Decision{Desired: 3, Panic: true, StableAverage: 70, PanicAverage: 210, Reason: "panic",
				State: State{PanicStarted: at(10), PanicTriggered: at(10), MaxPanic: 3, Initialized: true, Desired: 3}},
		},
		{
			name: "below the panic threshold no panic",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: 70, Panic: 200, Ready: 2, State: ready},
			want: Decision{Desired: 1, StableAverage: 70, PanicAverage: 200, Reason: "demand",
				State: State{Initialized: true, Desired: 1}},
		},
		{
			name: "panic never scales down",
			now:  at(20),
			in: Inputs{Settings: tableSettings(), Stable: 70, Panic: 70, Ready: 5,
				State: State{PanicStarted: at(0), PanicTriggered: at(10), MaxPanic: 5, Initialized: true, Desired: 5}},
			want: Decision{Desired: 5, Panic: true, StableAverage: 70, PanicAverage: 70, Reason: "panic",
				State: State{PanicStarted: at(0), PanicTriggered: at(10), MaxPanic: 5, Initialized: true, Desired: 5}},
		},
		{
			name: "panic extended and raised",
			now:  at(30),
			in: Inputs{Settings: tableSettings(), Stable: 100, Panic: 490, Ready: 3,
				State: State{PanicStarted: at(0), PanicTriggered: at(0), MaxPanic: 3, Initialized: true, Desired: 3}},
			want: Decision{Desired: 7, Panic: true, StableAverage: 100, PanicAverage: 490, Reason: "panic",
				State: State{PanicStarted: at(0), PanicTriggered: at(30), MaxPanic: 7, Initialized: true, Desired: 7}},
		},
		{
			name: "panic takes the stable count when larger",
			now:  at(5),
			in: Inputs{Settings: tableSettings(), Stable: 700, Panic: 70, Ready: 4,
				State: State{PanicStarted: at(0), PanicTriggered: at(0), MaxPanic: 4, Initialized: true, Desired: 4}},
			want: Decision{Desired: 10, Panic: true, StableAverage: 700, PanicAverage: 70, Reason: "panic",
				State: State{PanicStarted: at(0), PanicTriggered: at(0), MaxPanic: 10, Initialized: true, Desired: 10}},
		},
		{
			name: "panic lasts a full stable window after the last crossing",
			now:  at(70),
			in: Inputs{Settings: tableSettings(), Stable: 70, Panic: 70, Ready: 5,
				State: State{PanicStarted: at(0), PanicTriggered: at(10), MaxPanic: 5, Initialized: true, Desired: 5}},
			want: Decision{Desired: 5, Panic: true, StableAverage: 70, PanicAverage: 70, Reason: "panic",
				State: State{PanicStarted: at(0), PanicTriggered: at(10), MaxPanic: 5, Initialized: true, Desired: 5}},
		},
		{
			name: "panic exit after a stable window without crossing",
			now:  at(71),
			in: Inputs{Settings: tableSettings(), Stable: 70, Panic: 70, Ready: 5,
				State: State{PanicStarted: at(0), PanicTriggered: at(10), MaxPanic: 5, Initialized: true, Desired: 5}},
			want: Decision{Desired: 2, StableAverage: 70, PanicAverage: 70, Reason: "scale-down rate limit",
				State: State{Initialized: true, Desired: 2}},
		},
		{
			name: "panic threshold counts zero ready as one",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: 50, Panic: 140, Ready: 0, State: ready},
			want: Decision{Desired: 2, Panic: true, StableAverage: 50, PanicAverage: 140, Reason: "panic",
				State: State{PanicStarted: at(10), PanicTriggered: at(10), MaxPanic: 2, Initialized: true, Desired: 2}},
		},
		{
			name: "scale-down delay holds the higher count",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ScaleDownDelay = 30 * time.Second }),
				Stable: 70, Panic: 70, Ready: 5,
				State: with(ready, func(s *State) { s.Delay = []DelayEntry{{at(0), 5}}; s.Desired = 5 })},
			want: Decision{Desired: 5, StableAverage: 70, PanicAverage: 70, Reason: "scale-down rate limit, scale-down delay",
				State: State{Delay: []DelayEntry{{at(0), 5}, {at(10), 2}}, Initialized: true, Desired: 5}},
		},
		{
			name: "scale-down delay over",
			now:  at(30),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ScaleDownDelay = 30 * time.Second }),
				Stable: 70, Panic: 70, Ready: 5,
				State: with(ready, func(s *State) { s.Delay = []DelayEntry{{at(0), 5}, {at(10), 2}}; s.Desired = 5 })},
			want: Decision{Desired: 2, StableAverage: 70, PanicAverage: 70, Reason: "scale-down rate limit",
				State: State{Delay: []DelayEntry{{at(30), 2}}, Initialized: true, Desired: 2}},
		},
		{
			name: "scale-down delay does not hold a scale-up",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ScaleDownDelay = 30 * time.Second }),
				Stable: 420, Panic: 420, Ready: 4,
				State: with(ready, func(s *State) { s.Delay = []DelayEntry{{at(0), 5}, {at(8), 4}}; s.Desired = 5 })},
			want: Decision{Desired: 6, StableAverage: 420, PanicAverage: 420, Reason: "demand",
				State: State{Delay: []DelayEntry{{at(10), 6}}, Initialized: true, Desired: 6}},
		},
		{
			name: "idle starts the grace period with one replica",
			now:  at(100),
			in:   Inputs{Settings: tableSettings(), Ready: 1, State: with(ready, func(s *State) { s.Desired = 1 })},
			want: Decision{Desired: 1, Reason: "scale-to-zero grace period",
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
		},
		{
			name: "idle within the grace period",
			now:  at(129),
			in: Inputs{Settings: tableSettings(), Ready: 1,
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
			want: Decision{Desired: 1, Reason: "scale-to-zero grace period",
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
		},
		{
			name: "idle for the grace period scales to zero",
			now:  at(130),
			in: Inputs{Settings: tableSettings(), Ready: 1,
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
			want: Decision{Desired: 0, Reason: "no traffic for the grace period",
				State: State{IdleSince: at(100), Initialized: true}},
		},
		{
			name: "pod retention longer than the grace period",
			now:  at(130),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ScaleToZeroPodRetentionPeriod = time.Minute }), Ready: 1,
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
			want: Decision{Desired: 1, Reason: "scale-to-zero grace period",
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
		},
		{
			name: "grace period holds a replica still starting",
			now:  at(100),
			in:   Inputs{Settings: tableSettings(), Ready: 0, State: with(ready, func(s *State) { s.Desired = 1 })},
			want: Decision{Desired: 1, Reason: "scale-to-zero grace period",
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
		},
		{
			name: "traffic ends the idle time",
			now:  at(120),
			in: Inputs{Settings: tableSettings(), Stable: 0.5, Panic: 0, Ready: 1,
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
			want: Decision{Desired: 1, StableAverage: 0.5, Reason: "demand",
				State: State{Initialized: true, Desired: 1}},
		},
		{
			name: "idle at zero stays at zero",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Ready: 0, State: ready},
			want: Decision{Desired: 0, Reason: "demand", State: State{IdleSince: at(10), Initialized: true}},
		},
		{
			name: "min replicas keep a model from zero",
			now:  at(200),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.MinReplicas = 1 }), Ready: 1,
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
			want: Decision{Desired: 1, Reason: "min replicas",
				State: State{IdleSince: at(100), Initialized: true, Desired: 1}},
		},
		{
			name: "scale from zero",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: 1, Panic: 1, Ready: 0, State: with(ready, func(s *State) { s.IdleSince = at(0) })},
			want: Decision{Desired: 1, StableAverage: 1, PanicAverage: 1, Reason: "demand",
				State: State{Initialized: true, Desired: 1}},
		},
		{
			name: "activation scale from zero",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ActivationScale = 3 }), Stable: 1, Panic: 1, Ready: 0,
				State: ready},
			want: Decision{Desired: 3, StableAverage: 1, PanicAverage: 1, Reason: "activation scale",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "activation scale is the least count under traffic",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ActivationScale = 3 }), Stable: 1, Panic: 1, Ready: 3,
				State: with(ready, func(s *State) { s.Desired = 3 })},
			want: Decision{Desired: 3, StableAverage: 1, PanicAverage: 1, Reason: "activation scale",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "activation scale without traffic",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(func(s *Settings) { s.ActivationScale = 3 }), Ready: 0, State: ready},
			want: Decision{Desired: 0, Reason: "demand", State: State{IdleSince: at(10), Initialized: true}},
		},
		{
			name: "max replicas",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.MaxReplicas = 4 }), Stable: 700, Panic: 280, Ready: 4,
				State: ready},
			want: Decision{Desired: 4, StableAverage: 700, PanicAverage: 280, Reason: "max replicas",
				State: State{Initialized: true, Desired: 4}},
		},
		{
			name: "min replicas",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.MinReplicas = 3 }), Stable: 70, Panic: 70, Ready: 3,
				State: ready},
			want: Decision{Desired: 3, StableAverage: 70, PanicAverage: 70, Reason: "min replicas",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "initial scale until reached",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(func(s *Settings) { s.InitialScale = 3 }), Ready: 1, State: State{}},
			want: Decision{Desired: 3, Reason: "initial scale", State: State{IdleSince: at(10), Desired: 3}},
		},
		{
			name: "initial scale reached",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(func(s *Settings) { s.InitialScale = 3 }), Ready: 3, State: State{Desired: 3}},
			want: Decision{Desired: 1, Reason: "scale-down rate limit", State: State{IdleSince: at(10), Initialized: true, Desired: 1}},
		},
		{
			name: "initial scale zero",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(func(s *Settings) { s.InitialScale = 0 }), Ready: 0, State: State{}},
			want: Decision{Desired: 0, Reason: "demand", State: State{IdleSince: at(10), Initialized: true}},
		},
		{
			name: "rps metric",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.Metric = MetricRPS }), Stable: 700, Panic: 700, Ready: 5,
				State: ready},
			want: Decision{Desired: 5, StableAverage: 700, PanicAverage: 700, Reason: "demand",
				State: State{Initialized: true, Desired: 5}},
		},
		{
			name: "rps metric with a target",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.Metric = MetricRPS; s.Target = 10; s.ContainerConcurrency = 1 }),
				Stable: 70, Panic: 70, Ready: 10, State: ready},
			want: Decision{Desired: 10, StableAverage: 70, PanicAverage: 70, Reason: "demand",
				State: State{Initialized: true, Desired: 10}},
		},
		{
			name: "container concurrency is the default target",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ContainerConcurrency = 10 }), Stable: 21, Panic: 21, Ready: 3,
				State: ready},
			want: Decision{Desired: 3, StableAverage: 21, PanicAverage: 21, Reason: "demand",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "container concurrency caps the target",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.ContainerConcurrency = 10; s.Target = 50 }), Stable: 21, Panic: 21, Ready: 3,
				State: ready},
			want: Decision{Desired: 3, StableAverage: 21, PanicAverage: 21, Reason: "demand",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "target utilization",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.Target = 10; s.TargetUtilization = 1 }), Stable: 21, Panic: 21, Ready: 3,
				State: ready},
			want: Decision{Desired: 3, StableAverage: 21, PanicAverage: 21, Reason: "demand",
				State: State{Initialized: true, Desired: 3}},
		},
		{
			name: "excess burst capacity",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.TargetBurstCapacity = 200 }), Stable: 140, Panic: 150, Ready: 4,
				State: ready},
			// 4 replicas * 100 - 200 - 150.
			want: Decision{Desired: 2, StableAverage: 140, PanicAverage: 150, ExcessBurstCapacity: 50, Reason: "demand",
				State: State{Initialized: true, Desired: 2}},
		},
		{
			name: "unlimited burst capacity",
			now:  at(10),
			in: Inputs{Settings: tableSettings(func(s *Settings) { s.TargetBurstCapacity = -1 }), Stable: 140, Panic: 140, Ready: 2,
				State: ready},
			want: Decision{Desired: 2, StableAverage: 140, PanicAverage: 140, ExcessBurstCapacity: -1, Reason: "demand",
				State: State{Initialized: true, Desired: 2}},
		},
		{
			name: "negative and NaN averages count as zero",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Stable: math.NaN(), Panic: -3, Ready: 0, State: ready},
			want: Decision{Desired: 0, Reason: "demand", State: State{IdleSince: at(10), Initialized: true}},
		},
		{
			name: "a restarted decider holds its replicas in panic",
			now:  at(10),
			in:   Inputs{Settings: tableSettings(), Ready: 4, State: NewState(at(10), 4)},
			want: Decision{Desired: 4, Panic: true, Reason: "panic",
				State: State{PanicStarted: at(10), PanicTriggered: at(10), MaxPanic: 4, IdleSince: at(10), Initialized: true, Desired: 4}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.in.Settings.Validate(); err != nil {
				t.Fatalf("case settings: %v", err)
			}
			got := Decide(tc.now, tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecideLeavesStateAlone checks Decide's purity: the State it is given,
// and the array behind its Delay, are unchanged.
func TestDecideLeavesStateAlone(t *testing.T) {
	delay := make([]DelayEntry, 2, 8)
	delay[0], delay[1] = DelayEntry{at(0), 9}, DelayEntry{at(5), 7}
	in := Inputs{
		Settings: tableSettings(func(s *Settings) { s.ScaleDownDelay = 30 * time.Second }),
		Stable:   70, Panic: 70, Ready: 9,
		State: State{Delay: delay, Initialized: true, Desired: 9},
	}
	before := in.State
	beforeDelay := append([]DelayEntry(nil), delay[:cap(delay)]...)
	first := Decide(at(10), in)
	second := Decide(at(10), in)
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("two Decides on the same inputs differ (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(before, in.State); diff != "" {
		t.Errorf("State changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(beforeDelay, delay[:cap(delay)]); diff != "" {
		t.Errorf("array behind Delay changed (-before +after):\n%s", diff)
	}
}

// TestDecideSequence runs the decider over time the way the loop does: a
// burst enters panic, the count never drops during panic, and after the
// burst the count falls at the scale-down rate, then to zero after the
// grace period.
func TestDecideSequence(t *testing.T) {
	s := tableSettings(func(s *Settings) { s.StableWindow = 10 * time.Second; s.ScaleToZeroGracePeriod = 4 * time.Second })
	w := NewWindow(s.StableWindow)
	st := NewState(t0, 0)
	ready := 0
	var trace []int
	panicSeen, scaledDownInPanic := false, false
	for sec := range 60 {
		now := at(float64(sec))
		load := 0.0
		if sec >= 2 && sec < 8 {
			load = 700 // ten replicas' worth
		}
		w.Record(now, load)
		d := Decide(now, Inputs{Settings: s, Stable: w.Average(now, s.StableWindow), Panic: w.Average(now, s.PanicWindow()), Ready: ready, State: st})
		if d.Panic {
			panicSeen = true
			if d.Desired < st.Desired {
				scaledDownInPanic = true
			}
		}
		st = d.State
		ready = d.Desired // replicas start at once here
		trace = append(trace, d.Desired)
	}
	t.Logf("trace: %v", trace)
	if !panicSeen {
		t.Errorf("the burst did not enter panic: %v", trace)
	}
	if scaledDownInPanic {
		t.Errorf("scaled down during panic: %v", trace)
	}
	if got := trace[len(trace)-1]; got != 0 {
		t.Errorf("after the burst and the grace period the count is %d, want 0: %v", got, trace)
	}
	if peak := maxOf(trace[0], trace[1:]...); peak != 10 {
		t.Errorf("peak %d, want 10: %v", peak, trace)
	}
}

func maxOf(first int, rest ...int) int {
	m := first
	for _, v := range rest {
		if v > m {
			m = v
		}
	}
	return m
}
