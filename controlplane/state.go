package controlplane

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/config"
)

// Revision is one immutable version of a model's declaration. Spec shares
// its maps and slices with every State that holds the Revision: treat them
// as read-only, as config.Model says.
type Revision struct {
	// Model is the model's name.
	Model string `json:"model"`
	// Name is "<model>-<number>", the number on at least 5 digits
	// ("iris-00001"), as Knative names revisions.
	Name string `json:"name"`
	// Number counts the model's revisions from 1.
	Number int `json:"number"`
	// Spec is the declaration that created the revision. Its
	// canaryTrafficPercent and traffic-only annotations are those of that
	// apply; later applies may change them without a new revision.
	Spec config.Model `json:"spec"`
	// Digest is Digest(Spec).
	Digest string `json:"digest"`
	// Created is when Apply created it.
	Created time.Time `json:"created"`
	// Status says whether the revision's runtime has come up (see
	// RevisionStatus); Reason says why it failed.
	Status RevisionStatus `json:"status"`
	Reason string         `json:"reason,omitempty"`
}

// RevisionStatus says whether a revision has proved it can serve. Only a
// revision that has been ready takes the traffic its declaration asks for
// (as Knative routes to its latest ready revision): until then the model's
// traffic stays as it was.
type RevisionStatus string

// The revision statuses.
const (
	// RevisionPending: created, no replica has been ready yet.
	RevisionPending RevisionStatus = "pending"
	// RevisionReady: a replica has been ready. A ready revision stays
	// ready when its replicas later stop or scale to zero.
	RevisionReady RevisionStatus = "ready"
	// RevisionFailed: its runtime failed before any replica was ready.
	// It never takes traffic and is never tagged prev; applying its
	// declaration again tries it again.
	RevisionFailed RevisionStatus = "failed"
)

// revisionName returns the name of a model's revision number n.
func revisionName(model string, n int) string { return fmt.Sprintf("%s-%05d", model, n) }

// Action says what Apply did to one model.
type Action string

// The actions, in kubectl's words where it has one.
const (
	// ActionCreated: a new model, with its first revision.
	ActionCreated Action = "created"
	// ActionRevised: a new revision of a known model.
	ActionRevised Action = "revised"
	// ActionReused: the declaration is that of a kept revision, which it
	// deploys again instead of making a new one.
	ActionReused Action = "reused"
	// ActionConfigured: same revision; traffic, mirror or rollout changed.
	ActionConfigured Action = "configured"
	// ActionUnchanged: nothing that State shows changed.
	ActionUnchanged Action = "unchanged"
	// ActionRemoved: pruned, absent from a whole-state batch.
	ActionRemoved Action = "removed"
)

// ModelChange is what Apply did to one model.
type ModelChange struct {
	Model  string `json:"model"`
	Action Action `json:"action"`
	// Revision is the revision created or reused; "" when none was.
	Revision string `json:"revision,omitempty"`
	// Pending is set when the declaration waits for its revision to be
	// ready before its traffic takes effect (see ModelState.Pending).
	Pending bool `json:"pending,omitempty"`
	// Traffic is the model's split after Apply; nil when removed.
	Traffic map[string]int64 `json:"traffic,omitempty"`
}

// Changes is what one Apply did: the batch's models in batch order, then
// the removed ones by name.
type Changes struct {
	Models []ModelChange `json:"models"`
	// Generation is State's generation after Apply.
	Generation uint64 `json:"generation"`
}

// State is a snapshot of every model's revisions and traffic, for the
// gateway's router. It shares nothing mutable with Deployments but the
// revisions' Specs (see Revision): a caller may keep it.
type State struct {
	// Generation grows with every change; equal generations are equal
	// States, so a caller can skip one it has seen. 0 is the empty state
	// before the first change.
	Generation uint64 `json:"generation"`
	// Models are sorted by name.
	Models []ModelState `json:"models"`
}

// Model returns the named model's state.
func (s State) Model(name string) (ModelState, bool) {
	i, ok := slices.BinarySearchFunc(s.Models, name, func(m ModelState, n string) int { return strings.Compare(m.Name, n) })
	if !ok {
		return ModelState{}, false
	}
	return s.Models[i], true
}

// ModelState is one model in a State.
type ModelState struct {
	Name string `json:"name"`
	// Revisions are the kept revisions, oldest first. Every one is
	// addressable (by name, number or tag) whether or not it has traffic.
	Revisions []Revision `json:"revisions"`
	// Stable is the last revision rolled out; Latest the last created.
	// They differ while a canary runs and after a rollback.
	Stable string `json:"stable"`
	Latest string `json:"latest"`
	// Traffic maps revision names to percents: they sum to 100 and none
	// is 0.
	Traffic map[string]int64 `json:"traffic"`
	// Tags maps TagLatest, and TagPrev when there is one, to revision
	// names.
	Tags map[string]string `json:"tags"`
	// Mirror is nil when the model's requests are not mirrored.
	Mirror *Mirror `json:"mirror,omitempty"`
	// Rollout is the state of the model's latest rollout; "" when it
	// never had one. RolloutStatus tells more.
	Rollout RolloutState `json:"rollout,omitempty"`
	// Pending is the revision the latest declaration deploys while it is
	// not ready yet: its traffic (and rollout) takes effect once it is
	// (MarkReady), and never if it fails (MarkFailed). "" when none.
	Pending string `json:"pending,omitempty"`
	// Source is where the latest declaration came from: a config file
	// ("FILE#N") or what `infergate apply` sent.
	Source string `json:"source,omitempty"`
	// Overrides is set when the model's config file declares something
	// else than what runs, because apply or a rollout action changed the
	// model after the file was last read: it names the file's
	// declaration. The file wins again once that declaration changes.
	Overrides string `json:"overrides,omitempty"`
}

// Revision returns the revision ref names: a revision name
// ("iris-00002"), its number ("2") or a tag (TagLatest, TagPrev).
func (ms ModelState) Revision(ref string) (Revision, bool) {
	name := ref
	if t, ok := ms.Tags[ref]; ok {
		name = t
	} else if n, err := strconv.Atoi(ref); err == nil && n > 0 {
		name = revisionName(ms.Name, n)
	}
	for _, r := range ms.Revisions {
		if r.Name == name {
			return r, true
		}
	}
	return Revision{}, false
}

// Mirror copies a share of a model's requests to one revision; the
// copies' answers are discarded.
type Mirror struct {
	Revision string  `json:"revision"`
	Percent  float64 `json:"percent"`
}
