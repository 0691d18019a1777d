package v1beta1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InferenceService is a model to serve, as KServe declares it.
//
// kubectl shows KServe's columns for it. Its name follows KServe's rule
// for InferenceService names (a lowercase letter first), within 63
// characters as config requires: it becomes part of revision, Deployment
// and Service names.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=inferenceservices,singular=inferenceservice,shortName=isvc
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="URL",type="string",JSONPath=".status.url"
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].status"
// +kubebuilder:printcolumn:name="Prev",type="integer",JSONPath=".status.components.predictor.traffic[?(@.tag=='prev')].percent"
// +kubebuilder:printcolumn:name="Latest",type="integer",JSONPath=".status.components.predictor.traffic[?(@.latestRevision==true)].percent"
// +kubebuilder:printcolumn:name="PrevRolledoutRevision",type="string",JSONPath=".status.components.predictor.traffic[?(@.tag=='prev')].revisionName"
// +kubebuilder:printcolumn:name="LatestReadyRevision",type="string",JSONPath=".status.components.predictor.traffic[?(@.latestRevision==true)].revisionName"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be no more than 63 characters"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit"
type InferenceService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the model to serve and how.
	// +required
	Spec InferenceServiceSpec `json:"spec"`

	// Status is what the control plane observed; it keeps fields it does
	// not know, as KServe's does.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	Status InferenceServiceStatus `json:"status,omitempty"`
}

// InferenceServiceList is a list of InferenceServices.
//
// +kubebuilder:object:root=true
type InferenceServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InferenceService `json:"items"`
}

// InferenceServiceSpec holds the predictor; KServe's transformer and
// explainer are not supported.
type InferenceServiceSpec struct {
	// Predictor is the model server.
	// +required
	Predictor PredictorSpec `json:"predictor"`
}

