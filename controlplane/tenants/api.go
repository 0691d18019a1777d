package tenants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/registry"
)

// DefaultMaxBodyBytes bounds a request body of the API when
// HandlerOptions.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 64 << 10

// ActorHeader names who makes a change, as the registry's API reads it.
const ActorHeader = jsonhttp.ActorHeader

// HandlerOptions configure NewHandler. Every zero value has a documented
// default.
type HandlerOptions struct {
	// Guard wraps every handler that changes something (POST, PATCH,
	// DELETE): the admin API's change guard (controlplane.Guard) and, with
	// authentication, the check of an admin grant. nil admits every
	// change. Reads are not wrapped: whoever mounts the handler decides
	// who may read it (key ids, never secrets, are in the answers).
	Guard func(http.HandlerFunc) http.HandlerFunc
	// MaxBodyBytes bounds a request body (413 past it). 0 means
	// DefaultMaxBodyBytes (64 KiB).
	MaxBodyBytes int64
	// Logger gets the errors answered with a 5xx status. nil discards
	// them.
	Logger *slog.Logger
}

// Handler serves the tenants, keys and grants of a Store over HTTP:
//
//	GET    /api/v1/tenants                  {"items": [TenantInfo]}
//	POST   /api/v1/tenants                  TenantCreate → 201 TenantInfo
//	GET    /api/v1/tenants/{name}           TenantDetail (with its keys and grants)
//	PATCH  /api/v1/tenants/{name}           TenantUpdate → TenantInfo
//	DELETE /api/v1/tenants/{name}           DeleteResult (its keys and grants go with it)
//	GET    /api/v1/tenants/{name}/keys      {"items": [KeyInfo]}
//	POST   /api/v1/tenants/{name}/keys      KeyCreate → 201 KeyCreated (the token, shown once)
//	GET    /api/v1/tenants/{name}/grants    {"items": [GrantInfo]}
//	POST   /api/v1/tenants/{name}/grants    GrantCreate → 201 GrantInfo
//	GET    /api/v1/keys?tenant=             {"items": [KeyInfo]}, every tenant's without tenant
//	DELETE /api/v1/keys/{id}                revoke → KeyInfo
//	GET    /api/v1/grants?tenant=           {"items": [GrantInfo]}
//	DELETE /api/v1/grants/{id}              remove → GrantInfo
//
// Bodies are JSON, decoded strictly (an unknown field is an error).
// Errors are {"error": "...", "code": "..."}: 400 INVALID_ARGUMENT, 404
// NOT_FOUND, 405 METHOD_NOT_ALLOWED (with Allow), 409 CONFLICT, 413
// TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE, 503 UNAVAILABLE (the store is
// busy or closing), 500 INTERNAL. Handlers return their errors, which are
// written in one place (errs, a jsonhttp.ErrorWriter) with the status
// chosen in one (statusOf). It is safe for concurrent use.
type Handler struct {
	s    *Store
	opts HandlerOptions
	mux  *http.ServeMux
	errs jsonhttp.ErrorWriter
}

// The paths Handler answers, as Patterns returns them.
const (
	tenantsPath = "/api/v1/tenants"
	keysPath    = "/api/v1/keys"
	grantsPath  = "/api/v1/grants"
)

