// Package supervisor runs a model's runtime replicas as local child
// processes and keeps the model's replica pool in step with them: the local
// counterpart of a Kubernetes Deployment, for `infergate serve`.
//
// One Supervisor owns one model's replicas. It starts each as a process on
// free loopback ports: `infergate modelserver` (this binary) by default, or
// a command template of the user's (Triton, MLServer, anything that speaks
// the Open Inference Protocol), see Options.Command. A replica joins the
// pool (runtimes.Pool.Add) once its port accepts connections, and is marked
// ready only when the runtime's server readiness (/v2/health/ready, or
// gRPC ServerReady) and the model's readiness both pass the supervisor's
// probe. A replica whose process exits is withdrawn from the pool at once
// and restarted after an exponential backoff. A replica that was ready and
// stops being so while its process lives (its model unloaded, or the
// process hung so that its probes time out) is withdrawn at its first
// failed probe and, once it has been not ready for Options.UnreadyRestart,
// stopped and restarted under the same backoff. A replica that keeps
// exiting before it becomes ready marks the model failed, and is not
// restarted until SetReplicas asks for a different count.
//
// # What it says, and to whom
//
// Status says why the model failed twice: Reason in full, with the exit
// status, the runtime's paths and the last lines of its log, for logs and
// the admin API; Cause in a short sentence with no log line, path or
// address, for the error bodies the gateway sends its clients. Each
// replica's LastExit and LastExitCause do the same for how its previous
// process ended. The clients the supervisor makes name a replica in their
// errors as `model "M" replica N`, never by its address. SetReplicas grows or shrinks the
// set, down to zero, draining a replica's requests in flight before its
// process is stopped. Each replica's stdout and stderr go to
// DATADIR/logs/MODEL-N.log, the previous start's log kept as .log.1.
//
// # Readiness belongs to the supervisor
//
// Do not run Pool.Run on a supervised pool: the supervisor probes its
// replicas and calls Replica.SetReady, and a second prober that checks only
// the model's readiness would mark a replica ready before the runtime says
// it is. Pool.Do still marks a replica it could not reach not ready, which
// only ever withdraws traffic early; the supervisor's next probe decides
// again.
//
// # Processes
//
// Every replica runs in its own process group, and stopping a replica
// (scale-down, or Run's context ending) sends SIGTERM to the group, then
// SIGKILL after Options.StopGrace. On Linux a replica process also gets
// SIGKILL from the kernel when the gateway dies, even by SIGKILL
// (PR_SET_PDEATHSIG). That covers the process the supervisor started, not
// processes it starts in turn: a runtime command that wraps the real
// server in a shell should `exec` it.
//
// # What it never does
//
// It never decides how many replicas a model needs (the autoscaler does,
// through SetReplicas, or the configuration's minReplicas), never routes a
// request, and never runs a shell the user did not write.
//
// # Metrics
//
// On Options.Registerer, labelled by model:
//   - infergate_runtime_start_to_ready_seconds (histogram): from the start
//     of a replica's process to its first ready answer, once per start; the
//     runtime's part of a cold start, as the supervisor sees it.
//   - infergate_runtime_ready_probe_gap_seconds (histogram): from the last
//     look that found a starting replica not ready (or its start) to the
//     first ready answer: the most the replica may have been ready unseen,
//     which the first metric counts although it is the supervisor's delay.
//   - infergate_runtime_unready_restarts_total (counter): replicas
//     restarted because they stayed not ready for Options.UnreadyRestart
//     after they had been ready.
//
// Status reports the rest of its state, and each replica's StartToReady.
package supervisor
