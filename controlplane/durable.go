package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/infergate/infergate/config"
)

// Store keeps the desired state across restarts (see Options.Store):
// Deployments writes each change to it, with the change's events, before
// the change takes effect, and Load reads it back.
type Store interface {
	// SaveDeployments writes one change in one transaction: the records
	// of the models it made, changed or removed (a removed model's record
	// is a tombstone that keeps its last revision number), by model name,
	// and the change's events.
	SaveDeployments(ctx context.Context, records map[string][]byte, events []Event) error
	// LoadDeployments returns every model's latest record.
	LoadDeployments(ctx context.Context) (map[string][]byte, error)
}

// Event is one entry of the control plane's event log: a change to the
// desired state and what decided it.
type Event struct {
	// Kind is what happened: declaration.applied, model.removed,
	// revision.created, revision.ready, revision.failed, or
	// rollout.<verdict> (rollout.start, rollout.advance, rollout.promote,
	// rollout.rollback...).
	Kind     string `json:"kind"`
	Model    string `json:"model"`
	Revision string `json:"revision,omitempty"`
	// Actor is who or what made the change: the config file (its path),
	// apply, "user" (an action by hand through the API or CLI), "rollout gate", "runtime" (a revision's replicas), or
	// "restart".
	Actor   string `json:"actor"`
	Message string `json:"message"`
	// Detail holds the figures: the decision with its gate, the traffic.
	Detail any `json:"detail,omitempty"`
}

// ErrStore wraps a failure to write a change to the Store: the change was
// not made.
var ErrStore = errors.New("the desired state could not be stored")

// storeTimeout bounds one write to the Store.
const storeTimeout = 10 * time.Second

// recordFormat is the version of modelRecord's form; Load refuses others.
const recordFormat = 1

// modelRecord is a model's desired state as the Store keeps it: all that
// a restart restores. The mirror and the next rollout's policy are read
// again from Applied; a running rollout's window (its counters' base and
// the step's start) is not kept: it opens again after a restart.
type modelRecord struct {
	Format     int            `json:"format"`
	Name       string         `json:"name"`
	LastNumber int            `json:"lastNumber"`
	Removed    bool           `json:"removed,omitempty"`
	Applied    *config.Model  `json:"applied,omitempty"`
	Revisions  []Revision     `json:"revisions,omitempty"`
	Latest     int            `json:"latest,omitempty"`
	Stable     int            `json:"stable,omitempty"`
	Prev       int            `json:"prev,omitempty"`
	Canary     int64          `json:"canary,omitempty"`
	Pending    int            `json:"pending,omitempty"`
	Rollout    *rolloutRecord `json:"rollout,omitempty"`
	Decisions  []Decision     `json:"decisions,omitempty"`
	FileDecl   string         `json:"fileDecl,omitempty"`
	FileSource string         `json:"fileSource,omitempty"`
	Overridden bool           `json:"overridden,omitempty"`
}

type rolloutRecord struct {
	Policy  Rollout      `json:"policy"`
	Canary  int          `json:"canary"`
	Stable  int          `json:"stable"`
	Step    int          `json:"step"`
	State   RolloutState `json:"state"`
	Reason  string       `json:"reason,omitempty"`
	Started time.Time    `json:"started"`
	Last    *Gate        `json:"last,omitempty"`
}

func (m *model) marshalRecord(lastNumber int) ([]byte, error) {
	rec := modelRecord{
		Format: recordFormat, Name: m.name, LastNumber: lastNumber, Applied: &m.applied,
		Revisions: m.revs, Latest: m.latest, Stable: m.stable, Prev: m.prev, Canary: m.canary,
		Pending: m.pending, Decisions: m.decisions,
		FileDecl: m.fileDecl, FileSource: m.fileSource, Overridden: m.overridden,
	}
	if r := m.rollout; r != nil {
		rec.Rollout = &rolloutRecord{Policy: r.policy, Canary: r.canary, Stable: r.stable, Step: r.step,
			State: r.state, Reason: r.reason, Started: r.started, Last: r.last}
	}
	return json.Marshal(rec)
}

