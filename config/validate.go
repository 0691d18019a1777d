package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Field paths named in messages.
const (
	fName         = "metadata.name"
	fNamespace    = "metadata.namespace"
	fModel        = "spec.predictor.model"
	fFormatName   = "spec.predictor.model.modelFormat.name"
	fStorageURI   = "spec.predictor.model.storageUri"
	fProtocol     = "spec.predictor.model.protocolVersion"
	fMinReplicas  = "spec.predictor.minReplicas"
	fMaxReplicas  = "spec.predictor.maxReplicas"
	fScaleTarget  = "spec.predictor.scaleTarget"
	fScaleMetric  = "spec.predictor.scaleMetric"
	fConcurrency  = "spec.predictor.containerConcurrency"
	fTimeout      = "spec.predictor.timeout"
	fCanary       = "spec.predictor.canaryTrafficPercent"
	fBatchSize    = "spec.predictor.batcher.maxBatchSize"
	fBatchLatency = "spec.predictor.batcher.maxLatency"
	fBatchTimeout = "spec.predictor.batcher.timeout"
	fBatch        = "spec.predictor.batcher."
)

// toModel validates a decoded document and returns it as a Model with
// defaults applied. It reports every problem it finds; the Model is only
// meaningful when it reports none.
func toModel(isvc *InferenceService, d *docProblems, baseDir string) Model {
	m := Model{Source: fmt.Sprintf("%s#%d", d.source, d.doc), Spec: *isvc}
	readMetadata(&m, isvc.Metadata, d)
	_, remote := isvc.Metadata.Annotations[AnnotationEndpoints]
	rawCommand, custom := isvc.Metadata.Annotations[AnnotationCommand]
	ms := isvc.Spec.Predictor.Model
	if ms == nil {
		d.addf(fModel, "required")
	} else {
		readModel(&m, ms, remote, custom, baseDir, d)
	}
	switch {
	case custom && remote:
		d.addf(annotationField(AnnotationCommand), "cannot be set together with %s: a model is either started by infergate or served at URLs", AnnotationEndpoints)
	case custom:
		m.Command = parseCommand(rawCommand, ms != nil && ms.StorageURI != "", d)
	}
	readPredictor(&m, &isvc.Spec.Predictor, d)
	for i := range m.Endpoints {
		e := &m.Endpoints[i]
		switch {
		case m.Protocol == ProtocolKServeV1 && e.Protocol == ProtocolGRPC:
			d.addf(annotationField(AnnotationEndpoints), "%s: protocolVersion v1 runtimes are reached over http", quote(e.URL))
		case m.Protocol == ProtocolKServeV1:
			e.Protocol = ProtocolKServeV1
		}
		e.Pipeline = m.Pipeline && e.Protocol == ProtocolREST
	}
	return m
}

// readMetadata reads the name, namespace, labels and annotations, and the
// endpoints from the annotation.
func readMetadata(m *Model, meta ObjectMeta, d *docProblems) {
	m.Name = meta.Name
	m.Namespace = meta.Namespace
	m.Labels = maps.Clone(meta.Labels)
	m.Annotations = maps.Clone(meta.Annotations)
	checkName(fName, meta.Name, true, d)
	if meta.Namespace != "" {
		checkName(fNamespace, meta.Namespace, false, d)
	}
	for _, k := range slices.Sorted(maps.Keys(meta.Annotations)) {
		if strings.HasPrefix(k, annotationPrefix) && !knownAnnotations[k] {
			d.addf(annotationField(k), "unknown infergate annotation (known: %s)", strings.Join(slices.Sorted(maps.Keys(knownAnnotations)), ", "))
		}
	}
	if raw, ok := meta.Annotations[AnnotationEndpoints]; ok {
		m.Endpoints = parseEndpoints(raw, d)
	}
	m.Pipeline = boolAnnotation(meta.Annotations, AnnotationPipeline, false, d)
	m.Idempotent = boolAnnotation(meta.Annotations, AnnotationIdempotent, true, d)
	m.StickyReplicas = boolAnnotation(meta.Annotations, AnnotationStickyReplicas, false, d)
	readQuotas(m, meta.Annotations, d)
}

