package config

import (
	"encoding/json"
	"fmt"
)

// The types below mirror the subset of KServe's serving.kserve.io/v1beta1
// InferenceService that infergate reads. Field names and JSON/YAML tags are
// KServe's, so a manifest written for a cluster decodes here unchanged; a
// field KServe has and infergate does not read is absent, and decoding a
// manifest that sets it fails with "unknown field" rather than ignoring it.
//
// KServe embeds corev1.Container and corev1.PodSpec inline; infergate flattens
// the few fields of theirs it accepts into ModelSpec and PredictorSpec.

// APIVersion and Kind are the only apiVersion and kind infergate reads.
const (
	APIVersion = "serving.kserve.io/v1beta1"
	Kind       = "InferenceService"
)

// InferenceService is one decoded document, before defaults. It keeps the
// document as written: Parse fills defaults into Model, never into this.
type InferenceService struct {
	APIVersion string               `json:"apiVersion"`
	Kind       string               `json:"kind"`
	Metadata   ObjectMeta           `json:"metadata"`
	Spec       InferenceServiceSpec `json:"spec"`
}

// ObjectMeta is the part of Kubernetes' metadata a declaration may carry.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// InferenceServiceSpec holds the predictor; KServe's transformer and explainer
// are not supported.
type InferenceServiceSpec struct {
	Predictor PredictorSpec `json:"predictor"`
}

