// Package controlplane owns the desired state of deployed models: their
// revisions, how traffic splits between them, and the progressive rollouts
// that move that split on their own.
//
// # Deployments
//
// Deployments keeps, per model, a bounded list of immutable revisions
// ("iris-00001", "iris-00002"...) made from config.Model declarations, and
// a traffic state with KServe's canary semantics: a stable revision (the
// last rolled out), the latest revision, and the latest's share of the
// traffic while they differ. Apply takes a batch of declarations (a whole
// config directory, or the files of `infergate apply -f`); Promote,
// Rollback and SetCanaryPercent are the manual actions. State is the
// snapshot the gateway's router is built from: revisions with their specs,
// traffic percents, the tags latest and prev, and the mirror; Wait tells
// when it changes.
//
// A new revision is made when a declaration's Digest differs from the
// latest revision's; see Digest for the fields that count.
//
// # Annotations
//
// Besides config's, package controlplane reads these annotations of the
// latest declaration applied. None of them makes a new revision.
//
//	infergate.io/mirror-percent: "5"        # copy 5% of requests (0-100, decimals allowed)
//	infergate.io/mirror-revision: "latest"  # to this revision: a name, a number, latest (default) or prev
//
// Mirroring to a revision that already has all the traffic does nothing.
//
//	infergate.io/rollout: '{"steps":[{"weight":10,"minDuration":"30s","minRequests":100}]}'
//
// declares a progressive rollout for the model's next revisions; see
// Rollout for the fields and their defaults. Apply refuses a bad value of
// any of them, naming the declaration, the annotation and the value.
//
// # Rollouts
//
// A new revision of a model with a rollout declared starts at the first
// step's weight, whatever canaryTrafficPercent says. Tick, called every
// few seconds (Run does it), judges each step from the gateway's
// per-revision counters (router.Counts: judged requests, error rate,
// latency quantile; client errors excluded): it advances, promotes after
// the last step, or rolls back, at once when the canary's error rate
// fails. Pause, Resume, Promote, Rollback and SetCanaryPercent act by
// hand. Every decision is recorded with its figures; RolloutStatus shows
// them.
//
// # What it never does
//
// It starts no goroutine (Run is a loop for the caller's), does no I/O and keeps nothing on disk: the
// caller persists what it must and wires State to the router. It reads the
// time from an injected Clock. It has no metrics.
package controlplane