// readQuotas reads the quota annotations.
func readQuotas(m *Model, annotations map[string]string, d *docProblems) {
	if raw, ok := annotations[AnnotationRateLimit]; ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			d.addf(annotationField(AnnotationRateLimit), "%s is not a positive number of requests per second", quote(raw))
		}
		m.RatePerSecond = v
	}
	for _, a := range []struct {
		key string
		v   *int
	}{{AnnotationRateBurst, &m.Burst}, {AnnotationMaxInFlight, &m.MaxInFlight}} {
		raw, ok := annotations[a.key]
		if !ok {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil || v <= 0 {
			d.addf(annotationField(a.key), "%s is not a positive whole number", quote(raw))
		}
		*a.v = v
	}
	if m.Burst > 0 && m.RatePerSecond == 0 {
		d.addf(annotationField(AnnotationRateBurst), "needs %s: a burst bounds a rate", AnnotationRateLimit)
	}
}

// boolAnnotation reads a true/false annotation, def when it is absent.
func boolAnnotation(annotations map[string]string, key string, def bool, d *docProblems) bool {
	raw, ok := annotations[key]
	if !ok {
		return def
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		d.addf(annotationField(key), "%s is not true or false", quote(raw))
	}
	return v
}

// readModel reads spec.predictor.model. remote says the model is served at
// the annotation's endpoints rather than by a runtime infergate starts;
// custom says the runtime infergate starts is the user's command rather
// than the built-in one.
func readModel(m *Model, ms *ModelSpec, remote, custom bool, baseDir string, d *docProblems) {
	m.Format = ms.ModelFormat.Name
	m.FormatVersion = ms.ModelFormat.Version
	m.Protocol = parseProtocol(ms.ProtocolVersion, remote, d)
	if ms.ModelFormat.Name == "" {
		d.addf(fFormatName, "required")
	}
	for i, e := range ms.Env {
		if e.Name == "" {
			d.addf(fmt.Sprintf("%s.env[%d].name", fModel, i), "required")
		}
	}
	// A remote runtime loaded the model itself: storageUri may name
	// anything, even s3://, and is not read.
	if remote {
		return
	}
	// The user's runtime serves what it serves, from wherever its command
	// says; storageUri is needed only by a command that uses it.
	if custom {
		if ms.StorageURI != "" {
			m.Path, m.RegistryRef = modelSource(ms.StorageURI, baseDir, d)
		}
		return
	}
	if ms.ModelFormat.Name != "" && ms.ModelFormat.Name != BuiltinFormat {
		d.addf(fFormatName, "%s needs a runtime at a URL (annotation %s) or a runtime command (annotation %s); the built-in runtime serves %s",
			quote(ms.ModelFormat.Name), AnnotationEndpoints, AnnotationCommand, BuiltinFormat)
	}
	m.Path, m.RegistryRef = modelSource(ms.StorageURI, baseDir, d)
}

// RegistryScheme is the storageUri scheme of models in infergate's
// registry.
const RegistryScheme = "registry"

// modelSource reads storageUri for a runtime infergate starts: a
// registry:// reference (returned as written, its shape checked), or a
// local path (see localPath).
func modelSource(uri, baseDir string, d *docProblems) (path, ref string) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || scheme != RegistryScheme {
		return localPath(uri, baseDir, d), ""
	}
	if err := checkRegistryRef(rest); err != nil {
		d.addf(fStorageURI, "%s: %v", quote(uri), err)
		return "", ""
	}
	return "", uri
}

// checkRegistryRef checks the shape of a registry reference after its
// scheme: NAME, NAME/N, NAME@ALIAS or NAME@sha256:HEX. Whether it names
// anything is the registry's to say, at apply.
func checkRegistryRef(s string) error {
	const form = "want registry://NAME, registry://NAME/VERSION, registry://NAME@ALIAS or registry://NAME@sha256:DIGEST"
	name, sel := s, ""
	if i := strings.IndexAny(s, "/@"); i >= 0 {
		name, sel = s[:i], s[i:]
	}
	if name == "" {
		return fmt.Errorf("no model name (%s)", form)
	}
	switch {
	case sel == "":
	case sel[0] == '/':
		n, err := strconv.ParseUint(sel[1:], 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("version %q is not a positive number (%s)", sel[1:], form)
		}
	case strings.HasPrefix(sel, "@sha256:"):
		hex := sel[len("@sha256:"):]
		if len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
			return fmt.Errorf("digest %q is not 64 lowercase hex digits (%s)", hex, form)
		}
	default:
		if len(sel) == 1 || strings.ContainsAny(sel[1:], "/@:") {
			return fmt.Errorf("alias %q is malformed (%s)", sel[1:], form)
		}
	}
	return nil
}

