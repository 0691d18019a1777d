package autoscaler

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Inputs is everything one decision reads.
type Inputs struct {
	// Settings are the model's; Decide assumes Settings.Validate passed.
	Settings Settings
	// Stable and Panic are the averages of the model's metric over the
	// stable and the panic window (Window.Average), for the whole model
	// rather than per replica: requests in flight, those the activator
	// holds included, or requests per second. Negative and NaN values
	// count as 0.
	Stable, Panic float64
	// Ready counts the model's replicas ready to serve now.
	Ready int
	// State is the State of the previous Decision (NewState before the
	// first).
	State State
}

// State is what the decider remembers between decisions. It is a value:
// Decide never changes the State it is given (nor the array behind its
// Delay) and returns the next one in its Decision.
type State struct {
	// PanicStarted is when the current panic began; PanicTriggered the
	// last decision at which the panic window crossed the threshold. Both
	// are zero out of panic, which ends once a stable window has passed
	// since PanicTriggered without another crossing.
	PanicStarted, PanicTriggered time.Time
	// MaxPanic is the highest count decided during the current panic:
	// panic mode never goes below it.
	MaxPanic int
	// Delay is the scale-down-delay window: the counts decided within the
	// last ScaleDownDelay that no later count matched, oldest (and
	// highest) first. Nil when ScaleDownDelay is 0.
	Delay []DelayEntry
	// IdleSince is the first decision of the current run that saw no
	// traffic in the stable window; zero while there is traffic.
	IdleSince time.Time
	// Initialized says InitialScale replicas have been ready once; until
	// then the count stays at least InitialScale.
	Initialized bool
	// Desired is the previous decision's count.
	Desired int
}

// DelayEntry is a count decided at a time.
type DelayEntry struct {
	At       time.Time
	Replicas int
}

// NewState is the State of a model the decider starts to watch with ready
// replicas. With more than one ready it starts in panic mode holding them,
// as Knative's autoscaler does after a restart: without history it would
// otherwise scale down on an empty stable window.
func NewState(now time.Time, ready int) State {
	st := State{Desired: ready}
	if ready > 1 {
		st.PanicStarted, st.PanicTriggered, st.MaxPanic = now, now, ready
	}
	return st
}

// Decision is the outcome of one Decide.
type Decision struct {
	// Desired is the replica count the model should have.
	Desired int
	// Panic says panic mode is on.
	Panic bool
	// StableAverage and PanicAverage are the Inputs' averages as used
	// (clamped at 0).
	StableAverage, PanicAverage float64
	// ExcessBurstCapacity is what the ready replicas can absorb beyond the
	// panic average and TargetBurstCapacity, rounded down: negative means
	// a burst would overload them, so the activator should stay in the
	// request path. 0 when TargetBurstCapacity is 0, -1 when it is -1.
	ExcessBurstCapacity float64
	// Reason names the rules that set Desired, as "panic, max replicas";
	// "demand" when the averages alone did.
	Reason string
	// State is what the next Decide takes.
	State State
}

// The reasons, in the order the rules apply.
const (
	reasonDemand         = "demand"
	reasonScaleUpLimit   = "scale-up rate limit"
	reasonScaleDownLimit = "scale-down rate limit"
	reasonActivation     = "activation scale"
	reasonPanic          = "panic"
	reasonDelay          = "scale-down delay"
	reasonInitial        = "initial scale"
	reasonMin            = "min replicas"
	reasonMax            = "max replicas"
	reasonGrace          = "scale-to-zero grace period"
	reasonToZero         = "no traffic for the grace period"
)

