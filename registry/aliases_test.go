package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAliases(t *testing.T) {
	runSuite(t, []storeCase{
		{"set, move, delete and history", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.version("iris", map[string]string{"m": "1"})
			e.version("iris", map[string]string{"m": "2"})
			alice := WithActor(e.ctx, "alice")
			a := must[*Alias](t)(e.r.SetAlias(alice, "iris", "prod", 1, "first release"))
			if a.Version != 1 || a.Actor != "alice" {
				t.Errorf("alias %+v", a)
			}
			// Setting it where it is changes nothing and records nothing.
			must[*Alias](t)(e.r.SetAlias(alice, "iris", "prod", 1, "again"))
			must[*Alias](t)(e.r.SetAlias(WithActor(e.ctx, "rollout-gate"), "iris", "prod", 2, "canary passed"))
			if err := e.r.DeleteAlias(alice, "iris", "prod", "retired"); err != nil {
				t.Fatal(err)
			}
			h := must[[]AliasChange](t)(e.r.AliasHistory(e.ctx, "iris", "prod", 0))
			want := []AliasChange{
				{Model: "iris", Alias: "prod", From: 2, To: 0, Actor: "alice", Reason: "retired"},
				{Model: "iris", Alias: "prod", From: 1, To: 2, Actor: "rollout-gate", Reason: "canary passed"},
				{Model: "iris", Alias: "prod", From: 0, To: 1, Actor: "alice", Reason: "first release"},
			}
			if diff := cmp.Diff(want, h, cmpopts.IgnoreFields(AliasChange{}, "ID", "Time")); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
			evs, err := e.r.QueryEvents(e.ctx, EventQuery{Kind: "alias.*"})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range evs {
				var d map[string]any
				json.Unmarshal(ev.Detail, &d)
				got = append(got, fmt.Sprintf("%s %s v%d %v->%v by %s", ev.Kind, ev.Model, ev.Version, d["from"], d["to"], ev.Actor))
			}
			wantEv := []string{"alias.moved iris v1 0->1 by alice", "alias.moved iris v2 1->2 by rollout-gate", "alias.deleted iris v2 2->0 by alice"}
			if diff := cmp.Diff(wantEv, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			err = e.r.DeleteAlias(e.ctx, "iris", "prod", "")
			wantCode(t, err, CodeNotFound, "alias iris@prod not found")
			_, err = e.r.GetAlias(e.ctx, "iris", "prod")
			wantCode(t, err, CodeNotFound, "alias iris@prod not found")
		}},
		{"refused targets", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.version("iris", map[string]string{"m": "1"})
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			_, err := e.r.SetAlias(e.ctx, "iris", "prod", 2, "")
			wantCode(t, err, CodeConflict, "alias iris@prod", "version iris/2 is PENDING, not READY")
			_, err = e.r.SetAlias(e.ctx, "iris", "prod", 9, "")
			wantCode(t, err, CodeNotFound, "alias iris@prod", "version iris/9 not found")
			_, err = e.r.SetAlias(e.ctx, "nope", "prod", 1, "")
			wantCode(t, err, CodeNotFound, "model nope not found")
			_, err = e.r.SetAlias(e.ctx, "iris", "latest", 1, "")
			wantCode(t, err, CodeInvalidArgument, `"latest" is reserved`)
			_, err = e.r.SetAlias(e.ctx, "iris", "Prod", 1, "")
			wantCode(t, err, CodeInvalidArgument, `alias name "Prod"`, NameRule)
			// None of these left history or events.
			if h := must[[]AliasChange](t)(e.r.AliasHistory(e.ctx, "iris", "", 0)); len(h) != 0 {
				t.Errorf("history %+v", h)
			}
			if evs := must[[]Event](t)(e.r.QueryEvents(e.ctx, EventQuery{Kind: "alias.*"})); len(evs) != 0 {
				t.Errorf("events %+v", evs)
			}
			if l := must[[]Alias](t)(e.r.ListAliases(e.ctx, "iris")); len(l) != 0 {
				t.Errorf("aliases %+v", l)
			}
		}},
		{"concurrent moves keep one consistent history", func(t *testing.T, e *env) {
			e.model("iris", nil)
			for i := range 4 {
				e.version("iris", map[string]string{"m": fmt.Sprint(i)})
			}
			const workers, moves = 6, 15
			var wg sync.WaitGroup
			errs := make(chan error, workers*moves)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					ctx := WithActor(e.ctx, fmt.Sprint("w", w))
					for range moves {
						if _, err := e.r.SetAlias(ctx, "iris", "prod", int64(1+rng.IntN(4)), ""); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			h := must[[]AliasChange](t)(e.r.AliasHistory(e.ctx, "iris", "prod", 1000))
			cur := must[*Alias](t)(e.r.GetAlias(e.ctx, "iris", "prod"))
			if len(h) == 0 || h[0].To != cur.Version {
				t.Fatalf("alias at %d, newest history entry %+v", cur.Version, h[0])
			}
			// Oldest first, each change starts where the previous ended.
			prev := int64(0)
			for i := len(h) - 1; i >= 0; i-- {
				if h[i].From != prev || h[i].From == h[i].To {
					t.Fatalf("history entry %+v follows version %d", h[i], prev)
				}
				prev = h[i].To
			}
			evs := must[[]Event](t)(e.r.QueryEvents(e.ctx, EventQuery{Kind: EventAliasMoved, Limit: 1000}))
			if len(evs) != len(h) {
				t.Errorf("%d alias events, %d history entries", len(evs), len(h))
			}
		}},
	})
}

