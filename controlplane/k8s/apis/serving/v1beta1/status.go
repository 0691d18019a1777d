package v1beta1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// InferenceServiceStatus is KServe's InferenceServiceStatus (Knative's duck
// Status inline, then the address, URL and per-component status), without
// the fields infergate never writes (modelStatus, deploymentMode, the
// serving runtime's names); the CRD keeps those when others write them.
type InferenceServiceStatus struct {
	// ObservedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are the latest observations of the InferenceService:
	// Ready (the whole) and PredictorReady among them.
	// +optional
	Conditions []Condition `json:"conditions,omitempty"`
	// Annotations are additional status information, as Knative's.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// URL is where the InferenceService is served
	// (http://NAME.NAMESPACE.svc... or the gateway's).
	// +optional
	URL string `json:"url,omitempty"`
	// Address is the in-cluster address of the InferenceService.
	// +optional
	Address *Addressable `json:"address,omitempty"`
	// Components holds the status of each component by name; infergate
	// writes only "predictor".
	// +optional
	Components map[ComponentType]ComponentStatusSpec `json:"components,omitempty"`
}

// ConditionType is the type of a condition.
type ConditionType string

// The conditions infergate reports, as KServe names them.
const (
	// ConditionReady is the InferenceService's readiness as a whole.
	ConditionReady ConditionType = "Ready"
	// ConditionPredictorReady is set when the predictor's latest revision
	// has ready replicas (or may scale from zero).
	ConditionPredictorReady ConditionType = "PredictorReady"
)

// Condition is Knative's apis.Condition, the condition type KServe reports.
type Condition struct {
	// Type of the condition.
	// +required
	Type ConditionType `json:"type"`
	// Status of the condition: True, False or Unknown.
	// +required
	// +kubebuilder:validation:Enum=True;False;Unknown
	Status metav1.ConditionStatus `json:"status"`
	// Severity of a condition that is not True: Error (the default when
	// empty), Warning or Info.
	// +optional
	Severity ConditionSeverity `json:"severity,omitempty"`
	// LastTransitionTime is when the condition last changed status.
	// +optional
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
	// Reason is a one-word CamelCase reason for the last transition.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message is a human-readable account of the last transition.
	// +optional
	Message string `json:"message,omitempty"`
}

// ConditionSeverity is Knative's condition severity.
type ConditionSeverity string

// The severities.
const (
	ConditionSeverityError   ConditionSeverity = ""
	ConditionSeverityWarning ConditionSeverity = "Warning"
	ConditionSeverityInfo    ConditionSeverity = "Info"
)

// Addressable is Knative's duck Addressable.
type Addressable struct {
	// Name of the address, if several.
	// +optional
	Name string `json:"name,omitempty"`
	// URL of the address.
	// +optional
	URL string `json:"url,omitempty"`
	// CACerts are the PEM certificates that sign the address's TLS
	// certificate.
	// +optional
	CACerts string `json:"CACerts,omitempty"`
	// Audience of the address's tokens.
	// +optional
	Audience string `json:"audience,omitempty"`
}

// ComponentType names a component of an InferenceService.
type ComponentType string

// PredictorComponent is the only component infergate serves.
const PredictorComponent ComponentType = "predictor"

// ComponentStatusSpec is the status of one component: its revisions and
// how traffic splits between them.
type ComponentStatusSpec struct {
	// LatestReadyRevision is the latest revision that is ready.
	// +optional
	LatestReadyRevision string `json:"latestReadyRevision,omitempty"`
	// LatestCreatedRevision is the latest revision created.
	// +optional
	LatestCreatedRevision string `json:"latestCreatedRevision,omitempty"`
	// PreviousRolledoutRevision is the revision that had all the traffic
	// before the latest rollout.
	// +optional
	PreviousRolledoutRevision string `json:"previousRolledoutRevision,omitempty"`
	// LatestRolledoutRevision is the latest revision that took all the
	// traffic.
	// +optional
	LatestRolledoutRevision string `json:"latestRolledoutRevision,omitempty"`
	// Traffic is the split between revisions: the latest (latestRevision
	// true) and, during a canary, the previous (tag prev).
	// +optional
	Traffic []TrafficTarget `json:"traffic,omitempty"`
	// URL is the component's primary URL.
	// +optional
	URL string `json:"url,omitempty"`
	// RestURL is the component's REST endpoint.
	// +optional
	RestURL string `json:"restUrl,omitempty"`
	// GrpcURL is the component's gRPC endpoint.
	// +optional
	GrpcURL string `json:"grpcUrl,omitempty"`
	// Address is the component's in-cluster address.
	// +optional
	Address *Addressable `json:"address,omitempty"`
}

// TrafficTarget is Knative's TrafficTarget: one revision's share.
type TrafficTarget struct {
	// Tag names the target ("prev", "latest").
	// +optional
	Tag string `json:"tag,omitempty"`
	// RevisionName is the revision ("iris-00002").
	// +optional
	RevisionName string `json:"revisionName,omitempty"`
	// ConfigurationName is Knative's; infergate leaves it empty.
	// +optional
	ConfigurationName string `json:"configurationName,omitempty"`
	// LatestRevision says the target is the latest revision.
	// +optional
	LatestRevision *bool `json:"latestRevision,omitempty"`
	// Percent of the traffic the revision takes.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent *int64 `json:"percent,omitempty"`
	// URL reaches the revision alone, when tagged.
	// +optional
	URL string `json:"url,omitempty"`
}
