package registryapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/registry"
)

// streamBatch is how many events a stream reads from the log at once.
const streamBatch = 1000

// eventPage is the answer of GET /api/v1/events. NextPageToken is set
// when the page is full: pass it as since to read on.
type eventPage struct {
	Items         []registry.Event `json:"items"`
	NextPageToken string           `json:"nextPageToken,omitempty"`
}

// eventQuery reads since, model and kind (and limit when allowed).
func eventQuery(q url.Values) (registry.EventQuery, bool, error) {
	var eq registry.EventQuery
	since, err := single(q, "since")
	if err != nil {
		return eq, false, err
	}
	if since != "" {
		if id, err := strconv.ParseInt(since, 10, 64); err == nil {
			if id < 0 {
				return eq, false, invalid("query parameter since=%s: an event id is 0 or more", since)
			}
			eq.SinceID = id
		} else if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
			eq.Since = t
		} else {
			return eq, false, invalid("query parameter since=%q: want an event id (events after it) or an RFC 3339 time such as 2025-01-02T15:04:05Z (events at or after it)", since)
		}
	}
	if eq.Model, err = single(q, "model"); err != nil {
		return eq, false, err
	}
	if eq.Kind, err = single(q, "kind"); err != nil {
		return eq, false, err
	}
	if eq.Limit, err = intParam(q, "limit"); err != nil {
		return eq, false, err
	}
	return eq, since != "", nil
}

func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "since", "model", "kind", "limit")
	if err != nil {
		return err
	}
	eq, _, err := eventQuery(q)
	if err != nil {
		return err
	}
	evs, err := h.reg.QueryEvents(r.Context(), eq)
	if err != nil {
		return err
	}
	page := eventPage{Items: nonNil(evs)}
	limit := eq.Limit
	if limit == 0 {
		limit = 100 // EventQuery's default
	}
	if len(evs) == limit {
		page.NextPageToken = strconv.FormatInt(evs[len(evs)-1].ID, 10)
	}
	jsonhttp.WriteJSON(w, http.StatusOK, page)
	return nil
}

// stream serves the event log as server-sent events (see the package
// doc). The log is the buffer: the registry's Subscribe only wakes the
// stream, which reads what was committed after the last event it sent, so
// a client that falls behind catches up rather than losing events. It
// returns an error only before the stream's header is written; after, a
// store failure is told in the stream as an "event: error".
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "since", "model", "kind")
	if err != nil {
		return err
	}
	eq, hasSince, err := eventQuery(q)
	if err != nil {
		return err
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		// A reconnecting client: resume after what it has.
		id, err := strconv.ParseInt(strings.TrimSpace(last), 10, 64)
		if err != nil || id < 0 {
			return invalid("Last-Event-ID %q: want an event id", last)
		}
		eq.SinceID, eq.Since = id, time.Time{}
	} else if !hasSince {
		eq.Since = time.Now()
	}
	eq.Limit = streamBatch

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if done := h.opts.Done; done != nil {
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	// Subscribed before the first read: an event committed after it wakes
	// the loop below, so none falls between the read and the wait.
	wake := h.reg.Subscribe(ctx)
	first, err := h.reg.QueryEvents(ctx, eq)
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: h.opts.StreamWriteTimeout}
	// retry: how long an EventSource waits before it reconnects.
	if s.write([]byte(": infergate event stream\nretry: 2000\n\n")) != nil {
		return nil
	}
	// send writes a batch and moves the cursor past it; it reports
	// whether the log may hold more right now.
	send := func(evs []registry.Event) (more bool, err error) {
		if len(evs) == 0 {
			return false, nil
		}
		var buf []byte
		for _, e := range evs {
			data, err := json.Marshal(e)
			if err != nil {
				return false, err
			}
			buf = strconv.AppendInt(append(buf, "id: "...), e.ID, 10)
			buf = append(append(append(buf, "\ndata: "...), data...), "\n\n"...)
		}
		eq.SinceID = evs[len(evs)-1].ID
		return len(evs) == streamBatch, s.write(buf)
	}
	catchUp := func() error {
		for {
			evs, err := h.reg.QueryEvents(ctx, eq)
			if err != nil {
				return err
			}
			more, err := send(evs)
			if err != nil || !more {
				return err
			}
		}
	}
	more, err := send(first)
	if err == nil && more {
		err = catchUp()
	}
	heartbeat := time.NewTicker(h.opts.Heartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(h.opts.EventPoll)
	defer poll.Stop()
	for err == nil {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-wake:
			switch {
			case !ok:
				return nil
			case e.Kind != registry.EventGap && (e.ID <= eq.SinceID || !eventMatches(eq, e)):
				// Sent already, or filtered out: nothing to read.
			default:
				err = catchUp()
			}
		case <-poll.C:
			err = catchUp()
		case <-heartbeat.C:
			err = s.write([]byte(": heartbeat\n\n"))
		}
	}
	if ctx.Err() != nil || isWriteErr(err) {
		return nil // the client went, or the server ends the stream
	}
	// The store failed: say so in the stream; the client may resume.
	status, code := statusOf(err)
	h.log.Warn("registry API: event stream ended", "status", status, "code", code, "err", err)
	data, _ := json.Marshal(jsonhttp.ErrorBody{Error: err.Error(), Code: code})
	_ = s.write(append(append([]byte("event: error\ndata: "), data...), "\n\n"...))
	return nil
}

// eventMatches reports whether the query's model and kind filters keep e.
func eventMatches(q registry.EventQuery, e registry.Event) bool {
	if q.Model != "" && e.Model != q.Model {
		return false
	}
	if q.Kind == "" {
		return true
	}
	if p, ok := strings.CutSuffix(q.Kind, "*"); ok {
		return strings.HasPrefix(e.Kind, p)
	}
	return e.Kind == q.Kind
}

// sseWriter writes to an event stream's client, each write flushed and
// bounded by a write deadline.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// writeErr marks a failure to write to the client, as opposed to the
// store's.
type writeErr struct{ error }

func (e writeErr) Unwrap() error { return e.error }

func isWriteErr(err error) bool {
	var we writeErr
	return errors.As(err, &we)
}

func (s *sseWriter) write(b []byte) error {
	// A writer without deadlines (not net/http's own) is written
	// without one.
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(b); err != nil {
		return writeErr{err}
	}
	if err := s.rc.Flush(); err != nil {
		return writeErr{err}
	}
	return nil
}
