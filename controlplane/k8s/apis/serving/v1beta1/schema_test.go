package v1beta1_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	v1beta1 "github.com/infergate/infergate/controlplane/k8s/apis/serving/v1beta1"
)

// crdFile is the generated CRD of this package's type, relative to the
// package's directory.
const crdFile = moduleDir + "deploy/crds/serving.kserve.io_inferenceservices.yaml"

// crdSchema checks objects as the API server does when one is created
// through the CRD: strict field validation (kubectl's default: a field the
// schema does not know is an error), the OpenAPI schema, the list types
// and the CEL rules, in the API server's order. No API server runs: these
// are the API server's own packages, fed the generated CRD.
type crdSchema struct {
	crd        *apiextensions.CustomResourceDefinition
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
	cel        *cel.Validator
}

var (
	loadOnce  sync.Once
	loaded    *crdSchema
	loadError error
)

// loadCRD reads and compiles the generated CRD once per test binary.
func loadCRD(t *testing.T) *crdSchema {
	t.Helper()
	loadOnce.Do(func() { loaded, loadError = compileCRD(crdFile) })
	if loadError != nil {
		t.Fatal(loadError)
	}
	return loaded
}

func compileCRD(path string) (*crdSchema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v1crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &v1crd); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Defaulted and converted as the API server stores a CRD.
	scheme := runtime.NewScheme()
	install.Install(scheme)
	scheme.Default(&v1crd)
	crd := new(apiextensions.CustomResourceDefinition)
	if err := scheme.Convert(&v1crd, crd, nil); err != nil {
		return nil, fmt.Errorf("%s: convert: %w", path, err)
	}
	version := v1beta1.SchemeGroupVersion.Version
	v, err := apiextensions.GetSchemaForVersion(crd, version)
	if err != nil || v == nil || v.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("%s: no schema for version %s (%v)", path, version, err)
	}
	s, err := structuralschema.NewStructural(v.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("%s: not a structural schema: %w", path, err)
	}
	validator, _, err := validation.NewSchemaValidator(v.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("%s: schema validator: %w", path, err)
	}
	return &crdSchema{
		crd:        crd,
		structural: s,
		validator:  validator,
		cel:        cel.NewValidator(s, true, celconfig.PerCallLimit),
	}, nil
}

// validate returns what the API server would answer to creating obj, one
// message per problem, each naming its field; none when it would accept
// it. obj is modified (pruned), as the API server does before storing it.
func (c *crdSchema) validate(obj map[string]any) []string {
	var msgs []string
	gv := v1beta1.SchemeGroupVersion.String()
	if obj["apiVersion"] != gv || obj["kind"] != v1beta1.Kind {
		return []string{fmt.Sprintf("apiVersion/kind: %v/%v is not %s %s", obj["apiVersion"], obj["kind"], gv, v1beta1.Kind)}
	}

	// Decoding: with fieldValidation=Strict an unknown field is an error
	// (`unknown field "spec.x"`); with Ignore it is pruned silently.
	_, _, unknownMeta, err := objectmeta.GetObjectMetaWithOptions(obj, objectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		return []string{fmt.Sprintf("metadata: %v", err)}
	}
	unknown := append(unknownMeta, pruning.PruneWithOptions(obj, c.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	defaulting.PruneNonNullableNullsWithoutDefaults(obj, c.structural)
	ferr, unknownCoerced := objectmeta.CoerceWithOptions(nil, obj, c.structural, false, objectmeta.CoerceOptions{ReturnUnknownFieldPaths: true})
	if ferr != nil {
		return []string{ferr.Error()}
	}
	for _, p := range append(unknown, unknownCoerced...) {
		msgs = append(msgs, fmt.Sprintf("unknown field %q", p))
	}
	if len(msgs) > 0 {
		return msgs // the API server answers 400 before validating
	}

	// Validation (the custom resource strategy's Validate).
	errs := validation.ValidateCustomResource(nil, obj, c.validator)
	errs = append(errs, objectmeta.Validate(context.Background(), nil, obj, c.structural, false)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, c.structural, obj)...)
	if blocking(errs) {
		errs = append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid"))
	} else {
		celErrs, _ := c.cel.Validate(context.Background(), nil, c.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

// blocking reports errors after which the API server does not run the CEL
// rules (the custom resource strategy's hasBlockingErr).
func blocking(errs field.ErrorList) bool {
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true
		}
	}
	return false
}

// document is one non-empty YAML document of a file.
type document struct {
	// name is "FILE#N", N counting non-empty documents from 1, as
	// config.Model.Source.
	name string
	yaml []byte
	obj  map[string]any
}

// readDocuments splits a YAML stream into its non-empty documents, each
// decoded as the API server decodes a request body (integers as int64).
func readDocuments(name string, data []byte) ([]document, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		obj, err := decodeObject(doc)
		if err != nil {
			return nil, fmt.Errorf("%s#%d: %w", name, len(docs)+1, err)
		}
		if obj == nil {
			continue // only comments
		}
		docs = append(docs, document{name: fmt.Sprintf("%s#%d", name, len(docs)+1), yaml: doc, obj: obj})
	}
}

func decodeObject(doc []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// moduleDir is the module's root, relative to the package's directory.
const moduleDir = "../../../../../"

// inferenceServiceFiles returns the documents of kind InferenceService in
// the YAML files under dirs (recursively), named by their path in the
// module.
func inferenceServiceFiles(t *testing.T, dirs ...string) []document {
	t.Helper()
	var docs []document
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			all, err := readDocuments(strings.TrimPrefix(filepath.ToSlash(path), moduleDir), data)
			if err != nil {
				return err
			}
			for _, doc := range all {
				if doc.obj["kind"] == v1beta1.Kind {
					docs = append(docs, doc)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return docs
}
