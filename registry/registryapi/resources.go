package registryapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/registry"
)

// The handlers of models, versions, aliases and references: each decodes
// the request, makes one registry call and answers its result or error.

// ModelPath returns the API path of a model.
func ModelPath(name string) string {
	return "/api/v1/registry/models/" + url.PathEscape(name)
}

// VersionPath returns the API path of a model's version.
func VersionPath(model string, n int64) string {
	return ModelPath(model) + "/versions/" + strconv.FormatInt(n, 10)
}

// AliasPath returns the API path of a model's alias.
func AliasPath(model, alias string) string {
	return ModelPath(model) + "/aliases/" + url.PathEscape(alias)
}

func (h *Handler) listModels(w http.ResponseWriter, r *http.Request) error {
	o, err := listOptions(r, "name")
	if err != nil {
		return err
	}
	page, err := h.reg.ListModels(r.Context(), o)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (h *Handler) createModel(w http.ResponseWriter, r *http.Request) error {
	var c registry.ModelCreate
	if err := h.noQuery(r); err != nil {
		return err
	}
	if err := h.decodeBody(w, r, &c, true); err != nil {
		return err
	}
	m, err := h.reg.CreateModel(actorContext(r), c)
	if err != nil {
		return err
	}
	w.Header().Set("Location", ModelPath(m.Name))
	writeTagged(w, http.StatusCreated, m.ETag, m)
	return nil
}

func (h *Handler) getModel(w http.ResponseWriter, r *http.Request) error {
	if err := h.noQuery(r); err != nil {
		return err
	}
	m, err := h.reg.GetModel(r.Context(), r.PathValue("model"))
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, m.ETag, m)
	return nil
}

func (h *Handler) updateModel(w http.ResponseWriter, r *http.Request) error {
	var u registry.ModelUpdate
	match, err := ifMatch(r)
	if err == nil {
		err = h.noQuery(r)
	}
	if err == nil {
		err = h.decodeBody(w, r, &u, true)
	}
	if err != nil {
		return err
	}
	m, err := h.reg.UpdateModel(actorContext(r), r.PathValue("model"), u, match)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, m.ETag, m)
	return nil
}

// archiveModel archives through UpdateModel, which honours If-Match (and
// applies ArchiveModel's guard against versions in use).
func (h *Handler) archiveModel(w http.ResponseWriter, r *http.Request) error {
	match, err := h.emptyChange(w, r)
	if err != nil {
		return err
	}
	archived := registry.StateArchived
	m, err := h.reg.UpdateModel(actorContext(r), r.PathValue("model"), registry.ModelUpdate{State: &archived}, match)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, m.ETag, m)
	return nil
}

func (h *Handler) listVersions(w http.ResponseWriter, r *http.Request) error {
	o, err := listOptions(r, "status")
	if err != nil {
		return err
	}
	page, err := h.reg.ListVersions(r.Context(), r.PathValue("model"), o)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (h *Handler) createVersion(w http.ResponseWriter, r *http.Request) error {
	var c registry.VersionCreate
	err := h.noQuery(r)
	if err == nil {
		// An empty body registers a version with the defaults.
		err = h.decodeBody(w, r, &c, false)
	}
	if err != nil {
		return err
	}
	v, err := h.reg.CreateVersion(actorContext(r), r.PathValue("model"), c)
	if err != nil {
		return err
	}
	w.Header().Set("Location", VersionPath(v.Model, v.Version))
	writeTagged(w, http.StatusCreated, v.ETag, v)
	return nil
}

func (h *Handler) getVersion(w http.ResponseWriter, r *http.Request) error {
	v, err := h.version(r)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, v.ETag, v)
	return nil
}

func (h *Handler) updateVersion(w http.ResponseWriter, r *http.Request) error {
	var u registry.VersionUpdate
	n, err := versionParam(r)
	var match string
	if err == nil {
		match, err = ifMatch(r)
	}
	if err == nil {
		err = h.noQuery(r)
	}
	if err == nil {
		err = h.decodeBody(w, r, &u, true)
	}
	if err != nil {
		return err
	}
	v, err := h.reg.UpdateVersion(actorContext(r), r.PathValue("model"), n, u, match)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, v.ETag, v)
	return nil
}

func (h *Handler) markReady(w http.ResponseWriter, r *http.Request) error {
	n, err := versionParam(r)
	if err == nil {
		_, err = h.emptyChange(w, r)
	}
	if err != nil {
		return err
	}
	v, err := h.reg.MarkReady(actorContext(r), r.PathValue("model"), n)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, v.ETag, v)
	return nil
}

// failedRequest is the body of POST .../failed.
type failedRequest struct {
	Message string `json:"message"`
}

func (h *Handler) markFailed(w http.ResponseWriter, r *http.Request) error {
	var body failedRequest
	n, err := versionNoQuery(r)
	if err == nil {
		err = h.decodeBody(w, r, &body, false)
	}
	if err != nil {
		return err
	}
	v, err := h.reg.MarkFailed(actorContext(r), r.PathValue("model"), n, body.Message)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, v.ETag, v)
	return nil
}

