// Package sim is a simulated model for benchmarks: it answers with outputs
// of the declared names, datatypes and shapes after a GPU-like cost, so that
// batching, queueing and autoscaling can be measured honestly on machines
// without accelerators.
//
// The cost model has three numbers. A run of a batch of n rows takes
// latency_ms + per_item_ms*n milliseconds (a fixed launch cost plus a cost
// per row, the shape of a GPU kernel that is not saturated), and at most
// slots runs proceed at once (the number of copies of the model an
// accelerator holds); further runs wait their turn, first come first
// served. A run waits without using CPU, so one machine can simulate many
// accelerators, and a run whose context ends stops waiting and frees its
// slot at once. On Linux the wait ends within tens of microseconds of its
// due time (a timerfd in the network poller, see Sleep): Go's own timers
// wake up to a millisecond late there, which made a batch of 64 of the
// batching benchmark's model take 9.2 ms instead of 8.2.
//
// Outputs are deterministic and cheap: every element of output row r is the
// sum of the elements of row r of the model's first input, converted to the
// output's datatype. A batcher that merges requests and splits the answer
// can therefore be checked row by row.
//
// sim is a benchmark tool, not a model: it never reads a model file, does no
// network I/O, starts no goroutine (but to end the wait of a run whose
// context is cancelled) and has no metrics (the model server that
// hosts it measures it).
package sim