func tombstone(name string, lastNumber int) ([]byte, error) {
	return json.Marshal(modelRecord{Format: recordFormat, Name: name, LastNumber: lastNumber, Removed: true})
}

// restoreModel rebuilds a model from its record; nil for a tombstone.
func restoreModel(b []byte, maxDecisions int) (*model, int, error) {
	var rec modelRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, 0, fmt.Errorf("malformed record: %w", err)
	}
	if rec.Format != recordFormat {
		return nil, 0, fmt.Errorf("record format %d; this infergate reads %d", rec.Format, recordFormat)
	}
	if rec.Removed {
		return nil, rec.LastNumber, nil
	}
	if rec.Applied == nil || len(rec.Revisions) == 0 {
		return nil, 0, errors.New("record has no declaration or no revision")
	}
	m := &model{
		name: rec.Name, applied: *rec.Applied, revs: rec.Revisions,
		latest: rec.Latest, stable: rec.Stable, prev: rec.Prev, canary: rec.Canary, pending: rec.Pending,
		decisions: rec.Decisions, maxDecisions: maxDecisions,
		fileDecl: rec.FileDecl, fileSource: rec.FileSource, overridden: rec.Overridden,
	}
	// The mirror and the policy come from the declaration as Apply read
	// them; Apply accepted it, so it reads again without error.
	m.mirror, _ = parseMirror(m.applied)
	if raw, ok := m.applied.Annotations[config.AnnotationRollout]; ok {
		if p, err := ParseRollout(raw); err == nil {
			m.policy = &p
		}
	}
	if r := rec.Rollout; r != nil {
		m.rollout = &rollout{policy: r.Policy, canary: r.Canary, stable: r.Stable, step: r.Step,
			state: r.State, reason: r.Reason, started: r.Started, last: r.Last, epoch: 1}
	}
	for _, n := range []int{m.latest, m.stable} {
		if m.rev(n) == nil {
			return nil, 0, fmt.Errorf("record names revision %d, which it does not keep", n)
		}
	}
	return m, rec.LastNumber, nil
}