func TestResolve(t *testing.T) {
	runSuite(t, []storeCase{
		{"every form", func(t *testing.T, e *env) {
			e.model("iris", nil)
			v1 := e.version("iris", map[string]string{"model.onnx": "one"})
			v2 := e.version("iris", map[string]string{"model.onnx": "two"})
			v3 := e.version("iris", map[string]string{"model.onnx": "one"})           // same content as v1
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{})) // 4: PENDING
			must[*Alias](t)(e.r.SetAlias(e.ctx, "iris", "prod", 2, ""))
			must[*ModelVersion](t)(e.r.ArchiveVersion(e.ctx, "iris", 3))
			for _, tc := range []struct {
				ref  string
				want int64
			}{
				{"registry://iris", 2}, // 4 is PENDING, 3 archived
				{"iris", 2},
				{"registry://iris@latest", 2},
				{"registry://iris/1", 1},
				{"registry://iris@prod", 2},
				{"registry://iris@" + v1.Digest, 1}, // v3 has it too, but is archived
				{"registry://iris@" + v2.Digest, 2},
			} {
				v, err := e.r.Resolve(e.ctx, tc.ref)
				if err != nil {
					t.Errorf("%s: %v", tc.ref, err)
					continue
				}
				if v.Version != tc.want || len(v.Artifacts) != 1 || v.Digest == "" {
					t.Errorf("%s resolved to %+v, want version %d", tc.ref, v, tc.want)
				}
			}
			if v1.Digest != v3.Digest {
				t.Errorf("same files, digests %s and %s", v1.Digest, v3.Digest)
			}
			other := "sha256:" + strings.Repeat("0", 64)
			for _, tc := range []struct {
				ref  string
				code Code
				subs []string
			}{
				{"registry://nope", CodeNotFound, []string{"registry://nope: model nope not found"}},
				{"registry://iris/9", CodeNotFound, []string{"registry://iris/9: version 9 not found"}},
				{"registry://iris@staging", CodeNotFound, []string{"registry://iris@staging: alias staging not found"}},
				{"registry://iris@" + other, CodeNotFound, []string{"no version of iris has that digest"}},
				{"registry://iris/4", CodeConflict, []string{"registry://iris/4: version iris/4 is PENDING, not READY"}},
				{"registry://iris/3", CodeConflict, []string{"registry://iris/3: version iris/3 is ARCHIVED"}},
				{"registry://Iris", CodeInvalidArgument, []string{`model reference "registry://Iris"`}},
				{"registry://iris/03", CodeInvalidArgument, []string{`version "03"`}},
				{"registry://iris@sha256:abc", CodeInvalidArgument, []string{"digest"}},
				{"s3://bucket/iris", CodeInvalidArgument, []string{"not a registry:// reference"}},
			} {
				_, err := e.r.Resolve(e.ctx, tc.ref)
				wantCode(t, err, tc.code, tc.subs...)
			}
			e.model("empty", nil)
			_, err := e.r.Resolve(e.ctx, "registry://empty")
			wantCode(t, err, CodeNotFound, "registry://empty: model empty has no READY, LIVE version")
		}},
		{"uses", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.model("wine", nil)
			e.version("iris", map[string]string{"m": "1"})
			e.version("wine", map[string]string{"m": "1"})
			user := "inferenceservice/iris"
			if err := e.r.SetUses(e.ctx, user, []VersionRef{{"wine", 1}, {"iris", 1}, {"iris", 1}}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]VersionRef{{"iris", 1}, {"wine", 1}}, must[[]VersionRef](t)(e.r.Uses(e.ctx, user))); diff != "" {
				t.Errorf("uses (-want +got):\n%s", diff)
			}
			// A refused replacement leaves the previous set as it was.
			err := e.r.SetUses(e.ctx, user, []VersionRef{{"iris", 1}, {"iris", 5}})
			wantCode(t, err, CodeNotFound, "user inferenceservice/iris", "version iris/5 not found")
			if got := must[[]VersionRef](t)(e.r.Uses(e.ctx, user)); len(got) != 2 {
				t.Errorf("uses after a refused change: %v", got)
			}
			err = e.r.SetUses(e.ctx, "has space", nil)
			wantCode(t, err, CodeInvalidArgument, `user "has space"`)
			if err := e.r.SetUses(e.ctx, user, nil); err != nil {
				t.Fatal(err)
			}
			if got := must[[]VersionRef](t)(e.r.Uses(e.ctx, user)); len(got) != 0 {
				t.Errorf("uses after clearing: %v", got)
			}
		}},
		{"update appends events in the same transaction", func(t *testing.T, e *env) {
			if err := e.r.Update(e.ctx, func(ctx context.Context, tx *Tx) error {
				if _, err := tx.ExecContext(ctx, `CREATE TABLE cp_state (k TEXT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
					return err
				}
				_, err := tx.AppendEvent(Event{Kind: "declaration.applied", Model: "iris", Message: "applied"})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			// A failing change keeps neither its rows nor its event.
			boom := fmt.Errorf("boom")
			err := e.r.Update(e.ctx, func(ctx context.Context, tx *Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO cp_state (k, v) VALUES ($1, $2)`, "a", "b"); err != nil {
					return err
				}
				if _, err := tx.AppendEvent(Event{Kind: "revision.made", Model: "iris"}); err != nil {
					return err
				}
				return boom
			})
			if err != boom {
				t.Fatalf("Update: %v, want boom", err)
			}
			var n int
			if err := e.r.st.db.QueryRow(`SELECT COUNT(*) FROM cp_state`).Scan(&n); err != nil || n != 0 {
				t.Errorf("rows after a failed update: %d, %v", n, err)
			}
			evs := e.events()
			if len(evs) != 1 || evs[0].Kind != "declaration.applied" || evs[0].Actor != "tester" {
				t.Errorf("events %+v", evs)
			}
		}},
	})
}
