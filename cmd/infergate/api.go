package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/gateway"
)

// controlAPI is the admin port's control API, what `infergate get`,
// `apply` and `rollout` call:
//
//	GET  /api/v1/models                      revisions with traffic, replicas, autoscaler
//	POST /api/v1/apply                       InferenceService YAML documents (applyRequest)
//	GET  /api/v1/rollouts/{model}            the model's rollout and its decisions
//	POST /api/v1/rollouts/{model}/{action}   promote, rollback, pause, resume
//
// Errors are JSON {"error": "..."} with a 4xx or 5xx status.
type controlAPI struct {
	// changesFromAnywhere lets non-loopback clients apply and steer
	// rollouts; without it they get 403, since a declaration can name a
	// command to run (infergate.io/command).
	changesFromAnywhere bool
	rec                 *reconciler
}

// maxApplyBytes bounds an apply request: a few files of declarations.
const maxApplyBytes = 16 * config.MaxFileBytes

func (a *controlAPI) handler(base http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", base)
	mux.HandleFunc("GET /api/v1/models", a.models)
	mux.HandleFunc("POST /api/v1/apply", a.guard(a.apply))
	mux.HandleFunc("GET /api/v1/rollouts/{model}", a.rolloutStatus)
	mux.HandleFunc("POST /api/v1/rollouts/{model}/{action}", a.guard(a.rolloutAction))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, fmt.Errorf("no control API at %s %s; see GET /api/v1/models, POST /api/v1/apply, GET /api/v1/rollouts/{model}, POST /api/v1/rollouts/{model}/{promote|rollback|pause|resume}", r.Method, r.URL.Path))
	})
	return mux
}

// guard admits a change only as a JSON request that no web page can
// send: Content-Type application/json (which a cross-site form or no-cors
// fetch cannot set) and no Origin header (which browsers add). Unless
// changesFromAnywhere, the client must also be on loopback and name a
// loopback host (so that a DNS name rebound to 127.0.0.1 does not pass).
func (a *controlAPI) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			writeAPIError(w, http.StatusUnsupportedMediaType, errors.New("changes must be sent as Content-Type: application/json"))
			return
		}
		if r.Header.Get("Origin") != "" {
			writeAPIError(w, http.StatusForbidden, errors.New("changes are not accepted from web pages (the request has an Origin header)"))
			return
		}
		if !a.changesFromAnywhere && (!gateway.IsLoopback(r.RemoteAddr) || !loopbackHost(r.Host)) {
			writeAPIError(w, http.StatusForbidden, errors.New("changes are accepted from loopback clients only, addressed to a loopback host; start infergate with -api-changes-anywhere on a trusted network"))
			return
		}
		h(w, r)
	}
}

// loopbackHost reports whether a Host header names this machine by a
// loopback address or as localhost.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// applyRequest is the body of POST /api/v1/apply: the documents of one or
// more files, each applied with the others or not at all.
type applyRequest struct {
	Files []applyFile `json:"files"`
}

// applyFile is one file's YAML. Source names it in errors; BaseDir is the
// directory relative storage paths resolve against (the file's own, as
// `infergate serve -config` does).
type applyFile struct {
	Source  string `json:"source"`
	BaseDir string `json:"baseDir"`
	YAML    string `json:"yaml"`
}

func (a *controlAPI) apply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxApplyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeAPIError(w, http.StatusBadRequest, fmt.Errorf("apply: body is not an apply request: %w", err))
		return
	}
	var (
		models []config.Model
		errs   []error
	)
	for i, f := range req.Files {
		if f.Source == "" {
			f.Source = fmt.Sprintf("file %d", i+1)
		}
		ms, err := config.Parse(f.Source, []byte(f.YAML), f.BaseDir)
		errs = append(errs, err)
		models = append(models, ms...)
	}
	if err := errors.Join(errs...); err != nil {
		writeAPIError(w, http.StatusBadRequest, err)
		return
	}
	if len(models) == 0 {
		writeAPIError(w, http.StatusBadRequest, errors.New("apply: no InferenceService in the request"))
		return
	}
	ch, err := a.rec.apply(models, false)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

func (a *controlAPI) rolloutStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.rec.dep.RolloutStatus(r.PathValue("model"))
	if err != nil {
		writeAPIError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *controlAPI) rolloutAction(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	var err error
	switch action := r.PathValue("action"); action {
	case "promote":
		err = a.rec.dep.Promote(model)
	case "rollback":
		err = a.rec.dep.Rollback(model)
	case "pause":
		err = a.rec.dep.Pause(model)
	case "resume":
		err = a.rec.dep.Resume(model)
	default:
		writeAPIError(w, http.StatusNotFound, fmt.Errorf("rollout: no action %q; use promote, rollback, pause or resume", action))
		return
	}
	if err != nil {
		writeAPIError(w, statusOf(err), err)
		return
	}
	// The routes change before the answer: a client that sends requests
	// right after sees the new split.
	if err := a.rec.sync(); err != nil {
		writeAPIError(w, http.StatusInternalServerError, err)
		return
	}
	st, err := a.rec.dep.RolloutStatus(model)
	if err != nil {
		writeAPIError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// statusOf maps the control plane's errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, controlplane.ErrUnknownModel):
		return http.StatusNotFound
	case errors.Is(err, controlplane.ErrNothingToDo), errors.Is(err, controlplane.ErrNoRollout):
		return http.StatusConflict
	case errors.Is(err, controlplane.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeAPIError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// models serves every revision's state as JSON rows.
func (a *controlAPI) models(w http.ResponseWriter, _ *http.Request) {
	out := []modelStatus{}
	for _, ms := range a.rec.dep.State().Models {
		for _, rev := range ms.Revisions {
			row := modelStatus{Name: ms.Name, Revision: rev.Name, Traffic: ms.Traffic[rev.Name], Status: string(rev.Status), Pending: rev.Name == ms.Pending}
			for tag, name := range ms.Tags {
				if name == rev.Name {
					row.Tags = append(row.Tags, tag)
				}
			}
			slices.Sort(row.Tags)
			if rr := a.rec.rt.get(rev.Name); rr != nil {
				if rr.sup != nil {
					st := rr.sup.Status()
					row.Desired, row.Running, row.Ready, row.Restarts = st.Desired, st.Running, st.Ready, st.Restarts
					row.Failed, row.Reason = st.Failed, st.Reason
				} else {
					row.Ready = a.rec.rt.ready(rev.Name)
					row.Running = len(rr.pool.Replicas())
					row.Desired = row.Running
				}
			}
			if s, ok := a.rec.scaler.Status(rev.Name); ok {
				row.Metric, row.Target, row.Panic = string(s.Metric), s.Target, s.Panic
				row.StableAverage, row.PanicAverage, row.Decision = s.StableAverage, s.PanicAverage, s.Reason
			}
			out = append(out, row)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