// readPredictor reads spec.predictor's scaling, timeout, canary and
// batching settings.
func readPredictor(m *Model, pred *PredictorSpec, d *docProblems) {
	m.MinReplicas = DefaultMinReplicas
	if pred.MinReplicas != nil {
		m.MinReplicas = *pred.MinReplicas
		if m.MinReplicas < 0 {
			d.addf(fMinReplicas, "%d is negative", m.MinReplicas)
		}
	}
	m.MaxReplicas = pred.MaxReplicas
	switch {
	case m.MaxReplicas < 0:
		d.addf(fMaxReplicas, "%d is negative", m.MaxReplicas)
	case m.MaxReplicas > 0 && m.MinReplicas >= 0 && m.MaxReplicas < m.MinReplicas:
		d.addf(fMaxReplicas, "%d is less than minReplicas (%d)", m.MaxReplicas, m.MinReplicas)
	}

	m.ScaleMetric = DefaultScaleMetric
	if pred.ScaleMetric != nil {
		m.ScaleMetric = *pred.ScaleMetric
		switch m.ScaleMetric {
		case MetricConcurrency, MetricRPS, MetricCPU, MetricMemory:
		default:
			d.addf(fScaleMetric, "%s is not one of %s, %s, %s, %s",
				quote(string(m.ScaleMetric)), MetricConcurrency, MetricRPS, MetricCPU, MetricMemory)
		}
	}
	if pred.ScaleTarget != nil {
		m.ScaleTarget = *pred.ScaleTarget
		if m.ScaleTarget <= 0 {
			d.addf(fScaleTarget, "%d is not positive", m.ScaleTarget)
		}
	}
	if pred.ContainerConcurrency != nil {
		m.ContainerConcurrency = *pred.ContainerConcurrency
		if m.ContainerConcurrency < 0 {
			d.addf(fConcurrency, "%d is negative", m.ContainerConcurrency)
		}
	}

	m.Timeout = DefaultTimeout
	if pred.TimeoutSeconds != nil {
		m.Timeout = seconds(fTimeout, *pred.TimeoutSeconds, d)
	}
	if p := pred.CanaryTrafficPercent; p != nil {
		v := *p
		m.CanaryTrafficPercent = &v
		if v < 0 || v > 100 {
			d.addf(fCanary, "%d is not between 0 and 100", v)
		}
	}
	if b := pred.Batcher; b != nil {
		m.Batcher = toBatcher(b, d)
	}
}

// seconds converts a count of seconds, reporting one that is not positive or
// is more than MaxTimeoutSeconds.
func seconds(field string, s int64, d *docProblems) time.Duration {
	switch {
	case s <= 0:
		d.addf(field, "%d is not positive", s)
	case s > MaxTimeoutSeconds:
		d.addf(field, "%d is more than %d (24h)", s, MaxTimeoutSeconds)
	}
	return time.Duration(s) * time.Second
}

func toBatcher(b *BatcherSpec, d *docProblems) *Batcher {
	out := &Batcher{
		MaxBatchSize: DefaultMaxBatchSize,
		MaxLatency:   DefaultMaxLatency,
		Timeout:      DefaultBatchTimeout,
	}
	if b.MaxBatchSize != nil {
		out.MaxBatchSize = *b.MaxBatchSize
		if out.MaxBatchSize <= 0 {
			d.addf(fBatchSize, "%d is not positive", out.MaxBatchSize)
		}
	}
	if b.MaxLatency != nil {
		ms := *b.MaxLatency
		switch {
		case ms <= 0:
			d.addf(fBatchLatency, "%d is not positive", ms)
		case ms > MaxTimeoutSeconds*1000:
			d.addf(fBatchLatency, "%d is more than %d (24h in milliseconds)", ms, MaxTimeoutSeconds*1000)
		}
		out.MaxLatency = time.Duration(ms) * time.Millisecond
	}
	if b.Timeout != nil {
		out.Timeout = seconds(fBatchTimeout, int64(*b.Timeout), d)
	}
	readTritonBatcher(out, b, d)
	return out
}

