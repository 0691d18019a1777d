package controlplane

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

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/autoscaler"
	"github.com/infergate/infergate/config"
)

// API is the control API of the admin port, what `infergate get`, `apply`
// and `rollout` call:
//
//	GET  /api/v1/models                      revisions with traffic, replicas, autoscaler (RevisionRow)
//	POST /api/v1/apply                       InferenceService YAML documents (ApplyRequest), answered with Changes
//	GET  /api/v1/rollouts/{model}            the model's rollout and its decisions (RolloutStatus)
//	POST /api/v1/rollouts/{model}/{action}   promote, rollback, pause, resume
//
// Errors are JSON {"error": "..."} with a 4xx or 5xx status: 400 for a
// declaration or body that is wrong, 403 and 415 for a change the guard
// refuses (see APIOptions.ChangesFromAnywhere), 404 for an unknown model,
// action or path, 409 for an action with nothing to do, 413 for an apply
// body over its bound. Every other path goes to APIOptions.Base. An API is
// safe for concurrent use.
type API struct {
	opts APIOptions
	mux  *http.ServeMux
}

// APIOptions configure an API.
type APIOptions struct {
	// Deployments is the state the API shows and steers. Required.
	Deployments *Deployments
	// Applier takes the declarations of POST /api/v1/apply (without
	// prune). nil means Deployments itself: the state changes, and
	// nothing checks what only building their runtimes reveals.
	Applier Applier
	// Syncer makes the routes follow a rollout action before it is
	// answered, so that a client sending requests right after sees the new
	// split. nil means none: the routes follow on their own.
	Syncer Syncer
	// Runtimes reports each revision's replicas for GET /api/v1/models;
	// nil reports none (the counts are zero).
	Runtimes Runtimes
	// Scaling reports the autoscaler's view of each revision; nil reports
	// none.
	Scaling Scaling
	// Base answers every request outside /api/ (the admin port's
	// /metrics, /debug/pprof/, /healthz...); nil answers 404.
	Base http.Handler
	// ChangesFromAnywhere lets non-loopback clients apply and steer
	// rollouts; without it they get 403, since a declaration can name a
	// command to run (infergate.io/command).
	ChangesFromAnywhere bool
	// MaxApplyBytes bounds the body of an apply request; a larger one
	// gets 413 (default DefaultMaxApplyBytes).
	MaxApplyBytes int64
	// Extra are more handlers of the admin port's API by ServeMux pattern
	// (the registry's and the event log's); they guard their own changes
	// (see Guard).
	Extra map[string]http.Handler
}

// Applier makes declarations the desired state, all or nothing; see
// Deployments.Apply for prune. Deployments is one; serving.Reconciler is
// another, which first checks what only building the runtimes reveals and
// makes the routes follow after. An error means nothing changed and is
// the declarations' fault: it names the declaration and the field.
type Applier interface {
	Apply(models []config.Model, prune bool) (Changes, error)
}

// ActorApplier is an Applier that can name who applies (Deployments and
// serving.Reconciler are): the change's events then name the client.
type ActorApplier interface {
	ApplyAs(actor string, models []config.Model, prune bool) (Changes, error)
}

// ActorHeader names who makes a change through the admin API (the CLI
// sends the OS user); without it the client's address is the actor.
const ActorHeader = "X-Infergate-Actor"

