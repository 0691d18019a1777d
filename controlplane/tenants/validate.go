package tenants

import (
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/infergate/infergate/auth"
)

var (
	// tenantRE is a DNS-1123 label.
	tenantRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	modelRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$`)
	// labelValueRE is a Kubernetes label value (empty allowed).
	labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$`)
	// keyIDRE is the id of a key as auth.NewKey makes it.
	keyIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// Bounds of what one tenant or grant may hold.
const (
	maxWeight      = 1_000_000
	maxKeyName     = 63
	maxGrantModels = 1000
	maxSelector    = 64
)

// allActions is every action this package knows.
const allActions = auth.ActionInfer | auth.ActionMetadata | auth.ActionAdmin | auth.ActionCommand | auth.ActionMetrics

// modelActions are the actions about a model: a grant holding one selects
// models.
const modelActions = auth.ActionInfer | auth.ActionMetadata

// ParseActions parses a list of action names separated by commas ("infer",
// "metadata", "admin", "command", "metrics"; as auth.ParseAction reads
// them). It refuses an empty list and an unknown name, naming it.
func ParseActions(s string) (auth.Action, error) {
	a, err := auth.ParseAction(s)
	if err != nil {
		return 0, errorf(ErrInvalid, "actions: %s", strings.TrimPrefix(err.Error(), "auth: "))
	}
	return a, nil
}

// ActionNames returns the names of the actions in a, in bit order.
func ActionNames(a auth.Action) []string {
	var out []string
	for bit := auth.Action(1); bit != 0 && bit <= allActions; bit <<= 1 {
		if a&bit != 0 && bit&allActions != 0 {
			out = append(out, bit.String())
		}
	}
	return out
}

// FormatActions returns a's names joined by commas, as ParseActions reads
// them.
func FormatActions(a auth.Action) string { return strings.Join(ActionNames(a), ",") }

// CheckTenantName reports a name that is not a DNS-1123 label (1-63
// lowercase letters, digits and '-', starting and ending with a letter or
// digit).
func CheckTenantName(name string) error {
	if !tenantRE.MatchString(name) {
		return errorf(ErrInvalid, "tenant name %q: want a DNS label: 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	if strings.HasPrefix(name, ReservedPrefix) {
		return errorf(ErrInvalid, "tenant name %q: names starting %q are infergate's own", name, ReservedPrefix)
	}
	return nil
}

// ReservedPrefix starts the names of infergate's own tenants (the local
// user's, the pipeline steps'), which the store refuses.
const ReservedPrefix = "infergate-"

// checkLimits checks a tenant's weight and quotas and returns them
// normalised: weight 0 is 1, a rate without a burst gets ceil(rate).
func checkLimits(what string, t *auth.Tenant) error {
	switch {
	case t.Weight < 0 || t.Weight > maxWeight:
		return errorf(ErrInvalid, "%s weight %d: want 1 to %d (0 means 1)", what, t.Weight, maxWeight)
	case math.IsNaN(t.RatePerSecond) || math.IsInf(t.RatePerSecond, 0) || t.RatePerSecond < 0:
		return errorf(ErrInvalid, "%s rate %v: want a finite number of requests per second, 0 for no bound", what, t.RatePerSecond)
	case t.Burst < 0:
		return errorf(ErrInvalid, "%s burst %d is negative", what, t.Burst)
	case t.MaxInFlight < 0:
		return errorf(ErrInvalid, "%s max in flight %d is negative: want 0 for no bound", what, t.MaxInFlight)
	case t.Burst > 0 && t.RatePerSecond == 0:
		return errorf(ErrInvalid, "%s burst %d without a rate: a burst bounds a rate; give the rate too", what, t.Burst)
	}
	if t.Weight == 0 {
		t.Weight = 1
	}
	if t.RatePerSecond > 0 && t.Burst == 0 {
		t.Burst = max(1, int(math.Min(math.Ceil(t.RatePerSecond), math.MaxInt32)))
	}
	return nil
}

// checkKeyName checks a key's label: at most 63 characters, no control
// character.
func checkKeyName(name string) error {
	if len(name) > maxKeyName {
		return errorf(ErrInvalid, "key name %.20q... is %d bytes long, more than the %d allowed", name, len(name), maxKeyName)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return errorf(ErrInvalid, "key name %q holds the character %U", name, r)
		}
	}
	return nil
}

// KeyID returns the id of a key written as its 16 hex digits or, as the
// token starts, igk_ and those digits. An error never repeats a long
// argument: it may be a whole token, secret included.
func KeyID(s string) (string, error) {
	id := strings.TrimPrefix(s, auth.KeyPrefix)
	if keyIDRE.MatchString(id) {
		return id, nil
	}
	if len(s) > len(auth.KeyPrefix)+16 {
		return "", errorf(ErrInvalid, "key id: want 16 hex digits, as keys list shows them (a whole token was given? give only its id, never its secret)")
	}
	return "", errorf(ErrInvalid, "key id %q: want 16 hex digits, as keys list shows them", s)
}

// checkGrant checks a grant and returns its models sorted without
// repeats.
func checkGrant(g *auth.Grant) error {
	what := "grant for tenant " + g.Tenant
	if g.Actions == 0 {
		return errorf(ErrInvalid, "%s: no action: name at least one of %s", what, strings.Join(ActionNames(allActions), ", "))
	}
	if extra := g.Actions &^ allActions; extra != 0 {
		return errorf(ErrInvalid, "%s: unknown action bits %#x", what, uint16(extra))
	}
	if g.Actions&modelActions == 0 {
		if len(g.Models) > 0 || len(g.Selector) > 0 {
			return errorf(ErrInvalid, "%s: %s are not about a model: give no models and no selector", what, FormatActions(g.Actions))
		}
		return nil
	}
	switch {
	case len(g.Models) == 0 && len(g.Selector) == 0:
		return errorf(ErrInvalid, "%s: name the models that %s applies to (\"*\" for every model) or select them by label", what, FormatActions(g.Actions&modelActions))
	case len(g.Models) > 0 && len(g.Selector) > 0:
		return errorf(ErrInvalid, "%s: give models or a selector, not both (make two grants for both)", what)
	case len(g.Models) > maxGrantModels:
		return errorf(ErrInvalid, "%s: %d models, more than the %d allowed (use a selector)", what, len(g.Models), maxGrantModels)
	case len(g.Selector) > maxSelector:
		return errorf(ErrInvalid, "%s: %d selector labels, more than the %d allowed", what, len(g.Selector), maxSelector)
	}
	for _, m := range g.Models {
		if m != "*" && !modelRE.MatchString(m) {
			return errorf(ErrInvalid, "%s: model %q: want a model name (letters, digits, '.', '_', '-') or * for every model", what, m)
		}
	}
	if slices.Contains(g.Models, "*") {
		g.Models = []string{"*"}
	} else {
		g.Models = slices.Compact(slices.Sorted(slices.Values(g.Models)))
	}
	for _, k := range slices.Sorted(maps.Keys(g.Selector)) {
		if !labelKeyRE.MatchString(k) {
			return errorf(ErrInvalid, "%s: selector key %q: want 1-253 letters, digits, '.', '_', '/', '-', starting and ending with a letter or digit", what, k)
		}
		if v := g.Selector[k]; !labelValueRE.MatchString(v) {
			return errorf(ErrInvalid, "%s: selector %s=%q: want a label value (at most 63 letters, digits, '.', '_', '-', starting and ending with a letter or digit)", what, k, v)
		}
	}
	return nil
}
