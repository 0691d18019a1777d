package controlplane

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/config"
)

// model is the state of one model. Apply works on copies (clone), so
// nothing here is shared between two models' values but Revisions, which
// are immutable.
type model struct {
	name string
	// applied is the last declaration applied; its annotations configure
	// the mirror and rollouts, its canaryTrafficPercent is compared with
	// the next one's.
	applied config.Model
	revs    []Revision // kept, oldest first
	// latest, stable and prev are revision numbers; prev is the revision
	// stable before stable, 0 when none.
	latest, stable, prev int
	// canary is latest's percent while latest != stable.
	canary int64
	mirror mirrorSpec
	// policy is the applied declaration's rollout, nil when none: the
	// next revision's.
	policy *Rollout
	// rollout is the latest rollout, nil when none ever ran.
	rollout *rollout
	// decisions are the rollouts' decisions, oldest first, at most
	// maxDecisions. Each is immutable once recorded.
	decisions    []Decision
	maxDecisions int
}

func (m *model) clone() *model {
	c := *m
	c.revs = slices.Clone(m.revs)
	c.decisions = slices.Clone(m.decisions)
	if m.rollout != nil {
		r := *m.rollout
		c.rollout = &r
	}
	return &c
}

func (m *model) revName(n int) string {
	if n == 0 {
		return ""
	}
	return revisionName(m.name, n)
}

func (m *model) has(name string) bool {
	return slices.ContainsFunc(m.revs, func(r Revision) bool { return r.Name == name })
}

// prevTag returns the revision TagPrev names, 0 when none.
func (m *model) prevTag() int {
	if m.latest != m.stable {
		return m.stable
	}
	return m.prev
}

// traffic returns the split: revision name to percent, no zero entry.
func (m *model) traffic() map[string]int64 {
	switch {
	case m.latest == m.stable || m.canary <= 0:
		return map[string]int64{m.revName(m.stable): 100}
	case m.canary >= 100:
		return map[string]int64{m.revName(m.latest): 100}
	}
	return map[string]int64{m.revName(m.latest): m.canary, m.revName(m.stable): 100 - m.canary}
}

func (m *model) tags() map[string]string {
	t := map[string]string{TagLatest: m.revName(m.latest)}
	if p := m.prevTag(); p != 0 {
		t[TagPrev] = m.revName(p)
	}
	return t
}

// resolve returns the name of the revision a mirror reference names, ""
// when it names none kept.
func (m *model) resolve(ref string) string {
	name := ref
	switch ref {
	case TagLatest:
		name = m.revName(m.latest)
	case TagPrev:
		name = m.revName(m.prevTag())
	}
	if name == "" || !m.has(name) {
		return ""
	}
	return name
}

// mirrorState returns the mirror State shows: nil when the percent is 0,
// the target is gone, or it already has all the traffic.
func (m *model) mirrorState() *Mirror {
	if m.mirror.percent <= 0 {
		return nil
	}
	name := m.resolve(m.mirror.ref)
	if name == "" || m.traffic()[name] == 100 {
		return nil
	}
	return &Mirror{Revision: name, Percent: m.mirror.percent}
}

func (m *model) state() ModelState {
	return ModelState{
		Name:      m.name,
		Revisions: slices.Clone(m.revs),
		Stable:    m.revName(m.stable),
		Latest:    m.revName(m.latest),
		Traffic:   m.traffic(),
		Tags:      m.tags(),
		Mirror:    m.mirrorState(),
		Rollout:   m.rolloutState(),
	}
}

func (m *model) rolloutState() RolloutState {
	if m.rollout == nil {
		return ""
	}
	return m.rollout.state
}

// summary is what State shows of a model, comparable, to tell whether an
// action changed it.
type summary struct {
	revs                 string
	latest, stable, prev int
	canary               int64
	mirror               mirrorSpec
	rollout              RolloutState
	step                 int
}

func (m *model) summary() summary {
	if m == nil {
		return summary{}
	}
	var b strings.Builder
	for _, r := range m.revs {
		b.WriteString(strconv.Itoa(r.Number))
		b.WriteByte(',')
	}
	canary := m.canary
	if m.latest == m.stable {
		canary = 0
	}
	s := summary{b.String(), m.latest, m.stable, m.prev, canary, m.mirror, "", 0}
	if r := m.rollout; r != nil {
		s.rollout, s.step = r.state, r.step
	}
	return s
}

