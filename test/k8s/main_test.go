//go:build k8s

package k8s

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// The cluster the tests of this package share, and its clients. TestMain
// sets them before any test runs.
var (
	testCluster *cluster
	kube        kubernetes.Interface
	crds        apiextensionsclient.Interface
	dyn         dynamic.Interface
	// installedCRDs are the CRDs of deploy/crds as the API server serves
	// them, by name, once Established.
	installedCRDs map[string]*apiextensionsv1.CustomResourceDefinition
)

// testNamespace holds the objects the tests make.
const testNamespace = "infergate-test"

// crdDir holds the CRDs to install: the committed ones, relative to this
// package, unless -crds names another directory (to see which tests fail
// with a CRD changed by hand).
var crdDir = flag.String("crds", "../../deploy/crds", "directory of the CRDs to install")

// setupTimeout bounds the whole setup: starting both processes and
// installing the CRDs.
const setupTimeout = 4 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		fmt.Fprintln(os.Stderr, "test/k8s: KUBEBUILDER_ASSETS must name the directory that holds kube-apiserver and etcd: run `make test-k8s`, or\n\tKUBEBUILDER_ASSETS=$(scripts/k8s-binaries.sh) go test -tags k8s ./test/k8s/...")
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	start := time.Now()
	c, err := startCluster(ctx, assets)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/k8s: starting etcd and kube-apiserver from %s: %v\n", assets, err)
		return 1
	}
	defer c.Stop()
	testCluster = c
	fmt.Fprintf(os.Stderr, "test/k8s: etcd and kube-apiserver ready at %s in %s\n", c.config.Host, time.Since(start).Round(time.Millisecond))

	if err := setupClients(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "test/k8s: %v\n", err)
		return 1
	}
	return m.Run()
}

// setupClients makes the clients, the test namespace, and installs the
// CRDs of deploy/crds.
func setupClients(ctx context.Context) error {
	var err error
	if kube, err = kubernetes.NewForConfig(testCluster.config); err != nil {
		return err
	}
	if crds, err = apiextensionsclient.NewForConfig(testCluster.config); err != nil {
		return err
	}
	if dyn, err = dynamic.NewForConfig(testCluster.config); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", testNamespace, err)
	}
	committed, err := readCRDs(*crdDir)
	if err != nil {
		return err
	}
	installedCRDs = map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, crd := range committed {
		served, err := installCRD(ctx, crd)
		if err != nil {
			return err
		}
		installedCRDs[served.Name] = served
	}
	return nil
}
