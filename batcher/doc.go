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
// then arrival order while they fit in MaxBatchSize, and is dispatched when
// a batch slot is free (MaxBatchesInFlight) and one of these holds: it
// cannot grow (full, or the next request does not fit); a prefix of it
// reaches a preferred size (that prefix goes); it is a lone request with
// nothing compatible queued (so a request on an idle model is not delayed
// for nothing); its oldest request has waited MaxQueueDelay; or waiting
// longer would miss its earliest deadline, given the service time learned
// for its size (a + b·n, fitted on observed batches). Among ready batches
// the one whose first request has the highest priority, then the earliest
// arrival, goes first.
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
// New starts nothing; Run runs the scheduler and one goroutine per batch in
// flight, at most MaxBatchesInFlight; Submit may be called concurrently
// from any number of goroutines. Nothing is logged per request.
package batcher