// archiveVersion archives through UpdateVersion, which honours If-Match
// (and applies ArchiveVersion's guard against aliases and users).
func (h *Handler) archiveVersion(w http.ResponseWriter, r *http.Request) error {
	n, err := versionParam(r)
	var match string
	if err == nil {
		match, err = h.emptyChange(w, r)
	}
	if err != nil {
		return err
	}
	archived := registry.StateArchived
	v, err := h.reg.UpdateVersion(actorContext(r), r.PathValue("model"), n, registry.VersionUpdate{State: &archived}, match)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, v.ETag, v)
	return nil
}

// items is the answer of a list that has no pages.
type items[T any] struct {
	Items []T `json:"items"`
}

func (h *Handler) listAliases(w http.ResponseWriter, r *http.Request) error {
	if err := h.noQuery(r); err != nil {
		return err
	}
	as, err := h.reg.ListAliases(r.Context(), r.PathValue("model"))
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, items[registry.Alias]{Items: nonNil(as)})
	return nil
}

func (h *Handler) getAlias(w http.ResponseWriter, r *http.Request) error {
	if err := h.noQuery(r); err != nil {
		return err
	}
	a, err := h.reg.GetAlias(r.Context(), r.PathValue("model"), r.PathValue("alias"))
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, a)
	return nil
}

// aliasRequest is the body of PUT (version and reason) and DELETE (reason)
// of an alias.
type aliasRequest struct {
	Version int64  `json:"version"`
	Reason  string `json:"reason,omitempty"`
}

func (h *Handler) setAlias(w http.ResponseWriter, r *http.Request) error {
	var body aliasRequest
	err := h.noQuery(r)
	if err == nil {
		err = h.decodeBody(w, r, &body, true)
	}
	if err == nil && body.Version < 1 {
		err = invalid("body: field version: want the version number the alias points at (1, 2, ...), got %d", body.Version)
	}
	if err != nil {
		return err
	}
	a, err := h.reg.SetAlias(actorContext(r), r.PathValue("model"), r.PathValue("alias"), body.Version, body.Reason)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, a)
	return nil
}

// deleteRequest is the optional body of DELETE .../aliases/{alias}.
type deleteRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (h *Handler) deleteAlias(w http.ResponseWriter, r *http.Request) error {
	var body deleteRequest
	q, err := query(r, "reason")
	if err == nil {
		body.Reason, err = single(q, "reason")
	}
	fromQuery := body.Reason
	if err == nil {
		err = h.decodeBody(w, r, &body, false)
	}
	if err == nil && fromQuery != "" && body.Reason != fromQuery {
		err = invalid("reason is given both in the query and in the body; give it once")
	}
	if err != nil {
		return err
	}
	model, alias := r.PathValue("model"), r.PathValue("alias")
	if err := h.reg.DeleteAlias(actorContext(r), model, alias, body.Reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) aliasHistory(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit")
	var limit int
	if err == nil {
		limit, err = intParam(q, "limit")
	}
	if err != nil {
		return err
	}
	model, alias := r.PathValue("model"), r.PathValue("alias")
	hist, err := h.reg.AliasHistory(r.Context(), model, alias, limit)
	if err == nil && len(hist) == 0 {
		// An alias never set has no history: 404, naming what is missing.
		_, err = h.reg.GetAlias(r.Context(), model, alias)
	}
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, items[registry.AliasChange]{Items: nonNil(hist)})
	return nil
}

func (h *Handler) resolve(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "ref")
	var ref string
	if err == nil {
		ref, err = single(q, "ref")
	}
	if err == nil && ref == "" {
		err = invalid("query parameter ref is missing: want ref=registry://<model>[/<version>|@<alias>|@sha256:<hex>]")
	}
	if err != nil {
		return err
	}
	v, err := h.reg.Resolve(r.Context(), ref)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, v.ETag, v)
	return nil
}

// version loads the version a GET's path names ({model}, {n}), refusing
// a bad {n} and then any query parameter, in that order.
func (h *Handler) version(r *http.Request) (*registry.ModelVersion, error) {
	n, err := versionNoQuery(r)
	if err != nil {
		return nil, err
	}
	return h.reg.GetVersion(r.Context(), r.PathValue("model"), n)
}

// versionNoQuery parses the path's {n} and refuses query parameters on a
// version's route that takes none.
func versionNoQuery(r *http.Request) (int64, error) {
	n, err := versionParam(r)
	if err != nil {
		return 0, err
	}
	if _, err := query(r); err != nil {
		return 0, err
	}
	return n, nil
}

// noQuery refuses query parameters on a route that takes none.
func (h *Handler) noQuery(r *http.Request) error {
	_, err := query(r)
	return err
}

// emptyChange reads a change that carries no data (ready, archive): no
// query, a body that is empty or {}, and If-Match.
func (h *Handler) emptyChange(w http.ResponseWriter, r *http.Request) (string, error) {
	match, err := ifMatch(r)
	if err == nil {
		err = h.noQuery(r)
	}
	if err == nil {
		err = h.decodeBody(w, r, &struct{}{}, false)
	}
	return match, err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
