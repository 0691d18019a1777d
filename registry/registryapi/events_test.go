package registryapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/registry"
)

// sseEvent is one event of a stream as a client parses it.
type sseEvent struct {
	id, event, data string
}

// sseClient reads an event stream on its own goroutine.
type sseClient struct {
	t        *testing.T
	events   chan sseEvent // closed when the stream ends
	comments chan string
	cancel   context.CancelFunc
}

// openStream opens GET /api/v1/events/stream<query> and waits for its
// first comment, after which the stream sees every event committed.
func (e *env) openStream(query string, hdr ...string) *sseClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/events/stream"+query, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, kv := range hdr {
		k, v, _ := strings.Cut(kv, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		res.Body.Close()
		e.t.Fatalf("stream: status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	c := &sseClient{t: e.t, events: make(chan sseEvent, 10000), comments: make(chan string, 100), cancel: cancel}
	go func() {
		defer close(c.events)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur != (sseEvent{}) {
					c.events <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				select {
				case c.comments <- strings.TrimSpace(line[1:]):
				default:
				}
			default:
				k, v, _ := strings.Cut(line, ":")
				v = strings.TrimPrefix(v, " ")
				switch k {
				case "id":
					cur.id = v
				case "event":
					cur.event = v
				case "data":
					cur.data += v
				}
			}
		}
	}()
	if got := c.comment(); got != "infergate event stream" {
		e.t.Fatalf("first comment %q", got)
	}
	return c
}

func (c *sseClient) comment() string {
	c.t.Helper()
	select {
	case s := <-c.comments:
		return s
	case <-time.After(30 * time.Second):
		c.t.Fatal("no comment on the stream")
	}
	return ""
}

// next returns the next event, decoded.
func (c *sseClient) next() (sseEvent, registry.Event) {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		var e registry.Event
		if ev.event == "" {
			if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
				c.t.Fatalf("event data %q: %v", ev.data, err)
			}
			if ev.id != strconv.FormatInt(e.ID, 10) {
				c.t.Fatalf("id: %s, data's id %d", ev.id, e.ID)
			}
		}
		return ev, e
	case <-time.After(30 * time.Second):
		c.t.Fatal("no event on the stream")
	}
	return sseEvent{}, registry.Event{}
}

// ended waits for the stream to end, failing on an event.
func (c *sseClient) ended() {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if ok {
			c.t.Fatalf("an event %+v where the stream should end", ev)
		}
	case <-time.After(30 * time.Second):
		c.t.Fatal("the stream did not end")
	}
}

// kinds summarizes events as "kind model/version".
func kinds(evs []registry.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s/%d", e.Kind, e.Model, e.Version))
	}
	return out
}

