//go:build k8s

package k8s

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
)

// readCRDs decodes every CustomResourceDefinition in the YAML files of
// dir, strictly: a field the Go types do not know is an error.
func readCRDs(dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, file := range files {
		docs, err := readYAMLDocs(file)
		if err != nil {
			return nil, err
		}
		for i, doc := range docs {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				return nil, fmt.Errorf("%s: document %d is a %q, not a CustomResourceDefinition", file, i+1, crd.Kind)
			}
			out = append(out, &crd)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CustomResourceDefinition in %s", dir)
	}
	return out, nil
}

// readYAMLDocs returns the non-empty documents of a YAML file, as JSON.
func readYAMLDocs(file string) ([][]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
			continue
		}
		j, err := yaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		docs = append(docs, j)
	}
}

func isOnlyComments(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}

// installCRD creates crd and waits, by watching it, until the API server
// reports it Established (serving its resource); it returns the CRD as
// served then.
func installCRD(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) (*apiextensionsv1.CustomResourceDefinition, error) {
	if _, err := crds.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
		return nil, fmt.Errorf("create CRD %s: %w", crd.Name, err)
	}
	return waitEstablished(ctx, crd.Name)
}

// waitEstablished waits until the CRD named name has the condition
// Established True, reading it once and then watching it from that
// version, until ctx is done.
func waitEstablished(ctx context.Context, name string) (*apiextensionsv1.CustomResourceDefinition, error) {
	client := crds.ApiextensionsV1().CustomResourceDefinitions()
	for {
		got, err := client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get CRD %s: %w", name, err)
		}
		if established(got) {
			return got, nil
		}
		w, err := client.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: got.ResourceVersion,
		})
		if err != nil {
			return nil, fmt.Errorf("watch CRD %s: %w", name, err)
		}
		got, err = watchUntilEstablished(ctx, w)
		w.Stop()
		if err != nil {
			return nil, fmt.Errorf("CRD %s not Established: %w", name, err)
		}
		if got != nil {
			return got, nil
		}
		// The watch closed (the server ends watches now and then): read again.
	}
}

func watchUntilEstablished(ctx context.Context, w watch.Interface) (*apiextensionsv1.CustomResourceDefinition, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, nil
			}
			if ev.Type == watch.Error {
				return nil, fmt.Errorf("watch error: %v", ev.Object)
			}
			crd, isCRD := ev.Object.(*apiextensionsv1.CustomResourceDefinition)
			if isCRD && established(crd) {
				return crd, nil
			}
		}
	}
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// readObject reads the one object of a YAML file into an unstructured
// object.
func readObject(file string) (*unstructured.Unstructured, error) {
	docs, err := readYAMLDocs(file)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 {
		return nil, fmt.Errorf("%s: %d documents, want 1", file, len(docs))
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(docs[0]); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return u, nil
}
