package controlplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/infergate/infergate/router"
)

// ErrNoRollout names a model that never had a rollout.
var ErrNoRollout = errors.New("no rollout")

// RolloutState is where a rollout is.
type RolloutState string

// The rollout states. Progressing and paused are active; the others are
// final, and the model keeps the last rollout's status until a new
// revision starts another.
const (
	// RolloutProgressing: Tick judges the current step.
	RolloutProgressing RolloutState = "progressing"
	// RolloutPaused: the canary keeps its weight and nothing is judged
	// until Resume.
	RolloutPaused RolloutState = "paused"
	// RolloutPromoted: the canary passed every step, or was promoted by
	// hand; it is the stable revision.
	RolloutPromoted RolloutState = "promoted"
	// RolloutRolledBack: the canary failed a gate, or was rolled back by
	// hand; the stable revision has all the traffic.
	RolloutRolledBack RolloutState = "rolled-back"
	// RolloutSuperseded: a newer revision replaced the canary.
	RolloutSuperseded RolloutState = "superseded"
)

// Verdict is what a Decision did.
type Verdict string

// The verdicts.
const (
	VerdictStart      Verdict = "start"      // a new revision started the rollout at step 1
	VerdictAdvance    Verdict = "advance"    // the step passed; the next one starts
	VerdictPromote    Verdict = "promote"    // the last step passed, or a promotion by hand
	VerdictRollback   Verdict = "rollback"   // a gate failed, or a rollback by hand
	VerdictPause      Verdict = "pause"      // paused by hand
	VerdictResume     Verdict = "resume"     // resumed by hand
	VerdictSetWeight  Verdict = "set-weight" // the canary's weight set by hand; the rollout pauses
	VerdictSuperseded Verdict = "superseded" // a newer revision replaced the canary
	VerdictFailed     Verdict = "failed"     // the revision a declaration deploys failed to start; traffic stayed
)

// Gate is the figures a step is judged on: the canary's and the stable
// revision's requests since the step's window opened. Requests counts
// judged requests (client errors excluded); latencies are the rollout's
// quantile, in seconds.
type Gate struct {
	Time time.Time `json:"time"`
	// Step is 1-based.
	Step           int     `json:"step"`
	ElapsedSeconds float64 `json:"elapsedSeconds"`

	CanaryRequests       uint64  `json:"canaryRequests"`
	CanaryErrorRate      float64 `json:"canaryErrorRate"`
	CanaryLatencySeconds float64 `json:"canaryLatencySeconds"`
	StableRequests       uint64  `json:"stableRequests"`
	StableErrorRate      float64 `json:"stableErrorRate"`
	StableLatencySeconds float64 `json:"stableLatencySeconds"`
	// CanaryClientErrorRate and StableClientErrorRate are client errors
	// over all requests: a canary refusing what the stable serves fails.
	CanaryClientErrorRate float64 `json:"canaryClientErrorRate"`
	StableClientErrorRate float64 `json:"stableClientErrorRate"`

	// Compared says the stable revision had the step's minRequests, so
	// its figures were the baseline. Without it the canary's error rate
	// is held to MaxErrorRateIncrease alone and latency is not judged.
	Compared bool `json:"compared"`
	// ErrorRateLimit is the error rate above which the canary fails.
	ErrorRateLimit float64 `json:"errorRateLimit"`
}

// Decision is one recorded step of a rollout, automatic or by hand.
type Decision struct {
	Time  time.Time `json:"time"`
	Model string    `json:"model"`
	// Canary and Stable are the rollout's revisions.
	Canary string `json:"canary"`
	Stable string `json:"stable"`
	// Step is the 1-based step the decision was taken at.
	Step    int     `json:"step"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason"`
	// Manual is set for actions by hand (Promote, Rollback, Pause...,
	// or a changed canaryTrafficPercent).
	Manual bool `json:"manual,omitempty"`
	// Weights is the model's traffic after the decision.
	Weights map[string]int64 `json:"weights"`
	// Gate is the figures judged; nil for a decision no gate made.
	Gate *Gate `json:"gate,omitempty"`
}

