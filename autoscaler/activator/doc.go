// Package activator answers "may this request go now" for a model: it
// admits a request at once while the model has a ready replica with spare
// capacity, and otherwise holds it in a bounded per-model FIFO queue until
// capacity arrives, its context ends, or the model fails to start.
//
// The owner of the replicas (the gateway's wiring of the supervisor or the
// Kubernetes scaler) pushes readiness in: SetCapacity reports how many
// replicas are ready, Fail reports that a replica failed to start. Nothing
// is polled. On every hold the activator calls Options.Poke, which cmd
// wires to autoscaler.Autoscaler.Poke, so scaling from zero starts at once.
// Concurrency and Requests make an Activator the autoscaler's Observer.
//
// With Options.ContainerConcurrency set, each ready replica takes at most
// that many requests at once and the rest wait in the same queue
// (Knative's breaker); freed slots go to the queue in arrival order.
//
// # Errors
//
// The autoscaler tree may import nothing else of ours (internal/archtest),
// so the activator raises its own sentinels and the gateway maps them to
// oip kinds in its single error mapping:
//   - ErrQueueFull: the model's queue is full; answer 503 / UNAVAILABLE
//     with Retry-After (oip.KindUnavailable).
//   - ErrDeadline: the request's deadline passed while held; 504 /
//     DEADLINE_EXCEEDED (oip.KindDeadlineExceeded). The error also
//     matches context.DeadlineExceeded.
//   - ErrFailed: a replica failed to start; the error wraps the reason
//     given to Fail (oip.KindUnavailable, with the reason as message).
//   - A cancelled request gets ctx.Err() (context.Canceled).
//
// # What it never does
//
// It never starts or stops replicas, never decides replica counts (the
// autoscaler does), never picks a replica (runtimes does) and never
// sleeps or polls: waiting is on channels and contexts only. Admission
// when capacity is free takes one short per-model mutex and allocates
// nothing.
//
// Metrics, on the injected registerer, labelled by model:
//   - infergate_activator_queue_depth: requests held now.
//   - infergate_activator_wait_seconds: how long each held request waited
//     before it was admitted.
//   - infergate_activator_cold_start_seconds: from the first request held
//     for a model with no ready replica to its first ready replica.
//   - infergate_activator_rejected_total{reason}: requests that did not go,
//     by reason: queue_full, deadline, canceled, failed.
package activator
