package pipelinesapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/pipelines"
	"github.com/infergate/infergate/registry"
)

// Options configure New.
type Options struct {
	// Engine runs the pipelines. Required.
	Engine *pipelines.Engine
	// Guard wraps the handlers that change state (submit, cancel, retry);
	// nil admits every request.
	Guard func(http.HandlerFunc) http.HandlerFunc
	// MaxBodyBytes bounds a submit request's body; 0 means twice
	// pipelines.MaxPipelineBytes.
	MaxBodyBytes int64
}

// SubmitRequest is the body of POST /api/v1/runs.
type SubmitRequest struct {
	// Pipeline is the pipeline document (YAML or JSON).
	Pipeline string `json:"pipeline"`
	// Params by name, as text ("20", "0.1", "true", "[1, 2]").
	Params map[string]json.RawMessage `json:"params,omitempty"`
	// DisableCache runs every step even where earlier outputs could be
	// reused.
	DisableCache bool `json:"disableCache,omitempty"`
	// Source names the pipeline in errors (its file name).
	Source string `json:"source,omitempty"`
	// BaseDir is the directory relative paths of the pipeline resolve
	// against (its file's, on the machine of the engine).
	BaseDir string `json:"baseDir,omitempty"`
}

type api struct {
	e     *pipelines.Engine
	guard func(http.HandlerFunc) http.HandlerFunc
	max   int64
}

// New returns the handler of /api/v1/runs and below; it starts no
// goroutine.
func New(opts Options) (http.Handler, error) {
	if opts.Engine == nil {
		return nil, errors.New("pipelinesapi: Options.Engine is required")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("pipelinesapi: Options.MaxBodyBytes %d is negative", opts.MaxBodyBytes)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 2 * pipelines.MaxPipelineBytes
	}
	if opts.Guard == nil {
		opts.Guard = func(h http.HandlerFunc) http.HandlerFunc { return h }
	}
	a := &api{e: opts.Engine, guard: opts.Guard, max: opts.MaxBodyBytes}
	handle := jsonhttp.ErrorWriter{Status: status}.Handle
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/runs", a.guard(withActor(handle(a.submit))))
	mux.HandleFunc("GET /api/v1/runs", handle(a.list))
	mux.HandleFunc("GET /api/v1/runs/{id}", handle(a.get))
	mux.HandleFunc("POST /api/v1/runs/{id}/cancel", a.guard(withActor(handle(a.cancel))))
	mux.HandleFunc("POST /api/v1/runs/{id}/retry", a.guard(withActor(handle(a.retry))))
	mux.HandleFunc("GET /api/v1/runs/{id}/steps/{step}/logs", handle(a.logs))
	// Any other path is a 404, whatever its method.
	notFound := handle(func(w http.ResponseWriter, r *http.Request) error {
		return jsonhttp.NotFound(r, "pipelines", "POST|GET /api/v1/runs, GET /api/v1/runs/{id}, POST /api/v1/runs/{id}/cancel|retry, GET /api/v1/runs/{id}/steps/{step}/logs")
	})
	mux.HandleFunc("/api/v1/runs", notFound)
	mux.HandleFunc("/api/v1/runs/", notFound)
	return mux, nil
}

// ActorHeader names who makes a change, as the registry's API reads it
// (the CLI sends the OS user); without it the client's address is the
// actor.
const ActorHeader = jsonhttp.ActorHeader

// withActor gives h a request context naming who acts, which the engine
// records on the run and its events.
func withActor(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(registry.WithActor(r.Context(), jsonhttp.Actor(r))))
	}
}

