package registryapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/infergate/infergate/registry"
)

// storedFiles lists the files under the registry's artifact store (blobs
// and temp files): what an upload that failed must not leave.
func (e *env) storedFiles() []string {
	e.t.Helper()
	var out []string
	root := filepath.Join(e.dir, "artifacts")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, root))
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// artifactNames lists a version's artifacts through the API.
func (e *env) artifactNames(model string, n int) []string {
	e.t.Helper()
	var list struct{ Items []registry.Artifact }
	e.ok(http.StatusOK, &list, "GET", fmt.Sprintf("%s/%s/versions/%d/artifacts", models, model, n), nil)
	var out []string
	for _, a := range list.Items {
		out = append(out, a.Name)
	}
	return out
}

func sha(b []byte) (hexSum, b64 string) {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), base64.StdEncoding.EncodeToString(s[:])
}

func TestUploadAndDownload(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "iris"}`)
	e.ok(http.StatusCreated, nil, "POST", models+"/iris/versions", "{}")
	base := models + "/iris/versions/1/artifacts/"
	files := map[string][]byte{
		"model.onnx":        bytes.Repeat([]byte("weights"), 10000),
		"config.json":       []byte(`{"name": "iris"}`),
		"1/model.onnx":      []byte("nested"),
		"vocab/words.txt":   []byte("a\nb\n"),
		"checksums/sha.bin": {},
	}
	headers := []func(b []byte) string{
		func(b []byte) string { h, _ := sha(b); return "X-Content-SHA256: " + h },
		func(b []byte) string { _, s := sha(b); return "Digest: sha-256=" + s + ",md5=whatever" },
		func(b []byte) string { _, s := sha(b); return "Content-Digest: sha-256=:" + s + ":" },
		func(b []byte) string { _, s := sha(b); return "Digest: SHA256=" + strings.TrimRight(s, "=") },
		func([]byte) string { return "X-None: no digest at all" },
	}
	i := 0
	for name, b := range files {
		var a registry.Artifact
		r := e.ok(http.StatusOK, &a, "PUT", base+name+"?format=onnx", b, headers[i%len(headers)](b), "Content-Type: application/octet-stream")
		i++
		h, _ := sha(b)
		if a.Digest != "sha256:"+h || a.Size != int64(len(b)) || a.Name != name || a.Format != "onnx" {
			t.Errorf("upload %s: %+v", name, a)
		}
		if r.header.Get("ETag") != strconv.Quote(a.Digest) {
			t.Errorf("upload %s: ETag %s", name, r.header.Get("ETag"))
		}
	}
	for name, b := range files {
		r := e.do("GET", base+name, nil)
		if r.status != http.StatusOK || !bytes.Equal(r.body, b) {
			t.Fatalf("download %s: status %d, %d bytes, want %d", name, r.status, len(r.body), len(b))
		}
		h, b64 := sha(b)
		for k, want := range map[string]string{
			"Content-Length":      strconv.Itoa(len(b)),
			"ETag":                strconv.Quote("sha256:" + h),
			SHA256Header:          h,
			ContentDigestHeader:   "sha-256=:" + b64 + ":",
			"Content-Type":        "application/octet-stream",
			"Content-Disposition": `attachment; filename=` + filepath.Base(name),
		} {
			if got := r.header.Get(k); got != want {
				t.Errorf("download %s: %s %q, want %q", name, k, got, want)
			}
		}
	}
	r := e.do("HEAD", base+"model.onnx", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Length") != "70000" || len(r.body) != 0 {
		t.Errorf("HEAD: %d, Content-Length %s", r.status, r.header.Get("Content-Length"))
	}
	// A client that has the bytes gets 304.
	if r := e.do("GET", base+"config.json", nil, "If-None-Match: "+e.do("GET", base+"config.json", nil).header.Get("ETag")); r.status != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d", r.status)
	}
	e.fails(http.StatusNotFound, "NOT_FOUND", "GET", base+"missing.bin", nil)
	e.fails(http.StatusNotFound, "NOT_FOUND", "GET", models+"/iris/versions/7/artifacts/model.onnx", nil)

	// READY freezes the artifacts.
	e.ok(http.StatusOK, nil, "POST", models+"/iris/versions/1/ready", "{}")
	msg := e.fails(http.StatusConflict, "CONFLICT", "PUT", base+"late.bin", []byte("late"))
	mentions(t, msg, "READY", "PENDING")
}

func TestUploadRefused(t *testing.T) {
	e := newEnv(t, envOptions{api: Options{MaxUploadBytes: 1000}})
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "iris"}`)
	e.ok(http.StatusCreated, nil, "POST", models+"/iris/versions", "{}")
	base := models + "/iris/versions/1/artifacts/"
	body := []byte("the bytes of a model")
	h, b64 := sha(body)
	other, _ := sha([]byte("other bytes"))
	for _, tc := range []struct {
		name     string
		body     io.Reader
		hdr      []string
		status   int
		code     string
		mentions []string
	}{
		{"digest mismatch", bytes.NewReader(body), []string{"X-Content-SHA256: " + other}, 400, "INVALID_ARGUMENT", []string{"digest mismatch", other}},
		{"headers disagree", bytes.NewReader(body), []string{"X-Content-SHA256: " + h, "Digest: sha-256=" + base64.StdEncoding.EncodeToString(make([]byte, 32))}, 400, "INVALID_ARGUMENT", []string{"disagree"}},
		{"not a sha256", bytes.NewReader(body), []string{"X-Content-SHA256: abc"}, 400, "INVALID_ARGUMENT", []string{SHA256Header}},
		{"bad base64", bytes.NewReader(body), []string{"Digest: sha-256=!!!"}, 400, "INVALID_ARGUMENT", []string{"Digest"}},
		{"bad Content-Digest", bytes.NewReader(body), []string{"Content-Digest: sha-256=" + b64}, 400, "INVALID_ARGUMENT", []string{":<base64>:"}},
		{"over the limit, announced", bytes.NewReader(make([]byte, 1001)), nil, 413, "TOO_LARGE", []string{"1001", "1000"}},
		// No Content-Length: chunked, cut at the limit.
		{"over the limit, chunked", io.MultiReader(bytes.NewReader(make([]byte, 600)), bytes.NewReader(make([]byte, 600))), nil, 413, "TOO_LARGE", nil},
		{"unknown query parameter", bytes.NewReader(body), nil, 400, "INVALID_ARGUMENT", []string{"colour"}},
		{"bad name", bytes.NewReader(body), nil, 400, "INVALID_ARGUMENT", []string{"artifact name"}},
		{"model missing", bytes.NewReader(body), nil, 404, "NOT_FOUND", []string{"nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := base + "model.onnx"
			switch tc.name {
			case "unknown query parameter":
				path += "?colour=red"
			case "bad name":
				path = base + url.PathEscape("a\\b")
			case "model missing":
				path = models + "/nope/versions/1/artifacts/model.onnx"
			}
			mentions(t, e.fails(tc.status, tc.code, "PUT", path, tc.body, tc.hdr...), tc.mentions...)
			if got := e.artifactNames("iris", 1); len(got) != 0 {
				t.Errorf("artifacts listed after a refused upload: %v", got)
			}
			if got := e.storedFiles(); len(got) != 0 {
				t.Errorf("files left in the artifact store: %v", got)
			}
		})
	}
}

// TestUploadCutOff closes the connection half way through a body of
// declared length: the server answers nothing the client can read, and
// nothing is stored or listed.
func TestUploadCutOff(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "iris"}`)
	e.ok(http.StatusCreated, nil, "POST", models+"/iris/versions", "{}")
	path := models + "/iris/versions/1/artifacts/model.onnx"

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n", path)
	if _, err := conn.Write(bytes.Repeat([]byte("w"), 500000)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	e.waitDone("PUT " + path)

	if got := e.artifactNames("iris", 1); len(got) != 0 {
		t.Errorf("artifacts listed after a cut-off upload: %v", got)
	}
	if got := e.storedFiles(); len(got) != 0 {
		t.Errorf("files left in the artifact store: %v", got)
	}
	// The version is still PENDING and takes the whole upload.
	body := bytes.Repeat([]byte("w"), 1000000)
	h, _ := sha(body)
	e.ok(http.StatusOK, nil, "PUT", path, body, "X-Content-SHA256: "+h)
	v, err := e.reg.MarkReady(context.Background(), "iris", 1)
	if err != nil || len(v.Artifacts) != 1 || v.Artifacts[0].Size != 1000000 {
		t.Fatalf("after a full upload: %+v, %v", v, err)
	}
}
