package registry

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one entry of the append-only event log. ID increases with each
// event committed (in commit order, on both stores); Version is 0 and Model
// "" when the event is about no model or version. Detail is a JSON object
// with the kind's figures (e.g. an alias move's from and to).
type Event struct {
	ID      int64           `json:"id"`
	Time    time.Time       `json:"time"`
	Kind    string          `json:"kind"`
	Model   string          `json:"model,omitempty"`
	Version int64           `json:"version,omitempty"`
	Actor   string          `json:"actor,omitempty"`
	Message string          `json:"message,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// The kinds of event the registry appends itself. AppendEvent takes any
// other kind (rollout.step, declaration.applied, ...).
const (
	EventModelCreated    = "model.created"
	EventModelUpdated    = "model.updated"
	EventModelArchived   = "model.archived"
	EventModelRestored   = "model.restored"
	EventVersionCreated  = "version.registered"
	EventVersionUpdated  = "version.updated"
	EventArtifactAdded   = "version.artifact_added"
	EventVersionReady    = "version.ready"
	EventVersionFailed   = "version.failed"
	EventVersionArchived = "version.archived"
	EventVersionRestored = "version.restored"
	EventAliasMoved      = "alias.moved"
	EventAliasDeleted    = "alias.deleted"
	EventUsesSet         = "uses.set"

	// EventGap is never stored: Subscribe sends it in place of events it
	// dropped because the reader fell behind. Its Detail is
	// {"firstMissed": id, "lastMissed": id, "missed": n}; read the missed
	// events with QueryEvents(EventQuery{SinceID: firstMissed - 1}).
	EventGap = "gap"
)

// EventQuery selects events, oldest first. Zero values: from the start, any
// model, any kind, 100 events (at most 1000).
type EventQuery struct {
	// SinceID keeps events with an id greater than it.
	SinceID int64
	// Since keeps events at or after that time.
	Since time.Time
	// Model keeps the events about that model.
	Model string
	// Kind keeps the events of that kind; a trailing '*' matches a prefix
	// ("alias.*").
	Kind  string
	Limit int
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// AppendEvent appends an event of the control plane's own kind (rollout
// step, declaration applied, promote, rollback...) in a transaction of its
// own, and returns it with its ID and Time. Kind must be 1-63 lowercase
// letters, digits, '.', '_', '-'; Detail, when set, a JSON object. Actor
// defaults to the context's (WithActor). ID and Time are ignored.
//
// To record an event in the same transaction as a change of your own
// tables, use Update and Tx.AppendEvent.
func (r *Registry) AppendEvent(ctx context.Context, e Event) (Event, error) {
	var out Event
	err := r.st.write(ctx, func(tx *wtx) error {
		var err error
		out, err = r.appendUserEvent(ctx, tx, e)
		return err
	})
	return out, err
}

func (r *Registry) appendUserEvent(ctx context.Context, tx *wtx, e Event) (Event, error) {
	if err := checkEventKind(e.Kind); err != nil {
		return Event{}, err
	}
	if e.Actor == "" {
		e.Actor = ActorFrom(ctx)
	}
	if err := checkText("event actor", e.Actor, maxShortText, false); err != nil {
		return Event{}, err
	}
	if err := checkText("event message", e.Message, maxMessage, true); err != nil {
		return Event{}, err
	}
	if e.Model != "" {
		if err := checkText("event model", e.Model, maxShortText, false); err != nil {
			return Event{}, err
		}
	}
	if e.Version < 0 {
		return Event{}, errorf(CodeInvalidArgument, "event version %d is negative", e.Version)
	}
	if len(e.Detail) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(e.Detail, &obj); err != nil || obj == nil {
			return Event{}, errorf(CodeInvalidArgument, "event detail %.100s: want a JSON object", e.Detail)
		}
		if len(e.Detail) > maxPropString {
			return Event{}, errorf(CodeInvalidArgument, "event detail is %d bytes, more than the %d allowed", len(e.Detail), maxPropString)
		}
	}
	return r.appendEvent(ctx, tx, e.Kind, e.Model, e.Version, e.Actor, e.Message, e.Detail)
}

// appendEvent appends an event in tx; it is published once tx commits.
// detail is a JSON object or nil; any other value is marshalled.
func (r *Registry) appendEvent(ctx context.Context, tx *wtx, kind, model string, version int64, actor, message string, detail any) (Event, error) {
	var raw json.RawMessage
	switch d := detail.(type) {
	case nil:
	case json.RawMessage:
		raw = d
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return Event{}, err
		}
		raw = b
	}
	if !tx.locked {
		if err := tx.s.d.lockEvents(ctx, tx.Tx); err != nil {
			return Event{}, err
		}
		tx.locked = true
	}
	e := Event{Time: r.now(), Kind: kind, Model: model, Version: version, Actor: actor, Message: message, Detail: raw}
	stored := "{}"
	if len(raw) > 0 {
		stored = string(raw)
	}
	err := tx.QueryRowContext(ctx, `INSERT INTO events (time, kind, model, version, actor, message, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		micros(e.Time), kind, model, version, actor, message, stored).Scan(&e.ID)
	if err != nil {
		return Event{}, err
	}
	tx.events = append(tx.events, e)
	return e, nil
}