// RolloutStatus is a model's latest rollout, for `infergate rollout
// status`, with its revisions and where its declaration came from. For a
// model that never had a rollout, State is "", Canary is the latest
// revision and the policy, step and gate are zero. It shares nothing
// mutable with Deployments.
type RolloutStatus struct {
	Model  string       `json:"model"`
	Canary string       `json:"canary"`
	Stable string       `json:"stable"`
	State  RolloutState `json:"state,omitempty"`
	// Pending, Source and Overrides are the model's (see ModelState).
	Pending   string `json:"pending,omitempty"`
	Source    string `json:"source,omitempty"`
	Overrides string `json:"overrides,omitempty"`
	// Revisions are the kept revisions, oldest first.
	Revisions []RevisionInfo `json:"revisions"`
	// Reason says why the rollout is paused or ended.
	Reason string  `json:"reason,omitempty"`
	Policy Rollout `json:"policy"`
	// Step is the 1-based current step, or the last one reached.
	Step    int       `json:"step"`
	Started time.Time `json:"started"`
	// StepStarted is when the current step's window opened: the first
	// Tick after the step began. Zero until then.
	StepStarted time.Time `json:"stepStarted,omitzero"`
	// Weights is the model's traffic now.
	Weights map[string]int64 `json:"weights"`
	// Gate is the last figures judged; nil before the first.
	Gate *Gate `json:"gate,omitempty"`
	// Decisions are the model's, across its rollouts, oldest first, at
	// most Options.MaxDecisions.
	Decisions []Decision `json:"decisions"`
}

// RevisionInfo is what RolloutStatus shows of a revision.
type RevisionInfo struct {
	Name    string         `json:"name"`
	Status  RevisionStatus `json:"status"`
	Reason  string         `json:"reason,omitempty"`
	Created time.Time      `json:"created"`
}

// rollout is a model's latest rollout.
type rollout struct {
	policy         Rollout
	canary, stable int // revision numbers
	step           int // 0-based
	state          RolloutState
	reason         string
	started        time.Time
	// The step's window: open once Tick has read the counters it
	// starts from.
	open                   bool
	stepStarted            time.Time
	baseCanary, baseStable router.Counts
	// epoch changes with anything above, so that Tick, which reads the
	// counters without the lock, can tell that the rollout moved since.
	epoch uint64
	last  *Gate
}

func (r *rollout) active() bool {
	return r != nil && (r.state == RolloutProgressing || r.state == RolloutPaused)
}

// startRollout rolls the latest revision out from step 1.
func (m *model) startRollout(p Rollout, now time.Time) {
	m.rollout = &rollout{policy: p, canary: m.latest, stable: m.stable, state: RolloutProgressing, started: now, epoch: 1}
	m.canary = p.Steps[0].Weight
	m.record(Decision{Time: now, Verdict: VerdictStart,
		Reason: fmt.Sprintf("revision %s applied: step 1 of %d at %d%%", m.revName(m.latest), len(p.Steps), m.canary)})
}

// endRollout ends the active rollout, if any, recording why.
func (m *model) endRollout(state RolloutState, v Verdict, reason string, now time.Time, manual bool, g *Gate) {
	r := m.rollout
	if !r.active() {
		return
	}
	r.state, r.reason, r.open = state, reason, false
	r.epoch++
	m.record(Decision{Time: now, Verdict: v, Reason: reason, Manual: manual, Gate: g})
}

// record adds a decision about the model's rollout, filling in what the
// model knows: the weights now, the revisions, and the step unless set.
func (m *model) record(d Decision) {
	d.Model = m.name
	d.Weights = m.traffic()
	if r := m.rollout; r != nil {
		d.Canary, d.Stable = m.revName(r.canary), m.revName(r.stable)
		if d.Step == 0 {
			d.Step = r.step + 1
		}
	}
	m.decisions = append(m.decisions, d)
	if n := len(m.decisions) - m.maxDecisions; n > 0 {
		m.decisions = slices.Delete(m.decisions, 0, n)
	}
}

// window returns the counts since base, or all of cur if the counters
// went back (the revision's stats were reset).
func window(cur, base router.Counts) router.Counts {
	if cur.Requests < base.Requests || cur.ClientErrors < base.ClientErrors || cur.ServerErrors < base.ServerErrors {
		return cur
	}
	return cur.Sub(base)
}

// clientErrorMargin is the least a canary's share of client errors may
// exceed the stable's by before it fails.
const clientErrorMargin = 0.1