// PredictorSpec is KServe's PredictorSpec with its inline
// ComponentExtensionSpec, restricted to the model form (spec.predictor.model)
// rather than the per-framework forms (spec.predictor.sklearn, ...).
type PredictorSpec struct {
	// Model is the model to serve. Required.
	Model *ModelSpec `json:"model,omitempty"`

	// MinReplicas defaults to 1; 0 enables scale to zero.
	MinReplicas *int `json:"minReplicas,omitempty"`
	// MaxReplicas of 0 means no limit.
	MaxReplicas int `json:"maxReplicas,omitempty"`
	// ScaleTarget is the target value of ScaleMetric per replica.
	ScaleTarget *int `json:"scaleTarget,omitempty"`
	// ScaleMetric is concurrency (the default), rps, cpu or memory.
	ScaleMetric *ScaleMetric `json:"scaleMetric,omitempty"`
	// ContainerConcurrency is the hard limit of requests in flight per
	// replica; 0 means no limit.
	ContainerConcurrency *int64 `json:"containerConcurrency,omitempty"`
	// TimeoutSeconds is the request timeout in seconds (default 60).
	TimeoutSeconds *int64 `json:"timeout,omitempty"`
	// CanaryTrafficPercent is the share of traffic, 0 to 100, that goes to
	// the latest revision while the previous one takes the rest.
	CanaryTrafficPercent *int64 `json:"canaryTrafficPercent,omitempty"`
	// Batcher enables server-side batching.
	Batcher *BatcherSpec `json:"batcher,omitempty"`

	// ServiceAccountName comes from the inline PodSpec. It is accepted so
	// cluster manifests decode, and ignored: a local process has no service
	// account.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// ScaleMetric is the metric the autoscaler watches.
type ScaleMetric string

// The scale metrics KServe defines.
const (
	MetricConcurrency ScaleMetric = "concurrency"
	MetricRPS         ScaleMetric = "rps"
	MetricCPU         ScaleMetric = "cpu"
	MetricMemory      ScaleMetric = "memory"
)

// BatcherSpec is KServe's Batcher as written; Model.Batcher holds it with
// defaults applied.
type BatcherSpec struct {
	// MaxBatchSize is the largest batch, in requests.
	MaxBatchSize *int `json:"maxBatchSize,omitempty"`
	// MaxLatency bounds, in milliseconds, how long a batch is held for more
	// requests once a replica is free.
	MaxLatency *int `json:"maxLatency,omitempty"`
	// Timeout is the timeout, in seconds, of a batched call.
	Timeout *int `json:"timeout,omitempty"`

	// The fields below are infergate's, after Triton's dynamic batcher;
	// see Batcher for their meaning and defaults.

	// PreferredBatchSizes are sizes at which a batch goes without waiting.
	PreferredBatchSizes []int `json:"preferredBatchSizes,omitempty"`
	// MaxQueueSize bounds the requests queued.
	MaxQueueSize *int `json:"maxQueueSize,omitempty"`
	// PriorityLevels is the number of priority levels, 1 the highest.
	PriorityLevels *int `json:"priorityLevels,omitempty"`
	// DefaultPriority is the level of requests that name none.
	DefaultPriority *int `json:"defaultPriority,omitempty"`
	// QueuePolicy is Triton's default queue policy.
	QueuePolicy *QueuePolicySpec `json:"queuePolicy,omitempty"`
	// PreserveOrdering answers batches in the order they were sent.
	PreserveOrdering *bool `json:"preserveOrdering,omitempty"`
	// MaxBatchesInFlight bounds the batches upstream at once; 0 means one
	// per ready replica.
	MaxBatchesInFlight *int `json:"maxBatchesInFlight,omitempty"`
	// Oversize is send-alone or reject.
	Oversize *string `json:"oversize,omitempty"`
}

// QueuePolicySpec is Triton's ModelQueuePolicy as written.
type QueuePolicySpec struct {
	// TimeoutAction is REJECT or DELAY.
	TimeoutAction *string `json:"timeoutAction,omitempty"`
	// DefaultTimeoutMicroseconds is the queue timeout of every request;
	// 0 means none.
	DefaultTimeoutMicroseconds *int64 `json:"defaultTimeoutMicroseconds,omitempty"`
	// AllowTimeoutOverride lets a request's timeout parameter shorten it.
	AllowTimeoutOverride *bool `json:"allowTimeoutOverride,omitempty"`
}

// ModelSpec is KServe's ModelSpec with the fields of its inline
// PredictorExtensionSpec and corev1.Container that infergate accepts.
type ModelSpec struct {
	ModelFormat ModelFormat `json:"modelFormat"`
	// Runtime names a KServe ServingRuntime; it is kept but has no effect.
	Runtime string `json:"runtime,omitempty"`
	// StorageURI locates the model: file://PATH or a bare PATH. Optional
	// when the infergate.io/endpoints annotation is set.
	StorageURI     string `json:"storageUri,omitempty"`
	RuntimeVersion string `json:"runtimeVersion,omitempty"`
	// ProtocolVersion is v2 (the default) or grpc-v2.
	ProtocolVersion string `json:"protocolVersion,omitempty"`

	// Args is accepted so cluster manifests decode, and ignored: the
	// built-in runtime takes no arguments of a cluster's runtime, and an
	// infergate.io/command annotation holds its whole command line.
	Args []string `json:"args,omitempty"`
	// Env is added to the environment of each runtime process infergate
	// starts for the model; unused with infergate.io/endpoints.
	Env []EnvVar `json:"env,omitempty"`
	// Resources is accepted so cluster manifests decode, and ignored: CPU and
	// memory requests and limits describe pod scheduling, which means nothing
	// on one machine.
	Resources *ResourceRequirements `json:"resources,omitempty"`
}

// ModelFormat names the format of the model's files.
type ModelFormat struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// EnvVar is an environment variable with a literal value; corev1's valueFrom
// (secrets, config maps) has no meaning outside a cluster.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// ResourceRequirements is corev1.ResourceRequirements with quantities kept as
// written. See ModelSpec.Resources.
type ResourceRequirements struct {
	Limits   map[string]Quantity `json:"limits,omitempty"`
	Requests map[string]Quantity `json:"requests,omitempty"`
}

// Quantity is a Kubernetes resource quantity kept as text ("500m", "2Gi",
// "1"). YAML writes small quantities as numbers (cpu: 1), so a number is
// accepted too.
type Quantity string

// UnmarshalJSON accepts a JSON string or number.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*q = Quantity(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("quantity: want a string or a number, got %s", b)
	}
	*q = Quantity(n.String())
	return nil
}