// status maps an error to its HTTP status: the one place it is decided.
// The API's errors carry no code: a *jsonhttp.Error (no route, a body over
// its bound) keeps its status alone.
func status(err error) (int, string) {
	if status, _, ok := jsonhttp.StatusOf(err); ok {
		return status, ""
	}
	switch {
	case errors.Is(err, pipelines.ErrInvalid):
		return http.StatusBadRequest, ""
	case errors.Is(err, pipelines.ErrNotFound):
		return http.StatusNotFound, ""
	case errors.Is(err, pipelines.ErrConflict):
		return http.StatusConflict, ""
	case errors.Is(err, pipelines.ErrTooManyRuns):
		return http.StatusTooManyRequests, ""
	case errors.Is(err, pipelines.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, ""
	}
	return http.StatusInternalServerError, ""
}

// badRequest is a request the API itself refuses.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{pipelines.ErrInvalid}, args...)...)
}

func (a *api) submit(w http.ResponseWriter, r *http.Request) error {
	var req SubmitRequest
	if _, err := jsonhttp.Decode(w, r, a.max, &req); err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return &jsonhttp.Error{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("the request is larger than %d bytes", a.max)}
		}
		return badRequest("the body is not a submit request: %v", err)
	}
	if strings.TrimSpace(req.Pipeline) == "" {
		return badRequest("pipeline: missing (the pipeline's YAML)")
	}
	params := make(map[string]string, len(req.Params))
	for k, raw := range req.Params {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			params[k] = s
			continue
		}
		if strings.TrimSpace(string(raw)) == "null" {
			return badRequest("params.%s: null is not a value", k)
		}
		params[k] = string(raw)
	}
	p, err := pipelines.ParseSource(req.Source, []byte(req.Pipeline), req.BaseDir)
	if err != nil {
		return err
	}
	id, err := a.e.Submit(r.Context(), p, params, pipelines.SubmitOptions{DisableCache: req.DisableCache})
	if err != nil {
		return err
	}
	return a.answerRun(w, r, http.StatusCreated, id)
}

// answerRun answers with the run as stored now.
func (a *api) answerRun(w http.ResponseWriter, r *http.Request, code int, id pipelines.RunID) error {
	run, err := a.e.Get(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/runs/"+string(id))
	jsonhttp.WriteJSON(w, code, run)
	return nil
}

func (a *api) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	o := pipelines.ListOptions{Pipeline: q.Get("pipeline"), State: pipelines.RunState(q.Get("state")), PageToken: q.Get("pageToken")}
	if s := q.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return badRequest("pageSize %q is not a number", s)
		}
		o.PageSize = n
	}
	page, err := a.e.List(r.Context(), o)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (a *api) get(w http.ResponseWriter, r *http.Request) error {
	run, err := a.e.Get(r.Context(), pipelines.RunID(r.PathValue("id")))
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, run)
	return nil
}

func (a *api) cancel(w http.ResponseWriter, r *http.Request) error {
	id := pipelines.RunID(r.PathValue("id"))
	if err := a.e.Cancel(r.Context(), id); err != nil {
		return err
	}
	return a.answerRun(w, r, http.StatusAccepted, id)
}

func (a *api) retry(w http.ResponseWriter, r *http.Request) error {
	id := pipelines.RunID(r.PathValue("id"))
	if err := a.e.Retry(r.Context(), id); err != nil {
		return err
	}
	return a.answerRun(w, r, http.StatusAccepted, id)
}

func (a *api) logs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	o := pipelines.LogOptions{}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"iteration", &o.Iteration}, {"attempt", &o.Attempt}} {
		if s := q.Get(f.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return badRequest("%s %q is not a number", f.name, s)
			}
			*f.dst = n
		}
	}
	switch q.Get("follow") {
	case "", "0", "false":
	case "1", "true":
		o.Follow = true
	default:
		return badRequest("follow %q: want 1 or 0", q.Get("follow"))
	}
	rc, err := a.e.Logs(r.Context(), pipelines.RunID(r.PathValue("id")), r.PathValue("step"), o)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rcon := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client left
			}
			if o.Follow {
				_ = rcon.Flush()
			}
		}
		if err != nil {
			// The status is sent: an error past it (the client left, the
			// engine closed) ends the stream.
			return nil
		}
	}
}
