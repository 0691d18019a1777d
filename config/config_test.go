package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/infergate/infergate/config"
)

// ignoreSpec leaves the raw document out of comparisons that are about the
// defaulted Model; TestParseFile compares it once in full.
var ignoreSpec = cmpopts.IgnoreFields(config.Model{}, "Spec")

// doc builds a one-model document from flow-style fragments: meta and model
// are the bodies of metadata and spec.predictor.model, pred is inserted in
// spec.predictor before model and must end with a comma when not empty.
func doc(meta, pred, model string) string {
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {%s}
spec:
  predictor: {%s model: {%s}}
`, meta, pred, model)
}

const (
	irisMeta  = "name: iris"
	onnxModel = "modelFormat: {name: onnx}, storageUri: iris.onnx"
)

func ptr[T any](v T) *T { return &v }

// defaults is the Model that doc(irisMeta, "", onnxModel) yields from
// source m.yaml with base directory /base.
func defaults() config.Model {
	return config.Model{
		Name:        "iris",
		Source:      "m.yaml#1",
		Format:      "onnx",
		Path:        "/base/iris.onnx",
		Protocol:    config.ProtocolREST,
		MinReplicas: 1,
		ScaleMetric: config.MetricConcurrency,
		Timeout:     60 * time.Second,
		Idempotent:  true,
	}
}

// batcherWith is a Batcher with KServe's three fields set and every other
// field defaulted.
func batcherWith(size int, latency, timeout time.Duration) *config.Batcher {
	return &config.Batcher{
		MaxBatchSize:    size,
		MaxLatency:      latency,
		Timeout:         timeout,
		MaxQueueSize:    1024,
		PriorityLevels:  1,
		DefaultPriority: 1,
		QueuePolicy:     config.QueuePolicy{TimeoutAction: config.TimeoutReject, AllowTimeoutOverride: true},
		Oversize:        config.OversizeSendAlone,
	}
}

func TestParseValid(t *testing.T) {
	with := func(f func(m *config.Model)) config.Model {
		m := defaults()
		f(&m)
		return m
	}
	tests := []struct {
		name string
		yaml string
		want []config.Model
	}{
		{
			name: "every default",
			yaml: doc(irisMeta, "", onnxModel),
			want: []config.Model{defaults()},
		},
		{
			name: "batcher defaults",
			yaml: doc(irisMeta, "batcher: {},", onnxModel),
			want: []config.Model{with(func(m *config.Model) {
				m.Batcher = batcherWith(32, 5*time.Millisecond, 60*time.Second)
			})},
		},
		{
			name: "batcher with Triton's fields",
			yaml: doc(irisMeta, "batcher: {maxBatchSize: 64, preferredBatchSizes: [32, 8], maxQueueSize: 100, priorityLevels: 4, defaultPriority: 4, "+
				"queuePolicy: {timeoutAction: DELAY, defaultTimeoutMicroseconds: 2500, allowTimeoutOverride: false}, preserveOrdering: true, maxBatchesInFlight: 3, oversize: reject},", onnxModel),
			want: []config.Model{with(func(m *config.Model) {
				b := batcherWith(64, 5*time.Millisecond, 60*time.Second)
				b.PreferredBatchSizes = []int{32, 8}
				b.MaxQueueSize = 100
				b.PriorityLevels, b.DefaultPriority = 4, 4
				b.QueuePolicy = config.QueuePolicy{TimeoutAction: config.TimeoutDelay, DefaultTimeout: 2500 * time.Microsecond}
				b.PreserveOrdering = true
				b.MaxBatchesInFlight = 3
				b.Oversize = config.OversizeReject
				m.Batcher = b
			})},
		},
		{
			name: "batcher default priority is the middle level",
			yaml: doc(irisMeta, "batcher: {priorityLevels: 5, queuePolicy: {}, maxBatchesInFlight: 0, oversize: send-alone},", onnxModel),
			want: []config.Model{with(func(m *config.Model) {
				b := batcherWith(32, 5*time.Millisecond, 60*time.Second)
				b.PriorityLevels, b.DefaultPriority = 5, 3
				m.Batcher = b
			})},
		},
		{
			name: "null batcher is no batcher",
			yaml: doc(irisMeta, "batcher: null,", onnxModel),
			want: []config.Model{defaults()},
		},
		{
			name: "scale to zero",
			yaml: doc(irisMeta, "minReplicas: 0,", onnxModel),
			want: []config.Model{with(func(m *config.Model) { m.MinReplicas = 0 })},
		},
		{
			name: "maxReplicas equal to minReplicas",
			yaml: doc(irisMeta, "minReplicas: 3, maxReplicas: 3,", onnxModel),
			want: []config.Model{with(func(m *config.Model) { m.MinReplicas, m.MaxReplicas = 3, 3 })},
		},
		{
			name: "canary 0 and 100 are set",
			yaml: doc(irisMeta, "canaryTrafficPercent: 0,", onnxModel) + "---\n" +
				doc("name: iris2", "canaryTrafficPercent: 100,", onnxModel),
			want: []config.Model{
				with(func(m *config.Model) { m.CanaryTrafficPercent = ptr[int64](0) }),
				with(func(m *config.Model) { m.Name, m.Source, m.CanaryTrafficPercent = "iris2", "m.yaml#2", ptr[int64](100) }),
			},
		},
		{
			name: "file URI relative",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'file://models/iris'"),
			want: []config.Model{with(func(m *config.Model) { m.Path = "/base/models/iris" })},
		},
		{
			name: "file URI absolute",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'file:///srv/iris/'"),
			want: []config.Model{with(func(m *config.Model) { m.Path = "/srv/iris" })},
		},
		{
			name: "bare path cleaned",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: ./a/../iris.onnx"),
			want: []config.Model{with(func(m *config.Model) { m.Path = "/base/iris.onnx" })},
		},
		{
			name: "grpc-v2 built-in runtime",
			yaml: doc(irisMeta, "", onnxModel+", protocolVersion: grpc-v2"),
			want: []config.Model{with(func(m *config.Model) { m.Protocol = config.ProtocolGRPC })},
		},
		{
			name: "endpoints annotation",
			yaml: doc(`name: iris, annotations: {infergate.io/endpoints: " http://127.0.0.1:8000/ ,grpc://localhost:8001, https://[::1]:8443, grpcs://rt.example:9443,"}`,
				"", "modelFormat: {name: xgboost}"),
			want: []config.Model{with(func(m *config.Model) {
				m.Format, m.Path = "xgboost", ""
				m.Endpoints = []config.Endpoint{
					{URL: "http://127.0.0.1:8000", Protocol: config.ProtocolREST, Address: "127.0.0.1:8000"},
					{URL: "grpc://localhost:8001", Protocol: config.ProtocolGRPC, Address: "localhost:8001"},
					{URL: "https://[::1]:8443", Protocol: config.ProtocolREST, Address: "[::1]:8443", TLS: true},
					{URL: "grpcs://rt.example:9443", Protocol: config.ProtocolGRPC, Address: "rt.example:9443", TLS: true},
				}
				m.Annotations = map[string]string{config.AnnotationEndpoints: " http://127.0.0.1:8000/ ,grpc://localhost:8001, https://[::1]:8443, grpcs://rt.example:9443,"}
			})},
		},
		{
			name: "endpoints make remote storageUri harmless",
			yaml: doc(`name: iris, annotations: {infergate.io/endpoints: "grpc://10.0.0.1:9000"}`,
				"", "modelFormat: {name: sklearn}, storageUri: s3://bucket/iris"),
			want: []config.Model{with(func(m *config.Model) {
				m.Format, m.Path = "sklearn", ""
				m.Endpoints = []config.Endpoint{{URL: "grpc://10.0.0.1:9000", Protocol: config.ProtocolGRPC, Address: "10.0.0.1:9000"}}
				m.Annotations = map[string]string{config.AnnotationEndpoints: "grpc://10.0.0.1:9000"}
			})},
		},
		{
			name: "payload-log annotations kept for the gateway",
			yaml: doc(`name: iris, annotations: {infergate.io/payload-log: "http://127.0.0.1:8080/", infergate.io/payload-log-mode: request, infergate.io/payload-log-sample: "0.5/id", infergate.io/payload-log-redact: "parameters.user_id"}`,
				"", onnxModel),
			want: []config.Model{with(func(m *config.Model) {
				m.Annotations = map[string]string{
					config.AnnotationPayloadLog:       "http://127.0.0.1:8080/",
					config.AnnotationPayloadLogMode:   "request",
					config.AnnotationPayloadLogSample: "0.5/id",
					config.AnnotationPayloadLogRedact: "parameters.user_id",
				}
			})},
		},
		{
			name: "runtime command",
			yaml: doc(`name: iris, annotations: {infergate.io/command: "tritonserver --model-repository={{.ModelDir}} --http-port={{.HTTPPort}}\n  --grpc-port={{ .GRPCPort }}"}`,
				"", "modelFormat: {name: tensorrt}, storageUri: ./models, protocolVersion: grpc-v2"),
			want: []config.Model{with(func(m *config.Model) {
				m.Format, m.Path, m.Protocol = "tensorrt", "/base/models", config.ProtocolGRPC
				m.Command = []string{"tritonserver", "--model-repository={{.ModelDir}}", "--http-port={{.HTTPPort}}", "--grpc-port={{ .GRPCPort }}"}
				m.Annotations = map[string]string{config.AnnotationCommand: "tritonserver --model-repository={{.ModelDir}} --http-port={{.HTTPPort}}\n  --grpc-port={{ .GRPCPort }}"}
			})},
		},
		{
			name: "runtime command with a shell and no storageUri",
			yaml: doc(`name: iris, annotations: {infergate.io/command: "sh -c 'exec my-runtime --port {{.HTTPPort}} --name \"{{.Model}}\"' {{printf \"%d\" .GRPCPort}}"}`,
				"", "modelFormat: {name: sklearn}"),
			want: []config.Model{with(func(m *config.Model) {
				m.Format, m.Path = "sklearn", ""
				m.Command = []string{"sh", "-c", `exec my-runtime --port {{.HTTPPort}} --name "{{.Model}}"`, `{{printf "%d" .GRPCPort}}`}
				m.Annotations = map[string]string{config.AnnotationCommand: `sh -c 'exec my-runtime --port {{.HTTPPort}} --name "{{.Model}}"' {{printf "%d" .GRPCPort}}`}
			})},
		},
		{
			name: "resources numbers and strings accepted",
			yaml: doc(irisMeta, "", onnxModel+", resources: {requests: {cpu: 1, memory: 2Gi}, limits: {cpu: '500m'}}"),
			want: []config.Model{defaults()},
		},
		{
			name: "other annotations and labels kept",
			yaml: doc("name: iris, namespace: 0team, labels: {a: b}, annotations: {serving.kserve.io/deploymentMode: RawDeployment}", "", onnxModel),
			want: []config.Model{with(func(m *config.Model) {
				m.Namespace = "0team"
				m.Labels = map[string]string{"a": "b"}
				m.Annotations = map[string]string{"serving.kserve.io/deploymentMode": "RawDeployment"}
			})},
		},
		{
			name: "name of 63 characters",
			yaml: doc("name: a"+strings.Repeat("b", 61)+"c", "", onnxModel),
			want: []config.Model{with(func(m *config.Model) { m.Name = "a" + strings.Repeat("b", 61) + "c" })},
		},
		{
			name: "empty documents skipped and not counted",
			yaml: "# prelude\n---\n---\n\n--- # a comment\n" + doc(irisMeta, "", onnxModel) + "...\n---\n# trailing\n",
			want: []config.Model{defaults()},
		},
		{
			name: "content on the marker line",
			yaml: "--- {apiVersion: serving.kserve.io/v1beta1, kind: InferenceService,\n  metadata: {name: iris}, spec: {predictor: {model: {" + onnxModel + "}}}}\n",
			want: []config.Model{defaults()},
		},
		{
			name: "CRLF line ends and a byte order mark",
			yaml: "\ufeff" + strings.ReplaceAll(doc(irisMeta, "", onnxModel)+"---\n"+doc("name: two", "", onnxModel), "\n", "\r\n"),
			want: []config.Model{defaults(), with(func(m *config.Model) { m.Name, m.Source = "two", "m.yaml#2" })},
		},
		{
			name: "nothing at all",
			yaml: "",
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Parse("m.yaml", []byte(tc.yaml), "/base")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, ignoreSpec); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	endpoints := func(v string) string {
		return fmt.Sprintf("name: iris, annotations: {infergate.io/endpoints: %q}", v)
	}
	const ep = "m.yaml: document 1: metadata.annotations[infergate.io/endpoints]: "
	command := func(v string) string {
		return fmt.Sprintf("name: iris, annotations: {infergate.io/command: %q}", v)
	}
	const cmd = "m.yaml: document 1: metadata.annotations[infergate.io/command]: "
	tests := []struct {
		name string
		yaml string
		want string
	}{
		// Documents.
		{
			name: "invalid YAML names the file line",
			yaml: "# one\n---\n" + doc(irisMeta, "", onnxModel) + "---\nkind: [\n",
			want: "m.yaml: document 2: invalid YAML: line 9: did not find expected node content",
		},
		{
			name: "duplicate key",
			yaml: "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nkind: InferenceService\n",
			want: `m.yaml: document 1: invalid YAML: unmarshal errors: line 3: key "kind" already set in map`,
		},
		{
			name: "not a mapping",
			yaml: "- a\n- b\n",
			want: "m.yaml: document 1: want a mapping (an InferenceService), got a list",
		},
		{
			name: "other kind",
			yaml: doc(irisMeta, "", onnxModel) + "---\napiVersion: apps/v1\nkind: Deployment\nspec: {replicas: 1}\n",
			want: `m.yaml: document 2: kind: "Deployment" is not supported: infergate reads serving.kserve.io/v1beta1 InferenceService`,
		},
		{
			name: "no kind",
			yaml: "apiVersion: serving.kserve.io/v1beta1\nmetadata: {name: iris}\n",
			want: "m.yaml: document 1: kind: required (want InferenceService)",
		},
		{
			name: "kind not a string",
			yaml: "kind: 3\n",
			want: "m.yaml: document 1: kind: want a string, got 3",
		},
		{
			name: "other apiVersion",
			yaml: strings.Replace(doc(irisMeta, "", onnxModel), "v1beta1", "v1alpha2", 1),
			want: `m.yaml: document 1: apiVersion: "serving.kserve.io/v1alpha2" is not supported: infergate reads serving.kserve.io/v1beta1`,
		},
		{
			name: "no apiVersion",
			yaml: "kind: InferenceService\n",
			want: "m.yaml: document 1: apiVersion: required (want serving.kserve.io/v1beta1)",
		},

		// Strict decoding.
		{
			name: "unknown fields with their paths",
			yaml: doc("name: iris, uid: x", "logger: {mode: all}, labels: {a: b},", onnxModel+", storageURI: x, image: y") + "status: {}\n",
			want: "m.yaml: document 1: metadata.uid: unknown field\n" +
				"m.yaml: document 1: spec.predictor.labels: unknown field\n" +
				"m.yaml: document 1: spec.predictor.logger: unknown field\n" +
				"m.yaml: document 1: spec.predictor.model.image: unknown field\n" +
				"m.yaml: document 1: spec.predictor.model.storageURI: unknown field\n" +
				"m.yaml: document 1: status: unknown field",
		},
		{
			name: "per-framework predictor is unknown",
			yaml: "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: iris}\nspec: {predictor: {sklearn: {storageUri: x}}}\n",
			want: "m.yaml: document 1: spec.predictor.sklearn: unknown field",
		},
		{
			name: "env valueFrom is unknown",
			yaml: doc(irisMeta, "", onnxModel+", env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}}}]"),
			want: "m.yaml: document 1: spec.predictor.model.env[0].valueFrom: unknown field",
		},
		{
			name: "wrong types",
			yaml: doc("name: iris, labels: {a: 1}", "minReplicas: one, timeout: 1.5, maxReplicas: 99999999999999999999, batcher: [],",
				"modelFormat: {name: onnx, version: 1.10}, storageUri: iris.onnx, args: x, resources: {limits: {cpu: [1]}}"),
			want: `m.yaml: document 1: metadata.labels[a]: want a string, got 1 (quote it to make it a string)` + "\n" +
				`m.yaml: document 1: spec.predictor.batcher: want a mapping, got a list` + "\n" +
				`m.yaml: document 1: spec.predictor.maxReplicas: 100000000000000000000 is out of range` + "\n" +
				`m.yaml: document 1: spec.predictor.minReplicas: want an integer, got "one"` + "\n" +
				`m.yaml: document 1: spec.predictor.model.args: want a list, got "x"` + "\n" +
				`m.yaml: document 1: spec.predictor.model.modelFormat.version: want a string, got 1.1 (quote it to make it a string)` + "\n" +
				`m.yaml: document 1: spec.predictor.model.resources.limits[cpu]: want a quantity (a string or a number), got a list` + "\n" +
				`m.yaml: document 1: spec.predictor.timeout: want an integer, got 1.5`,
		},
		{
			name: "YAML 1.1 boolean where a string is wanted",
			yaml: doc("name: iris, annotations: {enabled: yes}", "", onnxModel),
			want: `m.yaml: document 1: metadata.annotations[enabled]: want a string, got true (quote it to make it a string)`,
		},
		{
			name: "spec not a mapping",
			yaml: "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: iris}\nspec: x\n",
			want: `m.yaml: document 1: spec: want a mapping, got "x"`,
		},

		// metadata.
		{
			name: "name required",
			yaml: doc("namespace: ns", "", onnxModel),
			want: "m.yaml: document 1: metadata.name: required",
		},
		{
			name: "name with upper case and underscore",
			yaml: doc("name: Iris_v1", "", onnxModel),
			want: `m.yaml: document 1: metadata.name: "Iris_v1" must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit`,
		},
		{
			name: "name starting with a digit",
			yaml: doc("name: 1iris", "", onnxModel),
			want: `m.yaml: document 1: metadata.name: "1iris" must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit`,
		},
		{
			name: "name ending with a dash",
			yaml: doc("name: iris-", "", onnxModel),
			want: `m.yaml: document 1: metadata.name: "iris-" must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit`,
		},
		{
			name: "name too long",
			yaml: doc("name: "+strings.Repeat("a", 64), "", onnxModel),
			want: `m.yaml: document 1: metadata.name: "` + strings.Repeat("a", 64) + `" is 64 characters, more than 63`,
		},
		{
			name: "bad namespace",
			yaml: doc("name: iris, namespace: Team.A", "", onnxModel),
			want: `m.yaml: document 1: metadata.namespace: "Team.A" must consist of lowercase letters, digits and '-', and start and end with a letter or digit`,
		},
		{
			name: "unknown infergate annotation",
			yaml: doc(`name: iris, annotations: {infergate.io/endpoint: "http://h:1"}`, "", onnxModel),
			want: "m.yaml: document 1: metadata.annotations[infergate.io/endpoint]: unknown infergate annotation (known: infergate.io/command, infergate.io/endpoints, infergate.io/idempotent, infergate.io/max-inflight, infergate.io/mirror-percent, infergate.io/mirror-revision, infergate.io/payload-log, infergate.io/payload-log-mode, infergate.io/payload-log-redact, infergate.io/payload-log-sample, infergate.io/pipeline, infergate.io/rate-burst, infergate.io/rate-limit, infergate.io/rollout, infergate.io/sticky-replicas)",
		},

		// The quota annotations.
		{name: "rate not a number", yaml: doc(`name: iris, annotations: {infergate.io/rate-limit: "fast"}`, "", onnxModel),
			want: `m.yaml: document 1: metadata.annotations[infergate.io/rate-limit]: "fast" is not a positive number of requests per second`},
		{name: "rate zero", yaml: doc(`name: iris, annotations: {infergate.io/rate-limit: "0"}`, "", onnxModel),
			want: `m.yaml: document 1: metadata.annotations[infergate.io/rate-limit]: "0" is not a positive number of requests per second`},
		{name: "burst without a rate", yaml: doc(`name: iris, annotations: {infergate.io/rate-burst: "5"}`, "", onnxModel),
			want: `m.yaml: document 1: metadata.annotations[infergate.io/rate-burst]: needs infergate.io/rate-limit: a burst bounds a rate`},
		{name: "in flight not whole", yaml: doc(`name: iris, annotations: {infergate.io/max-inflight: "2.5"}`, "", onnxModel),
			want: `m.yaml: document 1: metadata.annotations[infergate.io/max-inflight]: "2.5" is not a positive whole number`},

		// The endpoints annotation.
		{name: "endpoints empty", yaml: doc(endpoints(" , "), "", onnxModel), want: ep + `" , " lists no URL`},
		{name: "endpoint without scheme", yaml: doc(endpoints("127.0.0.1:8000"), "", onnxModel), want: ep + `"127.0.0.1:8000": want scheme://host:port`},
		{name: "endpoint scheme", yaml: doc(endpoints("h2c://h:1"), "", onnxModel), want: ep + `"h2c://h:1": scheme "h2c" is not http, https, grpc or grpcs`},
		{name: "endpoint without port", yaml: doc(endpoints("http://localhost"), "", onnxModel), want: ep + `"http://localhost": no port`},
		{name: "endpoint without host", yaml: doc(endpoints("http://:8000"), "", onnxModel), want: ep + `"http://:8000": no host`},
		{name: "endpoint empty host", yaml: doc(endpoints("grpc://"), "", onnxModel), want: ep + `"grpc://": no host`},
		{name: "endpoint port range", yaml: doc(endpoints("http://h:65536"), "", onnxModel), want: ep + `"http://h:65536": port "65536" is not between 1 and 65535`},
		{name: "endpoint port zero", yaml: doc(endpoints("http://h:0"), "", onnxModel), want: ep + `"http://h:0": port "0" is not between 1 and 65535`},
		{name: "endpoint with path", yaml: doc(endpoints("http://h:1/v2/models"), "", onnxModel), want: ep + `"http://h:1/v2/models": want scheme://host:port with nothing after the port`},
		{name: "endpoint with query", yaml: doc(endpoints("http://h:1?x=1"), "", onnxModel), want: ep + `"http://h:1?x=1": want scheme://host:port with nothing after the port`},
		{name: "endpoint with user", yaml: doc(endpoints("http://u:p@h:1"), "", onnxModel), want: ep + `"http://u:p@h:1": want scheme://host:port with nothing after the port`},
		{name: "endpoint unparsable", yaml: doc(endpoints("http://[::1:80"), "", onnxModel), want: ep + `"http://[::1:80": missing ']' in host`},
		{
			name: "endpoint listed twice and a bad one",
			yaml: doc(endpoints("http://h:1, http://h:1/, ftp://h:2"), "", onnxModel),
			want: ep + `"http://h:1/" is listed twice` + "\n" + ep + `"ftp://h:2": scheme "ftp" is not http, https, grpc or grpcs`,
		},

		// The command annotation.
		{
			name: "command with endpoints",
			yaml: doc(`name: iris, annotations: {infergate.io/endpoints: "http://h:1", infergate.io/command: "srv {{.HTTPPort}}"}`, "", onnxModel),
			want: cmd + `cannot be set together with infergate.io/endpoints: a model is either started by infergate or served at URLs`,
		},
		{name: "command empty", yaml: doc(command("  "), "", onnxModel), want: cmd + `"  " names no command`},
		{name: "command empty executable", yaml: doc(command("'' --port 1"), "", onnxModel), want: cmd + `"'' --port 1": the executable (first word) is empty`},
		{name: "command open quote", yaml: doc(command("srv 'a b"), "", onnxModel), want: cmd + `"srv 'a b": unterminated single quote`},
		{name: "command open double quote", yaml: doc(command(`srv "a b`), "", onnxModel), want: cmd + `"srv \"a b": unterminated double quote`},
		{name: "command open action", yaml: doc(command("srv --port={{.HTTPPort"), "", onnxModel), want: cmd + `"srv --port={{.HTTPPort": unterminated {{ action`},
		{name: "command template syntax", yaml: doc(command("srv {{if .Model}}x"), "", onnxModel), want: cmd + `"{{if .Model}}x": unexpected EOF`},
		{
			name: "command unknown field",
			yaml: doc(command("srv --port={{.Port}}"), "", onnxModel),
			want: cmd + `"--port={{.Port}}": unknown field .Port (known: .Model, .ModelPath, .ModelDir, .HTTPPort, .GRPCPort, .Host, .DataDir)`,
		},
		{name: "command unknown field via $", yaml: doc(command("srv {{$.Dir}}"), "", onnxModel), want: cmd + `"{{$.Dir}}": unknown field .Dir (known: .Model, .ModelPath, .ModelDir, .HTTPPort, .GRPCPort, .Host, .DataDir)`},
		{name: "command unknown field in if", yaml: doc(command("srv {{if .Debug}}-v{{end}}"), "", onnxModel), want: cmd + `"{{if .Debug}}-v{{end}}": unknown field .Debug (known: .Model, .ModelPath, .ModelDir, .HTTPPort, .GRPCPort, .Host, .DataDir)`},
		{name: "command field of a field", yaml: doc(command("srv {{.Model.Name}}"), "", onnxModel), want: cmd + `"{{.Model.Name}}": .Model has no field .Name`},
		{
			name: "command uses the model without storageUri",
			yaml: doc(command("srv --repo {{.ModelDir}} --file={{.ModelPath}}"), "", "modelFormat: {name: sklearn}"),
			want: cmd + `"{{.ModelDir}}" uses .ModelDir but spec.predictor.model.storageUri is not set` + "\n" +
				cmd + `"--file={{.ModelPath}}" uses .ModelPath but spec.predictor.model.storageUri is not set`,
		},
		{
			name: "command with remote storage",
			yaml: doc(command("srv {{.ModelDir}}"), "", "modelFormat: {name: sklearn}, storageUri: s3://b/m"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "s3://b/m": scheme "s3" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are`,
		},

		// spec.predictor.model.
		{
			name: "model required",
			yaml: "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: iris}\nspec: {predictor: {minReplicas: 1}}\n",
			want: "m.yaml: document 1: spec.predictor.model: required",
		},
		{
			name: "model format required",
			yaml: doc(irisMeta, "", "storageUri: iris.onnx"),
			want: "m.yaml: document 1: spec.predictor.model.modelFormat.name: required",
		},
		{
			name: "model format required with endpoints",
			yaml: doc(endpoints("http://h:1"), "", "modelFormat: {version: '1'}"),
			want: "m.yaml: document 1: spec.predictor.model.modelFormat.name: required",
		},
		{
			name: "format the built-in runtime does not serve",
			yaml: doc(irisMeta, "", "modelFormat: {name: sklearn}, storageUri: model.joblib"),
			want: `m.yaml: document 1: spec.predictor.model.modelFormat.name: "sklearn" needs a runtime at a URL (annotation infergate.io/endpoints) or a runtime command (annotation infergate.io/command); the built-in runtime serves onnx`,
		},
		{
			name: "storageUri required",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}"),
			want: "m.yaml: document 1: spec.predictor.model.storageUri: required unless annotation infergate.io/endpoints is set",
		},
		{
			name: "s3 storage",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: s3://bucket/iris"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "s3://bucket/iris": scheme "s3" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are`,
		},
		{
			name: "gs storage",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'gs://b/m'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "gs://b/m": scheme "gs" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are`,
		},
		{
			name: "pvc storage",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'pvc://claim/m'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "pvc://claim/m": scheme "pvc" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are`,
		},
		{
			name: "hf storage",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'hf://org/model'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "hf://org/model": scheme "hf" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are`,
		},
		{
			name: "registry reference without a name",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'registry://@prod'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "registry://@prod": no model name (want registry://NAME, registry://NAME/VERSION, registry://NAME@ALIAS or registry://NAME@sha256:DIGEST)`,
		},
		{
			name: "registry version not a number",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'registry://iris/v3'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "registry://iris/v3": version "v3" is not a positive number (want registry://NAME, registry://NAME/VERSION, registry://NAME@ALIAS or registry://NAME@sha256:DIGEST)`,
		},
		{
			name: "registry digest too short",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'registry://iris@sha256:abc'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "registry://iris@sha256:abc": digest "abc" is not 64 lowercase hex digits (want registry://NAME, registry://NAME/VERSION, registry://NAME@ALIAS or registry://NAME@sha256:DIGEST)`,
		},
		{
			name: "registry alias malformed",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'registry://iris@prod/2'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "registry://iris@prod/2": alias "prod/2" is malformed (want registry://NAME, registry://NAME/VERSION, registry://NAME@ALIAS or registry://NAME@sha256:DIGEST)`,
		},
		{
			name: "file URI without path",
			yaml: doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'file://'"),
			want: `m.yaml: document 1: spec.predictor.model.storageUri: "file://" has no path`,
		},
		{
			name: "protocol v1",
			yaml: doc(irisMeta, "", onnxModel+", protocolVersion: v1"),
			want: `m.yaml: document 1: spec.predictor.model.protocolVersion: "v1" (KServe's v1 protocol) is supported only for runtimes at URLs (annotation infergate.io/endpoints); runtimes infergate starts speak v2 or grpc-v2`,
		},
		{
			name: "protocol grpc-v1",
			yaml: doc(irisMeta, "", onnxModel+", protocolVersion: grpc-v1"),
			want: `m.yaml: document 1: spec.predictor.model.protocolVersion: "grpc-v1" is not supported; use v1 (REST), v2 or grpc-v2`,
		},
		{
			name: "protocol unknown",
			yaml: doc(irisMeta, "", onnxModel+", protocolVersion: V2"),
			want: `m.yaml: document 1: spec.predictor.model.protocolVersion: "V2" is not v2 or grpc-v2`,
		},
		{
			name: "env name required",
			yaml: doc(irisMeta, "", onnxModel+", env: [{name: A, value: b}, {value: c}]"),
			want: "m.yaml: document 1: spec.predictor.model.env[1].name: required",
		},

		// spec.predictor.
		{name: "minReplicas negative", yaml: doc(irisMeta, "minReplicas: -1,", onnxModel), want: "m.yaml: document 1: spec.predictor.minReplicas: -1 is negative"},
		{name: "maxReplicas negative", yaml: doc(irisMeta, "maxReplicas: -2,", onnxModel), want: "m.yaml: document 1: spec.predictor.maxReplicas: -2 is negative"},
		{name: "maxReplicas below default minReplicas", yaml: doc(irisMeta, "minReplicas: 3, maxReplicas: 2,", onnxModel), want: "m.yaml: document 1: spec.predictor.maxReplicas: 2 is less than minReplicas (3)"},
		{name: "scaleTarget zero", yaml: doc(irisMeta, "scaleTarget: 0,", onnxModel), want: "m.yaml: document 1: spec.predictor.scaleTarget: 0 is not positive"},
		{name: "scaleMetric unknown", yaml: doc(irisMeta, "scaleMetric: qps,", onnxModel), want: `m.yaml: document 1: spec.predictor.scaleMetric: "qps" is not one of concurrency, rps, cpu, memory`},
		{name: "containerConcurrency negative", yaml: doc(irisMeta, "containerConcurrency: -1,", onnxModel), want: "m.yaml: document 1: spec.predictor.containerConcurrency: -1 is negative"},
		{name: "timeout zero", yaml: doc(irisMeta, "timeout: 0,", onnxModel), want: "m.yaml: document 1: spec.predictor.timeout: 0 is not positive"},
		{name: "timeout too long", yaml: doc(irisMeta, "timeout: 86401,", onnxModel), want: "m.yaml: document 1: spec.predictor.timeout: 86401 is more than 86400 (24h)"},
		{name: "canary above 100", yaml: doc(irisMeta, "canaryTrafficPercent: 101,", onnxModel), want: "m.yaml: document 1: spec.predictor.canaryTrafficPercent: 101 is not between 0 and 100"},
		{name: "canary negative", yaml: doc(irisMeta, "canaryTrafficPercent: -1,", onnxModel), want: "m.yaml: document 1: spec.predictor.canaryTrafficPercent: -1 is not between 0 and 100"},
		{name: "batch size zero", yaml: doc(irisMeta, "batcher: {maxBatchSize: 0},", onnxModel), want: "m.yaml: document 1: spec.predictor.batcher.maxBatchSize: 0 is not positive"},
		{name: "batch latency negative", yaml: doc(irisMeta, "batcher: {maxLatency: -5},", onnxModel), want: "m.yaml: document 1: spec.predictor.batcher.maxLatency: -5 is not positive"},
		{name: "batch latency too long", yaml: doc(irisMeta, "batcher: {maxLatency: 86400001},", onnxModel), want: "m.yaml: document 1: spec.predictor.batcher.maxLatency: 86400001 is more than 86400000 (24h in milliseconds)"},
		{name: "batch timeout zero", yaml: doc(irisMeta, "batcher: {timeout: 0},", onnxModel), want: "m.yaml: document 1: spec.predictor.batcher.timeout: 0 is not positive"},
		{name: "preferred size zero", yaml: doc(irisMeta, "batcher: {preferredBatchSizes: [0]},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.preferredBatchSizes[0]: 0 is not positive`},
		{name: "preferred size above max", yaml: doc(irisMeta, "batcher: {maxBatchSize: 16, preferredBatchSizes: [8, 17]},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.preferredBatchSizes[1]: 17 is more than maxBatchSize (16)`},
		{name: "preferred size above default max", yaml: doc(irisMeta, "batcher: {preferredBatchSizes: [33]},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.preferredBatchSizes[0]: 33 is more than maxBatchSize (32)`},
		{name: "preferred size twice", yaml: doc(irisMeta, "batcher: {preferredBatchSizes: [4, 8, 4]},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.preferredBatchSizes[2]: 4 is listed twice`},
		{name: "preferred sizes not a list", yaml: doc(irisMeta, "batcher: {preferredBatchSizes: 8},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.preferredBatchSizes: want a list, got 8`},
		{name: "max queue size zero", yaml: doc(irisMeta, "batcher: {maxQueueSize: 0},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.maxQueueSize: 0 is not positive`},
		{name: "priority levels zero", yaml: doc(irisMeta, "batcher: {priorityLevels: 0},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.priorityLevels: 0 is not positive`},
		{name: "priority levels too many", yaml: doc(irisMeta, "batcher: {priorityLevels: 1001},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.priorityLevels: 1001 is more than 1000`},
		{name: "default priority above levels", yaml: doc(irisMeta, "batcher: {priorityLevels: 3, defaultPriority: 4},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.defaultPriority: 4 is not between 1 and priorityLevels (3)`},
		{name: "default priority above default levels", yaml: doc(irisMeta, "batcher: {defaultPriority: 2},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.defaultPriority: 2 is not between 1 and priorityLevels (1)`},
		{name: "default priority zero", yaml: doc(irisMeta, "batcher: {priorityLevels: 2, defaultPriority: 0},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.defaultPriority: 0 is not between 1 and priorityLevels (2)`},
		{name: "timeout action unknown", yaml: doc(irisMeta, "batcher: {queuePolicy: {timeoutAction: reject}},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.queuePolicy.timeoutAction: "reject" is not REJECT or DELAY`},
		{name: "queue timeout negative", yaml: doc(irisMeta, "batcher: {queuePolicy: {defaultTimeoutMicroseconds: -1}},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.queuePolicy.defaultTimeoutMicroseconds: -1 is negative`},
		{name: "queue timeout too long", yaml: doc(irisMeta, "batcher: {queuePolicy: {defaultTimeoutMicroseconds: 86400000001}},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.queuePolicy.defaultTimeoutMicroseconds: 86400000001 is more than 86400000000 (24h in microseconds)`},
		{name: "timeout override not a bool", yaml: doc(irisMeta, "batcher: {queuePolicy: {allowTimeoutOverride: 1}},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.queuePolicy.allowTimeoutOverride: want true or false, got 1`},
		{name: "queue policy unknown field", yaml: doc(irisMeta, "batcher: {queuePolicy: {timeout: 5}},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.queuePolicy.timeout: unknown field`},
		{name: "preserve ordering not a bool", yaml: doc(irisMeta, "batcher: {preserveOrdering: \"true\"},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.preserveOrdering: want true or false, got "true"`},
		{name: "batches in flight negative", yaml: doc(irisMeta, "batcher: {maxBatchesInFlight: -1},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.maxBatchesInFlight: -1 is negative (0 means one per ready replica)`},
		{name: "oversize unknown", yaml: doc(irisMeta, "batcher: {oversize: split},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.oversize: "split" is not send-alone or reject`},
		{name: "batcher unknown field", yaml: doc(irisMeta, "batcher: {maxQueueDelay: 5},", onnxModel), want: `m.yaml: document 1: spec.predictor.batcher.maxQueueDelay: unknown field`},

		// Across documents.
		{
			name: "every problem of a document",
			yaml: doc("name: Iris", "minReplicas: -1, canaryTrafficPercent: 101,", "modelFormat: {name: sklearn}, storageUri: s3://b/i"),
			want: `m.yaml: document 1: metadata.name: "Iris" must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit` + "\n" +
				`m.yaml: document 1: spec.predictor.model.modelFormat.name: "sklearn" needs a runtime at a URL (annotation infergate.io/endpoints) or a runtime command (annotation infergate.io/command); the built-in runtime serves onnx` + "\n" +
				`m.yaml: document 1: spec.predictor.model.storageUri: "s3://b/i": scheme "s3" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are` + "\n" +
				`m.yaml: document 1: spec.predictor.minReplicas: -1 is negative` + "\n" +
				`m.yaml: document 1: spec.predictor.canaryTrafficPercent: 101 is not between 0 and 100`,
		},
		{
			name: "problems of several documents",
			yaml: doc(irisMeta, "minReplicas: -1,", onnxModel) + "---\n" + doc(irisMeta, "timeout: 0,", onnxModel),
			want: "m.yaml: document 1: spec.predictor.minReplicas: -1 is negative\n" +
				"m.yaml: document 2: spec.predictor.timeout: 0 is not positive",
		},
		{
			name: "duplicate name",
			yaml: doc(irisMeta, "", onnxModel) + "---\n" + doc("name: other", "", onnxModel) + "---\n" + doc("name: iris, namespace: elsewhere", "", onnxModel),
			want: `m.yaml: document 3: metadata.name: "iris" is also declared at m.yaml#1`,
		},
		{
			name: "too many problems",
			yaml: strings.Repeat(doc(irisMeta, "minReplicas: -1,", onnxModel)+"---\n", 22),
			want: strings.Join(func() []string {
				var lines []string
				for i := 1; i <= 20; i++ {
					lines = append(lines, fmt.Sprintf("m.yaml: document %d: spec.predictor.minReplicas: -1 is negative", i))
				}
				return append(lines, "config: and 2 more problems")
			}(), "\n"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Parse("m.yaml", []byte(tc.yaml), "/base")
			if err == nil {
				t.Fatalf("Parse succeeded with %d models; want error %q", len(got), tc.want)
			}
			if got != nil {
				t.Errorf("Parse returned %d models with an error; want none", len(got))
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("Parse error (-want +got):\n%s", diff)
			}
			var ce *config.Error
			if !errors.As(err, &ce) && !strings.HasPrefix(tc.want, "config:") {
				t.Errorf("Parse error %T is not a *config.Error", err)
			}
		})
	}
}

func TestErrorFields(t *testing.T) {
	_, err := config.Parse("models/iris.yaml", []byte(doc(irisMeta, "", onnxModel)+"---\n"+doc(irisMeta, "minReplicas: -1,", onnxModel)), "")
	ce, ok := errors.AsType[*config.Error](err)
	if !ok {
		t.Fatalf("Parse error %v is not a *config.Error", err)
	}
	want := &config.Error{Source: "models/iris.yaml", Document: 2, Field: "spec.predictor.minReplicas", Msg: "-1 is negative"}
	if diff := cmp.Diff(want, ce); diff != "" {
		t.Errorf("Error (-want +got):\n%s", diff)
	}
	if got, want := err.Error(), "models/iris.yaml: document 2: spec.predictor.minReplicas: -1 is negative"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseRelativeWithoutBaseDir(t *testing.T) {
	got, err := config.Parse("m.yaml", []byte(doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: 'file://./models/../iris'")), "")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Path != "iris" {
		t.Errorf("Path = %q, want %q", got[0].Path, "iris")
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := config.Parse("big.yaml", make([]byte, config.MaxFileBytes+1), "")
	want := fmt.Sprintf("big.yaml: %d bytes, more than the limit of %d", config.MaxFileBytes+1, config.MaxFileBytes)
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %q", err, want)
	}
}

func TestParseModelsShareNothing(t *testing.T) {
	got, err := config.Parse("m.yaml", []byte(doc(`name: iris, annotations: {infergate.io/endpoints: "http://h:1"}`, "", onnxModel)), "")
	if err != nil {
		t.Fatal(err)
	}
	got[0].Annotations["x"] = "y"
	if _, ok := got[0].Spec.Metadata.Annotations["x"]; ok {
		t.Error("Model.Annotations aliases Model.Spec.Metadata.Annotations")
	}
}

// TestParseFile reads the fully written example and compares the Model and
// the raw document in full.
func TestParseFile(t *testing.T) {
	path := filepath.Join("testdata", "valid", "iris.yaml")
	got, err := config.LoadPath(path)
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(filepath.Join("testdata", "valid"))
	if err != nil {
		t.Fatal(err)
	}
	spec := config.InferenceService{
		APIVersion: "serving.kserve.io/v1beta1",
		Kind:       "InferenceService",
		Metadata: config.ObjectMeta{
			Name:        "iris",
			Namespace:   "ml",
			Labels:      map[string]string{"team": "search"},
			Annotations: map[string]string{"serving.kserve.io/deploymentMode": "Serverless"},
		},
		Spec: config.InferenceServiceSpec{Predictor: config.PredictorSpec{
			ServiceAccountName:   "models",
			MinReplicas:          ptr(0),
			MaxReplicas:          4,
			ScaleTarget:          ptr(8),
			ScaleMetric:          ptr(config.MetricRPS),
			ContainerConcurrency: ptr[int64](16),
			TimeoutSeconds:       ptr[int64](30),
			CanaryTrafficPercent: ptr[int64](10),
			Batcher:              &config.BatcherSpec{MaxBatchSize: ptr(64), MaxLatency: ptr(20), Timeout: ptr(5)},
			Model: &config.ModelSpec{
				ModelFormat:     config.ModelFormat{Name: "onnx", Version: "1"},
				Runtime:         "kserve-onnxruntime",
				RuntimeVersion:  "1.17",
				ProtocolVersion: "grpc-v2",
				StorageURI:      "file://models/iris",
				Args:            []string{"--threads", "2"},
				Env:             []config.EnvVar{{Name: "OMP_NUM_THREADS", Value: "2"}},
				Resources: &config.ResourceRequirements{
					Requests: map[string]config.Quantity{"cpu": "1", "memory": "2Gi"},
					Limits:   map[string]config.Quantity{"cpu": "2"},
				},
			},
		}},
	}
	want := []config.Model{{
		Name:                 "iris",
		Namespace:            "ml",
		Source:               path + "#1",
		Format:               "onnx",
		FormatVersion:        "1",
		Path:                 filepath.Join(abs, "models", "iris"),
		Protocol:             config.ProtocolGRPC,
		MinReplicas:          0,
		MaxReplicas:          4,
		ScaleMetric:          config.MetricRPS,
		ScaleTarget:          8,
		Timeout:              30 * time.Second,
		ContainerConcurrency: 16,
		Idempotent:           true,
		CanaryTrafficPercent: ptr[int64](10),
		Batcher:              batcherWith(64, 20*time.Millisecond, 5*time.Second),
		Labels:               map[string]string{"team": "search"},
		Annotations:          map[string]string{"serving.kserve.io/deploymentMode": "Serverless"},
		Spec:                 spec,
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadPath(%s) (-want +got):\n%s", path, diff)
	}
}

func TestLoadPath(t *testing.T) {
	abs := func(elem ...string) string {
		t.Helper()
		p, err := filepath.Abs(filepath.Join(elem...))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := config.Model{Protocol: config.ProtocolREST, MinReplicas: 1, ScaleMetric: config.MetricConcurrency, Timeout: time.Minute, Format: "onnx", Idempotent: true}
	model := func(name, source, path string) config.Model {
		m := base
		m.Name, m.Source, m.Path = name, source, path
		return m
	}
	multi := filepath.Join("testdata", "valid", "multi.yaml")
	sk := model("sklearn-iris", multi+"#2", "")
	sk.Format = "sklearn"
	sk.Endpoints = []config.Endpoint{
		{URL: "http://127.0.0.1:8000", Protocol: config.ProtocolREST, Address: "127.0.0.1:8000"},
		{URL: "grpc://127.0.0.1:8001", Protocol: config.ProtocolGRPC, Address: "127.0.0.1:8001"},
	}
	sk.Annotations = map[string]string{config.AnnotationEndpoints: "http://127.0.0.1:8000, grpc://127.0.0.1:8001"}

	tests := []struct {
		name string
		path string
		want []config.Model
	}{
		{
			name: "multi-document file",
			path: multi,
			want: []config.Model{model("mnist", multi+"#1", "/srv/models/mnist.onnx"), sk},
		},
		{
			name: "directory: yaml and yml, in name order, not hidden, not recursive",
			path: filepath.Join("testdata", "dir"),
			want: []config.Model{
				model("alpha", filepath.Join("testdata", "dir", "a.yaml")+"#1", abs("testdata", "dir", "alpha.onnx")),
				model("beta", filepath.Join("testdata", "dir", "b.yml")+"#1", abs("testdata", "beta")),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.LoadPath(tc.path)
			if err != nil {
				t.Fatalf("LoadPath: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, ignoreSpec); diff != "" {
				t.Errorf("LoadPath(%s) (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

func TestLoadPathErrors(t *testing.T) {
	inv := func(name string) string { return filepath.Join("testdata", "invalid", name) }
	tests := []struct {
		name string
		path string
		want string
	}{
		{
			name: "duplicate across files names both",
			path: filepath.Join("testdata", "dupdir"),
			want: filepath.Join("testdata", "dupdir", "two.yaml") + `: document 2: metadata.name: "alpha" is also declared at ` +
				filepath.Join("testdata", "dupdir", "one.yaml") + "#1",
		},
		{
			name: "unknown fields",
			path: inv("unknown-field.yaml"),
			want: inv("unknown-field.yaml") + ": document 1: spec.predictor.logger: unknown field\n" +
				inv("unknown-field.yaml") + ": document 1: spec.predictor.model.storageURI: unknown field",
		},
		{
			name: "other kind",
			path: inv("other-kind.yaml"),
			want: inv("other-kind.yaml") + `: document 2: kind: "Deployment" is not supported: infergate reads serving.kserve.io/v1beta1 InferenceService`,
		},
		{
			name: "bad values",
			path: inv("bad-values.yaml"),
			want: inv("bad-values.yaml") + `: document 1: metadata.name: "Iris_v1" must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit` + "\n" +
				inv("bad-values.yaml") + `: document 1: spec.predictor.model.modelFormat.name: "sklearn" needs a runtime at a URL (annotation infergate.io/endpoints) or a runtime command (annotation infergate.io/command); the built-in runtime serves onnx` + "\n" +
				inv("bad-values.yaml") + `: document 1: spec.predictor.model.storageUri: "s3://bucket/iris": scheme "s3" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are` + "\n" +
				inv("bad-values.yaml") + `: document 1: spec.predictor.minReplicas: -1 is negative` + "\n" +
				inv("bad-values.yaml") + `: document 1: spec.predictor.canaryTrafficPercent: 101 is not between 0 and 100`,
		},
		{
			name: "duplicate key names the file line",
			path: inv("yaml-syntax.yaml"),
			want: inv("yaml-syntax.yaml") + `: document 1: invalid YAML: unmarshal errors: line 5: key "name" already set in map`,
		},
		{
			name: "all files of a directory",
			path: filepath.Join("testdata", "invalid"),
			want: strings.Join([]string{
				inv("bad-values.yaml") + `: document 1: metadata.name: "Iris_v1" must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit`,
				inv("bad-values.yaml") + `: document 1: spec.predictor.model.modelFormat.name: "sklearn" needs a runtime at a URL (annotation infergate.io/endpoints) or a runtime command (annotation infergate.io/command); the built-in runtime serves onnx`,
				inv("bad-values.yaml") + `: document 1: spec.predictor.model.storageUri: "s3://bucket/iris": scheme "s3" is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are`,
				inv("bad-values.yaml") + `: document 1: spec.predictor.minReplicas: -1 is negative`,
				inv("bad-values.yaml") + `: document 1: spec.predictor.canaryTrafficPercent: 101 is not between 0 and 100`,
				inv("other-kind.yaml") + `: document 2: kind: "Deployment" is not supported: infergate reads serving.kserve.io/v1beta1 InferenceService`,
				inv("unknown-field.yaml") + ": document 1: spec.predictor.logger: unknown field",
				inv("unknown-field.yaml") + ": document 1: spec.predictor.model.storageURI: unknown field",
				inv("yaml-syntax.yaml") + `: document 1: invalid YAML: unmarshal errors: line 5: key "name" already set in map`,
			}, "\n"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.LoadPath(tc.path)
			if err == nil {
				t.Fatalf("LoadPath succeeded with %d models; want error", len(got))
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("LoadPath error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadPathMissing(t *testing.T) {
	_, err := config.LoadPath(filepath.Join("testdata", "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadPath error = %v, want one wrapping os.ErrNotExist", err)
	}
}

func TestLoadPathEmptyDir(t *testing.T) {
	got, err := config.LoadPath(t.TempDir())
	if err != nil || got != nil {
		t.Errorf("LoadPath(empty dir) = %v, %v; want nil, nil", got, err)
	}
}

func TestProtocolV1AndPipeline(t *testing.T) {
	tests := []struct {
		name, meta, model string
		want              []config.Endpoint
		wantErr           string
	}{
		{
			name:  "v1 at a URL",
			meta:  `name: iris, annotations: {infergate.io/endpoints: "http://127.0.0.1:9000"}`,
			model: "modelFormat: {name: sklearn}, protocolVersion: v1",
			want:  []config.Endpoint{{URL: "http://127.0.0.1:9000", Protocol: config.ProtocolKServeV1, Address: "127.0.0.1:9000"}},
		},
		{
			name:  "v1 over https",
			meta:  `name: iris, annotations: {infergate.io/endpoints: "https://127.0.0.1:9000"}`,
			model: "modelFormat: {name: sklearn}, protocolVersion: v1",
			want:  []config.Endpoint{{URL: "https://127.0.0.1:9000", Protocol: config.ProtocolKServeV1, Address: "127.0.0.1:9000", TLS: true}},
		},
		{
			name:    "v1 over grpcs",
			meta:    `name: iris, annotations: {infergate.io/endpoints: "grpcs://127.0.0.1:9000"}`,
			model:   "modelFormat: {name: sklearn}, protocolVersion: v1",
			wantErr: `metadata.annotations[infergate.io/endpoints]: "grpcs://127.0.0.1:9000": protocolVersion v1 runtimes are reached over http`,
		},
		{
			name:    "v1 over grpc",
			meta:    `name: iris, annotations: {infergate.io/endpoints: "grpc://127.0.0.1:9000"}`,
			model:   "modelFormat: {name: sklearn}, protocolVersion: v1",
			wantErr: `metadata.annotations[infergate.io/endpoints]: "grpc://127.0.0.1:9000": protocolVersion v1 runtimes are reached over http`,
		},
		{
			name:  "pipeline on REST only",
			meta:  `name: iris, annotations: {infergate.io/endpoints: "http://127.0.0.1:9000, grpc://127.0.0.1:9001", infergate.io/pipeline: "true"}`,
			model: "modelFormat: {name: onnx}",
			want: []config.Endpoint{
				{URL: "http://127.0.0.1:9000", Protocol: config.ProtocolREST, Address: "127.0.0.1:9000", Pipeline: true},
				{URL: "grpc://127.0.0.1:9001", Protocol: config.ProtocolGRPC, Address: "127.0.0.1:9001"},
			},
		},
		{
			name:    "pipeline not a bool",
			meta:    `name: iris, annotations: {infergate.io/endpoints: "http://127.0.0.1:9000", infergate.io/pipeline: "yes"}`,
			model:   "modelFormat: {name: onnx}",
			wantErr: `metadata.annotations[infergate.io/pipeline]: "yes" is not true or false`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			models, err := config.Parse("m.yaml", []byte(doc(tc.meta, "", tc.model)), "")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse error = %v, want it to contain %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, models[0].Endpoints); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRegistryRef: a registry:// storageUri is kept as written for the
// control plane to resolve, with no local path, for the built-in runtime
// and for a runtime command alike.
func TestRegistryRef(t *testing.T) {
	digest := "registry://iris@sha256:" + strings.Repeat("ab", 32)
	for _, uri := range []string{"registry://iris", "registry://iris/3", "registry://iris@prod", digest} {
		ms, err := config.Parse("m.yaml", []byte(doc(irisMeta, "", "modelFormat: {name: onnx}, storageUri: '"+uri+"'")), "/base")
		if err != nil {
			t.Errorf("%s: %v", uri, err)
			continue
		}
		if ms[0].RegistryRef != uri || ms[0].Path != "" {
			t.Errorf("%s: RegistryRef %q, Path %q; want the reference and no path", uri, ms[0].RegistryRef, ms[0].Path)
		}
	}
	meta := "name: iris, annotations: {infergate.io/command: 'srv {{.ModelDir}}'}"
	ms, err := config.Parse("m.yaml", []byte(doc(meta, "", "modelFormat: {name: sklearn}, storageUri: 'registry://iris@prod'")), "/base")
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].RegistryRef != "registry://iris@prod" {
		t.Errorf("command runtime: RegistryRef %q", ms[0].RegistryRef)
	}
}

// TestQuotaAnnotations: the quota annotations become the model's bounds.
func TestQuotaAnnotations(t *testing.T) {
	ms, err := config.Parse("m.yaml", []byte(doc(`name: iris, annotations: {infergate.io/rate-limit: "2.5", infergate.io/rate-burst: "10", infergate.io/max-inflight: " 64 "}`, "", onnxModel)), "/models")
	if err != nil {
		t.Fatal(err)
	}
	if m := ms[0]; m.RatePerSecond != 2.5 || m.Burst != 10 || m.MaxInFlight != 64 {
		t.Errorf("rate %v, burst %d, in flight %d; want 2.5, 10, 64", m.RatePerSecond, m.Burst, m.MaxInFlight)
	}
}
