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
	// pending is the revision number the latest declaration deploys while
	// that revision is not ready; 0 when none. Its traffic, rollout and
	// the latest tag wait for it (see activate).
	pending int
	// fileDecl fingerprints the model's declaration as the config file
	// read last declared it ("" when no config file declared it), and
	// fileSource is where; overridden is set when apply or an action by
	// hand changed the model after that declaration was applied.
	fileDecl, fileSource string
	overridden           bool
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

// rev returns the kept revision numbered n, nil when none is.
func (m *model) rev(n int) *Revision {
	for i := range m.revs {
		if m.revs[i].Number == n {
			return &m.revs[i]
		}
	}
	return nil
}

// failed reports whether revision n failed to start.
func (m *model) failed(n int) bool {
	r := m.rev(n)
	return r != nil && r.Status == RevisionFailed
}

// target is the revision the latest declaration deploys: the pending one,
// else the latest.
func (m *model) target() int {
	if m.pending != 0 {
		return m.pending
	}
	return m.latest
}

// prevTag returns the revision TagPrev names, 0 when none. A revision that
// failed is never prev: a rollback must go to something that worked.
func (m *model) prevTag() int {
	p := m.prev
	if m.latest != m.stable {
		p = m.stable
	}
	if m.failed(p) {
		return 0
	}
	return p
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
		Pending:   m.revName(m.pending),
		Source:    m.applied.Source,
		Overrides: m.overrides(),
	}
}

// overrides names the config file's declaration when apply or an action
// by hand changed the model after it was applied.
func (m *model) overrides() string {
	if !m.overridden || m.fileDecl == "" {
		return ""
	}
	return m.fileSource
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
	revs                          string
	latest, stable, prev, pending int
	canary                        int64
	mirror                        mirrorSpec
	rollout                       RolloutState
	step                          int
	source, overrides             string
}

// serving is s without what only describes where the declaration came
// from.
func (s summary) serving() summary {
	s.source, s.overrides = "", ""
	return s
}

func (m *model) summary() summary {
	if m == nil {
		return summary{}
	}
	var b strings.Builder
	for _, r := range m.revs {
		b.WriteString(strconv.Itoa(r.Number))
		b.WriteString(string(r.Status))
		b.WriteByte(',')
	}
	canary := m.canary
	if m.latest == m.stable {
		canary = 0
	}
	s := summary{b.String(), m.latest, m.stable, m.prev, m.pending, canary, m.mirror, "", 0, m.applied.Source, m.overrides()}
	if r := m.rollout; r != nil {
		s.rollout, s.step = r.state, r.step
	}
	return s
}

// promote makes the latest revision stable; false when it is already. A
// stable revision that failed does not become prev.
func (m *model) promote() bool {
	if m.latest == m.stable {
		return false
	}
	if !m.failed(m.stable) {
		m.prev = m.stable
	}
	m.stable, m.canary = m.latest, 0
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
		m.revName(m.latest):  true,
		m.revName(m.stable):  true,
		m.revName(m.prev):    true,
		m.revName(m.pending): true,
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

// newRevision adds r as the model's newest revision and deploys it: the
// first revision of a model is its latest and stable one at once (there
// is nothing else to serve); a later one waits until it is ready.
func (m *model) newRevision(r Revision, now time.Time) {
	r.Status = RevisionPending
	m.revs = append(m.revs, r)
	m.applied = r.Spec
	if m.latest == 0 {
		m.latest, m.stable = r.Number, r.Number
		return
	}
	m.deploy(r.Number, now)
}

// deploy makes revision n the one the latest declaration deploys: at once
// if it has been ready, else once it is (MarkReady). Until then the
// model's traffic, tags and rollout stay as they are.
func (m *model) deploy(n int, now time.Time) {
	if m.rev(n).Status == RevisionReady {
		m.activate(n, now)
		return
	}
	m.pending = n
}

// activate makes revision n the latest and applies the latest
// declaration's traffic to it, or starts its rollout. A canary in
// progress is replaced: the stable revision keeps the rest, and n starts
// from what the declaration says.
func (m *model) activate(n int, now time.Time) {
	m.pending = 0
	m.endRollout(RolloutSuperseded, VerdictSuperseded, "revision "+m.revName(n)+" replaces the canary", now, false, nil)
	m.latest, m.canary = n, 0
	if n == m.stable {
		return // back to the stable revision's spec: it keeps all the traffic
	}
	switch pct := m.applied.CanaryTrafficPercent; {
	case m.policy != nil:
		m.startRollout(*m.policy, now)
	case pct == nil || *pct >= 100:
		m.promote()
	default:
		m.canary = *pct
	}
}

// setStatus records that revision n became ready or failed, and deploys it
// if it is pending and ready. It returns false when n had that status.
func (m *model) setStatus(n int, st RevisionStatus, reason string, now time.Time) bool {
	r := m.rev(n)
	if r.Status == st && r.Reason == reason {
		return false
	}
	r.Status, r.Reason = st, reason
	if n != m.pending {
		return true
	}
	switch st {
	case RevisionReady:
		m.activate(n, now)
	case RevisionFailed:
		m.pending = 0
		m.record(Decision{Time: now, Verdict: VerdictFailed,
			Reason: fmt.Sprintf("revision %s failed to start, its traffic stays where it was: %s", m.revName(n), reason)})
	}
	return true
}

// find returns the kept revision whose digest is digest, 0 when none.
func (m *model) find(digest string) int {
	for i := len(m.revs) - 1; i >= 0; i-- {
		if m.revs[i].Digest == digest {
			return m.revs[i].Number
		}
	}
	return 0
}

func samePercent(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