// actorOf is who makes the change r asks for.
func actorOf(r *http.Request) string {
	if a := strings.TrimSpace(r.Header.Get(ActorHeader)); a != "" {
		return a
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// Syncer makes what serves match the deployed state now (serving.
// Reconciler's routes and runtimes); an error means it could not.
type Syncer interface {
	Sync() error
}

// Runtimes reports what runs of each revision: serving.Manager.
type Runtimes interface {
	// RuntimeStatus returns the revision's replicas; false when it has no
	// runtime.
	RuntimeStatus(revision string) (RuntimeStatus, bool)
}

// RuntimeStatus is what runs of one revision.
type RuntimeStatus struct {
	// Desired replicas, those Running (a process, or an endpoint) and
	// those Ready. For runtimes at URLs Desired is Running.
	Desired, Running, Ready int
	// Restarts counts replica processes restarted after an exit.
	Restarts int
	// Failed says the runtime gave up starting; Reason says why, in full.
	Failed bool
	Reason string
}

// Scaling reports the autoscaler's last decision for a revision:
// *autoscaler.Autoscaler.
type Scaling interface {
	Status(revision string) (autoscaler.Status, bool)
}

// RevisionRow is one row of GET /api/v1/models: one revision of a model,
// with its traffic, replicas and the autoscaler's view.
type RevisionRow struct {
	// Name is the model's; a row per revision.
	Name     string `json:"name"`
	Revision string `json:"revision"`
	// Traffic is the revision's percent of the model's requests.
	Traffic int64 `json:"traffic"`
	// Tags are the revision's tags (latest, prev).
	Tags []string `json:"tags,omitempty"`
	// Status is the revision's: pending, ready or failed (see
	// RevisionStatus); Pending says the model's latest declaration waits
	// for it to be ready.
	Status   string `json:"status"`
	Pending  bool   `json:"pending,omitempty"`
	Desired  int    `json:"desired"`
	Running  int    `json:"running"`
	Ready    int    `json:"ready"`
	Restarts int    `json:"restarts"`
	Failed   bool   `json:"failed,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// The autoscaler's view, for supervised models.
	Metric        string  `json:"metric,omitempty"`
	Target        float64 `json:"target,omitempty"`
	Panic         bool    `json:"panic"`
	StableAverage float64 `json:"stableAverage"`
	PanicAverage  float64 `json:"panicAverage"`
	Decision      string  `json:"decision,omitempty"`
}

// ApplyRequest is the body of POST /api/v1/apply: the documents of one or
// more files, each applied with the others or not at all.
type ApplyRequest struct {
	Files []ApplyFile `json:"files"`
}

// ApplyFile is one file's YAML. Source names it in errors; BaseDir is the
// directory relative storage paths resolve against (the file's own, as
// `infergate serve -config` does).
type ApplyFile struct {
	Source  string `json:"source"`
	BaseDir string `json:"baseDir"`
	YAML    string `json:"yaml"`
}

// DefaultMaxApplyBytes is the default bound of an apply request's body: a
// few files of declarations.
const DefaultMaxApplyBytes = 16 * config.MaxFileBytes

// NewAPI returns the control API; it starts no goroutine.
func NewAPI(opts APIOptions) (*API, error) {
	if opts.Deployments == nil {
		return nil, errors.New("controlplane: APIOptions.Deployments is required")
	}
	if opts.Applier == nil {
		opts.Applier = opts.Deployments
	}
	if opts.Base == nil {
		opts.Base = http.NotFoundHandler()
	}
	if opts.MaxApplyBytes < 0 {
		return nil, fmt.Errorf("controlplane: APIOptions.MaxApplyBytes %d is negative", opts.MaxApplyBytes)
	}
	if opts.MaxApplyBytes == 0 {
		opts.MaxApplyBytes = DefaultMaxApplyBytes
	}
	a := &API{opts: opts, mux: http.NewServeMux()}
	a.mux.Handle("/", opts.Base)
	a.mux.HandleFunc("GET /api/v1/models", a.models)
	a.mux.HandleFunc("POST /api/v1/apply", a.guard(a.apply))
	a.mux.HandleFunc("GET /api/v1/rollouts/{model}", a.rolloutStatus)
	a.mux.HandleFunc("POST /api/v1/rollouts/{model}/{action}", a.guard(a.rolloutAction))
	for pattern, h := range opts.Extra {
		a.mux.Handle(pattern, h)
	}
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, fmt.Errorf("no control API at %s %s; see GET /api/v1/models, POST /api/v1/apply, GET /api/v1/rollouts/{model}, POST /api/v1/rollouts/{model}/{promote|rollback|pause|resume}", r.Method, r.URL.Path))
	})
	return a, nil
}

// ServeHTTP answers the control API's paths and hands the others to
// APIOptions.Base.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// guard admits a change only as a JSON request that no web page can
// send: Content-Type application/json (which a cross-site form or no-cors
// fetch cannot set) and no Origin header (which browsers add). Unless
// ChangesFromAnywhere, the client must also be on loopback and name a
// loopback host (so that a DNS name rebound to 127.0.0.1 does not pass).
func (a *API) guard(h http.HandlerFunc) http.HandlerFunc {
	return Guard(a.opts.ChangesFromAnywhere, h)
}

// Guard admits a change to the admin API, as the control API's own
// changes are admitted: no Origin header (browsers add one), a POST only
// as Content-Type application/json (which a cross-site form or no-cors
// fetch cannot send; PUT, PATCH and DELETE are never sent cross-site
// without a CORS preflight, which the admin port never grants), and,
// unless changesFromAnywhere, only from a loopback client to a loopback
// host (so that a DNS name rebound to 127.0.0.1 does not pass). Other
// admin handlers (the registry's) wrap their changes with it.
func Guard(changesFromAnywhere bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				writeAPIError(w, http.StatusUnsupportedMediaType, errors.New("changes must be sent as Content-Type: application/json"))
				return
			}
		}
		if r.Header.Get("Origin") != "" {
			writeAPIError(w, http.StatusForbidden, errors.New("changes are not accepted from web pages (the request has an Origin header)"))
			return
		}
		// A caller AdminAccess authenticated is checked by its grants,
		// wherever it is.
		if !changesFromAnywhere && auth.FromContext(r.Context()) == nil && (!loopbackRemote(r.RemoteAddr) || !loopbackHost(r.Host)) {
			writeAPIError(w, http.StatusForbidden, errors.New("changes are accepted from loopback clients only, addressed to a loopback host, unless infergate authenticates them (-auth: then an admin key may change from anywhere)"))
			return
		}
		h(w, r)
	}
}

// loopbackRemote reports whether an http.Request's RemoteAddr is a
// loopback address (127.0.0.0/8, ::1), as gateway.IsLoopback does for the
// admin port's pprof (controlplane does not import the data plane).
func loopbackRemote(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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

func (a *API) apply(w http.ResponseWriter, r *http.Request) {
	req, status, err := decodeApply(w, r, a.opts.MaxApplyBytes)
	if err != nil {
		writeAPIError(w, status, err)
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
	if err := checkCommands(r, models); err != nil {
		writeAPIError(w, http.StatusForbidden, err)
		return
	}
	var ch Changes
	if aa, ok := a.opts.Applier.(ActorApplier); ok {
		ch, err = aa.ApplyAs(actorOf(r), models, false)
	} else {
		ch, err = a.opts.Applier.Apply(models, false)
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrStore) {
			status = http.StatusInternalServerError
		}
		writeAPIError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

// decodeApply reads an apply request: one JSON object with known fields
// only, nothing after it, at most limit bytes. On error it returns the
// status to answer with.
func decodeApply(w http.ResponseWriter, r *http.Request, limit int64) (ApplyRequest, int, error) {
	var req ApplyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil {
		// A second object would otherwise be dropped unread.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the apply request")
			if errors.As(terr, new(*http.MaxBytesError)) {
				err = terr
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return req, http.StatusOK, nil
	case errors.As(err, &tooBig):
		return req, http.StatusRequestEntityTooLarge, fmt.Errorf("apply: the request is larger than %d bytes; apply fewer files at once", tooBig.Limit)
	}
	return req, http.StatusBadRequest, fmt.Errorf("apply: body is not an apply request: %w", err)
}

func (a *API) rolloutStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.opts.Deployments.RolloutStatus(r.PathValue("model"))
	if err != nil {
		writeAPIError(w, httpStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *API) rolloutAction(w http.ResponseWriter, r *http.Request) {
	d := a.opts.Deployments
	model := r.PathValue("model")
	var err error
	switch action := r.PathValue("action"); action {
	case "promote", "rollback", "pause", "resume":
		err = d.ActAs(actorOf(r), action, model)
	default:
		writeAPIError(w, http.StatusNotFound, fmt.Errorf("rollout: no action %q; use promote, rollback, pause or resume", action))
		return
	}
	if err != nil {
		writeAPIError(w, httpStatus(err), err)
		return
	}
	// The routes change before the answer: a client that sends requests
	// right after sees the new split.
	if a.opts.Syncer != nil {
		if err := a.opts.Syncer.Sync(); err != nil {
			writeAPIError(w, http.StatusInternalServerError, err)
			return
		}
	}
	st, err := d.RolloutStatus(model)
	if err != nil {
		writeAPIError(w, httpStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// httpStatus maps the control plane's errors to HTTP statuses: the one
// place the API does.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrUnknownModel):
		return http.StatusNotFound
	case errors.Is(err, ErrNothingToDo), errors.Is(err, ErrNoRollout):
		return http.StatusConflict
	case errors.Is(err, ErrInvalid):
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

// models serves every revision's state as RevisionRows.
func (a *API) models(w http.ResponseWriter, _ *http.Request) {
	out := []RevisionRow{}
	for _, ms := range a.opts.Deployments.State().Models {
		for _, rev := range ms.Revisions {
			row := RevisionRow{Name: ms.Name, Revision: rev.Name, Traffic: ms.Traffic[rev.Name], Status: string(rev.Status), Pending: rev.Name == ms.Pending}
			for tag, name := range ms.Tags {
				if name == rev.Name {
					row.Tags = append(row.Tags, tag)
				}
			}
			slices.Sort(row.Tags)
			if a.opts.Runtimes != nil {
				if st, ok := a.opts.Runtimes.RuntimeStatus(rev.Name); ok {
					row.Desired, row.Running, row.Ready, row.Restarts = st.Desired, st.Running, st.Ready, st.Restarts
					row.Failed, row.Reason = st.Failed, st.Reason
				}
			}
			if a.opts.Scaling != nil {
				if s, ok := a.opts.Scaling.Status(rev.Name); ok {
					row.Metric, row.Target, row.Panic = string(s.Metric), s.Target, s.Panic
					row.StableAverage, row.PanicAverage, row.Decision = s.StableAverage, s.PanicAverage, s.Reason
				}
			}
			out = append(out, row)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
