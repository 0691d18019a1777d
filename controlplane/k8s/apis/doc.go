// Package apis holds the Kubernetes API types of infergate's Kubernetes
// mode, one package per group and version under it: serving/v1beta1 is
// KServe's InferenceService (serving.kserve.io/v1beta1).
//
// The types carry kubebuilder markers; `make generate` runs controller-gen
// (the version the Makefile pins, from the Go module proxy) over every
// package here and writes their deep-copy code beside them and their
// CustomResourceDefinitions to deploy/crds. The generated files are
// committed, and this package's test fails when they differ from what
// `make generate` writes now: after changing a type or a marker, run it
// and commit what it changed.
//
// The packages here hold types and constants only, import
// k8s.io/apimachinery and nothing of infergate, and are imported by the
// control plane alone, never by the data plane.
package apis