// PredictorSpec is KServe's PredictorSpec in its model form
// (spec.predictor.model), with the fields of its inline
// ComponentExtensionSpec and PodSpec that infergate reads.
//
// +kubebuilder:validation:XValidation:rule="!has(self.maxReplicas) || self.maxReplicas == 0 || self.maxReplicas >= (has(self.minReplicas) ? self.minReplicas : 1)",message="must be 0 (no limit) or at least minReplicas (default 1)",fieldPath=".maxReplicas"
type PredictorSpec struct {
	// Model is the model to serve.
	// +required
	Model *ModelSpec `json:"model,omitempty"`

	// MinReplicas defaults to 1; 0 enables scale to zero.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinReplicas *int `json:"minReplicas,omitempty"`
	// MaxReplicas bounds the replicas; 0 (the default) means no limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxReplicas int `json:"maxReplicas,omitempty"`
	// ScaleTarget is the target value of ScaleMetric per replica.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ScaleTarget *int `json:"scaleTarget,omitempty"`
	// ScaleMetric is the metric the autoscaler watches (default
	// concurrency).
	// +optional
	ScaleMetric *ScaleMetric `json:"scaleMetric,omitempty"`
	// ContainerConcurrency is the hard limit of requests in flight per
	// replica; 0 means no limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ContainerConcurrency *int64 `json:"containerConcurrency,omitempty"`
	// TimeoutSeconds is the request timeout in seconds (default 60, at most
	// 24 hours).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	TimeoutSeconds *int64 `json:"timeout,omitempty"`
	// CanaryTrafficPercent is the share of traffic that goes to the latest
	// revision while the previous one takes the rest.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	CanaryTrafficPercent *int64 `json:"canaryTrafficPercent,omitempty"`
	// Batcher enables server-side batching.
	// +optional
	Batcher *Batcher `json:"batcher,omitempty"`

	// ServiceAccountName is the runtime pods' service account (from
	// KServe's inline PodSpec).
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// ScaleMetric is the metric the autoscaler watches.
//
// +kubebuilder:validation:Enum=cpu;memory;concurrency;rps
type ScaleMetric string

// The scale metrics KServe defines.
const (
	MetricConcurrency ScaleMetric = "concurrency"
	MetricRPS         ScaleMetric = "rps"
	MetricCPU         ScaleMetric = "cpu"
	MetricMemory      ScaleMetric = "memory"
)

// ModelSpec is KServe's ModelSpec with the fields of its inline
// PredictorExtensionSpec and corev1.Container that infergate reads.
type ModelSpec struct {
	// ModelFormat is the format of the model's files.
	// +required
	ModelFormat ModelFormat `json:"modelFormat"`
	// Runtime names a KServe ServingRuntime.
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// StorageURI locates the model: a path, file://PATH or
	// registry://NAME[/VERSION|@ALIAS|@sha256:DIGEST].
	// +optional
	StorageURI string `json:"storageUri,omitempty"`
	// RuntimeVersion is the version of the runtime.
	// +optional
	RuntimeVersion string `json:"runtimeVersion,omitempty"`
	// ProtocolVersion is v2 (the default) or grpc-v2, or v1 for a runtime
	// at a URL (annotation infergate.io/endpoints).
	// +optional
	// +kubebuilder:validation:Enum="";v1;v2;grpc-v2
	ProtocolVersion string `json:"protocolVersion,omitempty"`

	// Args are the runtime container's arguments.
	// +optional
	Args []string `json:"args,omitempty"`
	// Env is added to the runtime's environment.
	// +optional
	Env []EnvVar `json:"env,omitempty"`
	// Resources are the runtime container's requests and limits.
	// +optional
	Resources *ResourceRequirements `json:"resources,omitempty"`
}

// ModelFormat names the format of the model's files.
type ModelFormat struct {
	// Name is the format ("onnx", "sklearn", ...).
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Version is the format's version.
	// +optional
	Version string `json:"version,omitempty"`
}

// EnvVar is an environment variable with a literal value; corev1's
// valueFrom is not supported.
type EnvVar struct {
	// Name is the variable's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Value is the variable's value.
	// +optional
	Value string `json:"value,omitempty"`
}

// ResourceRequirements is corev1.ResourceRequirements without claims.
type ResourceRequirements struct {
	// Limits are the most the runtime container may use.
	// +optional
	Limits map[string]resource.Quantity `json:"limits,omitempty"`
	// Requests are what the runtime container is scheduled with.
	// +optional
	Requests map[string]resource.Quantity `json:"requests,omitempty"`
}

// Batcher is KServe's Batcher, with infergate's fields after Triton's
// dynamic batcher; see package config's Batcher for their meaning and
// defaults.
//
// +kubebuilder:validation:XValidation:rule="!has(self.preferredBatchSizes) || self.preferredBatchSizes.all(n, n <= (has(self.maxBatchSize) ? self.maxBatchSize : 32))",message="each must be at most maxBatchSize (default 32)",fieldPath=".preferredBatchSizes"
// +kubebuilder:validation:XValidation:rule="!has(self.defaultPriority) || self.defaultPriority <= (has(self.priorityLevels) ? self.priorityLevels : 1)",message="must be between 1 and priorityLevels (default 1)",fieldPath=".defaultPriority"
type Batcher struct {
	// MaxBatchSize is the largest batch, in requests (default 32).
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxBatchSize *int `json:"maxBatchSize,omitempty"`
	// MaxLatency bounds, in milliseconds, how long a batch is held for more
	// requests once a replica is free (default 5).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400000
	MaxLatency *int `json:"maxLatency,omitempty"`
	// Timeout is the timeout, in seconds, of a batched call (default 60).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	Timeout *int `json:"timeout,omitempty"`

	// PreferredBatchSizes are sizes at which a batch goes without waiting.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:Minimum=1
	PreferredBatchSizes []int `json:"preferredBatchSizes,omitempty"`
	// MaxQueueSize bounds the requests queued (default 1024).
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxQueueSize *int `json:"maxQueueSize,omitempty"`
	// PriorityLevels is the number of priority levels, 1 the highest
	// (default 1).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	PriorityLevels *int `json:"priorityLevels,omitempty"`
	// DefaultPriority is the level of requests that name none (default the
	// middle level).
	// +optional
	// +kubebuilder:validation:Minimum=1
	DefaultPriority *int `json:"defaultPriority,omitempty"`
	// QueuePolicy is Triton's default queue policy.
	// +optional
	QueuePolicy *QueuePolicy `json:"queuePolicy,omitempty"`
	// PreserveOrdering answers batches in the order they were sent.
	// +optional
	PreserveOrdering *bool `json:"preserveOrdering,omitempty"`
	// MaxBatchesInFlight bounds the batches upstream at once; 0 (the
	// default) means one per ready replica.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxBatchesInFlight *int `json:"maxBatchesInFlight,omitempty"`
	// Oversize says what happens to a request larger than maxBatchSize on
	// its own (default send-alone).
	// +optional
	// +kubebuilder:validation:Enum=send-alone;reject
	Oversize *string `json:"oversize,omitempty"`
}

// QueuePolicy is Triton's ModelQueuePolicy.
type QueuePolicy struct {
	// TimeoutAction applies when a request's queue timeout passes (default
	// REJECT).
	// +optional
	// +kubebuilder:validation:Enum=REJECT;DELAY
	TimeoutAction *string `json:"timeoutAction,omitempty"`
	// DefaultTimeoutMicroseconds is the queue timeout of every request; 0
	// (the default) means none.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400000000
	DefaultTimeoutMicroseconds *int64 `json:"defaultTimeoutMicroseconds,omitempty"`
	// AllowTimeoutOverride lets a request's timeout parameter shorten it
	// (default true).
	// +optional
	AllowTimeoutOverride *bool `json:"allowTimeoutOverride,omitempty"`
}