// NewHandler returns the API of s; it starts no goroutine.
func NewHandler(s *Store, opts HandlerOptions) (*Handler, error) {
	if s == nil {
		return nil, errors.New("tenants: NewHandler needs a Store")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("tenants: HandlerOptions.MaxBodyBytes %d is negative", opts.MaxBodyBytes)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Guard == nil {
		opts.Guard = func(h http.HandlerFunc) http.HandlerFunc { return h }
	}
	h := &Handler{s: s, opts: opts, mux: http.NewServeMux(),
		errs: jsonhttp.ErrorWriter{Status: statusOf, Logger: opts.Logger, API: "tenants API"}}
	h.routes()
	return h, nil
}

// Patterns returns the ServeMux patterns to mount the Handler at on the
// admin port (serving.Options.AdminAPI, controlplane.APIOptions.Extra):
// /api/v1/tenants, /api/v1/keys, /api/v1/grants and every path under
// them.
func (h *Handler) Patterns() []string {
	return []string{tenantsPath, tenantsPath + "/", keysPath, keysPath + "/", grantsPath, grantsPath + "/"}
}

// ServeHTTP answers the routes of the type's doc; any other path under
// its patterns is a JSON 404, or 405 naming the methods the path takes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) routes() {
	const t = tenantsPath + "/{name}"
	read := h.errs.Handle
	change := func(f jsonhttp.HandlerFunc) http.HandlerFunc { return h.opts.Guard(withActor(h.errs.Handle(f))) }
	for _, rt := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET " + tenantsPath, read(h.listTenants)},
		{"POST " + tenantsPath, change(h.createTenant)},
		{"GET " + t, read(h.getTenant)},
		{"PATCH " + t, change(h.updateTenant)},
		{"DELETE " + t, change(h.deleteTenant)},
		{"GET " + t + "/keys", read(h.listTenantKeys)},
		{"POST " + t + "/keys", change(h.createKey)},
		{"GET " + t + "/grants", read(h.listTenantGrants)},
		{"POST " + t + "/grants", change(h.addGrant)},
		{"GET " + keysPath, read(h.listKeys)},
		{"DELETE " + keysPath + "/{id}", change(h.revokeKey)},
		{"GET " + grantsPath, read(h.listGrants)},
		{"DELETE " + grantsPath + "/{id}", change(h.removeGrant)},
	} {
		h.mux.HandleFunc(rt.pattern, rt.h)
	}
	noRoute := jsonhttp.NoRoute(h.mux, h.Patterns(), "tenants", "/api/v1/tenants[/{name}[/keys|/grants]], /api/v1/keys[/{id}], /api/v1/grants[/{id}]")
	for _, p := range h.Patterns() {
		h.mux.HandleFunc(p, h.errs.Handle(noRoute))
	}
}

// TenantCreate is the body of POST /api/v1/tenants.
type TenantCreate struct {
	Name          string  `json:"name"`
	Weight        int     `json:"weight,omitempty"`
	RatePerSecond float64 `json:"ratePerSecond,omitempty"`
	Burst         int     `json:"burst,omitempty"`
	MaxInFlight   int     `json:"maxInFlight,omitempty"`
}

// TenantDetail is a tenant with its keys and grants.
type TenantDetail struct {
	TenantInfo
	Keys   []KeyInfo   `json:"keys"`
	Grants []GrantInfo `json:"grants"`
}

// KeyCreate is the body of POST /api/v1/tenants/{name}/keys. Expires (an
// RFC 3339 time) or ExpiresIn (a Go duration from now, "720h") sets the
// expiry; neither means none.
type KeyCreate struct {
	Name      string    `json:"name,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	ExpiresIn string    `json:"expiresIn,omitempty"`
}

// KeyCreated answers a key's creation: Token is the key itself, shown
// this once.
type KeyCreated struct {
	Token string  `json:"token"`
	Key   KeyInfo `json:"key"`
}

// GrantCreate is the body of POST /api/v1/tenants/{name}/grants: actions
// by name ("infer", "metadata", "admin", "command", "metrics") and the
// models they apply to, by name ("*" for every model) or label selector.
type GrantCreate struct {
	Actions  []string          `json:"actions"`
	Models   []string          `json:"models,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
}

// GrantInfo is a grant as the API shows it.
type GrantInfo struct {
	ID       int64             `json:"id"`
	Tenant   string            `json:"tenant"`
	Actions  []string          `json:"actions"`
	Models   []string          `json:"models,omitempty"`
	Selector map[string]string `json:"selector,omitempty"`
	// Description says it in words: "infer,metadata on models iris".
	Description string `json:"description"`
}

