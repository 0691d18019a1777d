package batcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/infergate/infergate/oip"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New to zero fields of Options.
const (
	DefaultMaxBatchSize = 32
	DefaultMaxQueueSize = 1024
)

// DispatchFunc sends one request upstream and returns the runtime's answer.
// The batcher calls it with a merged request (or, for a batch of one, the
// caller's own request unchanged) from a goroutine of its own, or, for a
// request that goes at once and alone, from its caller's goroutine in
// Submit; at most MaxBatchesInFlight at a time.
//
// ctx is derived from the context given to Run: it is cancelled when Run
// stops or when every caller in the batch has given up, and its deadline is
// the latest of the callers' deadlines when all of them have one. For a
// request its caller sends, ctx is derived from the caller's context
// instead, with its values and deadline, and is cancelled when Run stops
// too. The
// request is the batcher's: the function may read it until it returns and
// must not modify or retain it. The response becomes the batcher's: its
// output data is handed to the callers as sub-slices, so it must not be
// reused after the function returns. An error is passed unchanged to every
// caller in the batch, so it should carry an oip.Kind.
type DispatchFunc func(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error)

// TimeoutAction says what happens to a request whose queue timeout (see
// QueuePolicy) passes while it is still queued.
type TimeoutAction uint8

const (
	// TimeoutReject removes the request from the queue and answers it with
	// an *oip.Error of KindDeadlineExceeded.
	TimeoutReject TimeoutAction = iota
	// TimeoutDelay moves the request behind every request of every priority
	// level whose timeout has not passed, as Triton's DELAY does. It is
	// still served eventually, unless its context's deadline passes first.
	TimeoutDelay
)

func (a TimeoutAction) String() string {
	switch a {
	case TimeoutReject:
		return "reject"
	case TimeoutDelay:
		return "delay"
	}
	return fmt.Sprintf("TimeoutAction(%d)", uint8(a))
}

// QueuePolicy is Triton's queue policy: a timeout on the time a request may
// spend queued, separate from (and never longer than) its context's
// deadline, which always rejects.
type QueuePolicy struct {
	// TimeoutAction applies when a request's queue timeout passes.
	TimeoutAction TimeoutAction
	// DefaultTimeout is the queue timeout of every request; zero means
	// none.
	DefaultTimeout time.Duration
	// AllowTimeoutOverride lets a request's "timeout" parameter (Triton's,
	// in microseconds) set its queue timeout. As in Triton it may shorten
	// DefaultTimeout but not lengthen it, and with it false (the zero value)
	// the parameter is ignored.
	AllowTimeoutOverride bool
}

// OversizePolicy says what happens to a request whose own batch size (its
// dimension 0) exceeds MaxBatchSize.
type OversizePolicy uint8

const (
	// OversizeSendAlone queues the request like any other and sends it
	// upstream on its own, unmerged.
	OversizeSendAlone OversizePolicy = iota
	// OversizeReject answers the request at once with an *oip.Error of
	// KindInvalidArgument that names both sizes.
	OversizeReject
)

func (p OversizePolicy) String() string {
	switch p {
	case OversizeSendAlone:
		return "send alone"
	case OversizeReject:
		return "reject"
	}
	return fmt.Sprintf("OversizePolicy(%d)", uint8(p))
}