// Decide returns the replica count for a model at now: Knative's KPA rules
// in order, each a pure function of in and now.
//
//  1. Demand: the stable and the panic average each ask for
//     ceil(average / target) replicas, target being Settings.Targets'.
//  2. Rate limits: each count stays within [floor(ready/MaxScaleDownRate),
//     ceil(ready*MaxScaleUpRate)], ready counted as at least 1.
//  3. Activation scale: a count asked for by traffic is at least
//     ActivationScale.
//  4. Panic: when the panic window asks for PanicThresholdPercentage% or
//     more of the ready replicas, panic mode starts (or is extended). In
//     panic the count is the larger of the two and never below the
//     highest count of this panic; panic ends a stable window after the
//     last crossing.
//  5. Scale-down delay: the count is the highest decided within the last
//     ScaleDownDelay.
//  6. Bounds: at least MinReplicas (and InitialScale until that many
//     replicas were ready once), at most MaxReplicas.
//  7. Scale to zero: a count of 0 for a model that has or was asked for
//     replicas stays 1 until its stable window has seen no traffic for
//     max(ScaleToZeroGracePeriod, ScaleToZeroPodRetentionPeriod).
func Decide(now time.Time, in Inputs) Decision {
	s := in.Settings
	st := in.State
	stable, panicAvg := nonNegative(in.Stable), nonNegative(in.Panic)
	ready := max(in.Ready, 0)
	target, total := s.Targets()
	var why []string

	// 1 and 2: demand within the rate limits.
	readyF := float64(max(ready, 1))
	maxUp := math.Ceil(readyF * s.MaxScaleUpRate)
	maxDown := math.Floor(readyF / s.MaxScaleDownRate)
	wantStable := math.Ceil(stable / target)
	wantPanic := math.Ceil(panicAvg / target)
	stableN := int(min(max(wantStable, maxDown), maxUp))
	panicN := int(min(max(wantPanic, maxDown), maxUp))
	switch {
	case float64(stableN) < wantStable:
		why = append(why, reasonScaleUpLimit)
	case float64(stableN) > wantStable:
		why = append(why, reasonScaleDownLimit)
	}

	// 3: activation scale.
	if s.ActivationScale > 1 {
		if wantStable > 0 && stableN < s.ActivationScale {
			stableN = s.ActivationScale
			why = append(why, reasonActivation)
		}
		if wantPanic > 0 && panicN < s.ActivationScale {
			panicN = s.ActivationScale
		}
	}

	// 4: panic mode.
	over := wantPanic/readyF >= s.PanicThresholdPercentage/100
	switch {
	case over:
		if st.PanicTriggered.IsZero() {
			st.PanicStarted = now
		}
		st.PanicTriggered = now
	case !st.PanicTriggered.IsZero() && now.After(st.PanicTriggered.Add(s.StableWindow)):
		st.PanicStarted, st.PanicTriggered, st.MaxPanic = time.Time{}, time.Time{}, 0
	}
	desired := stableN
	panicking := !st.PanicTriggered.IsZero()
	if panicking {
		desired = max(stableN, panicN, st.MaxPanic)
		st.MaxPanic = desired
		why = []string{reasonPanic}
	}

	// 5: scale-down delay.
	if s.ScaleDownDelay > 0 {
		st.Delay = recordDelay(st.Delay, now, desired, s.ScaleDownDelay)
		if held := st.Delay[0].Replicas; held > desired {
			desired = held
			why = append(why, reasonDelay)
		}
	} else {
		st.Delay = nil
	}

	// 6: bounds.
	if !st.Initialized && ready >= s.InitialScale {
		st.Initialized = true
	}
	switch {
	case !st.Initialized && desired < s.InitialScale && s.InitialScale > s.MinReplicas:
		desired = s.InitialScale
		why = append(why, reasonInitial)
	case desired < s.MinReplicas:
		desired = s.MinReplicas
		why = append(why, reasonMin)
	}
	if s.MaxReplicas > 0 && desired > s.MaxReplicas {
		desired = s.MaxReplicas
		why = append(why, reasonMax)
	}

	// 7: scale to zero.
	idle := stable == 0 && panicAvg == 0
	switch {
	case !idle:
		st.IdleSince = time.Time{}
	case st.IdleSince.IsZero():
		st.IdleSince = now
	}
	if desired == 0 && (ready > 0 || in.State.Desired > 0) {
		if idle && now.Sub(st.IdleSince) >= s.scaleToZeroWait() {
			why = append(why, reasonToZero)
		} else {
			desired = 1
			why = append(why, reasonGrace)
		}
	}

	st.Desired = desired
	d := Decision{
		Desired:       desired,
		Panic:         panicking,
		StableAverage: stable,
		PanicAverage:  panicAvg,
		Reason:        reasonDemand,
		State:         st,
	}
	if len(why) > 0 {
		d.Reason = strings.Join(why, ", ")
	}
	switch {
	case s.TargetBurstCapacity == 0:
	case s.TargetBurstCapacity < 0:
		d.ExcessBurstCapacity = -1
	default:
		d.ExcessBurstCapacity = math.Floor(float64(ready)*total - s.TargetBurstCapacity - panicAvg)
	}
	return d
}

// recordDelay returns the delay window with n decided at now: entries older
// than delay and those no higher than n dropped, n appended. It never
// writes to the array behind window.
func recordDelay(window []DelayEntry, now time.Time, n int, delay time.Duration) []DelayEntry {
	cutoff := now.Add(-delay)
	out := make([]DelayEntry, 0, len(window)+1)
	for _, e := range window {
		if e.At.After(cutoff) && e.Replicas > n {
			out = append(out, e)
		}
	}
	return slices.Clip(append(out, DelayEntry{At: now, Replicas: n}))
}

func nonNegative(v float64) float64 {
	if v > 0 {
		return v
	}
	return 0 // also NaN
}