// NewGrantInfo shows g.
func NewGrantInfo(g auth.Grant) GrantInfo {
	return GrantInfo{ID: g.ID, Tenant: g.Tenant, Actions: nonNil(ActionNames(g.Actions)), Models: g.Models, Selector: g.Selector, Description: DescribeGrant(g)}
}

// List is the answer of a list: its items.
type List[T any] struct {
	Items []T `json:"items"`
}

func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request) error {
	ts, err := h.s.ListTenants(r.Context())
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, List[TenantInfo]{nonNil(ts)})
	return nil
}

func (h *Handler) createTenant(w http.ResponseWriter, r *http.Request) error {
	var req TenantCreate
	if err := h.decode(w, r, "a tenant (name, weight, ratePerSecond, burst, maxInFlight)", &req); err != nil {
		return err
	}
	t, err := h.s.CreateTenant(r.Context(), auth.Tenant{Name: req.Name, Weight: req.Weight, RatePerSecond: req.RatePerSecond, Burst: req.Burst, MaxInFlight: req.MaxInFlight})
	if err != nil {
		return err
	}
	w.Header().Set("Location", tenantsPath+"/"+t.Name)
	jsonhttp.WriteJSON(w, http.StatusCreated, t)
	return nil
}

func (h *Handler) getTenant(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	t, err := h.s.GetTenant(r.Context(), name)
	if err != nil {
		return err
	}
	keys, err := h.s.ListKeys(r.Context(), name)
	if err != nil {
		return err
	}
	grants, err := h.s.ListGrants(r.Context(), name)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, TenantDetail{TenantInfo: t, Keys: nonNil(keys), Grants: GrantInfos(grants)})
	return nil
}

func (h *Handler) updateTenant(w http.ResponseWriter, r *http.Request) error {
	var req TenantUpdate
	if err := h.decode(w, r, "a tenant update (weight, ratePerSecond, burst, maxInFlight)", &req); err != nil {
		return err
	}
	t, err := h.s.UpdateTenant(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, t)
	return nil
}

func (h *Handler) deleteTenant(w http.ResponseWriter, r *http.Request) error {
	res, err := h.s.DeleteTenant(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (h *Handler) listTenantKeys(w http.ResponseWriter, r *http.Request) error {
	return h.answerKeys(w, r, r.PathValue("name"))
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) error {
	return h.answerKeys(w, r, r.URL.Query().Get("tenant"))
}

func (h *Handler) answerKeys(w http.ResponseWriter, r *http.Request, tenant string) error {
	keys, err := h.s.ListKeys(r.Context(), tenant)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, List[KeyInfo]{nonNil(keys)})
	return nil
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) error {
	var req KeyCreate
	if err := h.decode(w, r, "a key (name, expires or expiresIn)", &req); err != nil {
		return err
	}
	expires := req.Expires
	if req.ExpiresIn != "" {
		if !expires.IsZero() {
			return errorf(ErrInvalid, "give expires or expiresIn, not both")
		}
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return errorf(ErrInvalid, "expiresIn %q: want a positive duration such as 720h", req.ExpiresIn)
		}
		expires = h.s.now().Add(d)
	}
	token, k, err := h.s.CreateKey(r.Context(), r.PathValue("name"), req.Name, expires)
	if err != nil {
		return err
	}
	// The token is in this answer alone: no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", keysPath+"/"+k.ID)
	jsonhttp.WriteJSON(w, http.StatusCreated, KeyCreated{Token: token, Key: k})
	return nil
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request) error {
	k, err := h.s.RevokeKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, k)
	return nil
}

func (h *Handler) listTenantGrants(w http.ResponseWriter, r *http.Request) error {
	return h.answerGrants(w, r, r.PathValue("name"))
}

