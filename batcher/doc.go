// Package batcher answers "with whom does this request go": it merges
// compatible OIP inference requests for one model along dimension 0, sends
// each merged request upstream in one call, and splits the answer back so
// that every caller gets exactly its own rows, with its own id.
//
// # What it owns
//
// A Batcher owns, for one model (one revision once the router gives
// revisions their own): the queue of requests waiting to be batched, with
// its priority levels, queue policy and bound; the decision of when a batch
// goes; the merge of inputs and the split of outputs; and the estimate of
// the runtime's service time per batch size that makes the decision
// deadline-aware.
//
// It works on oip types in their canonical form (row-major little-endian
// bytes, BYTES elements each with a 4-byte length prefix), so merging is a
// byte concatenation and splitting a slicing, the same for every datatype
// and whatever encoding (JSON, binary extension, gRPC raw) a request
// arrived in.
//
// # What it never does
//
// It knows tensors, not transports: it imports nothing of infergate but oip,
// decodes and encodes no wire format, picks no replica, retries nothing and
// does no I/O. The upstream call is Options.Dispatch; the gateway supplies
// it, and decides which models batch (oip.BatchSize tells it whether the
// model's metadata allows it) and validates requests against the model.
// The batcher never sends a request whose deadline has passed, never puts
// incompatible requests in one batch, and never gives a caller rows that may
// not be its own: a runtime answer that does not match the batch fails the
// whole batch.
//
// # Compatibility
//
// Requests share a batch only when they have the same model and version,
// the same inputs (names, datatypes, ranks and dimensions after the first,
// parameters), the same requested outputs with the same parameters, and the
// same request parameters; the parameters that only schedule a request
// ("priority", "timeout") or shape the encoding of its own answer
// ("binary_data_output", "binary_data", "binary_data_size") do not count.
// Requests with Triton's sequence parameters or with shared-memory
// parameters are never merged: they go alone, unchanged. See merge.go for
// the exact key.
//
// # When a batch goes
//
// The queue holds a FIFO per priority level (1 the highest, as in Triton)
// for each set of compatible requests. A batch takes requests in priority
// then arrival order while they fit in MaxBatchSize. Nothing goes while
// every batch slot (MaxBatchesInFlight) is busy; when one is free, the
// first of these that holds decides:
//
//   - a batch that cannot grow (full, or the next request does not fit)
//     goes;
//   - a prefix of it that reaches a preferred size goes;
//   - it goes when waiting longer would miss its earliest deadline, given
//     the service time learned for its size (a + b·n, fitted on observed
//     batches);
//   - it waits while more requests are coming soon (below);
//   - otherwise it goes at once: waiting could only delay it.
//
// Among ready batches the one whose first request has the highest
// priority, then the earliest arrival, goes first.
//
// A batch waits for more only while all of these hold, each learned per
// set of compatible requests:
//
//   - Callers are expected: fewer requests are outstanding (queued or
//     upstream) than the most there were over the last two periods between
//     batches coming back. Closed-loop clients answered together come back
//     together, microseconds later; sending the first of them alone would
//     keep the slot busy for a whole service time while the others queue,
//     and the clients would stay split into a batch of one and a batch of
//     the rest. A lone client, as many outstanding as ever, never waits,
//     and a caller that gives up while queued is no longer expected.
//   - One is expected soon: the learned mean time between arrivals (a
//     moving average over about 16) is shorter than what is left of the
//     hold budget, so at least one more request is likely before the
//     budget runs out. Traffic too sparse to bring one within the service
//     time does not wait.
//   - Waiting pays: fewer requests are in the batch than are expected
//     within the runtime's fixed cost per batch (the a of a + b·n), at the
//     rate callers come back (learned from the gaps between arrivals with
//     no batch coming back in between). Sending k rows now serves k per
//     a + b·k of the slot's time; waiting w for λw more serves k + λw per
//     w + a + b·(k + λw), which is more exactly when λ·a > k. So when
//     answers come back slowly (a busy CPU writes them and reads the next
//     requests one by one), a batch goes with those in and the rest come
//     back while it is served, rather than the runtime idling for them.
//   - The hold budget is not spent: the batch has been held for less than
//     MaxQueueDelay, and less than the service time learned for its size
//     (holding a batch longer than it takes to serve cannot pay). The hold
//     counts from when a slot became free or from the oldest request's
//     arrival, whichever is later: time spent waiting for a busy slot is
//     not a hold. With MaxQueueDelay zero nothing waits.
//
// Every request's deadline (its context's, and the queue policy's timeout,
// which Triton's "timeout" parameter may shorten) is watched while it is
// queued: past it, the request is removed and answered with
// KindDeadlineExceeded (or, for a queue timeout under TimeoutDelay, moved
// behind the others). A cancelled caller leaves the queue at once.
//
// # Metrics
//
// Registered on Options.Registerer, all labelled by model:
//
//	infergate_batcher_batch_size              histogram  rows per batch sent upstream
//	infergate_batcher_queue_delay_seconds     histogram  arrival to dispatch, per request
//	infergate_batcher_queue_depth             gauge      requests queued, not in flight
//	infergate_batcher_rejected_total{reason}  counter    refused at arrival: queue_full, oversize
//	infergate_batcher_expired_total           counter    answered DEADLINE_EXCEEDED, never sent
//
// # Concurrency
//
// New starts nothing. Submit may be called concurrently from any number of
// goroutines. The decision an arrival or a completion sets off is made in
// the goroutine of that caller or of that batch, under the batcher's lock;
// Run's goroutine only acts on time (a hold or a timeout running out) and
// on stop. Each batch runs in a goroutine of its own, at most
// MaxBatchesInFlight at a time, with one exception: a request that goes at
// once and alone (nothing else queued, a slot free, the rules above say
// go) is sent from its caller's goroutine, under a context derived from
// the caller's, which Run's end cancels too. That saves the hand-offs to
// the scheduler, to the batch's goroutine and back, most of what batching
// would add to a lone request's latency. Nothing is logged per request.
package batcher