// readTritonBatcher reads the batcher fields infergate takes from Triton's
// dynamic batcher into out, whose KServe fields are already read.
func readTritonBatcher(out *Batcher, b *BatcherSpec, d *docProblems) {
	if b.PreferredBatchSizes != nil {
		out.PreferredBatchSizes = slices.Clone(b.PreferredBatchSizes)
	}
	seen := make(map[int]bool, len(b.PreferredBatchSizes))
	for i, n := range b.PreferredBatchSizes {
		field := fmt.Sprintf("%spreferredBatchSizes[%d]", fBatch, i)
		switch {
		case n <= 0:
			d.addf(field, "%d is not positive", n)
		case out.MaxBatchSize > 0 && n > out.MaxBatchSize:
			d.addf(field, "%d is more than maxBatchSize (%d)", n, out.MaxBatchSize)
		case seen[n]:
			d.addf(field, "%d is listed twice", n)
		}
		seen[n] = true
	}

	out.MaxQueueSize = DefaultMaxQueueSize
	if b.MaxQueueSize != nil {
		out.MaxQueueSize = *b.MaxQueueSize
		if out.MaxQueueSize <= 0 {
			d.addf(fBatch+"maxQueueSize", "%d is not positive", out.MaxQueueSize)
		}
	}

	out.PriorityLevels = DefaultPriorityLevels
	levelsOK := true
	if b.PriorityLevels != nil {
		out.PriorityLevels = *b.PriorityLevels
		switch {
		case out.PriorityLevels <= 0:
			d.addf(fBatch+"priorityLevels", "%d is not positive", out.PriorityLevels)
			levelsOK = false
		case out.PriorityLevels > MaxPriorityLevels:
			d.addf(fBatch+"priorityLevels", "%d is more than %d", out.PriorityLevels, MaxPriorityLevels)
			levelsOK = false
		}
	}
	out.DefaultPriority = (out.PriorityLevels + 1) / 2
	if b.DefaultPriority != nil {
		out.DefaultPriority = *b.DefaultPriority
		if levelsOK && (out.DefaultPriority < 1 || out.DefaultPriority > out.PriorityLevels) {
			d.addf(fBatch+"defaultPriority", "%d is not between 1 and priorityLevels (%d)", out.DefaultPriority, out.PriorityLevels)
		}
	}

	out.QueuePolicy = QueuePolicy{TimeoutAction: TimeoutReject, AllowTimeoutOverride: true}
	if qp := b.QueuePolicy; qp != nil {
		if a := qp.TimeoutAction; a != nil {
			out.QueuePolicy.TimeoutAction = TimeoutAction(*a)
			switch out.QueuePolicy.TimeoutAction {
			case TimeoutReject, TimeoutDelay:
			default:
				d.addf(fBatch+"queuePolicy.timeoutAction", "%s is not %s or %s", quote(*a), TimeoutReject, TimeoutDelay)
			}
		}
		if us := qp.DefaultTimeoutMicroseconds; us != nil {
			const maxMicros = MaxTimeoutSeconds * 1_000_000
			switch {
			case *us < 0:
				d.addf(fBatch+"queuePolicy.defaultTimeoutMicroseconds", "%d is negative", *us)
			case *us > maxMicros:
				d.addf(fBatch+"queuePolicy.defaultTimeoutMicroseconds", "%d is more than %d (24h in microseconds)", *us, int64(maxMicros))
			}
			out.QueuePolicy.DefaultTimeout = time.Duration(*us) * time.Microsecond
		}
		if o := qp.AllowTimeoutOverride; o != nil {
			out.QueuePolicy.AllowTimeoutOverride = *o
		}
	}

	if p := b.PreserveOrdering; p != nil {
		out.PreserveOrdering = *p
	}
	if n := b.MaxBatchesInFlight; n != nil {
		out.MaxBatchesInFlight = *n
		if *n < 0 {
			d.addf(fBatch+"maxBatchesInFlight", "%d is negative (0 means one per ready replica)", *n)
		}
	}
	out.Oversize = OversizeSendAlone
	if o := b.Oversize; o != nil {
		out.Oversize = OversizePolicy(*o)
		switch out.Oversize {
		case OversizeSendAlone, OversizeReject:
		default:
			d.addf(fBatch+"oversize", "%s is not %s or %s", quote(*o), OversizeSendAlone, OversizeReject)
		}
	}
}

// checkName reports a name that is not a DNS-1123 label. A model name must
// also start with a letter, as KServe requires of an InferenceService name.
func checkName(field, name string, model bool, d *docProblems) {
	if name == "" {
		d.addf(field, "required")
		return
	}
	if len(name) > 63 {
		d.addf(field, "%s is %d characters, more than 63", quote(name), len(name))
		return
	}
	ok := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		lower := 'a' <= c && c <= 'z'
		digit := '0' <= c && c <= '9'
		switch {
		case i == 0 && model && !lower, i == 0 && !lower && !digit:
			ok = false
		case i == len(name)-1 && !lower && !digit:
			ok = false
		case !lower && !digit && c != '-':
			ok = false
		}
	}
	if ok {
		return
	}
	if model {
		d.addf(field, "%s must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit", quote(name))
	} else {
		d.addf(field, "%s must consist of lowercase letters, digits and '-', and start and end with a letter or digit", quote(name))
	}
}