func TestEventsList(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := time.Now().UTC()
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "iris"}`, "X-Infergate-Actor: alice")
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "digits"}`)
	e.ok(http.StatusCreated, nil, "POST", models+"/iris/versions", "{}")

	var page struct {
		Items         []registry.Event
		NextPageToken string
	}
	e.ok(http.StatusOK, &page, "GET", "/api/v1/events", nil)
	want := []string{"model.created iris/0", "model.created digits/0", "version.registered iris/1"}
	if diff := cmp.Diff(want, kinds(page.Items)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if page.Items[0].Actor != "alice" || page.Items[1].Actor != "127.0.0.1" {
		t.Errorf("actors %q, %q: want the header's, then the client's address", page.Items[0].Actor, page.Items[1].Actor)
	}
	first := page.Items[0].ID
	for _, tc := range []struct {
		name, query string
		want        []string
		next        bool
	}{
		{"model", "?model=iris", []string{"model.created iris/0", "version.registered iris/1"}, false},
		{"kind prefix", "?kind=version.*", []string{"version.registered iris/1"}, false},
		{"kind", "?kind=model.created", want[:2], false},
		{"since id", "?since=" + strconv.FormatInt(first, 10), want[1:], false},
		{"since time", "?since=" + url.QueryEscape(before.Format(time.RFC3339Nano)), want, false},
		{"since a later time", "?since=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), nil, false},
		{"limit", "?limit=2", want[:2], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p struct {
				Items         []registry.Event
				NextPageToken string
			}
			e.ok(http.StatusOK, &p, "GET", "/api/v1/events"+tc.query, nil)
			if diff := cmp.Diff(tc.want, kinds(p.Items)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if (p.NextPageToken != "") != tc.next {
				t.Errorf("nextPageToken %q", p.NextPageToken)
			}
			if tc.next {
				e.ok(http.StatusOK, &p, "GET", "/api/v1/events?since="+p.NextPageToken, nil)
				if diff := cmp.Diff(want[2:], kinds(p.Items)); diff != "" {
					t.Errorf("the next page (-want +got):\n%s", diff)
				}
			}
		})
	}
	for _, tc := range []struct{ name, query, mention string }{
		{"bad since", "?since=yesterday", "yesterday"},
		{"negative since", "?since=-4", "-4"},
		{"bad limit", "?limit=lots", "limit"},
		{"limit too large", "?limit=100000", "100000"},
		{"unknown parameter", "?modle=iris", "modle"},
		{"since twice", "?since=1&since=2", "once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mentions(t, e.fails(http.StatusBadRequest, "INVALID_ARGUMENT", "GET", "/api/v1/events"+tc.query, nil), tc.mention)
		})
	}
	for _, tc := range []struct{ name, query, mention string }{
		{"bad since", "?since=yesterday", "yesterday"},
		{"negative since", "?since=-4", "-4"},
		{"unknown parameter", "?modle=iris", "modle"},
		{"no limit on a stream", "?limit=5", "limit"},
		{"model twice", "?model=a&model=b", "once"},
	} {
		t.Run("stream/"+tc.name, func(t *testing.T) {
			mentions(t, e.fails(http.StatusBadRequest, "INVALID_ARGUMENT", "GET", "/api/v1/events/stream"+tc.query, nil), tc.mention)
		})
	}
	e.fails(http.StatusBadRequest, "INVALID_ARGUMENT", "GET", "/api/v1/events/stream", nil, "Last-Event-ID: seven")
	e.fails(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "POST", "/api/v1/events", "{}")
}

func TestEventStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	// Before the stream: not sent to a stream without since.
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "early"}`)
	all := e.openStream("")
	digits := e.openStream("?model=digits&kind=model.*")

	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "iris"}`, "X-Infergate-Actor: alice")
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "digits"}`)
	e.ok(http.StatusCreated, nil, "POST", models+"/digits/versions", "{}")
	e.ok(http.StatusOK, nil, "POST", models+"/digits/archive", "{}")

	var got []registry.Event
	for range 4 {
		_, ev := all.next()
		got = append(got, ev)
	}
	want := []string{"model.created iris/0", "model.created digits/0", "version.registered digits/1", "model.archived digits/0"}
	if diff := cmp.Diff(want, kinds(got)); diff != "" {
		t.Errorf("stream (-want +got):\n%s", diff)
	}
	if got[0].Actor != "alice" {
		t.Errorf("actor %q", got[0].Actor)
	}
	got = got[:0]
	for range 2 {
		_, ev := digits.next()
		got = append(got, ev)
	}
	if diff := cmp.Diff([]string{"model.created digits/0", "model.archived digits/0"}, kinds(got)); diff != "" {
		t.Errorf("filtered stream (-want +got):\n%s", diff)
	}
	// Events of another kind (AppendEvent's) reach the stream too.
	if _, err := e.reg.AppendEvent(context.Background(), registry.Event{Kind: "rollout.step", Model: "iris", Message: "step 1"}); err != nil {
		t.Fatal(err)
	}
	if _, ev := all.next(); ev.Kind != "rollout.step" || ev.Message != "step 1" {
		t.Errorf("appended event: %+v", ev)
	}
}

// TestEventStreamResume reconnects as EventSource does, with Last-Event-ID,
// and as a client that knows where it was, with since: each gets the events
// after that id, in order, then the live ones.
func TestEventStreamResume(t *testing.T) {
	e := newEnv(t, envOptions{})
	var ids []int64
	for i := range 5 {
		ev, err := e.reg.AppendEvent(context.Background(), registry.Event{Kind: "test.event", Message: strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	for _, tc := range []struct {
		name, query string
		hdr         []string
	}{
		{"Last-Event-ID", "", []string{"Last-Event-ID: " + strconv.FormatInt(ids[1], 10)}},
		{"since", "?since=" + strconv.FormatInt(ids[1], 10), nil},
		{"Last-Event-ID wins over since", "?since=" + strconv.FormatInt(ids[3], 10), []string{"Last-Event-ID: " + strconv.FormatInt(ids[1], 10)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.openStream(tc.query, tc.hdr...)
			// Those after ids[1], the live ones of the cases before
			// included.
			for _, want := range ids[2:] {
				if _, ev := c.next(); ev.ID != want {
					t.Fatalf("event %d, want %d", ev.ID, want)
				}
			}
			live, err := e.reg.AppendEvent(context.Background(), registry.Event{Kind: "test.live"})
			if err != nil {
				t.Fatal(err)
			}
			if _, ev := c.next(); ev.ID != live.ID {
				t.Fatalf("live event %d, want %d", ev.ID, live.ID)
			}
			ids = append(ids, live.ID)
			c.cancel()
		})
	}
}

// TestEventStreamLosesNothing commits far more events at once than the
// registry buffers for a subscriber: the subscription drops them (a gap),
// and the stream reads them back from the log: the client gets every one,
// in order, and no gap.
func TestEventStreamLosesNothing(t *testing.T) {
	// No polling: what the stream reads, a commit in this process woke
	// it to read.
	e := newEnv(t, envOptions{reg: registry.Options{EventBuffer: 1}, api: Options{EventPoll: time.Hour}})
	c := e.openStream("")
	const n = 2500 // more than a stream's read batch too
	var first int64
	err := e.reg.Update(context.Background(), func(ctx context.Context, tx *registry.Tx) error {
		for i := range n {
			ev, err := tx.AppendEvent(registry.Event{Kind: "test.burst", Message: strconv.Itoa(i)})
			if err != nil {
				return err
			}
			if i == 0 {
				first = ev.ID
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		raw, ev := c.next()
		if raw.event != "" || ev.ID != first+int64(i) || ev.Message != strconv.Itoa(i) {
			t.Fatalf("event %d: %+v (%+v)", i, ev, raw)
		}
	}
}

func TestEventStreamHeartbeatAndEnd(t *testing.T) {
	t.Run("heartbeat", func(t *testing.T) {
		e := newEnv(t, envOptions{api: Options{Heartbeat: 10 * time.Millisecond}})
		c := e.openStream("")
		if got := c.comment(); got != "heartbeat" {
			t.Errorf("comment %q", got)
		}
	})
	t.Run("Done ends every stream", func(t *testing.T) {
		done := make(chan struct{})
		e := newEnv(t, envOptions{api: Options{Done: done}})
		a, b := e.openStream(""), e.openStream("?since=0")
		close(done)
		a.ended()
		b.ended()
	})
	t.Run("the client goes", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		c := e.openStream("")
		c.cancel()
		e.waitDone("GET /api/v1/events/stream")
	})
	t.Run("the store fails", func(t *testing.T) {
		e := newEnv(t, envOptions{api: Options{EventPoll: 10 * time.Millisecond}})
		c := e.openStream("")
		e.reg.Close()
		raw, _ := c.next()
		if raw.event != "error" || !strings.Contains(raw.data, `"code"`) || !strings.Contains(raw.data, `"error"`) {
			t.Errorf("event %+v: want event: error with the error as data", raw)
		}
		c.ended()
	})
}
