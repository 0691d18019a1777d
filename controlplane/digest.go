package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/infergate/infergate/config"
)

// mirrorAnnotationPrefix starts the mirroring annotations, all traffic-only.
const mirrorAnnotationPrefix = "infergate.io/mirror"

// trafficOnly reports whether an annotation steers traffic between
// revisions rather than defining one: a change to it makes no revision.
func trafficOnly(key string) bool {
	return key == config.AnnotationRollout || strings.HasPrefix(key, mirrorAnnotationPrefix)
}

// Digest returns "sha256:" and the hex SHA-256 of what defines a revision
// of m. Two declarations with the same digest run the same way, so
// applying one after the other makes no new revision.
//
// The digest covers:
//   - spec.predictor as written, every field but canaryTrafficPercent:
//     the model (modelFormat, storageUri, runtime, runtimeVersion,
//     protocolVersion, args, env, resources), minReplicas, maxReplicas,
//     scaleTarget, scaleMetric, containerConcurrency, timeout, batcher and
//     serviceAccountName. "As written" means that writing out a default
//     (minReplicas: 1) is a change, as it is for KServe;
//   - m.Path, the model path storageUri resolves to, so the same relative
//     storageUri read from another directory is another revision;
//   - metadata.annotations, but for the traffic-only ones:
//     infergate.io/rollout and every infergate.io/mirror* annotation.
//     Autoscaling, endpoints, command and any other annotation count.
//
// It leaves out what names or places the declaration rather than defining
// how the model runs: the name, namespace, labels, Source, and
// canaryTrafficPercent, which only moves traffic.
func Digest(m config.Model) string {
	p := m.Spec.Spec.Predictor
	p.CanaryTrafficPercent = nil
	ann := maps.Clone(m.Annotations)
	maps.DeleteFunc(ann, func(k, _ string) bool { return trafficOnly(k) })
	if len(ann) == 0 {
		ann = nil // No annotations and only traffic ones are the same.
	}
	in := struct {
		Predictor   config.PredictorSpec `json:"predictor"`
		Path        string               `json:"path"`
		Annotations map[string]string    `json:"annotations"`
	}{p, m.Path, ann}
	// encoding/json writes map keys sorted: the encoding is canonical.
	b, err := json.Marshal(in)
	if err != nil {
		// The spec types hold strings, integers, booleans, slices and
		// maps of them: nothing json cannot encode.
		panic(fmt.Sprintf("controlplane: digest of %s: %v", m.Name, err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// declFingerprint sums up all of a declaration that Apply acts on: what
// Digest covers, canaryTrafficPercent and the traffic-only annotations.
// Two declarations with the same fingerprint ask for the same thing.
func declFingerprint(m config.Model) string {
	in := struct {
		Predictor   config.PredictorSpec `json:"predictor"`
		Path        string               `json:"path"`
		Annotations map[string]string    `json:"annotations"`
	}{m.Spec.Spec.Predictor, m.Path, m.Annotations}
	b, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("controlplane: fingerprint of %s: %v", m.Name, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// cloneModel returns a deep copy of m, so that a caller of Apply may reuse
// what it passed. config.Model holds only exported data with a JSON form,
// so a round trip through JSON copies all of it.
func cloneModel(m config.Model) (config.Model, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return config.Model{}, err
	}
	var out config.Model
	if err := json.Unmarshal(b, &out); err != nil {
		return config.Model{}, err
	}
	return out, nil
}
