package registry

import (
	"math"
	"mime"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NameRule is the naming rule of models and aliases: 1 to 63 lowercase
// letters, digits, '.', '_' and '-', starting and ending with a letter or
// digit.
const NameRule = `^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`

// ReservedAlias is the alias name that always means the latest READY, LIVE
// version; it cannot be set.
const ReservedAlias = "latest"

// Limits on what a model or version carries.
const (
	maxLabels      = 64
	maxLabelValue  = 1024
	maxText        = 64 << 10 // description
	maxShortText   = 256      // owner, author, actor, source fields
	maxProps       = 256      // custom properties, metrics, params (each)
	maxPropString  = 64 << 10
	maxParamValue  = 6000 // as MLflow
	maxMetricKey   = 250
	maxArtifactLen = 1024
	maxReason      = 1024
	maxMessage     = 4096
	maxUser        = 253
)

var (
	nameRE      = regexp.MustCompile(NameRule)
	labelKeyRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$`)
	formatRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,62}$`)
	kindRE      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,62}$`)
	eventKindRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)
	hexDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

func checkName(what, name string) error {
	if !nameRE.MatchString(name) {
		return errorf(CodeInvalidArgument, "%s %q breaks the naming rule %s (1-63 lowercase letters, digits, '.', '_', '-', starting and ending with a letter or digit)", what, name, NameRule)
	}
	return nil
}

func checkAliasName(model, name string) error {
	if err := checkName("alias name", name); err != nil {
		return err
	}
	if name == ReservedAlias {
		return errorf(CodeInvalidArgument, "alias %s@%s: %q is reserved (it always means the latest READY version)", model, name, ReservedAlias)
	}
	return nil
}

// checkText refuses invalid UTF-8, control characters (but for newlines and
// tabs when multiline) and text longer than max bytes.
func checkText(what, s string, max int, multiline bool) error {
	if len(s) > max {
		return errorf(CodeInvalidArgument, "%s is %d bytes long, more than the %d allowed", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return errorf(CodeInvalidArgument, "%s %q is not valid UTF-8", what, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			return errorf(CodeInvalidArgument, "%s %q holds the control character %U", what, s, r)
		}
	}
	return nil
}

func checkLabels(what string, labels map[string]string) error {
	if len(labels) > maxLabels {
		return errorf(CodeInvalidArgument, "%s has %d labels, more than the %d allowed", what, len(labels), maxLabels)
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return errorf(CodeInvalidArgument, "%s label key %q: want 1-253 letters, digits, '.', '_', '/', '-', starting and ending with a letter or digit", what, k)
		}
		if err := checkText(what+" label "+k, v, maxLabelValue, false); err != nil {
			return err
		}
	}
	return nil
}

func checkProps(what string, props map[string]Value) error {
	if len(props) > maxProps {
		return errorf(CodeInvalidArgument, "%s has %d custom properties, more than the %d allowed", what, len(props), maxProps)
	}
	for k, v := range props {
		if !labelKeyRE.MatchString(k) {
			return errorf(CodeInvalidArgument, "%s custom property key %q: want 1-253 letters, digits, '.', '_', '/', '-', starting and ending with a letter or digit", what, k)
		}
		switch v.kind {
		case KindString:
			if err := checkText(what+" custom property "+k, v.s, maxPropString, true); err != nil {
				return err
			}
		case KindDouble:
			if math.IsNaN(v.d) || math.IsInf(v.d, 0) {
				return errorf(CodeInvalidArgument, "%s custom property %s: doubleValue %v is not a finite number", what, k, v.d)
			}
		case KindInt, KindBool:
		default:
			return errorf(CodeInvalidArgument, "%s custom property %s has no value (want one of stringValue, intValue, doubleValue, boolValue)", what, k)
		}
	}
	return nil
}

func checkMetricKey(what, k string) error {
	if k == "" || len(k) > maxMetricKey || strings.TrimSpace(k) != k {
		return errorf(CodeInvalidArgument, "%s key %q: want 1-%d characters without leading or trailing space", what, k, maxMetricKey)
	}
	return checkText(what+" key", k, maxMetricKey, false)
}

func checkMetrics(what string, m map[string]float64) error {
	if len(m) > maxProps {
		return errorf(CodeInvalidArgument, "%s has %d metrics, more than the %d allowed", what, len(m), maxProps)
	}
	for k, v := range m {
		if err := checkMetricKey(what+" metric", k); err != nil {
			return err
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errorf(CodeInvalidArgument, "%s metric %s: %v is not a finite number", what, k, v)
		}
	}
	return nil
}

func checkParams(what string, p map[string]string) error {
	if len(p) > maxProps {
		return errorf(CodeInvalidArgument, "%s has %d params, more than the %d allowed", what, len(p), maxProps)
	}
	for k, v := range p {
		if err := checkMetricKey(what+" param", k); err != nil {
			return err
		}
		if err := checkText(what+" param "+k, v, maxParamValue, true); err != nil {
			return err
		}
	}
	return nil
}

func checkSource(what string, s Source) error {
	if !kindRE.MatchString(s.Kind) {
		return errorf(CodeInvalidArgument, "%s source kind %q: want a word such as user, pipelineRun, trainJob, import", what, s.Kind)
	}
	for _, f := range []struct{ n, v string }{{"id", s.ID}, {"name", s.Name}, {"actor", s.Actor}} {
		if err := checkText(what+" source "+f.n, f.v, maxShortText, false); err != nil {
			return err
		}
	}
	return nil
}

// checkArtifactName refuses anything but a clean relative slash path with
// no "." or ".." element, so that an artifact can never be written outside
// the directory a version is materialized into.
func checkArtifactName(name string) error {
	bad := func(why string) error {
		return errorf(CodeInvalidArgument, "artifact name %q: %s (want a clean relative path such as model.onnx or iris/1/model.onnx)", name, why)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > maxArtifactLen:
		return bad("longer than 1024 bytes")
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case strings.HasPrefix(name, "/"):
		return bad("absolute")
	case strings.ContainsRune(name, '\\'):
		return bad("holds a backslash")
	case path.Clean(name) != name:
		return bad("not clean")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return bad("holds a control character")
		}
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "." || seg == ".." {
			return bad("holds a '.' or '..' element")
		}
		if len(seg) > 255 {
			return bad("has an element longer than 255 bytes")
		}
	}
	return nil
}

func checkUpload(up ArtifactUpload) error {
	if err := checkArtifactName(up.Name); err != nil {
		return err
	}
	if up.Format != "" && !formatRE.MatchString(up.Format) {
		return errorf(CodeInvalidArgument, "artifact %s format %q: want a lowercase word such as onnx, safetensors, gguf", up.Name, up.Format)
	}
	if up.ContentType != "" {
		if _, _, err := mime.ParseMediaType(up.ContentType); err != nil || len(up.ContentType) > maxShortText {
			return errorf(CodeInvalidArgument, "artifact %s contentType %q: not a media type such as application/octet-stream", up.Name, up.ContentType)
		}
	}
	if up.Digest != "" && !hexDigestRE.MatchString(up.Digest) {
		return errorf(CodeInvalidArgument, "artifact %s digest %q: want sha256: and 64 lowercase hex digits", up.Name, up.Digest)
	}
	if up.Size < -1 {
		return errorf(CodeInvalidArgument, "artifact %s size %d: want the byte count, or -1 or 0 for unknown", up.Name, up.Size)
	}
	return nil
}

func checkEventKind(kind string) error {
	if !eventKindRE.MatchString(kind) {
		return errorf(CodeInvalidArgument, "event kind %q: want 1-63 lowercase letters, digits, '.', '_', '-', starting with a letter (e.g. rollout.step)", kind)
	}
	return nil
}

func checkUser(user string) error {
	if user == "" || strings.ContainsFunc(user, unicode.IsSpace) {
		return errorf(CodeInvalidArgument, "user %q: want a non-empty name without spaces, such as inferenceservice/iris", user)
	}
	return checkText("user", user, maxUser, false)
}