func (h *Handler) listGrants(w http.ResponseWriter, r *http.Request) error {
	return h.answerGrants(w, r, r.URL.Query().Get("tenant"))
}

func (h *Handler) answerGrants(w http.ResponseWriter, r *http.Request, tenant string) error {
	gs, err := h.s.ListGrants(r.Context(), tenant)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, List[GrantInfo]{GrantInfos(gs)})
	return nil
}

func (h *Handler) addGrant(w http.ResponseWriter, r *http.Request) error {
	var req GrantCreate
	if err := h.decode(w, r, "a grant (actions, models or selector)", &req); err != nil {
		return err
	}
	actions, err := ParseActions(strings.Join(req.Actions, ","))
	if err != nil {
		return err
	}
	g, err := h.s.AddGrant(r.Context(), auth.Grant{Tenant: r.PathValue("name"), Actions: actions, Models: req.Models, Selector: req.Selector})
	if err != nil {
		return err
	}
	w.Header().Set("Location", grantsPath+"/"+strconv.FormatInt(g.ID, 10))
	jsonhttp.WriteJSON(w, http.StatusCreated, NewGrantInfo(g))
	return nil
}

func (h *Handler) removeGrant(w http.ResponseWriter, r *http.Request) error {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errorf(ErrInvalid, "grant id %q: want a number, as grants are listed", s)
	}
	g, err := h.s.RemoveGrant(r.Context(), id)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, NewGrantInfo(g))
	return nil
}

// GrantInfos shows gs, an empty list for none.
func GrantInfos(gs []auth.Grant) []GrantInfo {
	out := make([]GrantInfo, 0, len(gs))
	for _, g := range gs {
		out = append(out, NewGrantInfo(g))
	}
	return out
}

// decode reads a request's JSON body into v strictly: a media type other
// than JSON, an unknown field, a second value or a body over the bound is
// an error.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request, what string, v any) error {
	if !jsonhttp.IsJSON(r.Header.Get("Content-Type")) {
		return &jsonhttp.Error{Status: http.StatusUnsupportedMediaType, Code: "UNSUPPORTED_MEDIA_TYPE", Msg: "send the body as Content-Type: application/json"}
	}
	_, err := jsonhttp.Decode(w, r, h.opts.MaxBodyBytes, v)
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*http.MaxBytesError)):
		return &jsonhttp.Error{Status: http.StatusRequestEntityTooLarge, Code: "TOO_LARGE", Msg: fmt.Sprintf("the request body is larger than %d bytes", h.opts.MaxBodyBytes)}
	}
	return errorf(ErrInvalid, "the body is not %s: %v", what, err)
}

// statusOf maps an error to its HTTP status and code name: the one place
// the API does. An error of the request itself (*jsonhttp.Error) keeps
// its own.
func statusOf(err error) (int, string) {
	if status, code, ok := jsonhttp.StatusOf(err); ok {
		return status, code
	}
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, "INVALID_ARGUMENT"
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "NOT_FOUND"
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, "CONFLICT"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "UNAVAILABLE"
	}
	var re *registry.Error
	if errors.As(err, &re) {
		switch re.Code {
		case registry.CodeInvalidArgument:
			// The event's actor (the X-Infergate-Actor header) refused.
			return http.StatusBadRequest, "INVALID_ARGUMENT"
		case registry.CodeUnavailable:
			return http.StatusServiceUnavailable, "UNAVAILABLE"
		case registry.CodeInsufficientStorage:
			return http.StatusInsufficientStorage, "INSUFFICIENT_STORAGE"
		}
	}
	return http.StatusInternalServerError, "INTERNAL"
}

// withActor names who acts in the request's context, unless a handler
// before it (authentication) did: the X-Infergate-Actor header, else the
// client's address.
func withActor(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if registry.ActorFrom(r.Context()) == "" {
			r = r.WithContext(registry.WithActor(r.Context(), jsonhttp.Actor(r)))
		}
		h(w, r)
	}
}
