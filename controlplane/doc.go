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
// # What runs where
//
// The pure decisions of what a revision's runtime should be are here too
// (ModelState.Active, StartReplicas, Scale; ScaleSettings); package
// serving applies them on one machine, with the gateway, the activator
// and the supervisors this package never imports.
//
// # The admin API and the config file
//
// API serves the control API on the admin port (GET /api/v1/models, POST
// /api/v1/apply, the rollouts' status and actions). It depends on small
// interfaces: an Applier that takes declarations (Deployments, or
// serving's Reconciler, which checks runtimes first), a Syncer that makes
// the routes follow an action before it is answered, and reporters of
// runtimes and autoscaling for the rows. WatchConfig applies a config
// file or directory whenever it changes (or on SIGHUP), through the same
// Applier.
//
// # Durable state and the registry
//
// With Options.Store, every change (Apply, the actions by hand, MarkReady
// and MarkFailed, Tick's decisions) is written to the Store with its
// events, one transaction per change, before it takes effect; a change
// the Store refuses is not made (ErrStore). Load restores the state after
// a restart: a running rollout resumes at its step, its window opening
// again. RegistryStore keeps it in the registry's store (a table of its
// own, and the registry's event log).
//
// RegistryResolver resolves registry:// storageUris to the files of the
// version they name (placed under a directory named after the version's
// digest, so that another version is another revision), follows aliases
// (moving one re-applies the declarations that name it) and tells the
// registry which versions the kept revisions serve.
//
// # What it never does
//
// Deployments starts no goroutine (Run is a loop for the caller's) and
// does no I/O but through its Store; the caller wires State to the router. It reads the time from an injected Clock.
// The loops WatchConfig, WatchSupervised and WatchEndpoints run in the
// caller's goroutines; WatchConfig reads the config files and API reads
// HTTP requests. Nothing here imports the data plane (gateway, the
// activator).
//
// # Metrics
//
// NewCollector reads them from a Deployments at scrape time:
//   - infergate_revision_traffic_percent{model,revision} (gauge): a
//     revision's share of its model's requests.
//   - infergate_rollout_step{model,canary,state} (gauge): the 1-based step
//     of a model's latest rollout, labelled with its state.
package controlplane
