package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEvents(t *testing.T) {
	runSuite(t, []storeCase{
		{"append and query", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.model("wine", nil)
			first := must[Event](t)(e.r.AppendEvent(e.ctx, Event{Kind: "rollout.step", Model: "iris", Version: 2, Message: "weight 10",
				Detail: json.RawMessage(`{"weight":10,"errorRate":0.001}`)}))
			if first.ID == 0 || first.Actor != "tester" || first.Time.IsZero() {
				t.Errorf("appended %+v", first)
			}
			must[Event](t)(e.r.AppendEvent(WithActor(e.ctx, "rollout-gate"), Event{Kind: "rollout.promote", Model: "iris"}))
			all := e.events()
			if len(all) != 4 {
				t.Fatalf("%d events: %+v", len(all), all)
			}
			for i := 1; i < len(all); i++ {
				if all[i].ID <= all[i-1].ID {
					t.Errorf("ids not increasing: %d then %d", all[i-1].ID, all[i].ID)
				}
			}
			q := func(q EventQuery) []string {
				t.Helper()
				evs, err := e.r.QueryEvents(e.ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, ev := range evs {
					out = append(out, ev.Kind+" "+ev.Model)
				}
				return out
			}
			for _, tc := range []struct {
				name string
				q    EventQuery
				want []string
			}{
				{"model", EventQuery{Model: "iris"}, []string{"model.created iris", "rollout.step iris", "rollout.promote iris"}},
				{"kind prefix", EventQuery{Kind: "rollout.*"}, []string{"rollout.step iris", "rollout.promote iris"}},
				{"kind", EventQuery{Kind: "model.created"}, []string{"model.created iris", "model.created wine"}},
				{"since id", EventQuery{SinceID: first.ID}, []string{"rollout.promote iris"}},
				{"since time", EventQuery{Since: all[3].Time}, []string{"rollout.promote iris"}},
				{"limit", EventQuery{Limit: 1}, []string{"model.created iris"}},
			} {
				if diff := cmp.Diff(tc.want, q(tc.q)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tc.name, diff)
				}
			}
			if string(all[2].Detail) != `{"weight":10,"errorRate":0.001}` && string(all[2].Detail) != `{"errorRate": 0.001, "weight": 10}` {
				t.Errorf("detail %s", all[2].Detail)
			}
			for _, tc := range []struct {
				e   Event
				sub string
			}{
				{Event{Kind: ""}, `event kind ""`},
				{Event{Kind: "Rollout"}, `event kind "Rollout"`},
				{Event{Kind: "x", Detail: json.RawMessage(`[1]`)}, "want a JSON object"},
				{Event{Kind: "x", Detail: json.RawMessage(`{`)}, "want a JSON object"},
				{Event{Kind: "x", Version: -1}, "negative"},
			} {
				_, err := e.r.AppendEvent(e.ctx, tc.e)
				wantCode(t, err, CodeInvalidArgument, tc.sub)
			}
			_, err := e.r.QueryEvents(e.ctx, EventQuery{Limit: 5000})
			wantCode(t, err, CodeInvalidArgument, "limit 5000")
		}},
		{"subscribe", func(t *testing.T, e *env) {
			ctx, cancel := context.WithCancel(e.ctx)
			ch := e.r.Subscribe(ctx)
			e.model("iris", nil)
			e.version("iris", map[string]string{"m": "1"})
			var kinds []string
			for range 4 {
				kinds = append(kinds, waitEvent(t, ch).Kind)
			}
			want := []string{EventModelCreated, EventVersionCreated, EventArtifactAdded, EventVersionReady}
			if diff := cmp.Diff(want, kinds); diff != "" {
				t.Errorf("streamed (-want +got):\n%s", diff)
			}
			// A refused change streams nothing.
			if _, err := e.r.CreateModel(e.ctx, ModelCreate{Name: "iris"}); err == nil {
				t.Fatal("duplicate created")
			}
			must[Event](t)(e.r.AppendEvent(e.ctx, Event{Kind: "marker"}))
			if got := waitEvent(t, ch); got.Kind != "marker" {
				t.Errorf("after a refused change, streamed %+v", got)
			}
			cancel()
			for range ch {
			}
		}},
		{"a slow subscriber loses events behind a gap marker, never blocking writers", func(t *testing.T, e *env) {
			reg := prometheus.NewPedanticRegistry()
			r := e.open(func(o *Options) { o.EventBuffer = 4; o.Registerer = reg })
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			slow := r.Subscribe(ctx)
			fast := r.Subscribe(ctx)
			// The fast reader acknowledges each event before the next write,
			// so it never falls behind; slow is never read meanwhile.
			acks := make(chan int64)
			go func() {
				for ev := range fast {
					select {
					case acks <- ev.ID:
					case <-ctx.Done():
						return
					}
				}
			}()
			var ids []int64
			for i := range 20 {
				ev := must[Event](t)(r.AppendEvent(e.ctx, Event{Kind: "tick", Message: fmt.Sprint(i)}))
				ids = append(ids, ev.ID)
				select {
				case id := <-acks:
					if id != ev.ID {
						t.Fatalf("fast subscriber got %d, want %d", id, ev.ID)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the fast subscriber got nothing within 10s")
				}
			}
			// The slow reader gets every event or a gap marker in its
			// place, in order: the first 4 or 5 (its queue, and the one its
			// goroutine may hold), then a gap. When its goroutine was
			// scheduled late, a slot may free up again before the last
			// append, so events and further gaps can follow the first gap;
			// together they account for the 20 events exactly once.
			next := ids[0]
			var (
				before    []int64 // the events before the first gap
				gaps      int
				missed    int64
				firstMiss int64
			)
			for next <= ids[19] {
				ev := waitEvent(t, slow)
				if ev.Kind != EventGap {
					if ev.ID != next {
						t.Fatalf("event %d, want %d", ev.ID, next)
					}
					if gaps == 0 {
						before = append(before, ev.ID)
					}
					next++
					continue
				}
				var d struct{ FirstMissed, LastMissed, Missed int64 }
				if err := json.Unmarshal(ev.Detail, &d); err != nil {
					t.Fatal(err)
				}
				if d.FirstMissed != next || d.LastMissed < d.FirstMissed || d.LastMissed > ids[19] || d.Missed != d.LastMissed-d.FirstMissed+1 {
					t.Fatalf("gap %s, want one from %d", ev.Detail, next)
				}
				if gaps == 0 {
					firstMiss = d.FirstMissed
				}
				gaps++
				missed += d.Missed
				next = d.LastMissed + 1
			}
			if len(before) < 4 || len(before) > 5 || gaps == 0 {
				t.Fatalf("%v before the first of %d gaps", before, gaps)
			}
			// The missed events are in the log.
			logged := must[[]Event](t)(r.QueryEvents(e.ctx, EventQuery{SinceID: firstMiss - 1, Kind: "tick"}))
			if int64(len(logged)) < missed {
				t.Errorf("%d events in the log from the first missed on, %d missed", len(logged), missed)
			}
			// Once caught up, the stream goes on.
			after := must[Event](t)(r.AppendEvent(e.ctx, Event{Kind: "tick"}))
			if ev := waitEvent(t, slow); ev.ID != after.ID {
				t.Errorf("after the gap: %+v, want id %d", ev, after.ID)
			}
			if n := testutil.ToFloat64(r.metrics.eventsDropped); int64(n) != missed {
				t.Errorf("dropped metric %v, want %d", n, missed)
			}
		}},
	})
}