// clientErrorRate is the share of all requests that were client errors.
func clientErrorRate(c router.Counts) float64 {
	if c.Requests == 0 {
		return 0
	}
	return float64(c.ClientErrors) / float64(c.Requests)
}

func pct(rate float64) string { return fmt.Sprintf("%.2f%%", 100*rate) }

// judge evaluates the progressing rollout's step on the counters canary
// and stable read now, and returns the decision it took, if any.
func (m *model) judge(now time.Time, canary, stable router.Counts) (Decision, bool) {
	r := m.rollout
	if !r.open {
		r.open, r.stepStarted, r.baseCanary, r.baseStable = true, now, canary, stable
		r.epoch++
		return Decision{}, false
	}
	p := r.policy
	step := p.Steps[r.step]
	cw, sw := window(canary, r.baseCanary), window(stable, r.baseStable)
	g := &Gate{
		Time:                 now,
		Step:                 r.step + 1,
		ElapsedSeconds:       now.Sub(r.stepStarted).Seconds(),
		CanaryRequests:       cw.Judged(),
		CanaryErrorRate:      cw.ErrorRate(),
		CanaryLatencySeconds: cw.Quantile(p.Quantile).Seconds(),
		StableRequests:       sw.Judged(),
		StableErrorRate:      sw.ErrorRate(),
		StableLatencySeconds: sw.Quantile(p.Quantile).Seconds(),

		CanaryClientErrorRate: clientErrorRate(cw),
		StableClientErrorRate: clientErrorRate(sw),
		Compared:              sw.Judged() >= uint64(max(step.MinRequests, 1)),
	}
	g.ErrorRateLimit = p.MaxErrorRateIncrease
	if g.Compared {
		g.ErrorRateLimit += g.StableErrorRate
	}
	r.last = g
	enough := g.CanaryRequests >= uint64(step.MinRequests)

	// A failing error rate rolls back as soon as there are enough
	// requests to tell, without waiting for minDuration.
	if enough && g.CanaryRequests > 0 && g.CanaryErrorRate > g.ErrorRateLimit {
		reason := fmt.Sprintf("step %d: error rate %s over %d requests is above %s", g.Step, pct(g.CanaryErrorRate), g.CanaryRequests, pct(g.ErrorRateLimit))
		if g.Compared {
			reason += fmt.Sprintf(" (stable's %s + %s)", pct(g.StableErrorRate), pct(p.MaxErrorRateIncrease))
		} else {
			reason += fmt.Sprintf(" (stable had %d requests, too few to compare)", g.StableRequests)
		}
		return m.gateRollback(now, reason, g), true
	}
	// A canary that refuses what the stable takes (its runtime answers 4xx
	// to requests the stable serves: a model that did not load under its
	// name, a changed input contract) fails too, though client errors
	// never count as its own: judged on its share of client errors
	// against the stable's, over all its requests, so that it cannot
	// escape judgement by refusing everything. The margin is at least
	// clientErrorMargin: which clients send bad requests is not spread
	// evenly over a few hundred requests.
	margin := max(p.MaxErrorRateIncrease, clientErrorMargin)
	if g.Compared && cw.Requests >= uint64(max(step.MinRequests, 1)) &&
		g.CanaryClientErrorRate > g.StableClientErrorRate+margin {
		reason := fmt.Sprintf("step %d: client error rate %s over %d requests is above the stable's %s + %s", g.Step,
			pct(g.CanaryClientErrorRate), cw.Requests, pct(g.StableClientErrorRate), pct(margin))
		return m.gateRollback(now, reason, g), true
	}
	if !enough || now.Sub(r.stepStarted) < step.MinDuration {
		return Decision{}, false
	}
	if p.MaxLatencyRatio > 0 && g.Compared && g.CanaryRequests > 0 &&
		g.CanaryLatencySeconds > p.MaxLatencyRatio*g.StableLatencySeconds {
		reason := fmt.Sprintf("step %d: p%g latency %.1fms is above %g × stable's %.1fms", g.Step, 100*p.Quantile,
			1000*g.CanaryLatencySeconds, p.MaxLatencyRatio, 1000*g.StableLatencySeconds)
		return m.gateRollback(now, reason, g), true
	}
	if r.step == len(p.Steps)-1 {
		m.promote()
		m.endRollout(RolloutPromoted, VerdictPromote,
			fmt.Sprintf("step %d of %d passed: %s promoted", g.Step, len(p.Steps), m.revName(r.canary)), now, false, g)
		return m.decisions[len(m.decisions)-1], true
	}
	from := m.canary
	r.step++
	m.canary = p.Steps[r.step].Weight
	r.stepStarted, r.baseCanary, r.baseStable = now, canary, stable
	r.epoch++
	m.record(Decision{Time: now, Verdict: VerdictAdvance, Gate: g, Step: g.Step,
		Reason: fmt.Sprintf("step %d of %d passed: weight %d%% -> %d%%", g.Step, len(p.Steps), from, m.canary)})
	return m.decisions[len(m.decisions)-1], true
}

