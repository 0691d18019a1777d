package auth

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Action is what a request asks to do; a Grant gives a set of them
// (Actions, a bit set).
type Action uint16

const (
	// ActionInfer is an inference call (REST /infer, gRPC ModelInfer).
	ActionInfer Action = 1 << iota
	// ActionMetadata is reading a model's metadata or readiness.
	ActionMetadata
	// ActionAdmin is a change through the admin API: apply, rollout
	// actions, registry writes, pipeline runs, tenants and keys.
	ActionAdmin
	// ActionCommand lets an admin change declare infergate.io/command (an
	// arbitrary program run on the gateway's machine). It is never
	// implied by ActionAdmin.
	ActionCommand
	// ActionMetrics is reading the admin port's /metrics when it asks for
	// a key.
	ActionMetrics
)

// Tenant is a caller of the gateway: keys and JWT subjects belong to one,
// grants and quotas are its.
type Tenant struct {
	// Name identifies the tenant: a DNS label.
	Name string
	// Weight is the tenant's share of a saturated model against other
	// tenants' (weighted fair queuing); 0 means 1.
	Weight int
	// RatePerSecond and Burst bound the tenant's requests across all
	// models (a token bucket); 0 means no bound.
	RatePerSecond float64
	Burst         int
	// MaxInFlight bounds the tenant's requests in flight across all
	// models; 0 means no bound.
	MaxInFlight int
	// System marks infergate's own tenants (the local user's, the
	// pipeline steps'): no JWT may name one, and their keys are accepted
	// from this machine only (see controlplane.AdminAccess).
	System bool
}

// Key is an API key as stored: never the secret, only its SHA-256.
type Key struct {
	// ID is the key's public identifier, the part of the token before the
	// secret; unique.
	ID string
	// Tenant owns the key.
	Tenant string
	// Name is a label for people ("ci", "laptop").
	Name string
	// Hash is the SHA-256 of the token's secret part.
	Hash [32]byte
	// Created is when the key was made; Expires, when not zero, is when
	// it stops being accepted; Revoked, when not zero, is when it was
	// revoked.
	Created, Expires, Revoked time.Time
}

// Grant lets a tenant do Actions on the models it selects: those named in
// Models ("*" is every model), or those whose labels include every pair of
// Selector. ActionAdmin, ActionCommand and ActionMetrics are not about a
// model and ignore Models and Selector.
type Grant struct {
	ID       int64
	Tenant   string
	Actions  Action
	Models   []string
	Selector map[string]string
}

// Snapshot is the whole of what authentication and authorization read:
// the control plane's store loads it and the gateway swaps it in at once
// (Authenticator.Update).
type Snapshot struct {
	Tenants []Tenant
	Keys    []Key
	Grants  []Grant
}

// modelActions are the actions about one model, granted by Models or
// Selector; globalActions are the rest, granted whatever a grant's models.
const (
	modelActions  = ActionInfer | ActionMetadata
	globalActions = ActionAdmin | ActionCommand | ActionMetrics
	allActions    = modelActions | globalActions
)

// actionNames are the actions' names, in bit order.
var actionNames = [...]string{"infer", "metadata", "admin", "command", "metrics"}

// String names the action, or the actions of a set joined by "+"
// ("infer+metadata"); bits that name no action show as hexadecimal.
func (a Action) String() string {
	if a == 0 {
		return "none"
	}
	var b strings.Builder
	for i, name := range actionNames {
		if a&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('+')
			}
			b.WriteString(name)
		}
	}
	if rest := a &^ allActions; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('+')
		}
		fmt.Fprintf(&b, "%#x", uint16(rest))
	}
	return b.String()
}

// ParseAction reads a set of actions written as names separated by commas
// or "+" ("infer,metadata"), as a CLI or config file writes them.
func ParseAction(s string) (Action, error) {
	var a Action
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '+' }) {
		f = strings.TrimSpace(f)
		i := slices.Index(actionNames[:], f)
		if i < 0 {
			return 0, fmt.Errorf("auth: unknown action %q (want %s)", f, strings.Join(actionNames[:], ", "))
		}
		a |= 1 << i
	}
	if a == 0 {
		return 0, fmt.Errorf("auth: no action in %q", s)
	}
	return a, nil
}
