package registry

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// producedEvents returns the artifact.produced events of the log.
func (e *env) producedEvents() []Event {
	e.t.Helper()
	var out []Event
	for _, ev := range e.events() {
		if ev.Kind == EventArtifactProduced {
			out = append(out, ev)
		}
	}
	return out
}

func TestBlobLineage(t *testing.T) {
	train := Lineage{Run: "train-abc", Step: "train", Iteration: -1, Attempt: 1, Name: "model"}
	runSuite(t, []storeCase{
		{"lineage is recorded, listed and logged", func(t *testing.T, e *env) {
			b, err := e.r.PutBlob(e.ctx, strings.NewReader("weights"), digestOf("weights"), train)
			if err != nil {
				t.Fatalf("PutBlob: %v", err)
			}
			if want := (Blob{Digest: digestOf("weights"), Size: 7}); b != want {
				t.Errorf("PutBlob = %+v, want %+v", b, want)
			}
			got := must[[]Lineage](t)(e.r.BlobLineage(e.ctx, b.Digest))
			want := []Lineage{{Digest: b.Digest, Size: 7, Run: "train-abc", Step: "train", Iteration: -1, Attempt: 1, Name: "model", Actor: "tester"}}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Lineage{}, "Time")); diff != "" {
				t.Errorf("BlobLineage (-want +got):\n%s", diff)
			}
			if got[0].Time.IsZero() {
				t.Error("lineage has no time")
			}
			evs := e.producedEvents()
			if len(evs) != 1 {
				t.Fatalf("%d artifact.produced events, want 1", len(evs))
			}
			var detail map[string]any
			if err := json.Unmarshal(evs[0].Detail, &detail); err != nil {
				t.Fatal(err)
			}
			wantDetail := map[string]any{"digest": b.Digest, "size": 7.0, "run": "train-abc", "step": "train", "iteration": -1.0, "attempt": 1.0, "name": "model"}
			if diff := cmp.Diff(wantDetail, detail); diff != "" {
				t.Errorf("event detail (-want +got):\n%s", diff)
			}
			if evs[0].Actor != "tester" || !strings.Contains(evs[0].Message, "run train-abc step train attempt 1 produced model") {
				t.Errorf("event = %+v", evs[0])
			}
			none := must[[]Lineage](t)(e.r.BlobLineage(e.ctx, digestOf("nothing")))
			if len(none) != 0 {
				t.Errorf("BlobLineage of unknown content = %v, want none", none)
			}
		}},
		{"content is stored once, each lineage once", func(t *testing.T, e *env) {
			other := train
			other.Run, other.Attempt = "train-def", 2
			for _, lin := range []Lineage{train, other, train} {
				if _, err := e.r.PutBlob(e.ctx, strings.NewReader("weights"), "", lin); err != nil {
					t.Fatalf("PutBlob %+v: %v", lin, err)
				}
			}
			blobs, tmp := e.blobFiles()
			if want := []string{strings.TrimPrefix(digestOf("weights"), "sha256:")}; !cmp.Equal(want, blobs) || len(tmp) != 0 {
				t.Errorf("store holds %v (tmp %v), want %v", blobs, tmp, want)
			}
			got := must[[]Lineage](t)(e.r.BlobLineage(e.ctx, digestOf("weights")))
			if len(got) != 2 || got[0].Run != "train-abc" || got[1].Run != "train-def" || got[1].Attempt != 2 {
				t.Errorf("BlobLineage = %+v, want train-abc then train-def attempt 2", got)
			}
			if n := len(e.producedEvents()); n != 2 {
				t.Errorf("%d artifact.produced events, want 2 (the repeat adds none)", n)
			}
		}},
		{"a failed put stores nothing", func(t *testing.T, e *env) {
			small := e.open(func(o *Options) { o.MaxArtifactBytes = 10 })
			for _, tc := range []struct {
				name string
				r    *Registry
				body io.Reader
				want string
				lin  Lineage
				code Code
				subs []string
			}{
				{"digest mismatch", e.r, strings.NewReader("weights"), digestOf("other"), train,
					CodeInvalidArgument, []string{"digest mismatch", digestOf("other"), digestOf("weights")}},
				{"cut off", e.r, &cutReader{n: 300 << 10}, "", train,
					CodeInvalidArgument, []string{"artifact model", "cut off after 307200 bytes"}},
				{"over the limit", small, strings.NewReader(strings.Repeat("x", 11)), "", train,
					CodeTooLarge, []string{"10-byte limit"}},
				{"bad want", e.r, strings.NewReader("weights"), "md5:abc", train,
					CodeInvalidArgument, []string{`blob digest "md5:abc"`}},
				{"no run", e.r, strings.NewReader("weights"), "", Lineage{Step: "s", Attempt: 1, Name: "m"},
					CodeInvalidArgument, []string{"run", "step"}},
				{"bad name", e.r, strings.NewReader("weights"), "", Lineage{Run: "r", Step: "s", Attempt: 1, Name: "../m"},
					CodeInvalidArgument, []string{"../m"}},
				{"no attempt", e.r, strings.NewReader("weights"), "", Lineage{Run: "r", Step: "s", Name: "m"},
					CodeInvalidArgument, []string{"attempt 0"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := tc.r.PutBlob(e.ctx, tc.body, tc.want, tc.lin)
					wantCode(t, err, tc.code, tc.subs...)
					if blobs, tmp := e.blobFiles(); len(blobs)+len(tmp) != 0 {
						t.Errorf("store holds %v, tmp %v after a failed put", blobs, tmp)
					}
				})
			}
			if evs := e.producedEvents(); len(evs) != 0 {
				t.Errorf("events after failed puts: %+v", evs)
			}
			if got := must[[]Lineage](t)(e.r.BlobLineage(e.ctx, digestOf("weights"))); len(got) != 0 {
				t.Errorf("lineage after failed puts: %+v", got)
			}
		}},
		{"a blob with lineage survives the cleanup of replaced artifacts", func(t *testing.T, e *env) {
			e.model("iris", nil)
			v := must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			add := func(content string) {
				t.Helper()
				if _, err := e.r.AddArtifact(e.ctx, "iris", v.Version, ArtifactUpload{Name: "model.onnx"}, strings.NewReader(content)); err != nil {
					t.Fatalf("AddArtifact: %v", err)
				}
			}
			add("weights")
			if _, err := e.r.PutBlob(e.ctx, strings.NewReader("weights"), "", train); err != nil {
				t.Fatalf("PutBlob: %v", err)
			}
			add("better") // the artifact no longer references "weights"
			add("best")   // nor "better", which has no lineage: removed
			if _, err := os.Stat(e.r.blobs.path(digestOf("weights"))); err != nil {
				t.Errorf("the blob with lineage was removed: %v", err)
			}
			if _, err := os.Stat(e.r.blobs.path(digestOf("better"))); !os.IsNotExist(err) {
				t.Errorf("the replaced blob without lineage is still there (stat: %v)", err)
			}
			f, b, err := e.r.OpenBlob(e.ctx, digestOf("weights"))
			if err != nil {
				t.Fatalf("OpenBlob: %v", err)
			}
			defer f.Close()
			if data, _ := io.ReadAll(f); string(data) != "weights" || b.Size != 7 {
				t.Errorf("OpenBlob = %q, %+v", data, b)
			}
		}},
		{"OpenBlob", func(t *testing.T, e *env) {
			if _, err := e.r.PutBlob(e.ctx, strings.NewReader("weights"), "", train); err != nil {
				t.Fatalf("PutBlob: %v", err)
			}
			f, b, err := e.r.OpenBlob(e.ctx, digestOf("weights"))
			if err != nil {
				t.Fatalf("OpenBlob: %v", err)
			}
			data, _ := io.ReadAll(f)
			f.Close()
			if string(data) != "weights" || b != (Blob{Digest: digestOf("weights"), Size: 7}) {
				t.Errorf("OpenBlob = %q, %+v", data, b)
			}
			// A blob of a version's artifact opens too.
			e.model("iris", nil)
			e.version("iris", map[string]string{"model.onnx": "onnx bytes"})
			f, _, err = e.r.OpenBlob(e.ctx, digestOf("onnx bytes"))
			if err != nil {
				t.Fatalf("OpenBlob of an artifact: %v", err)
			}
			f.Close()
			_, _, err = e.r.OpenBlob(e.ctx, digestOf("nothing"))
			wantCode(t, err, CodeNotFound, digestOf("nothing"))
			_, _, err = e.r.OpenBlob(e.ctx, "sha256:XYZ")
			wantCode(t, err, CodeInvalidArgument, "sha256:XYZ")
			if err := os.Chmod(e.r.blobs.path(digestOf("weights")), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(e.r.blobs.path(digestOf("weights"))); err != nil {
				t.Fatal(err)
			}
			_, _, err = e.r.OpenBlob(e.ctx, digestOf("weights"))
			wantCode(t, err, CodeDataLoss, "missing")
		}},
	})
}