func annotationField(key string) string {
	return "metadata.annotations[" + key + "]"
}

// parseProtocol reads protocolVersion. KServe's v1 REST protocol is
// accepted for runtimes at URLs (the gateway adapts it to OIP); the runtimes
// infergate starts speak OIP, and v1 over gRPC is not supported.
func parseProtocol(v string, remote bool, d *docProblems) Protocol {
	switch v {
	case "", "v2":
		return ProtocolREST
	case "grpc-v2":
		return ProtocolGRPC
	case "v1":
		if remote {
			return ProtocolKServeV1
		}
		d.addf(fProtocol, "%s (KServe's v1 protocol) is supported only for runtimes at URLs (annotation %s); runtimes infergate starts speak v2 or grpc-v2", quote(v), AnnotationEndpoints)
	case "grpc-v1":
		d.addf(fProtocol, "%s is not supported; use v1 (REST), v2 or grpc-v2", quote(v))
	default:
		d.addf(fProtocol, "%s is not v2 or grpc-v2", quote(v))
	}
	return ""
}

// parseEndpoints reads the infergate.io/endpoints annotation; see
// AnnotationEndpoints.
func parseEndpoints(raw string, d *docProblems) []Endpoint {
	field := annotationField(AnnotationEndpoints)
	var eps []Endpoint
	seen := make(map[string]bool)
	listed := false
	for s := range strings.SplitSeq(raw, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			// A trailing comma in a long list is harmless.
			continue
		}
		listed = true
		ep, msg := parseEndpoint(s)
		if msg != "" {
			d.addf(field, "%s: %s", quote(s), msg)
			continue
		}
		if seen[ep.URL] {
			d.addf(field, "%s is listed twice", quote(s))
			continue
		}
		seen[ep.URL] = true
		eps = append(eps, ep)
	}
	if !listed {
		d.addf(field, "%s lists no URL", quote(raw))
	}
	return eps
}

// parseEndpoint parses one URL of the annotation, or says what is wrong
// with it.
func parseEndpoint(s string) (Endpoint, string) {
	if !strings.Contains(s, "://") {
		return Endpoint{}, "want scheme://host:port"
	}
	u, err := url.Parse(s)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			return Endpoint{}, ue.Err.Error()
		}
		return Endpoint{}, err.Error()
	}
	var proto Protocol
	switch u.Scheme {
	case "http", "https":
		proto = ProtocolREST
	case "grpc", "grpcs":
		proto = ProtocolGRPC
	default:
		return Endpoint{}, fmt.Sprintf("scheme %s is not http, https, grpc or grpcs", quote(u.Scheme))
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Endpoint{}, "want scheme://host:port with nothing after the port"
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		if u.Host == "" {
			return Endpoint{}, "no host"
		}
		return Endpoint{}, "no port"
	}
	if host == "" {
		return Endpoint{}, "no host"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Endpoint{}, fmt.Sprintf("port %s is not between 1 and 65535", quote(port))
	}
	return Endpoint{
		URL:      strings.TrimSuffix(s, "/"),
		Protocol: proto,
		Address:  u.Host,
		TLS:      u.Scheme == "https" || u.Scheme == "grpcs",
	}, ""
}

// localPath resolves storageUri for the built-in runtime: file://PATH or a
// bare PATH, PATH relative to baseDir unless absolute. file://PATH is read
// literally (file://models/iris is the relative path models/iris, and
// percent-escapes are not decoded), because that is how people write it.
func localPath(uri, baseDir string, d *docProblems) string {
	if uri == "" {
		d.addf(fStorageURI, "required unless annotation %s is set", AnnotationEndpoints)
		return ""
	}
	p := uri
	if scheme, rest, ok := strings.Cut(uri, "://"); ok && isScheme(scheme) {
		if scheme != "file" {
			d.addf(fStorageURI, "%s: scheme %s is not supported; only local paths (file://PATH or PATH) and registry://NAME[/VERSION|@ALIAS] are", quote(uri), quote(scheme))
			return ""
		}
		p = rest
	}
	if p == "" {
		d.addf(fStorageURI, "%s has no path", quote(uri))
		return ""
	}
	if !filepath.IsAbs(p) && baseDir != "" {
		p = filepath.Join(baseDir, p)
	}
	return filepath.Clean(p)
}

// isScheme reports whether s is a URI scheme (RFC 3986: a letter, then
// letters, digits, '+', '-' or '.').
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !('0' <= c && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}