// promote makes the latest revision stable; false when it is already.
func (m *model) promote() bool {
	if m.latest == m.stable {
		return false
	}
	m.prev, m.stable, m.canary = m.stable, m.latest, 0
	return true
}

// promoteBy promotes the latest revision and ends the rollout, if one
// runs, as promoted; false when the latest revision is already stable.
func (m *model) promoteBy(reason string, now time.Time) bool {
	if !m.promote() {
		return false
	}
	m.endRollout(RolloutPromoted, VerdictPromote, reason, now, true, nil)
	return true
}

// rollbackBy gives the stable revision all the traffic and ends the
// rollout, if one runs, as rolled back; false when there is nothing to
// take traffic from.
func (m *model) rollbackBy(reason string, now time.Time) bool {
	if m.latest == m.stable || m.canary == 0 && !m.rollout.active() {
		return false
	}
	m.canary = 0
	m.endRollout(RolloutRolledBack, VerdictRollback, reason, now, true, nil)
	return true
}

// setWeight gives the latest revision pct (1 to 99) percent and pauses
// the rollout if one progresses; false when there is no canary or it has
// pct already.
func (m *model) setWeight(pct int64, reason string, now time.Time) bool {
	if m.latest == m.stable || m.canary == pct {
		return false
	}
	m.canary = pct
	if r := m.rollout; r.active() {
		r.state, r.reason, r.open = RolloutPaused, reason, false
		r.epoch++
		m.record(Decision{Time: now, Verdict: VerdictSetWeight, Reason: reason, Manual: true})
	}
	return true
}

// setCanary applies a canaryTrafficPercent to a model whose latest
// revision may not be stable, as the manual actions do: nil or 100
// promotes, 0 rolls back (all to stable, latest kept), anything else is
// latest's share. It does nothing when latest is stable.
func (m *model) setCanary(pct *int64, source string, now time.Time) {
	switch {
	case pct == nil:
		m.promoteBy("canaryTrafficPercent removed at "+source, now)
	case *pct >= 100:
		m.promoteBy(fmt.Sprintf("canaryTrafficPercent set to %d at %s", *pct, source), now)
	case *pct == 0:
		m.rollbackBy("canaryTrafficPercent set to 0 at "+source, now)
	default:
		m.setWeight(*pct, fmt.Sprintf("canaryTrafficPercent set to %d at %s", *pct, source), now)
	}
}

// trim drops the oldest revisions beyond max, sparing the ones with a role.
func (m *model) trim(max int) {
	keep := map[string]bool{
		m.revName(m.latest): true,
		m.revName(m.stable): true,
		m.revName(m.prev):   true,
	}
	if !isTag(m.mirror.ref) {
		keep[m.mirror.ref] = true
	}
	for len(m.revs) > max {
		i := slices.IndexFunc(m.revs, func(r Revision) bool { return !keep[r.Name] })
		if i < 0 {
			return
		}
		m.revs = slices.Delete(m.revs, i, i+1)
	}
}

func isTag(ref string) bool { return ref == TagLatest || ref == TagPrev }

// newRevision adds r as the model's latest revision and applies its
// declaration's traffic, or starts its rollout.
func (m *model) newRevision(r Revision, now time.Time) {
	first := m.latest == 0
	m.endRollout(RolloutSuperseded, VerdictSuperseded, "revision "+r.Name+" replaces the canary", now, false, nil)
	m.revs = append(m.revs, r)
	m.latest = r.Number
	m.applied = r.Spec
	if first {
		m.stable = r.Number
		return
	}
	// A canary in progress is replaced: the stable revision keeps the
	// rest, and the new one starts from what the declaration says.
	m.canary = 0
	switch {
	case m.policy != nil:
		m.startRollout(*m.policy, now)
	case r.Spec.CanaryTrafficPercent == nil || *r.Spec.CanaryTrafficPercent >= 100:
		m.promote()
	default:
		m.canary = *r.Spec.CanaryTrafficPercent
	}
}

func samePercent(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
