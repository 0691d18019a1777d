//go:build k8s

// Package k8s holds infergate's tests against a real Kubernetes API server,
// `make test-k8s`: kube-apiserver and etcd, built from the Go module proxy
// by scripts/k8s-binaries.sh and cached outside the repository, run on
// 127.0.0.1 for the length of the package's tests.
//
// client-go's fake clientset is wrong exactly where the Kubernetes mode
// needs it (GetScale on Deployments panics, UpdateScale changes nothing,
// the dynamic fake accepts objects a schema would refuse), so these tests
// talk to the real thing. TestMain starts etcd and kube-apiserver by hand
// (envtest would bring controller-runtime into go.mod for what is about
// two hundred lines here), each in its own process group, and kills both
// when the tests end; it installs the committed CRDs of deploy/crds and
// waits until the API server reports them Established.
//
// No kubelet, scheduler or controller-manager runs: tests that need pods,
// EndpointSlices or Jobs to make progress play the kubelet themselves and
// say so.
//
// The binaries come from KUBEBUILDER_ASSETS, the directory that holds
// kube-apiserver and etcd (what scripts/k8s-binaries.sh prints). Without
// it the package fails at once and says how to get them. The files carry
// the build tag k8s, so `go test ./...` and `go vet ./...` in `make test`
// never build them; run one test with, for example,
//
//	KUBEBUILDER_ASSETS=$(scripts/k8s-binaries.sh) go test -tags k8s -run TestInferenceServiceSchema -v ./test/k8s
package k8s
