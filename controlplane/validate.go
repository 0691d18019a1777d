package controlplane

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/infergate/infergate/config"
)

// declaration is one declaration of an Apply batch, checked.
type declaration struct {
	m      config.Model
	digest string
	mirror mirrorSpec
	// rollout is nil when the declaration has no rollout annotation.
	rollout *Rollout
}

// invalidError is one problem with one declaration of a batch.
type invalidError struct{ source, field, msg string }

func (e *invalidError) Error() string {
	var b strings.Builder
	if e.source != "" {
		b.WriteString(e.source + ": ")
	}
	if e.field != "" {
		b.WriteString(e.field + ": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(m config.Model, field, format string, args ...any) error {
	return &invalidError{m.Source, field, fmt.Sprintf(format, args...)}
}

func annotationField(key string) string { return "metadata.annotations[" + key + "]" }

// checkBatch validates a batch and returns its declarations, deep copies
// with their digests and annotations read.
func checkBatch(models []config.Model) ([]declaration, error) {
	var errs []error
	first := make(map[string]string, len(models))
	decls := make([]declaration, 0, len(models))
	for _, in := range models {
		if in.Name == "" {
			errs = append(errs, invalid(in, "metadata.name", "required"))
			continue
		}
		if where, dup := first[in.Name]; dup {
			errs = append(errs, invalid(in, "metadata.name", "%s is also declared at %s", strconv.Quote(in.Name), where))
			continue
		}
		first[in.Name] = in.Source
		if p := in.CanaryTrafficPercent; p != nil && (*p < 0 || *p > 100) {
			errs = append(errs, invalid(in, "spec.predictor.canaryTrafficPercent", "%d is not between 0 and 100", *p))
		}
		mirror, mirrorErrs := parseMirror(in)
		errs = append(errs, mirrorErrs...)
		m, err := cloneModel(in)
		if err != nil {
			errs = append(errs, invalid(in, "", "cannot copy the declaration: %v", err))
			continue
		}
		var rollout *Rollout
		if raw, ok := in.Annotations[config.AnnotationRollout]; ok {
			r, err := ParseRollout(raw)
			if err != nil {
				errs = append(errs, invalid(in, annotationField(config.AnnotationRollout), "%v", err))
			}
			rollout = &r
		}
		decls = append(decls, declaration{m: m, digest: Digest(m), mirror: mirror, rollout: rollout})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return decls, nil
}

// mirrorSpec is a model's mirror annotations, read. ref is a tag or a
// revision name.
type mirrorSpec struct {
	percent float64
	ref     string
}

// parseMirror reads the mirror annotations of a declaration.
func parseMirror(m config.Model) (mirrorSpec, []error) {
	var errs []error
	ms := mirrorSpec{ref: TagLatest}
	for k := range m.Annotations {
		if strings.HasPrefix(k, mirrorAnnotationPrefix) && k != config.AnnotationMirrorPercent && k != config.AnnotationMirrorRevision {
			errs = append(errs, invalid(m, annotationField(k), "unknown mirror annotation (known: %s, %s)", config.AnnotationMirrorPercent, config.AnnotationMirrorRevision))
		}
	}
	raw, hasPercent := m.Annotations[config.AnnotationMirrorPercent]
	if hasPercent {
		v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		switch {
		case err != nil || math.IsNaN(v):
			errs = append(errs, invalid(m, annotationField(config.AnnotationMirrorPercent), "%s is not a number", strconv.Quote(raw)))
		case v < 0 || v > 100:
			errs = append(errs, invalid(m, annotationField(config.AnnotationMirrorPercent), "%s is not between 0 and 100", strconv.Quote(raw)))
		default:
			ms.percent = v
		}
	}
	raw, hasRev := m.Annotations[config.AnnotationMirrorRevision]
	if !hasRev {
		return ms, errs
	}
	field := annotationField(config.AnnotationMirrorRevision)
	ref := strings.TrimSpace(raw)
	if !hasPercent {
		errs = append(errs, invalid(m, field, "%s has no effect without %s", strconv.Quote(raw), config.AnnotationMirrorPercent))
	}
	if n, err := strconv.Atoi(ref); err == nil {
		if n <= 0 {
			errs = append(errs, invalid(m, field, "%s is not a revision number (1, 2...)", strconv.Quote(raw)))
		}
		ref = revisionName(m.Name, n)
	} else if !isTag(ref) && !isRevisionName(m.Name, ref) {
		errs = append(errs, invalid(m, field, "%s is not %s, %s, a revision number or a revision name like %s",
			strconv.Quote(raw), TagLatest, TagPrev, revisionName(m.Name, 1)))
	}
	ms.ref = ref
	return ms, errs
}

// isRevisionName reports whether s has the form of a revision name of model.
func isRevisionName(model, s string) bool {
	num, ok := strings.CutPrefix(s, model+"-")
	if !ok || len(num) < 5 {
		return false
	}
	n, err := strconv.Atoi(num)
	return err == nil && n > 0 && revisionName(model, n) == s
}
