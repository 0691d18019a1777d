package config

import "time"

// AnnotationEndpoints is the annotation that points a model at runtimes that
// already run elsewhere, as a comma-separated list of URLs:
//
//	infergate.io/endpoints: "http://127.0.0.1:8000, grpc://127.0.0.1:8001"
//
// http:// and https:// speak the Open Inference Protocol over REST, grpc://
// and grpcs:// over gRPC; https:// and grpcs:// over TLS, verified with the
// CA the gateway is given for runtimes. Each URL is scheme://host:port with
// nothing after the port. When the annotation is set infergate starts no
// runtime for the model and spec.predictor.model.storageUri is optional and
// not read.
const AnnotationEndpoints = "infergate.io/endpoints"

// annotationPrefix marks infergate's own annotations: an unknown one under
// this prefix is an error, so that a misspelt annotation is not ignored.
const annotationPrefix = "infergate.io/"

// knownAnnotations are the infergate.io/ annotations this package reads.
var knownAnnotations = map[string]bool{
	AnnotationEndpoints:      true,
	AnnotationCommand:        true,
	AnnotationPipeline:       true,
	AnnotationStickyReplicas: true,
	AnnotationIdempotent:     true,
	AnnotationRollout:        true,

	AnnotationMirrorPercent:  true,
	AnnotationMirrorRevision: true,

	AnnotationPayloadLog:       true,
	AnnotationPayloadLogMode:   true,
	AnnotationPayloadLogSample: true,
	AnnotationPayloadLogRedact: true,

	AnnotationRateLimit:   true,
	AnnotationRateBurst:   true,
	AnnotationMaxInFlight: true,
}

// The quota annotations bound the model's requests across all tenants
// (each tenant's own quotas apply as well); a request over them gets 429
// with Retry-After (gRPC RESOURCE_EXHAUSTED):
//
//	infergate.io/rate-limit: "200"   # requests per second (a token bucket)
//	infergate.io/rate-burst: "400"   # the bucket's size (default: one second's worth)
//	infergate.io/max-inflight: "64"  # requests admitted and not yet answered
const (
	AnnotationRateLimit   = "infergate.io/rate-limit"
	AnnotationRateBurst   = "infergate.io/rate-burst"
	AnnotationMaxInFlight = "infergate.io/max-inflight"
)

// The payload-log annotations turn on KServe-style logging of the model's
// inference requests and responses, and shape it:
//
//	infergate.io/payload-log: "http://127.0.0.1:8080/"   # the sink: an http(s) URL or a file path
//	infergate.io/payload-log-mode: "all"                # all (default), request or response
//	infergate.io/payload-log-sample: "0.1"              # 0 to 1 (default 1); "0.1/id" samples by request id
//	infergate.io/payload-log-redact: "parameters.user_id, inputs[name=ssn].data"
//
// config only accepts the names; package gateway/payloadlog reads and
// validates the values (payloadlog.ParseAnnotations, whose Annotation
// constants these equal) from Model.Annotations. They change no model
// behaviour, only what is logged.
const (
	AnnotationPayloadLog       = "infergate.io/payload-log"
	AnnotationPayloadLogMode   = "infergate.io/payload-log-mode"
	AnnotationPayloadLogSample = "infergate.io/payload-log-sample"
	AnnotationPayloadLogRedact = "infergate.io/payload-log-redact"
)

// AnnotationRollout declares a progressive rollout of the model's new
// revisions: a JSON object of steps (canary weight, minimum duration and
// requests per step) and gates (error rate, latency), as
//
//	infergate.io/rollout: '{"steps":[{"weight":10,"minDuration":"30s","minRequests":100}]}'
//
// config only accepts the name; package controlplane reads and validates
// the value (see controlplane.ParseRollout). It only steers traffic: a
// change to it makes no new revision.
const AnnotationRollout = "infergate.io/rollout"

// AnnotationMirrorPercent copies that share of the model's requests, a
// number in [0, 100] ("5", "0.5"), to the revision AnnotationMirrorRevision
// names; the mirror's answers are discarded. Read and validated by package
// controlplane; it makes no new revision.
const AnnotationMirrorPercent = "infergate.io/mirror-percent"

// AnnotationMirrorRevision names the revision AnnotationMirrorPercent
// copies to: a revision name ("iris-00003"), its number ("3") or a tag
// ("latest", the default, or "prev"). Read by package controlplane.
const AnnotationMirrorRevision = "infergate.io/mirror-revision"

// AnnotationPipeline, set to "true", has the gateway send requests to the
// model's REST runtimes over HTTP/1.1 pipelining with coalesced writes
// (fewer syscalls per request under load). Responses come back in order, so
// use it for runtimes whose latency varies little; see
// runtimes.RESTOptions.Pipeline.
const AnnotationPipeline = "infergate.io/pipeline"