// QueryEvents returns the events q selects, oldest first.
func (r *Registry) QueryEvents(ctx context.Context, q EventQuery) ([]Event, error) {
	limit, err := pageSize("event query limit", q.Limit)
	if err != nil {
		return nil, err
	}
	var b qb
	b.sql.WriteString(`SELECT id, time, kind, model, version, actor, message, detail FROM events WHERE id > ` + b.arg(q.SinceID))
	if !q.Since.IsZero() {
		b.sql.WriteString(` AND time >= ` + b.arg(micros(q.Since)))
	}
	if q.Model != "" {
		b.sql.WriteString(` AND model = ` + b.arg(q.Model))
	}
	if q.Kind != "" {
		if p, ok := strings.CutSuffix(q.Kind, "*"); ok {
			b.sql.WriteString(` AND kind LIKE ` + b.arg(likePrefix(p)) + ` ESCAPE '!'`)
		} else {
			b.sql.WriteString(` AND kind = ` + b.arg(q.Kind))
		}
	}
	b.sql.WriteString(` ORDER BY id LIMIT ` + b.arg(limit))
	var out []Event
	err = r.st.read(ctx, func(qr querier) error {
		rows, err := qr.QueryContext(ctx, b.sql.String(), b.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e Event
			var t int64
			var detail string
			if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Model, &e.Version, &e.Actor, &e.Message, &detail); err != nil {
				return err
			}
			e.Time = fromMicros(t)
			if detail != "{}" && detail != "" {
				e.Detail = json.RawMessage(detail)
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// Subscribe returns the events committed by this process from now on, in
// commit order, until ctx is done (then the channel is closed). A reader
// that falls more than Options.EventBuffer events behind loses the newest
// ones: it then receives one EventGap event in their place, and can read
// them back with QueryEvents. A slow reader never slows down a writer.
//
// Events committed by other processes sharing a PostgreSQL store are not
// seen here; poll QueryEvents with SinceID for those.
func (r *Registry) Subscribe(ctx context.Context) <-chan Event {
	return r.events.subscribe(ctx)
}

// broker fans committed events out to subscribers.
type broker struct {
	size    int
	metrics *metrics
	now     func() time.Time

	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

func newBroker(size int, m *metrics, now func() time.Time) *broker {
	return &broker{size: size, metrics: m, now: now, subs: map[*subscriber]struct{}{}}
}

// subscriber holds what its reader has not taken yet: a bounded queue
// (plus one slot for a gap marker) and the range of events dropped since.
type subscriber struct {
	mu      sync.Mutex
	queue   []Event
	gap     *gapRange
	wake    chan struct{} // 1-buffered: "the queue changed"
	maxSize int
	now     func() time.Time
}

type gapRange struct {
	first, last int64
	n           int
}

func (g *gapRange) event(now time.Time) Event {
	d, _ := json.Marshal(map[string]int64{"firstMissed": g.first, "lastMissed": g.last, "missed": int64(g.n)})
	return Event{Kind: EventGap, Time: now, Message: strconv.Itoa(g.n) + " events dropped for a slow reader: read them with QueryEvents", Detail: d}
}

func (b *broker) subscribe(ctx context.Context) <-chan Event {
	s := &subscriber{wake: make(chan struct{}, 1), maxSize: b.size, now: b.now}
	out := make(chan Event)
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
		}()
		for {
			e, ok := s.next()
			if !ok {
				select {
				case <-s.wake:
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// next pops the next event to deliver: a queued event, or the gap marker
// once the queue before it has drained.
func (s *subscriber) next() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		e := s.queue[0]
		s.queue[0] = Event{}
		s.queue = s.queue[1:]
		return e, true
	}
	if s.gap != nil {
		e := s.gap.event(s.now())
		s.gap = nil
		return e, true
	}
	return Event{}, false
}

// push queues e without blocking; if the queue is full, e is dropped and
// counted in the pending gap. It reports whether e was dropped.
func (s *subscriber) push(e Event) (dropped bool) {
	s.mu.Lock()
	if len(s.queue) >= s.maxSize {
		if s.gap == nil {
			s.gap = &gapRange{first: e.ID}
		}
		s.gap.last = e.ID
		s.gap.n++
		dropped = true
	} else {
		if s.gap != nil {
			// The reader made room: the marker goes where the events were
			// lost, before the newer ones.
			s.queue = append(s.queue, s.gap.event(s.now()))
			s.gap = nil
		}
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return dropped
}

func (b *broker) publish(events []Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for _, e := range events {
			if s.push(e) {
				b.metrics.eventsDropped.Inc()
			}
		}
	}
}
