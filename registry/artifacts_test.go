package registry

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// cutReader yields n bytes of data and then fails as a connection that
// drops half way does.
type cutReader struct {
	n int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), c.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	c.n -= k
	return k, nil
}

// fullDisk is a temp file on a disk that fills up after left bytes.
type fullDisk struct {
	*os.File
	left int
}

func (f *fullDisk) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n, _ := f.File.Write(p[:f.left])
		f.left = 0
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.left -= len(p)
	return f.File.Write(p)
}

func TestArtifacts(t *testing.T) {
	runSuite(t, []storeCase{
		{"failed uploads leave nothing", func(t *testing.T, e *env) {
			e.model("iris", nil)
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			small := e.open(func(o *Options) { o.MaxArtifactBytes = 1000 })
			cancelled, cancel := context.WithCancel(e.ctx)
			cancel()
			for _, tc := range []struct {
				name string
				r    *Registry
				up   ArtifactUpload
				body io.Reader
				code Code
				subs []string
			}{
				{"digest mismatch", e.r, ArtifactUpload{Name: "model.onnx", Digest: digestOf("other")}, strings.NewReader("weights"),
					CodeInvalidArgument, []string{"artifact model.onnx", "digest mismatch", digestOf("other"), digestOf("weights")}},
				{"size mismatch", e.r, ArtifactUpload{Name: "model.onnx", Size: 8}, strings.NewReader("weights"),
					CodeInvalidArgument, []string{"size mismatch", "announced 8 bytes, received 7"}},
				{"cut off", e.r, ArtifactUpload{Name: "model.onnx"}, &cutReader{n: 300 << 10},
					CodeInvalidArgument, []string{"artifact model.onnx", "cut off after 307200 bytes", "unexpected EOF"}},
				{"over the limit", small, ArtifactUpload{Name: "model.onnx"}, strings.NewReader(strings.Repeat("x", 1001)),
					CodeTooLarge, []string{"artifact model.onnx", "1000-byte limit"}},
				{"announced over the limit", small, ArtifactUpload{Name: "model.onnx", Size: 5000}, strings.NewReader("x"),
					CodeTooLarge, []string{"5000 bytes"}},
				{"cancelled", e.r, ArtifactUpload{Name: "model.onnx"}, strings.NewReader("weights"),
					CodeUnavailable, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ctx := e.ctx
					if tc.name == "cancelled" {
						ctx = cancelled
					}
					_, err := tc.r.AddArtifact(ctx, "iris", 1, tc.up, tc.body)
					wantCode(t, err, tc.code, tc.subs...)
					v := must[*ModelVersion](t)(e.r.GetVersion(e.ctx, "iris", 1))
					blobs, tmp := e.blobFiles()
					if len(v.Artifacts) != 0 || len(blobs) != 0 || len(tmp) != 0 {
						t.Errorf("left behind: artifacts %v, blobs %v, temp files %v", v.Artifacts, blobs, tmp)
					}
				})
			}
			// Exactly at the limit is fine.
			must[*Artifact](t)(small.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: "m"}, strings.NewReader(strings.Repeat("x", 1000))))
		}},
		{"full disk", func(t *testing.T, e *env) {
			e.model("iris", nil)
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			e.r.blobs.createTemp = func(dir string) (tempFile, error) {
				f, err := os.CreateTemp(dir, "upload-*")
				if err != nil {
					return nil, err
				}
				return &fullDisk{File: f, left: 100 << 10}, nil
			}
			_, err := e.r.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: "model.onnx"}, strings.NewReader(strings.Repeat("x", 1<<20)))
			wantCode(t, err, CodeInsufficientStorage, "artifact model.onnx", "is full", "no space left on device")
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("%v does not wrap ENOSPC", err)
			}
			blobs, tmp := e.blobFiles()
			if len(blobs) != 0 || len(tmp) != 0 {
				t.Errorf("left behind: blobs %v, temp files %v", blobs, tmp)
			}
		}},
		{"version leaving PENDING during the upload", func(t *testing.T, e *env) {
			e.model("iris", nil)
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			// The body's last read marks the version FAILED, between the
			// streaming and the commit of the artifact row.
			body := &hookReader{r: strings.NewReader("weights"), atEOF: func() {
				must[*ModelVersion](t)(e.r.MarkFailed(e.ctx, "iris", 1, "cancelled by the pipeline"))
			}}
			_, err := e.r.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: "model.onnx"}, body)
			wantCode(t, err, CodeConflict, "version iris/1 is FAILED")
			blobs, tmp := e.blobFiles()
			if len(blobs) != 0 || len(tmp) != 0 {
				t.Errorf("left behind: blobs %v, temp files %v", blobs, tmp)
			}
		}},
		{"content is stored once and replaced by name", func(t *testing.T, e *env) {
			e.model("iris", nil)
			v1 := e.version("iris", map[string]string{"model.onnx": "same"})
			v2 := e.version("iris", map[string]string{"model.onnx": "same", "extra": "more"})
			if v1.Artifacts[0].Digest != v2.Artifacts[1].Digest || v1.Digest == v2.Digest {
				t.Errorf("v1 %+v v2 %+v", v1, v2)
			}
			blobs, _ := e.blobFiles()
			if len(blobs) != 2 {
				t.Errorf("blobs %v, want 2 (one per content)", blobs)
			}
			// Replacing a PENDING version's artifact drops the old blob when
			// nothing else uses it.
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			must[*Artifact](t)(e.r.AddArtifact(e.ctx, "iris", 3, ArtifactUpload{Name: "m"}, strings.NewReader("draft")))
			must[*Artifact](t)(e.r.AddArtifact(e.ctx, "iris", 3, ArtifactUpload{Name: "m"}, strings.NewReader("final")))
			v3 := must[*ModelVersion](t)(e.r.GetVersion(e.ctx, "iris", 3))
			if len(v3.Artifacts) != 1 || v3.Artifacts[0].Digest != digestOf("final") {
				t.Errorf("v3 artifacts %+v", v3.Artifacts)
			}
			blobs, _ = e.blobFiles()
			if len(blobs) != 3 {
				t.Errorf("blobs %v, want 3 (the draft removed)", blobs)
			}
			// Replacing with content another version uses keeps that blob.
			must[*Artifact](t)(e.r.AddArtifact(e.ctx, "iris", 3, ArtifactUpload{Name: "m"}, strings.NewReader("same")))
			must[*Artifact](t)(e.r.AddArtifact(e.ctx, "iris", 3, ArtifactUpload{Name: "m"}, strings.NewReader("final")))
			if _, err := os.Stat(e.r.blobs.path(digestOf("same"))); err != nil {
				t.Errorf("a blob in use was removed: %v", err)
			}
		}},
		{"bad artifact names", func(t *testing.T, e *env) {
			e.model("iris", nil)
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "iris", VersionCreate{}))
			for _, name := range []string{"", "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a/", ".", "a\\b", "a\x00b"} {
				_, err := e.r.AddArtifact(e.ctx, "iris", 1, ArtifactUpload{Name: name}, strings.NewReader("x"))
				wantCode(t, err, CodeInvalidArgument, "artifact name")
			}
			for _, up := range []ArtifactUpload{
				{Name: "m", Digest: "md5:abc"},
				{Name: "m", Format: "ONNX!"},
				{Name: "m", ContentType: "not a type"},
			} {
				_, err := e.r.AddArtifact(e.ctx, "iris", 1, up, strings.NewReader("x"))
				wantCode(t, err, CodeInvalidArgument, "artifact m")
			}
			_, err := e.r.AddArtifact(e.ctx, "iris", 7, ArtifactUpload{Name: "m"}, strings.NewReader("x"))
			wantCode(t, err, CodeNotFound, "version iris/7 not found")
		}},
		{"download and materialize", func(t *testing.T, e *env) {
			e.model("triton", nil)
			files := map[string]string{"iris/1/model.onnx": "weights", "iris/config.pbtxt": "name: iris"}
			v := e.version("triton", files)
			f, a, err := e.r.OpenArtifact(e.ctx, "triton", 1, "iris/config.pbtxt")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if string(b) != "name: iris" || a.Digest != digestOf("name: iris") {
				t.Errorf("downloaded %q, artifact %+v", b, a)
			}
			_, _, err = e.r.OpenArtifact(e.ctx, "triton", 1, "nope")
			wantCode(t, err, CodeNotFound, "version triton/1 has no artifact nope")

			dir := filepath.Join(t.TempDir(), "rev-1")
			got, err := e.r.Materialize(e.ctx, v.Ref(), dir)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != v.Digest {
				t.Errorf("materialized digest %s, want %s", got.Digest, v.Digest)
			}
			for name, content := range files {
				b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
				if err != nil || string(b) != content {
					t.Errorf("%s: %q, %v", name, b, err)
				}
			}
			// Materializing again over the same directory replaces the files.
			must[*ModelVersion](t)(e.r.Materialize(e.ctx, v.Ref(), dir))

			// A PENDING version is not given to a runtime.
			must[*ModelVersion](t)(e.r.CreateVersion(e.ctx, "triton", VersionCreate{}))
			_, err = e.r.Materialize(e.ctx, VersionRef{"triton", 2}, t.TempDir())
			wantCode(t, err, CodeConflict, "version triton/2 is PENDING")
		}},
		{"materialize detects a tampered blob", func(t *testing.T, e *env) {
			e.model("iris", nil)
			v := e.version("iris", map[string]string{"model.onnx": "weights", "a.txt": "fine"})
			blob := e.r.blobs.path(digestOf("weights"))
			if err := os.Chmod(blob, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(blob, []byte("WEIGHTS"), 0o644); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			_, err := e.r.Materialize(e.ctx, v.Ref(), dir)
			wantCode(t, err, CodeDataLoss, "version iris/1 artifact model.onnx", "no longer match", digestOf("weights"), digestOf("WEIGHTS"))
			if _, err := os.Stat(filepath.Join(dir, "model.onnx")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the tampered file was given to the runtime: %v", err)
			}
			ents, _ := os.ReadDir(dir)
			for _, x := range ents {
				if strings.HasPrefix(x.Name(), ".infergate-") {
					t.Errorf("temp file %s left in the runtime's directory", x.Name())
				}
			}
			// A missing blob is data loss too.
			if err := os.Remove(blob); err != nil {
				t.Fatal(err)
			}
			_, err = e.r.Materialize(e.ctx, v.Ref(), t.TempDir())
			wantCode(t, err, CodeDataLoss, "model.onnx", "missing")
		}},
		{"materialize copies across file systems", func(t *testing.T, e *env) {
			// /dev/shm is another file system than the data directory on
			// most machines; where it is not, this covers the link path again.
			shm, err := os.MkdirTemp("/dev/shm", "registry-test-")
			if err != nil {
				t.Skip("no /dev/shm:", err)
			}
			t.Cleanup(func() { os.RemoveAll(shm) })
			e.model("iris", nil)
			v := e.version("iris", map[string]string{"model.onnx": "weights"})
			must[*ModelVersion](t)(e.r.Materialize(e.ctx, v.Ref(), shm))
			b, err := os.ReadFile(filepath.Join(shm, "model.onnx"))
			if err != nil || string(b) != "weights" {
				t.Errorf("%q %v", b, err)
			}
		}},
	})
}

// hookReader calls atEOF once, when r is exhausted.
type hookReader struct {
	r     io.Reader
	atEOF func()
	done  bool
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err == io.EOF && !h.done {
		h.done = true
		h.atEOF()
	}
	return n, err
}
