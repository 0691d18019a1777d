// Package serving runs on one machine the revisions the control plane
// decides: it turns each generation of controlplane.Deployments into the
// gateway's routes and the revisions' runtimes, and assembles the process
// that `infergate serve` and `infergate gateway` run.
//
// # What it owns
//
//   - Manager: one revision's runtime side per revision, its replica pool,
//     what fills the pool (a supervisor of local processes, or the prober
//     of the runtimes at its endpoints), its batcher and its capacity in
//     the activator. It is the autoscaler's Scaler and ReadyCounter, and
//     controlplane's Runtimes for the admin API. Retiring a revision lets
//     the requests that chose it finish (within ManagerOptions.
//     DrainTimeout) before its runtime stops.
//   - Reconciler: applies declarations (after checking what only building
//     their runtimes reveals) and makes routes, runtimes and autoscaler
//     settings follow the deployed state, one atomic swap of the routing
//     table per generation: the runtimes of new revisions exist before
//     the swap, those of dropped revisions are retired after it.
//   - Server: the process's assembly, the gateway, activator, autoscaler,
//     Deployments, Manager, Reconciler, the rollout judge, the config
//     watcher and the admin port with controlplane's API, run under one
//     errgroup until its context ends.
//
// Which revisions keep their replicas and with which autoscaler settings
// is controlplane's decision (ModelState.Active, StartReplicas, Scale);
// this package applies it.
//
// # Imports
//
// serving may import controlplane and the data plane (gateway, router,
// batcher, autoscaler and its activator, runtimes); none of them imports
// serving, and only cmd does.
//
// # What it never does
//
// It never decides traffic or rollouts (controlplane does), never
// touches a request (gateway does) and keeps nothing on disk but the
// runtimes' logs under the data directory.
//
// # Metrics
//
// Its own: none. It registers the gateway's, activator's, autoscaler's,
// supervisors' and batchers' metrics and controlplane.NewCollector's on
// the Registry given to Server, and Go and process collectors are the
// caller's.
package serving
