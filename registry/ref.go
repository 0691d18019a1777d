package registry

import (
	"strconv"
	"strings"
)

// Scheme is the URI scheme of model references and artifact URIs.
const Scheme = "registry://"

// Ref is a parsed model reference. Exactly one of Version, Alias and Digest
// is set, or none: the latest READY, LIVE version.
//
//	registry://iris                  latest READY, LIVE version (also iris@latest)
//	registry://iris/3                version 3
//	registry://iris@prod             the version alias prod points at
//	registry://iris@sha256:<hex>     the version whose manifest digest is that
type Ref struct {
	Model   string
	Version int64
	Alias   string
	Digest  string
}

// ParseRef parses a model reference; the registry:// prefix may be left
// out. The error names the reference and what is wrong with it.
func ParseRef(s string) (Ref, error) {
	bad := func(why string) (Ref, error) {
		return Ref{}, errorf(CodeInvalidArgument, "model reference %q: %s (want registry://<model>, registry://<model>/<version>, registry://<model>@<alias> or registry://<model>@sha256:<hex>)", s, why)
	}
	rest := strings.TrimPrefix(s, Scheme)
	if rest == "" {
		return bad("no model name")
	}
	if strings.Contains(rest, "://") {
		return bad("not a registry:// reference")
	}
	var r Ref
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.Model, rest = rest[:i], rest[i+1:]
		if strings.HasPrefix(rest, "sha256:") {
			if !hexDigestRE.MatchString(rest) {
				return bad("the digest is not sha256: and 64 lowercase hex digits")
			}
			r.Digest = rest
		} else {
			if !nameRE.MatchString(rest) {
				return bad("alias " + strconv.Quote(rest) + " breaks the naming rule " + NameRule)
			}
			if rest != ReservedAlias {
				r.Alias = rest
			}
		}
	} else if i := strings.IndexByte(rest, '/'); i >= 0 {
		r.Model = rest[:i]
		v := rest[i+1:]
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || strconv.FormatInt(n, 10) != v {
			return bad("version " + strconv.Quote(v) + " is not a version number (1, 2, ...)")
		}
		r.Version = n
	} else {
		r.Model = rest
	}
	if !nameRE.MatchString(r.Model) {
		return bad("model name " + strconv.Quote(r.Model) + " breaks the naming rule " + NameRule)
	}
	return r, nil
}

// String returns the reference in its canonical registry:// form.
func (r Ref) String() string {
	switch {
	case r.Version > 0:
		return Scheme + r.Model + "/" + strconv.FormatInt(r.Version, 10)
	case r.Alias != "":
		return Scheme + r.Model + "@" + r.Alias
	case r.Digest != "":
		return Scheme + r.Model + "@" + r.Digest
	}
	return Scheme + r.Model
}

// artifactURI is the URI of an artifact of a version.
func artifactURI(model string, version int64, name string) string {
	return Scheme + model + "/" + strconv.FormatInt(version, 10) + "/" + name
}
