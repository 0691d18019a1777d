package registry

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVersions(t *testing.T) {
	runSuite(t, []storeCase{
		{"lifecycle", func(t *testing.T, e *env) {
			e.model("iris", nil)
			c := VersionCreate{
				Description:      "first",
				Labels:           map[string]string{"framework": "onnx"},
				CustomProperties: map[string]Value{"s": StringValue("x"), "i": IntValue(-3), "d": DoubleValue(0.5), "b": BoolValue(true)},
				Metrics:          map[string]float64{"accuracy": 0.9},
				Params:           map[string]string{"lr": "0.1"},
				Source:           Source{Kind: "pipelineRun", ID: "run-7", Name: "train"},
			}
			v := must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", c))
			if v.Version != 1 || v.Status != StatusPending || v.State != StateLive || v.Author != "tester" ||
				v.Source != (Source{Kind: "pipelineRun", ID: "run-7", Name: "train", Actor: "tester"}) || v.Digest != "" || len(v.Artifacts) != 0 {
				t.Errorf("created %+v", v)
			}
			if diff := cmp.Diff(c.CustomProperties, v.CustomProperties, cmp.AllowUnexported(Value{})); diff != "" {
				t.Errorf("custom properties (-want +got):\n%s", diff)
			}
			// Metrics can change while PENDING.
			v = must[*ModelVersion](t)(e.r.UpdateVersion(e.ctx, "iris", 1, VersionUpdate{Metrics: map[string]float64{"accuracy": 0.95}}, v.ETag))
			_, err := e.r.MarkReady(e.ctx, "iris", 1)
			wantCode(t, err, CodeConflict, "version iris/1 has no artifact")
			a := must[*Artifact](t)(e.r.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: "model.onnx", Format: "onnx", ContentType: "application/octet-stream", Digest: digestOf("weights")}, strings.NewReader("weights")))
			if a.Digest != digestOf("weights") || a.Size != 7 || a.URI != "registry://iris/1/model.onnx" || a.Format != "onnx" {
				t.Errorf("artifact %+v", a)
			}
			must[*Artifact](t)(e.r.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: "iris/config.pbtxt"}, strings.NewReader("cfg")))
			r := must[*ModelVersion](t)(e.r.MarkReady(e.ctx, "iris", 1))
			want := ManifestDigest([]Artifact{{Name: "model.onnx", Digest: digestOf("weights"), Size: 7}, {Name: "iris/config.pbtxt", Digest: digestOf("cfg"), Size: 3}})
			if r.Status != StatusReady || r.Digest != want || len(r.Artifacts) != 2 || r.Artifacts[0].Name != "iris/config.pbtxt" {
				t.Errorf("ready %+v, want digest %s", r, want)
			}
			// The manifest rule, by hand.
			manual := fmt.Sprintf("%s 3 iris/config.pbtxt\n%s 7 model.onnx\n", digestOf("cfg"), digestOf("weights"))
			if want != digestOf(manual) {
				t.Errorf("ManifestDigest %s, by the documented rule %s", want, digestOf(manual))
			}
			// Marking READY again changes nothing.
			again := must[*ModelVersion](t)(e.r.MarkReady(e.ctx, "iris", 1))
			if again.ETag != r.ETag {
				t.Errorf("MarkReady twice bumped the etag")
			}
			// Frozen once READY.
			_, err = e.r.UpdateVersion(e.ctx, "iris", 1, VersionUpdate{Metrics: map[string]float64{"accuracy": 1}}, "")
			wantCode(t, err, CodeConflict, "version iris/1 is READY", "metrics are frozen")
			_, err = e.r.UpdateVersion(e.ctx, "iris", 1, VersionUpdate{Params: map[string]string{"lr": "1"}}, "")
			wantCode(t, err, CodeConflict, "params are frozen")
			_, err = e.r.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: "more"}, strings.NewReader("x"))
			wantCode(t, err, CodeConflict, "version iris/1 is READY", "only while it is PENDING")
			_, err = e.r.MarkFailed(e.ctx, "iris", 1, "late")
			wantCode(t, err, CodeConflict, "READY version cannot fail")
			// Description, labels and custom properties stay editable; a stale etag is refused.
			u := must[*ModelVersion](t)(e.r.UpdateVersion(e.ctx, "iris", 1, VersionUpdate{Description: ptr("best"), CustomProperties: map[string]Value{"k": StringValue("v")}}, r.ETag))
			if u.Description != "best" || u.Metrics["accuracy"] != 0.95 {
				t.Errorf("updated %+v", u)
			}
			_, err = e.r.UpdateVersion(e.ctx, "iris", 1, VersionUpdate{Description: ptr("x")}, r.ETag)
			wantCode(t, err, CodeFailedPrecondition, "version iris/1", "stale")
			got := must[*ModelVersion](t)(e.r.GetVersion(e.ctx, "iris", 1))
			if diff := cmp.Diff(u, got, cmp.AllowUnexported(Value{})); diff != "" {
				t.Errorf("GetVersion (-updated +got):\n%s", diff)
			}
			// A version's JSON is Kubeflow's shape.
			b, _ := json.Marshal(got)
			for _, s := range []string{`"customProperties":{"k":{"stringValue":"v"}}`, `"status":"READY"`, `"createTime":`, `"etag":"`} {
				if !strings.Contains(string(b), s) {
					t.Errorf("JSON %s lacks %s", b, s)
				}
			}
		}},
		{"failed", func(t *testing.T, e *env) {
			e.model("iris", nil)
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			f := must[*ModelVersion](t)(e.r.MarkFailed(e.ctx, "iris", 1, "training diverged"))
			if f.Status != StatusFailed || f.StatusMessage != "training diverged" {
				t.Errorf("failed %+v", f)
			}
			_, err := e.r.MarkReady(e.ctx, "iris", 1)
			wantCode(t, err, CodeConflict, "version iris/1 is FAILED (training diverged)")
			_, err = e.r.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: "m"}, strings.NewReader("x"))
			wantCode(t, err, CodeConflict, "is FAILED")
			_, err = e.r.Resolve(e.ctx, "registry://iris/1")
			wantCode(t, err, CodeConflict, "registry://iris/1", "FAILED (training diverged), not READY")
			// The next version gets the next number: 1 is never reused.
			v := must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			if v.Version != 2 {
				t.Errorf("next version %d, want 2", v.Version)
			}
		}},
		{"bad input", func(t *testing.T, e *env) {
			e.model("iris", nil)
			for _, tc := range []struct {
				c   VersionCreate
				sub string
			}{
				{VersionCreate{Metrics: map[string]float64{"": 1}}, "metric key"},
				{VersionCreate{CustomProperties: map[string]Value{"k": {}}}, "custom property k has no value"},
				{VersionCreate{CustomProperties: map[string]Value{"k": DoubleValue(inf())}}, "not a finite number"},
				{VersionCreate{Source: Source{Kind: "bad kind"}}, `source kind "bad kind"`},
				{VersionCreate{Labels: map[string]string{"k": strings.Repeat("v", 2000)}}, "label k is 2000 bytes"},
			} {
				_, err := e.r.CreateVersion(e.ctx, "iris", tc.c)
				wantCode(t, err, CodeInvalidArgument, tc.sub)
			}
			_, err := e.r.CreateVersion(e.ctx, "nope", VersionCreate{})
			wantCode(t, err, CodeNotFound, "model nope not found")
			_, err = e.r.GetVersion(e.ctx, "iris", 9)
			wantCode(t, err, CodeNotFound, "version iris/9 not found")
			_, err = e.r.GetVersion(e.ctx, "iris", 0)
			wantCode(t, err, CodeInvalidArgument, "version numbers start at 1")
			// Nothing was registered: the next number is still 1.
			if v := must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{})); v.Version != 1 {
				t.Errorf("version %d after refused creates, want 1", v.Version)
			}
		}},
		{"archive guarded by aliases and users", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.version("iris", map[string]string{"m": "1"})
			must[*Alias](t)(e.r.SetAlias(e.ctx, "iris", "prod", 1, ""))
			must[*Alias](t)(e.r.SetAlias(e.ctx, "iris", "candidate", 1, ""))
			if err := e.r.SetUses(e.ctx, "inferenceservice/iris", []VersionRef{{"iris", 1}}); err != nil {
				t.Fatal(err)
			}
			_, err := e.r.ArchiveVersion(e.ctx, "iris", 1)
			wantCode(t, err, CodeConflict, "version iris/1 cannot be archived", "alias candidate", "alias prod", "inferenceservice/iris")
			if users := must[[]string](t)(e.r.UsersOf(e.ctx, VersionRef{"iris", 1})); !slices.Equal(users, []string{"inferenceservice/iris"}) {
				t.Errorf("UsersOf %v", users)
			}
			if err := e.r.SetUses(e.ctx, "inferenceservice/iris", nil); err != nil {
				t.Fatal(err)
			}
			if err := e.r.DeleteAlias(e.ctx, "iris", "prod", ""); err != nil {
				t.Fatal(err)
			}
			_, err = e.r.ArchiveVersion(e.ctx, "iris", 1)
			wantCode(t, err, CodeConflict, "alias candidate")
			if err := e.r.DeleteAlias(e.ctx, "iris", "candidate", ""); err != nil {
				t.Fatal(err)
			}
			a := must[*ModelVersion](t)(e.r.ArchiveVersion(e.ctx, "iris", 1))
			if a.State != StateArchived {
				t.Errorf("state %s", a.State)
			}
			_, err = e.r.Resolve(e.ctx, "registry://iris/1")
			wantCode(t, err, CodeConflict, "registry://iris/1: version iris/1 is ARCHIVED")
			_, err = e.r.SetAlias(e.ctx, "iris", "prod", 1, "")
			wantCode(t, err, CodeConflict, "alias iris@prod", "ARCHIVED")
			err = e.r.SetUses(e.ctx, "inferenceservice/iris", []VersionRef{{"iris", 1}})
			wantCode(t, err, CodeConflict, "inferenceservice/iris", "iris/1")
			r := must[*ModelVersion](t)(e.r.UpdateVersion(e.ctx, "iris", 1, VersionUpdate{State: ptr(StateLive)}, ""))
			if r.State != StateLive {
				t.Errorf("restored state %s", r.State)
			}
		}},
		{"list", func(t *testing.T, e *env) {
			e.model("iris", nil)
			for i := range 5 {
				v := must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{Labels: map[string]string{"even": fmt.Sprint(i%2 == 0)}}))
				if i < 3 {
					must[*Artifact](t)(e.r.AddArtifact(e.ctx, "iris", v.Version, ArtifactUpload{Name: "m"}, strings.NewReader(fmt.Sprint(i))))
					must[*ModelVersion](t)(e.r.MarkReady(e.ctx, "iris", v.Version))
				}
			}
			must[*Alias](t)(e.r.SetAlias(e.ctx, "iris", "prod", 2, ""))
			nums := func(o ListOptions) []int64 {
				t.Helper()
				var out []int64
				for {
					p, err := e.r.ListVersions(e.ctx, "iris", o)
					if err != nil {
						t.Fatal(err)
					}
					for _, v := range p.Items {
						out = append(out, v.Version)
					}
					if p.NextPageToken == "" {
						return out
					}
					o.PageToken = p.NextPageToken
				}
			}
			for _, tc := range []struct {
				name string
				o    ListOptions
				want []int64
			}{
				{"all, pages of 2", ListOptions{PageSize: 2}, []int64{1, 2, 3, 4, 5}},
				{"desc", ListOptions{PageSize: 2, Order: OrderDesc}, []int64{5, 4, 3, 2, 1}},
				{"ready", ListOptions{Status: StatusReady}, []int64{1, 2, 3}},
				{"pending", ListOptions{Status: StatusPending}, []int64{4, 5}},
				{"label", ListOptions{Labels: map[string]string{"even": "true"}}, []int64{1, 3, 5}},
			} {
				if diff := cmp.Diff(tc.want, nums(tc.o)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tc.name, diff)
				}
			}
			p := must[*VersionPage](t)(e.r.ListVersions(e.ctx, "iris", ListOptions{PageSize: 3}))
			if len(p.Items[1].Artifacts) != 1 || !slices.Equal(p.Items[1].Aliases, []string{"prod"}) || p.Size != 3 || p.PageSize != 3 {
				t.Errorf("page %+v", p)
			}
			_, err := e.r.ListVersions(e.ctx, "nope", ListOptions{})
			wantCode(t, err, CodeNotFound, "model nope")
			_, err = e.r.ListVersions(e.ctx, "iris", ListOptions{Status: "DONE"})
			wantCode(t, err, CodeInvalidArgument, `status filter "DONE"`)
		}},
		{"concurrent registration numbers are unique and dense", func(t *testing.T, e *env) {
			e.model("iris", nil)
			e.model("other", nil)
			const workers, each = 8, 6
			var mu sync.Mutex
			var got []int64
			var wg sync.WaitGroup
			errs := make(chan error, workers*each*2)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						v, err := e.r.CreateVersion(e.ctx, "iris", VersionCreate{Description: fmt.Sprint("w", w)})
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						got = append(got, v.Version)
						mu.Unlock()
						// Another model's numbering is independent.
						if _, err := e.r.CreateVersion(e.ctx, "other", VersionCreate{}); err != nil {
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
			slices.Sort(got)
			for i, n := range got {
				if n != int64(i+1) {
					t.Fatalf("version numbers %v: want 1..%d, each once", got, workers*each)
				}
			}
			p := must[*VersionPage](t)(e.r.ListVersions(e.ctx, "other", ListOptions{Order: OrderDesc, PageSize: 1}))
			if p.Items[0].Version != workers*each {
				t.Errorf("other's last version %d", p.Items[0].Version)
			}
			evs, err := e.r.QueryEvents(e.ctx, EventQuery{Model: "iris", Kind: EventVersionCreated, Limit: 1000})
			if err != nil || len(evs) != workers*each {
				t.Errorf("%d registration events of iris, err %v", len(evs), err)
			}
		}},
	})
}

func inf() float64 { var z float64; return 1 / z }
