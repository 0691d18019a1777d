package registry

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestModels(t *testing.T) {
	runSuite(t, []storeCase{
		{"create and get", func(t *testing.T, e *env) {
			m, err := e.r.CreateModel(e.ctx, ModelCreate{Name: "iris", Description: "flowers", Labels: map[string]string{"team": "a"}})
			if err != nil {
				t.Fatal(err)
			}
			if m.State != StateLive || m.ETag != "1" || m.Owner != "tester" || m.CreateTime.IsZero() || m.CreateTime.Location().String() != "UTC" {
				t.Errorf("created %+v", m)
			}
			got := must[*RegisteredModel](t)(e.r.GetModel(e.ctx, "iris"))
			if diff := cmp.Diff(m, got); diff != "" {
				t.Errorf("GetModel (-created +got):\n%s", diff)
			}
			evs := e.events()
			if len(evs) != 1 || evs[0].Kind != EventModelCreated || evs[0].Model != "iris" || evs[0].Actor != "tester" {
				t.Errorf("events %+v", evs)
			}
		}},
		{"duplicate name is AlreadyExists and appends no event", func(t *testing.T, e *env) {
			e.model("iris", nil)
			_, err := e.r.CreateModel(e.ctx, ModelCreate{Name: "iris"})
			wantCode(t, err, CodeAlreadyExists, "model iris already exists")
			if n := len(e.events()); n != 1 {
				t.Errorf("%d events, want 1", n)
			}
		}},
		{"bad input is InvalidArgument naming the field", func(t *testing.T, e *env) {
			for _, tc := range []struct {
				c    ModelCreate
				subs []string
			}{
				{ModelCreate{Name: "Iris"}, []string{`model name "Iris"`, NameRule}},
				{ModelCreate{Name: "-iris"}, []string{`"-iris"`}},
				{ModelCreate{Name: ""}, []string{`model name ""`}},
				{ModelCreate{Name: "a23456789012345678901234567890123456789012345678901234567890abcd"}, []string{"naming rule"}},
				{ModelCreate{Name: "iris", Labels: map[string]string{"bad key": "v"}}, []string{`label key "bad key"`}},
				{ModelCreate{Name: "iris", Owner: "a\x00b"}, []string{"owner", "control character"}},
			} {
				_, err := e.r.CreateModel(e.ctx, tc.c)
				wantCode(t, err, CodeInvalidArgument, tc.subs...)
			}
			_, err := e.r.GetModel(e.ctx, "nope")
			wantCode(t, err, CodeNotFound, "model nope not found")
		}},
		{"update with etag", func(t *testing.T, e *env) {
			m := e.model("iris", map[string]string{"a": "1"})
			u, err := e.r.UpdateModel(e.ctx, "iris", ModelUpdate{Description: ptr("new"), Labels: map[string]string{"b": "2"}}, m.ETag)
			if err != nil {
				t.Fatal(err)
			}
			if u.Description != "new" || u.ETag != "2" || !cmp.Equal(u.Labels, map[string]string{"b": "2"}) {
				t.Errorf("updated %+v", u)
			}
			// The stale etag of the first read is refused, and nothing changes.
			_, err = e.r.UpdateModel(e.ctx, "iris", ModelUpdate{Owner: ptr("x")}, m.ETag)
			wantCode(t, err, CodeFailedPrecondition, "model iris", `etag "1" is stale`, `current "2"`)
			got := must[*RegisteredModel](t)(e.r.GetModel(e.ctx, "iris"))
			if diff := cmp.Diff(u, got); diff != "" {
				t.Errorf("after a stale update (-want +got):\n%s", diff)
			}
			// Quoted etags as HTTP sends them are accepted; an update that
			// changes nothing keeps the etag.
			same := must[*RegisteredModel](t)(e.r.UpdateModel(e.ctx, "iris", ModelUpdate{Description: ptr("new")}, `"2"`))
			if same.ETag != "2" {
				t.Errorf("no-op update bumped the etag to %s", same.ETag)
			}
			// Labels are replaced; an empty map clears them.
			cleared := must[*RegisteredModel](t)(e.r.UpdateModel(e.ctx, "iris", ModelUpdate{Labels: map[string]string{}}, ""))
			if cleared.Labels != nil {
				t.Errorf("labels %v, want none", cleared.Labels)
			}
			_, err = e.r.UpdateModel(e.ctx, "nope", ModelUpdate{Description: ptr("x")}, "")
			wantCode(t, err, CodeNotFound, "model nope")
			_, err = e.r.UpdateModel(e.ctx, "iris", ModelUpdate{State: ptr(State("GONE"))}, "")
			wantCode(t, err, CodeInvalidArgument, `state "GONE"`)
			var kinds []string
			for _, ev := range e.events() {
				kinds = append(kinds, ev.Kind)
			}
			if diff := cmp.Diff([]string{EventModelCreated, EventModelUpdated, EventModelUpdated}, kinds); diff != "" {
				t.Errorf("event kinds (-want +got):\n%s", diff)
			}
		}},
		{"archive and restore", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.version("iris", map[string]string{"model.onnx": "x"})
			a := must[*RegisteredModel](t)(e.r.ArchiveModel(e.ctx, "iris"))
			if a.State != StateArchived {
				t.Fatalf("state %s", a.State)
			}
			_, err := e.r.CreateVersion(e.ctx, "iris", VersionCreate{})
			wantCode(t, err, CodeConflict, "model iris is ARCHIVED")
			_, err = e.r.Resolve(e.ctx, "registry://iris")
			wantCode(t, err, CodeConflict, "registry://iris", "ARCHIVED")
			again := must[*RegisteredModel](t)(e.r.ArchiveModel(e.ctx, "iris"))
			if again.ETag != a.ETag {
				t.Errorf("archiving twice changed the etag")
			}
			r := must[*RegisteredModel](t)(e.r.UpdateModel(e.ctx, "iris", ModelUpdate{State: ptr(StateLive)}, ""))
			if r.State != StateLive {
				t.Errorf("restored state %s", r.State)
			}
			must[*ModelVersion](t)(e.r.Resolve(e.ctx, "registry://iris"))
			kinds := map[string]int{}
			for _, ev := range e.events() {
				kinds[ev.Kind]++
			}
			if kinds[EventModelArchived] != 1 || kinds[EventModelRestored] != 1 {
				t.Errorf("events %v", kinds)
			}
		}},
		{"archive refused while a version is used", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.version("iris", map[string]string{"m": "1"})
			if err := e.r.SetUses(e.ctx, "inferenceservice/iris", []VersionRef{{"iris", 1}}); err != nil {
				t.Fatal(err)
			}
			_, err := e.r.ArchiveModel(e.ctx, "iris")
			wantCode(t, err, CodeConflict, "model iris cannot be archived", "inferenceservice/iris (version 1)")
			if err := e.r.SetUses(e.ctx, "inferenceservice/iris", nil); err != nil {
				t.Fatal(err)
			}
			must[*RegisteredModel](t)(e.r.ArchiveModel(e.ctx, "iris"))
		}},
		{"list filters", func(t *testing.T, e *env) {
			for i := range 6 {
				labels := map[string]string{"team": fmt.Sprint("t", i%2)}
				if i == 0 {
					labels["tier"] = "gold"
				}
				e.model(fmt.Sprintf("m%d", i), labels)
			}
			e.model("x_y", nil)
			e.model("xay", nil)
			must[*RegisteredModel](t)(e.r.ArchiveModel(e.ctx, "m5"))
			names := func(o ListOptions) []string {
				t.Helper()
				p, err := e.r.ListModels(e.ctx, o)
				if err != nil {
					t.Fatal(err)
				}
				out := []string{}
				for _, m := range p.Items {
					out = append(out, m.Name)
				}
				return out
			}
			for _, tc := range []struct {
				name string
				o    ListOptions
				want []string
			}{
				{"all", ListOptions{}, []string{"m0", "m1", "m2", "m3", "m4", "m5", "x_y", "xay"}},
				{"desc", ListOptions{Order: OrderDesc, PageSize: 3}, []string{"xay", "x_y", "m5"}},
				{"prefix", ListOptions{Name: "m"}, []string{"m0", "m1", "m2", "m3", "m4", "m5"}},
				{"prefix underscore is literal", ListOptions{Name: "x_"}, []string{"x_y"}},
				{"label", ListOptions{Labels: map[string]string{"team": "t1"}}, []string{"m1", "m3", "m5"}},
				{"labels all match", ListOptions{Labels: map[string]string{"team": "t0", "tier": "gold"}}, []string{"m0"}},
				{"state", ListOptions{State: StateArchived}, []string{"m5"}},
				{"live t1", ListOptions{State: StateLive, Labels: map[string]string{"team": "t1"}}, []string{"m1", "m3"}},
			} {
				if diff := cmp.Diff(tc.want, names(tc.o)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tc.name, diff)
				}
			}
			for _, tc := range []struct {
				o   ListOptions
				sub string
			}{
				{ListOptions{PageSize: 1001}, "pageSize 1001"},
				{ListOptions{PageSize: -1}, "pageSize -1"},
				{ListOptions{PageToken: "garbage!"}, "pageToken"},
				{ListOptions{Order: "sideways"}, `order "sideways"`},
				{ListOptions{Name: "UP"}, `name filter "UP"`},
				{ListOptions{State: "GONE"}, `state "GONE"`},
				{ListOptions{Status: StatusReady}, "status filter"},
			} {
				_, err := e.r.ListModels(e.ctx, tc.o)
				wantCode(t, err, CodeInvalidArgument, tc.sub)
			}
			// A token is bound to its list and order.
			p := must[*ModelPage](t)(e.r.ListModels(e.ctx, ListOptions{PageSize: 2}))
			_, err := e.r.ListModels(e.ctx, ListOptions{PageSize: 2, PageToken: p.NextPageToken, Order: OrderDesc})
			wantCode(t, err, CodeInvalidArgument, "order asc")
			_, err = e.r.ListVersions(e.ctx, "m0", ListOptions{PageToken: p.NextPageToken})
			wantCode(t, err, CodeInvalidArgument, "another list")
		}},
		{"pagination is stable under inserts", func(t *testing.T, e *env) {
			for _, order := range []Order{OrderAsc, OrderDesc} {
				prefix := "p" + string(order)
				var before []string
				for i := range 25 {
					name := fmt.Sprintf("%s-%02d", prefix, i)
					e.model(name, nil)
					before = append(before, name)
				}
				seen := map[string]int{}
				tok, pages := "", 0
				for {
					p, err := e.r.ListModels(e.ctx, ListOptions{Name: prefix, PageSize: 4, PageToken: tok, Order: order})
					if err != nil {
						t.Fatal(err)
					}
					pages++
					for _, m := range p.Items {
						seen[m.Name]++
					}
					// Models created between pages: they land after the
					// cursor in asc order, before it in desc, and never
					// shift what is left to read.
					e.model(fmt.Sprintf("%s-new%02d", prefix, pages), nil)
					if p.NextPageToken == "" {
						break
					}
					if pages > 40 {
						t.Fatal("pagination does not end")
					}
					tok = p.NextPageToken
				}
				for _, n := range before {
					if seen[n] != 1 {
						t.Errorf("%s: model %s seen %d times", order, n, seen[n])
					}
				}
				for n, c := range seen {
					if c != 1 {
						t.Errorf("%s: model %s seen %d times", order, n, c)
					}
				}
			}
		}},
	})
}
