// Package quota answers "may this tenant's request go now, and in what
// order when the model is full": quotas per tenant and per model, and fair
// sharing of a saturated model among tenants. The gateway asks it after
// authentication (it knows the tenant) and routing (it knows the model),
// before the activator and the batcher.
//
// Two parts, used in this order:
//   - A Limiter admits or refuses at once: token buckets (requests per
//     second with a burst) and caps on requests in flight, per tenant
//     across all models, per model across all tenants, and per (tenant,
//     model). Update swaps the limits at run time, keeping the buckets'
//     levels and the counts of requests in flight. Admission is lock-free
//     (the buckets are GCRA, one atomic word each) and allocates nothing.
//   - A FairQueue per model holds requests while the model's capacity
//     (SetCapacity: ready replicas times the requests each takes) is in
//     use, and gives each freed place by weighted fair queuing among the
//     tenants that wait, and by OIP priority (1 the highest) then arrival
//     within a tenant. A request passes at once, with one compare-and-swap
//     and no allocation, while there is room and nobody waits.
//
// A tenant's caps on requests in flight count its requests from Admit to
// Ticket.Release, so the ones waiting in a FairQueue count too.
//
// # Errors
//
// A refusal is a *RefusedError: of kind oip.KindResourceExhausted (HTTP
// 429, gRPC RESOURCE_EXHAUSTED) through the sentinel it wraps
// (ErrRateLimited, ErrConcurrencyLimited, ErrQueueFull), with a retry
// hint for the Retry-After header (RetryAfter, RetryAfterSeconds): the
// time until the bucket has a token for a rate limit, a fixed hint for a
// cap or a full queue. A request whose context ends while it waits in a
// FairQueue leaves the queue and gets an error of the context's kind
// (oip.KindDeadlineExceeded or oip.KindCanceled) wrapping ctx.Err().
//
// # What it never does
//
// It never authenticates (the tenant's name is given, already
// authenticated), never reads configuration (the gateway hands it limits
// and capacities), never holds a request for a replica to start (the
// activator does) and never starts a goroutine, sleeps or polls: waiting
// is on one channel per waiter, and a release hands its place on.
//
// # Metrics
//
// On the registerer given to NewMetrics, shared by the Limiter and every
// FairQueue:
//   - infergate_quota_refused_total{tenant,model,scope,reason}
//   - infergate_quota_queued_requests{model,tenant}
//   - infergate_quota_queue_wait_seconds{model}
package quota