func (m *model) gateRollback(now time.Time, reason string, g *Gate) Decision {
	m.canary = 0
	m.endRollout(RolloutRolledBack, VerdictRollback, reason, now, false, g)
	return m.decisions[len(m.decisions)-1]
}

// Tick judges every progressing rollout at now and returns the decisions
// taken, by model name. stats returns a revision's cumulative counters
// (router.Stats.Snapshot); Tick reads them without holding the lock, so
// stats may be slow or call into Deployments.
//
// A step's window opens at the first Tick after the step starts (after
// the revision is applied, the previous step passed, or Resume): that
// Tick reads the counters the window starts from and judges nothing. At
// each later Tick, with the canary's and stable's counts since then:
//
//   - if the canary has answered minRequests judged requests and its
//     error rate is above the limit, the rollout rolls back at once, even
//     before minDuration: a canary answering errors does not wait. The
//     limit is the stable's error rate plus maxErrorRateIncrease when the
//     stable has answered minRequests too, else maxErrorRateIncrease.
//   - else, once the step has lasted minDuration and the canary has
//     minRequests: if latency is judged (maxLatencyRatio > 0 and the
//     stable has minRequests) and the canary's quantile is above
//     maxLatencyRatio times the stable's, it rolls back; otherwise the
//     next step starts (its window opens now), or after the last step
//     the canary is promoted.
//
// A rollback sends all traffic to the stable revision and keeps the
// canary addressable, as Rollback does.
func (d *Deployments) Tick(now time.Time, stats func(revision string) router.Counts) []Decision {
	type job struct {
		name                   string
		canary                 int
		epoch                  uint64
		canaryName, stableName string
		c, s                   router.Counts
	}
	d.mu.Lock()
	var jobs []job
	for _, name := range slices.Sorted(maps.Keys(d.models)) {
		m := d.models[name]
		if r := m.rollout; r != nil && r.state == RolloutProgressing {
			jobs = append(jobs, job{name: name, canary: r.canary, epoch: r.epoch, canaryName: m.revName(r.canary), stableName: m.revName(r.stable)})
		}
	}
	d.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	for i := range jobs {
		jobs[i].c = stats(jobs[i].canaryName)
		jobs[i].s = stats(jobs[i].stableName)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Decision
	changed := false
	staged := make(map[string]*model, len(jobs))
	for _, j := range jobs {
		m := d.models[j.name]
		if m == nil || m.rollout == nil || m.rollout.canary != j.canary || m.rollout.epoch != j.epoch {
			continue // Moved while the counters were read; the next Tick judges it.
		}
		nm := m.clone()
		if dec, ok := nm.judge(now, j.c, j.s); ok {
			out = append(out, dec.clone())
		}
		changed = changed || nm.summary() != m.summary()
		staged[j.name] = nm
	}
	if err := d.commit(staged, "rollout gate"); err != nil {
		// Not stored, so not made: the next Tick judges again.
		return nil
	}
	if changed {
		d.bump()
	}
	return out
}

// Run calls Tick every interval with the Clock's time until ctx is done,
// then returns nil. State changes show through Wait.
func (d *Deployments) Run(ctx context.Context, interval time.Duration, stats func(revision string) router.Counts, onDecision func(Decision)) error {
	if interval <= 0 {
		return fmt.Errorf("controlplane: Run: interval %v is not positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, dec := range d.Tick(d.clock.Now(), stats) {
				if onDecision != nil {
					onDecision(dec)
				}
			}
		}
	}
}