// Options configure a Batcher for one model. Every zero value has the
// documented default; New validates the rest and names any bad field.
type Options struct {
	// Model labels the metrics and names the model in errors and logs.
	Model string

	// MaxBatchSize is the most rows (the sum of dimension 0) a merged
	// request may carry (default DefaultMaxBatchSize).
	MaxBatchSize int64
	// PreferredBatchSizes are sizes, each at most MaxBatchSize, at which a
	// batch goes at once without waiting for MaxQueueDelay: when the queued
	// compatible requests cannot fill MaxBatchSize, the largest prefix of
	// them whose rows add up to a preferred size is sent. Order does not
	// matter.
	PreferredBatchSizes []int64
	// MaxQueueDelay is the longest a batch is held for more requests while
	// a batch slot is free, counted from when the slot became free or from
	// its oldest request's arrival, whichever is later. A batch is held
	// only while more requests are expected soon (see "When a batch goes"
	// in the package comment), and never longer than the service time
	// learned for its size (default 0: whatever is queued goes as soon as
	// a batch may be in flight, so batches form only while the runtime is
	// busy).
	MaxQueueDelay time.Duration
	// MaxQueueSize bounds the requests queued (not in flight) in all; a
	// request beyond it is answered at once with KindResourceExhausted
	// (default DefaultMaxQueueSize).
	MaxQueueSize int

	// PriorityLevels is the number of priority levels, 1 the highest, as in
	// Triton (default 1). A request's "priority" parameter picks its level;
	// 0 or a value outside [1, PriorityLevels] means DefaultPriority.
	PriorityLevels int
	// DefaultPriority is the level of requests that name none (default the
	// middle level, (PriorityLevels+1)/2).
	DefaultPriority int
	// DefaultQueuePolicy applies to every priority level.
	DefaultQueuePolicy QueuePolicy

	// PreserveOrdering delivers responses in the order their batches were
	// dispatched, holding back a batch that completes before an earlier
	// one, as Triton's preserve_ordering does.
	PreserveOrdering bool
	// MaxBatchesInFlight returns how many batches may be upstream at once;
	// it is read at every scheduling decision, so it can follow the number
	// of ready replicas. It is called with the batcher's lock held and must
	// be cheap and must not call the Batcher. Values below 1, and a nil
	// func (the default), mean 1. A rise is noticed at the next event
	// (arrival, completion or timer).
	MaxBatchesInFlight func() int
	// OversizePolicy applies to requests larger than MaxBatchSize on their
	// own (default OversizeSendAlone).
	OversizePolicy OversizePolicy

	// Dispatch is the upstream call (required).
	Dispatch DispatchFunc
	// Registerer receives the metrics described in the package comment
	// (default: none are registered). Batchers of different models may
	// share a Registerer: the collectors are shared and told apart by the
	// model label.
	Registerer prometheus.Registerer
	// Logger receives rare warnings, such as a runtime answering with the
	// wrong number of rows; nothing is logged per request (default
	// slog.Default()).
	Logger *slog.Logger
}

// Validate reports what New would refuse in o, without making anything.
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}

// withDefaults validates o and returns it with defaults applied and
// PreferredBatchSizes sorted, deduplicated and copied.
func (o Options) withDefaults() (Options, error) {
	if o.Dispatch == nil {
		return o, errors.New("batcher: Options.Dispatch is nil")
	}
	if o.MaxBatchSize == 0 {
		o.MaxBatchSize = DefaultMaxBatchSize
	}
	if o.MaxBatchSize < 0 {
		return o, fmt.Errorf("batcher: Options.MaxBatchSize %d is negative", o.MaxBatchSize)
	}
	pref := slices.Clone(o.PreferredBatchSizes)
	slices.Sort(pref)
	o.PreferredBatchSizes = slices.Compact(pref)
	for _, p := range o.PreferredBatchSizes {
		if p < 1 || p > o.MaxBatchSize {
			return o, fmt.Errorf("batcher: Options.PreferredBatchSizes has %d, outside [1, MaxBatchSize %d]", p, o.MaxBatchSize)
		}
	}
	if o.MaxQueueDelay < 0 {
		return o, fmt.Errorf("batcher: Options.MaxQueueDelay %s is negative", o.MaxQueueDelay)
	}
	if o.MaxQueueSize == 0 {
		o.MaxQueueSize = DefaultMaxQueueSize
	}
	if o.MaxQueueSize < 0 {
		return o, fmt.Errorf("batcher: Options.MaxQueueSize %d is negative", o.MaxQueueSize)
	}
	if o.PriorityLevels == 0 {
		o.PriorityLevels = 1
	}
	if o.PriorityLevels < 0 {
		return o, fmt.Errorf("batcher: Options.PriorityLevels %d is negative", o.PriorityLevels)
	}
	if o.DefaultPriority == 0 {
		o.DefaultPriority = (o.PriorityLevels + 1) / 2
	}
	if o.DefaultPriority < 1 || o.DefaultPriority > o.PriorityLevels {
		return o, fmt.Errorf("batcher: Options.DefaultPriority %d is outside [1, PriorityLevels %d]", o.DefaultPriority, o.PriorityLevels)
	}
	qp := o.DefaultQueuePolicy
	if qp.TimeoutAction > TimeoutDelay {
		return o, fmt.Errorf("batcher: Options.DefaultQueuePolicy.TimeoutAction %s is unknown", qp.TimeoutAction)
	}
	if qp.DefaultTimeout < 0 {
		return o, fmt.Errorf("batcher: Options.DefaultQueuePolicy.DefaultTimeout %s is negative", qp.DefaultTimeout)
	}
	if o.OversizePolicy > OversizeReject {
		return o, fmt.Errorf("batcher: Options.OversizePolicy %s is unknown", o.OversizePolicy)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
