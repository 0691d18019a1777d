// Package v1beta1 is KServe's InferenceService (serving.kserve.io/v1beta1)
// as a Kubernetes API type: the fields infergate supports, in KServe's
// shape and spelling, so that a manifest written for a KServe cluster
// applies unchanged to a cluster where only infergate's CRD is installed.
//
// # What it owns
//
// The Go types (InferenceService, InferenceServiceList and what they hold),
// their deep-copy functions (zz_generated.deepcopy.go) and, through the
// kubebuilder markers on them, the CustomResourceDefinition in
// deploy/crds/serving.kserve.io_inferenceservices.yaml. Both generated
// files come from `make generate` (controller-gen, pinned in the Makefile)
// and are committed; a test fails when either is out of date with the
// markers.
//
// The spec holds what package config reads from an InferenceService file,
// and nothing else: config's types.go is the list, config's validate.go the
// rules. The CRD's schema says in OpenAPI what config refuses wherever a
// schema can say it (minimums, maximums, enums, required fields, unique
// lists, and CEL rules for the cross-field checks), so the API server
// refuses on apply what `infergate serve` would refuse on load, with a
// message naming the field. What a schema cannot see is left to config
// when the control plane reads the object: rules that depend on
// annotations (storageUri may be omitted, and protocolVersion may be v1,
// only with infergate.io/endpoints), the storageUri's scheme, and the
// infergate.io/ annotations themselves.
//
// As in KServe's own CRD, the spec is strict (an unknown field is refused
// under kubectl's default strict field validation, and pruned under
// --validate=false) and the status keeps unknown fields, so a status
// written by other tools survives.
//
// The status is KServe's: conditions (Ready and PredictorReady among
// them), url, address, components.predictor with the traffic split by
// revision, and observedGeneration. kubectl shows the same columns as for
// KServe (URL, READY, PREV, LATEST, the two revisions, AGE).
//
// # What it never does
//
// It holds types and constants only: no client, no controller, no
// defaulting or validation code of its own (config is the one place that
// defaults and validates a declaration). It imports k8s.io/apimachinery and
// nothing of infergate; the data-plane packages never import it.
//
// +kubebuilder:object:generate=true
// +groupName=serving.kserve.io
package v1beta1