// rolloutAct is act for the actions on a model's rollout.
func (d *Deployments) rolloutAct(actor, verb, name string, f func(m *model, r *rollout, now time.Time) error) error {
	return d.act(actor, verb, name, func(m *model, now time.Time) error {
		if m.rollout == nil {
			return ErrNoRollout
		}
		return f(m, m.rollout, now)
	})
}

// Pause stops judging the model's rollout; the canary keeps its weight.
// It returns an error wrapping ErrUnknownModel, ErrNoRollout, or
// ErrNothingToDo when the rollout is not progressing.
func (d *Deployments) Pause(name string) error { return d.pause("user", name) }

func (d *Deployments) pause(actor, name string) error {
	return d.rolloutAct(actor, "pause rollout of", name, func(m *model, r *rollout, now time.Time) error {
		if r.state != RolloutProgressing {
			return fmt.Errorf("rollout is %s: %w", r.state, ErrNothingToDo)
		}
		r.state, r.reason, r.open = RolloutPaused, "paused by hand", false
		r.epoch++
		m.record(Decision{Time: now, Verdict: VerdictPause, Reason: r.reason, Manual: true})
		return nil
	})
}

// Resume resumes the model's paused rollout at its current step, at the
// step's weight, with a new window: the step's minDuration and
// minRequests count again from the next Tick. It returns an error
// wrapping ErrUnknownModel, ErrNoRollout, or ErrNothingToDo when the
// rollout is not paused.
func (d *Deployments) Resume(name string) error { return d.resume("user", name) }

func (d *Deployments) resume(actor, name string) error {
	return d.rolloutAct(actor, "resume rollout of", name, func(m *model, r *rollout, now time.Time) error {
		if r.state != RolloutPaused {
			return fmt.Errorf("rollout is %s: %w", r.state, ErrNothingToDo)
		}
		r.state, r.reason, r.open = RolloutProgressing, "", false
		r.epoch++
		m.canary = r.policy.Steps[r.step].Weight
		m.record(Decision{Time: now, Verdict: VerdictResume, Reason: fmt.Sprintf("resumed by hand at step %d, %d%%", r.step+1, m.canary), Manual: true})
		return nil
	})
}

// RolloutStatus returns the model's latest rollout. It returns an error
// wrapping ErrUnknownModel, or ErrNoRollout when the model never had one.
func (d *Deployments) RolloutStatus(name string) (RolloutStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.models[name]
	if m == nil {
		return RolloutStatus{}, fmt.Errorf("controlplane: rollout status of %s: %w", name, ErrUnknownModel)
	}
	st := RolloutStatus{
		Model:     name,
		Canary:    m.revName(m.latest),
		Stable:    m.revName(m.stable),
		Weights:   m.traffic(),
		Decisions: slices.Clone(m.decisions),
		Pending:   m.revName(m.pending),
		Source:    m.applied.Source,
		Overrides: m.overrides(),
	}
	for _, r := range m.revs {
		st.Revisions = append(st.Revisions, RevisionInfo{Name: r.Name, Status: r.Status, Reason: r.Reason, Created: r.Created})
	}
	for i := range st.Decisions {
		st.Decisions[i] = st.Decisions[i].clone()
	}
	r := m.rollout
	if r == nil {
		return st, nil
	}
	st.Canary, st.Stable = m.revName(r.canary), m.revName(r.stable)
	st.State, st.Reason = r.state, r.reason
	st.Policy = Rollout{Steps: slices.Clone(r.policy.Steps), MaxErrorRateIncrease: r.policy.MaxErrorRateIncrease, MaxLatencyRatio: r.policy.MaxLatencyRatio, Quantile: r.policy.Quantile}
	st.Step, st.Started = r.step+1, r.started
	if r.open {
		st.StepStarted = r.stepStarted
	}
	if r.last != nil {
		g := *r.last
		st.Gate = &g
	}
	return st, nil
}

// clone returns a copy of d that shares nothing with it. Recorded
// decisions are never changed, but a caller could change its copy.
func (d Decision) clone() Decision {
	d.Weights = maps.Clone(d.Weights)
	if d.Gate != nil {
		g := *d.Gate
		d.Gate = &g
	}
	return d
}
