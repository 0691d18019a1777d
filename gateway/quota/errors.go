package quota

import (
	"errors"
	"strconv"
	"time"

	"github.com/infergate/infergate/oip"
)

// The sentinels a refusal wraps, one per Reason. Each is an *oip.Error of
// kind oip.KindResourceExhausted, so that oip.KindOf classifies every
// refusal as 429 / RESOURCE_EXHAUSTED with no mapping of its own; test for
// them with errors.Is.
var (
	// ErrRateLimited means a token bucket (requests per second) is empty.
	ErrRateLimited error = &oip.Error{Kind: oip.KindResourceExhausted, Msg: "rate limit exceeded"}
	// ErrConcurrencyLimited means a cap on requests in flight is reached.
	ErrConcurrencyLimited error = &oip.Error{Kind: oip.KindResourceExhausted, Msg: "concurrency limit exceeded"}
	// ErrQueueFull means a model's fair queue holds its bound of waiting
	// requests.
	ErrQueueFull error = &oip.Error{Kind: oip.KindResourceExhausted, Msg: "queue full"}
)

// Reason is why a request was refused.
type Reason uint8

// The reasons, also the values of the refusal counter's reason label.
const (
	ReasonRate Reason = iota
	ReasonConcurrency
	ReasonQueueFull
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonRate:        "rate",
	ReasonConcurrency: "concurrency",
	ReasonQueueFull:   "queue_full",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Scope is whose limit refused a request.
type Scope uint8

// The scopes, also the values of the refusal counter's scope label.
const (
	// ScopeTenant is a tenant's limit across all models.
	ScopeTenant Scope = iota
	// ScopeModel is a model's limit across all tenants, or its fair queue.
	ScopeModel
	// ScopeTenantModel is one tenant's limit on one model.
	ScopeTenantModel
	numScopes
)

var scopeNames = [numScopes]string{
	ScopeTenant:      "tenant",
	ScopeModel:       "model",
	ScopeTenantModel: "tenant_model",
}

func (s Scope) String() string {
	if s < numScopes {
		return scopeNames[s]
	}
	return "Scope(" + strconv.Itoa(int(s)) + ")"
}

// RefusedError is a request refused by a limit or a full queue. It
// unwraps to ErrRateLimited, ErrConcurrencyLimited or ErrQueueFull (all of
// kind oip.KindResourceExhausted: HTTP 429, gRPC RESOURCE_EXHAUSTED), and
// RetryAfter says when the client may try again, for the Retry-After
// header. Its message names the tenant, the model and the limit, never a
// credential.
type RefusedError struct {
	Reason Reason
	Scope  Scope
	Tenant string
	Model  string
	// Limit is the limit that refused: requests per second for
	// ReasonRate, requests for ReasonConcurrency and ReasonQueueFull.
	Limit float64
	// After is how long until the request would be admitted (rate), or
	// a fixed hint (concurrency, queue full).
	After time.Duration
}

// RetryAfter is how long the client should wait before trying again.
func (e *RefusedError) RetryAfter() time.Duration { return e.After }

// Unwrap returns the sentinel of e's reason.
func (e *RefusedError) Unwrap() error {
	switch e.Reason {
	case ReasonRate:
		return ErrRateLimited
	case ReasonConcurrency:
		return ErrConcurrencyLimited
	}
	return ErrQueueFull
}

// Error is built when asked for, so that a refusal costs one small
// allocation however often it happens.
func (e *RefusedError) Error() string {
	b := make([]byte, 0, 128)
	switch e.Scope {
	case ScopeTenant:
		b = append(b, "tenant "...)
		b = strconv.AppendQuote(b, e.Tenant)
	case ScopeModel:
		b = append(b, "model "...)
		b = strconv.AppendQuote(b, e.Model)
	default:
		b = append(b, "tenant "...)
		b = strconv.AppendQuote(b, e.Tenant)
		b = append(b, " on model "...)
		b = strconv.AppendQuote(b, e.Model)
	}
	switch e.Reason {
	case ReasonRate:
		b = append(b, " is over its rate limit of "...)
		b = strconv.AppendFloat(b, e.Limit, 'g', -1, 64)
		b = append(b, " requests/s"...)
	case ReasonConcurrency:
		b = append(b, " has its limit of "...)
		b = strconv.AppendFloat(b, e.Limit, 'g', -1, 64)
		b = append(b, " requests in flight"...)
	default:
		b = append(b, " has "...)
		b = strconv.AppendFloat(b, e.Limit, 'g', -1, 64)
		b = append(b, " requests queued, its limit"...)
	}
	b = append(b, "; retry after "...)
	b = append(b, e.After.String()...)
	return string(b)
}

// RetryAfter returns the retry hint of the first error in err's chain that
// has one (a method RetryAfter() time.Duration, as *RefusedError has).
func RetryAfter(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter(), true
	}
	return 0, false
}

// RetryAfterSeconds is d as the value of an HTTP Retry-After header:
// whole seconds, rounded up, at least 1 (a client told 0 would retry at
// once).
func RetryAfterSeconds(d time.Duration) int {
	s := d / time.Second
	if d%time.Second > 0 {
		s++
	}
	if s < 1 {
		return 1
	}
	if s > 1<<31-1 {
		return 1<<31 - 1
	}
	return int(s)
}
