// Package config reads model declarations written as KServe InferenceService
// manifests (apiVersion serving.kserve.io/v1beta1, kind InferenceService) and
// turns each into a Model: typed, defaulted and validated once, here at the
// edge, so that nothing downstream re-checks or re-defaults a field.
//
// # What it reads
//
// A file holds one or more documents separated by "---" lines; LoadPath also
// reads a directory's *.yaml and *.yml files (not recursively, in name
// order). Empty documents are skipped. A document of any other kind or
// apiVersion is an error. Each document declares one model in KServe's model
// form:
//
//	apiVersion: serving.kserve.io/v1beta1
//	kind: InferenceService
//	metadata:
//	  name: iris
//	spec:
//	  predictor:
//	    minReplicas: 0
//	    model:
//	      modelFormat:
//	        name: onnx
//	      storageUri: file://models/iris   # relative to this file
//
// The fields read are metadata's name, namespace, labels and annotations,
// and spec.predictor's model (modelFormat, storageUri, protocolVersion,
// runtime, runtimeVersion, args, env, resources), minReplicas, maxReplicas,
// scaleTarget, scaleMetric, containerConcurrency, timeout,
// canaryTrafficPercent, batcher and serviceAccountName. See the types in
// types.go for what each means and which are accepted only to be ignored.
//
// # Strictness
//
// Decoding is strict, as Kubernetes' is: a field infergate does not read is an
// error ("spec.predictor.logger: unknown field"), never silently dropped,
// and so is a duplicate key, a value of the wrong type ("minReplicas: one")
// and YAML 1.1's implicit conversions where a string is wanted
// (version: 1.10 is the number 1.1). Every error names the file, the
// document (1-based, counting non-empty documents), the field path and the
// bad value:
//
//	models/iris.yaml: document 2: spec.predictor.minReplicas: -1 is negative
//
// Parse and LoadPath report all the problems they find at once (up to 20),
// and return no Models when there is any.
//
// # Where the model runs
//
// By default infergate starts its built-in runtime, which serves onnx
// models from a local path: storageUri is file://PATH or a bare PATH,
// relative to the YAML file's directory unless absolute. Remote storage
// (s3://, gs://, pvc://, hf://, ...) is refused: fetch the model first.
// A model of another format, or one already served elsewhere, is pointed at
// its runtimes with the infergate.io/endpoints annotation (see
// AnnotationEndpoints); infergate then starts nothing for it and storageUri
// is not read. A model served by a runtime infergate should start, but not
// its own (Triton, MLServer, ...), names the runtime's command line with the
// infergate.io/command annotation (see AnnotationCommand): a text/template
// per word over CommandFields, checked here, expanded by the supervisor at
// each start of a replica.
//
// # What it never does
//
// config imports nothing else of infergate, does no I/O beyond reading the
// files LoadPath is given, starts no goroutine and has no metrics. It does
// not check that a model path exists (the runtime reports that when it
// loads the model), and it does not watch files: a caller that reloads calls
// LoadPath again and swaps the result in whole.
package config