// AnnotationIdempotent, set to "false", says that running an inference
// twice may do harm (a model with side effects): the gateway then retries
// a request on another replica only when it never reached a runtime
// (connection refused). By default models are idempotent, and a request
// that met a draining replica's 503 or a connection broken before an
// answer is retried too, within the retry budget and the deadline.
const AnnotationIdempotent = "infergate.io/idempotent"

// AnnotationStickyReplicas, set to "true", sends the requests of one
// session (the gateway's X-Session-Key header or infergate-session cookie)
// to the same replica of a revision, by consistent hashing with bounded
// load: for runtimes that keep per-session caches. Without it a request
// goes to the less loaded of two replicas.
const AnnotationStickyReplicas = "infergate.io/sticky-replicas"

// Defaults applied to a declaration that does not set the field. The batch
// size and call timeout are KServe's; maxLatency is not: KServe's 5000 ms
// would hold requests from fewer concurrent clients than maxBatchSize for
// five seconds, so a batch here waits at most 5 ms unless the manifest says
// otherwise.
const (
	DefaultMinReplicas  = 1
	DefaultTimeout      = 60 * time.Second
	DefaultScaleMetric  = MetricConcurrency
	DefaultProtocol     = "v2"
	DefaultMaxBatchSize = 32
	DefaultMaxLatency   = 5 * time.Millisecond
	DefaultBatchTimeout = 60 * time.Second
	// DefaultMaxQueueSize is batcher.maxQueueSize when not set.
	DefaultMaxQueueSize = 1024
	// DefaultPriorityLevels is batcher.priorityLevels when not set.
	DefaultPriorityLevels = 1
)

// MaxPriorityLevels bounds batcher.priorityLevels: the batcher keeps a queue
// per level.
const MaxPriorityLevels = 1000

// MaxTimeoutSeconds bounds spec.predictor.timeout and batcher.timeout.
const MaxTimeoutSeconds = 24 * 60 * 60

// BuiltinFormat is the model format the built-in runtime serves.
const BuiltinFormat = "onnx"

// Protocol is the transport of the Open Inference Protocol a runtime speaks.
type Protocol string

// The protocols.
const (
	ProtocolREST Protocol = "rest"
	ProtocolGRPC Protocol = "grpc"
	// ProtocolKServeV1 is KServe's v1 protocol (instances/predictions)
	// over HTTP, for runtimes at URLs declared with protocolVersion v1.
	ProtocolKServeV1 Protocol = "kserve-v1"
)

// Model is one validated, defaulted model declaration: what the rest of
// infergate consumes. Every field is set (defaults applied) except where its
// comment says otherwise. A Model is a value: Parse shares nothing between
// two Models, and callers must treat its maps and slices as read-only.
type Model struct {
	// Name is metadata.name; it is unique among the Models of one Parse or
	// LoadPath, whatever their namespaces, because the Open Inference
	// Protocol addresses a model by name alone.
	Name string
	// Namespace is metadata.namespace as written, "" when absent.
	Namespace string
	// Source names the declaration for messages: "FILE#N", N the 1-based
	// index of the document among the file's non-empty documents.
	Source string

	// Format and FormatVersion are spec.predictor.model.modelFormat;
	// FormatVersion is "" when absent.
	Format        string
	FormatVersion string
	// Path is the model file or directory the runtime loads, made absolute
	// against the directory of the YAML file when LoadPath read it (see
	// Parse for baseDir). It is "" when Endpoints or RegistryRef is set,
	// and when Command is set without a storageUri.
	Path string
	// RegistryRef is a storageUri in the registry:// scheme, as written
	// (registry://NAME, registry://NAME/N, registry://NAME@ALIAS or
	// registry://NAME@sha256:HEX): the control plane resolves it to a
	// model version and gives the runtime that version's files. Parse
	// checks only its shape; "" for other storageUris.
	RegistryRef string
	// Protocol is the transport the runtime started for this model speaks,
	// from spec.predictor.model.protocolVersion (v2 is REST, grpc-v2 gRPC).
	Protocol Protocol
	// Endpoints are the runtimes from the infergate.io/endpoints
	// annotation, in the order written; nil when infergate starts the
	// model's runtime.
	Endpoints []Endpoint
	// Idempotent is AnnotationIdempotent (default true).
	Idempotent bool
	// StickyReplicas is AnnotationStickyReplicas.
	StickyReplicas bool
	// RatePerSecond, Burst and MaxInFlight are the quota annotations
	// (AnnotationRateLimit, AnnotationRateBurst, AnnotationMaxInFlight);
	// 0: no bound.
	RatePerSecond      float64
	Burst, MaxInFlight int
	// Pipeline is AnnotationPipeline: pipeline requests to REST runtimes.
	Pipeline bool
	// Command is the runtime command from the infergate.io/command
	// annotation, split into words, each a text/template over
	// CommandFields (see AnnotationCommand); nil when the built-in runtime
	// serves the model, or Endpoints is set.
	Command []string

	// MinReplicas is at least 0 (0: scale to zero); MaxReplicas is 0 (no
	// limit) or at least MinReplicas.
	MinReplicas int
	MaxReplicas int
	// ScaleMetric is what the autoscaler watches; ScaleTarget its target
	// per replica, 0 when unset (the autoscaler's default applies).
	ScaleMetric ScaleMetric
	ScaleTarget int
	// Timeout bounds one request.
	Timeout time.Duration
	// ContainerConcurrency is the hard limit of requests in flight per
	// replica; 0 means no limit.
	ContainerConcurrency int64
	// CanaryTrafficPercent is nil when not set, else 0 to 100.
	CanaryTrafficPercent *int64
	// Batcher is nil when batching is off.
	Batcher *Batcher

	// Labels and Annotations are metadata's, nil when absent.
	Labels      map[string]string
	Annotations map[string]string

	// Spec is the document as written, before defaults.
	Spec InferenceService
}