// Load restores the desired state from the Store, replacing what d holds,
// and starts a new generation. It is called once, before Apply. The
// first Apply with prune after it (the config read at start) removes
// only the models the config declared before: a model that apply alone
// made stays until the config next changes. A rollout
// that was progressing resumes at its step; the step's time and counts
// start again, and a decision says so. It returns an error wrapping
// ErrStore when the store cannot be read, and names the model whose
// record is unreadable.
func (d *Deployments) Load(ctx context.Context) error {
	if d.store == nil {
		return nil
	}
	recs, err := d.store.LoadDeployments(ctx)
	if err != nil {
		return fmt.Errorf("controlplane: load: %w: %w", ErrStore, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	models := make(map[string]*model, len(recs))
	numbers := make(map[string]int, len(recs))
	for _, name := range slices.Sorted(maps.Keys(recs)) {
		m, last, err := restoreModel(recs[name], d.maxDecisions)
		if err != nil {
			return fmt.Errorf("controlplane: load: the stored state of model %s: %w", name, err)
		}
		numbers[name] = last
		if m != nil {
			models[name] = m
		}
	}
	d.models, d.numbers, d.restored = models, numbers, true
	now := d.clock.Now()
	resumed := make(map[string]*model)
	for name, m := range d.models {
		if r := m.rollout; r != nil && r.state == RolloutProgressing {
			nm := m.clone()
			nm.record(Decision{Time: now, Verdict: VerdictResume,
				Reason: fmt.Sprintf("infergate restarted: step %d resumes at %d%%; its time and counts start again", r.step+1, nm.canary)})
			resumed[name] = nm
		}
	}
	if err := d.commit(resumed, "restart"); err != nil {
		return err
	}
	d.bump()
	return nil
}

// commit makes staged the state of the models it names (a nil model: the
// model is removed), after writing what changed to the Store, if any,
// with the events that tell what changed; actor says who changed it. When
// the write fails, nothing changes and the error wraps ErrStore. d.mu is
// held; the caller starts the new generation.
func (d *Deployments) commit(staged map[string]*model, actor string) error {
	if d.store != nil && len(staged) > 0 {
		records := make(map[string][]byte, len(staged))
		var events []Event
		for _, name := range slices.Sorted(maps.Keys(staged)) {
			nm, cur := staged[name], d.models[name]
			if nm == cur {
				continue
			}
			var rec []byte
			var err error
			if nm == nil {
				rec, err = tombstone(name, d.numbers[name])
				events = append(events, Event{Kind: "model.removed", Model: name, Actor: actor, Message: name + " removed"})
			} else {
				if rec, err = nm.marshalRecord(d.numbers[name]); err == nil && cur != nil {
					if old, oerr := cur.marshalRecord(d.numbers[name]); oerr == nil && bytes.Equal(old, rec) {
						continue // nothing durable changed (a rollout's window opened)
					}
				}
				events = append(events, changeEvents(cur, nm, actor)...)
			}
			if err != nil {
				return fmt.Errorf("controlplane: %w: model %s: %w", ErrStore, name, err)
			}
			records[name] = rec
		}
		if len(records) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
			err := d.store.SaveDeployments(ctx, records, events)
			cancel()
			if err != nil {
				return fmt.Errorf("controlplane: %w, so it was not made: %w", ErrStore, err)
			}
		}
	}
	for name, nm := range staged {
		if nm == nil {
			delete(d.models, name)
		} else {
			d.models[name] = nm
		}
	}
	return nil
}

// changeEvents tells what changed from cur (nil: a new model) to nm.
func changeEvents(cur, nm *model, actor string) []Event {
	var out []Event
	for _, r := range nm.revs {
		var was *Revision
		if cur != nil {
			was = cur.rev(r.Number)
		}
		switch {
		case was == nil && (cur == nil || r.Number > cur.latest):
			out = append(out, Event{Kind: "revision.created", Model: nm.name, Revision: r.Name, Actor: actor,
				Message: fmt.Sprintf("revision %s made from %s (digest %s)", r.Name, r.Spec.Source, r.Digest)})
		case was != nil && was.Status != r.Status:
			msg := fmt.Sprintf("revision %s is %s", r.Name, r.Status)
			if r.Reason != "" {
				msg += ": " + r.Reason
			}
			out = append(out, Event{Kind: "revision." + string(r.Status), Model: nm.name, Revision: r.Name, Actor: actor, Message: msg})
		}
	}
	seen := 0
	if cur != nil {
		seen = len(cur.decisions)
		// Decisions beyond the bound were dropped from the front.
		if len(nm.decisions) == nm.maxDecisions && len(cur.decisions) == nm.maxDecisions {
			seen = len(nm.decisions) - newDecisions(cur.decisions, nm.decisions)
		}
	}
	for _, dec := range nm.decisions[min(seen, len(nm.decisions)):] {
		who := actor
		if dec.Gate != nil {
			who = "rollout gate"
		}
		out = append(out, Event{Kind: "rollout." + string(dec.Verdict), Model: nm.name, Revision: dec.Canary, Actor: who,
			Message: dec.Reason, Detail: dec})
	}
	if cur == nil || !maps.Equal(cur.traffic(), nm.traffic()) {
		out = append(out, Event{Kind: "traffic.changed", Model: nm.name, Actor: actor,
			Message: FormatTraffic(nm.traffic()), Detail: nm.traffic()})
	}
	return out
}

// newDecisions counts the decisions at the end of next that are not in
// prev, when both are at the bound (the oldest dropped).
func newDecisions(prev, next []Decision) int {
	last := prev[len(prev)-1]
	for i := len(next) - 1; i >= 0; i-- {
		if next[i].Time.Equal(last.Time) && next[i].Reason == last.Reason && next[i].Verdict == last.Verdict {
			return len(next) - 1 - i
		}
	}
	return len(next)
}