// Endpoint is one runtime from the infergate.io/endpoints annotation.
type Endpoint struct {
	// URL is the URL as written, trimmed of spaces and of a trailing "/".
	URL string
	// Protocol is REST for http and https, gRPC for grpc and grpcs.
	Protocol Protocol
	// Address is host:port from the URL.
	Address string
	// TLS is set for https and grpcs: the runtime is reached over TLS.
	TLS bool
	// Pipeline is set from AnnotationPipeline for REST endpoints.
	Pipeline bool
}

// Batcher is spec.predictor.batcher with defaults applied.
type Batcher struct {
	// MaxBatchSize is the largest batch, in requests; at least 1.
	MaxBatchSize int
	// MaxLatency bounds how long a batch is held for more requests once a
	// replica is free; positive.
	MaxLatency time.Duration
	// Timeout bounds one batched call; positive.
	Timeout time.Duration

	// PreferredBatchSizes are sizes, each in [1, MaxBatchSize] and none
	// listed twice, at which a batch goes at once without waiting for
	// MaxLatency; in the order written, nil when not set.
	PreferredBatchSizes []int
	// MaxQueueSize bounds the requests queued (not in flight); one more is
	// answered with 429 / RESOURCE_EXHAUSTED. Positive; default
	// DefaultMaxQueueSize.
	MaxQueueSize int
	// PriorityLevels is the number of priority levels, 1 the highest; in
	// [1, MaxPriorityLevels], default 1.
	PriorityLevels int
	// DefaultPriority is the level of requests without a priority
	// parameter; in [1, PriorityLevels], default the middle level,
	// (PriorityLevels+1)/2.
	DefaultPriority int
	// QueuePolicy applies to every priority level.
	QueuePolicy QueuePolicy
	// PreserveOrdering answers batches in the order they were sent
	// (default false).
	PreserveOrdering bool
	// MaxBatchesInFlight is how many batches may be upstream at once; 0
	// (the default) means one per ready replica.
	MaxBatchesInFlight int
	// Oversize says what happens to a request larger than MaxBatchSize on
	// its own (default OversizeSendAlone).
	Oversize OversizePolicy
}

// QueuePolicy is batcher.queuePolicy with defaults applied.
type QueuePolicy struct {
	// TimeoutAction applies when a request's queue timeout passes (default
	// TimeoutReject).
	TimeoutAction TimeoutAction
	// DefaultTimeout is the queue timeout of every request; 0 (the
	// default) means none, so only the request's deadline applies.
	DefaultTimeout time.Duration
	// AllowTimeoutOverride lets a request's timeout parameter (Triton's,
	// in microseconds) shorten DefaultTimeout (default true).
	AllowTimeoutOverride bool
}

// TimeoutAction is batcher.queuePolicy.timeoutAction.
type TimeoutAction string

// The timeout actions, as Triton spells them.
const (
	// TimeoutReject answers a request whose queue timeout passed with 504 /
	// DEADLINE_EXCEEDED.
	TimeoutReject TimeoutAction = "REJECT"
	// TimeoutDelay moves it behind every request whose timeout has not
	// passed.
	TimeoutDelay TimeoutAction = "DELAY"
)

// OversizePolicy is batcher.oversize.
type OversizePolicy string

// The oversize policies.
const (
	// OversizeSendAlone sends a request larger than maxBatchSize alone.
	OversizeSendAlone OversizePolicy = "send-alone"
	// OversizeReject answers it with 400 / INVALID_ARGUMENT.
	OversizeReject OversizePolicy = "reject"
)
