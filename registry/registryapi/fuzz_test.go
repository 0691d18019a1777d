package registryapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/infergate/infergate/registry"
)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// FuzzRequestDigest: whatever the digest headers hold, the answer is no
// digest, a well-formed one, or a 400.
func FuzzRequestDigest(f *testing.F) {
	f.Add("sha-256=n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", "", "")
	f.Add("", "sha-256=:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=:", "")
	f.Add("", "", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	f.Add("md5=x, SHA256=abc", "sha-256=::", "XYZ")
	f.Fuzz(func(t *testing.T, digest, contentDigest, hexSum string) {
		h := http.Header{}
		for k, v := range map[string]string{DigestHeader: digest, ContentDigestHeader: contentDigest, SHA256Header: hexSum} {
			if v != "" {
				h.Set(k, v)
			}
		}
		got, err := requestDigest(h)
		if err != nil {
			if status, _ := statusOf(err); status != http.StatusBadRequest {
				t.Fatalf("error %v answered %d", err, status)
			}
			return
		}
		if got != "" && !digestRE.MatchString(got) {
			t.Fatalf("digest %q", got)
		}
	})
}

// FuzzDecodeBody: whatever the body of a version's registration, it
// decodes or is refused with a 4xx naming why, never a 5xx or a panic.
func FuzzDecodeBody(f *testing.F) {
	f.Add([]byte(`{"description": "x", "labels": {"a": "b"}, "customProperties": {"p": {"intValue": "3"}}, "metrics": {"m": 0.5}}`))
	f.Add([]byte(`{"customProperties": {"p": {"doubleValue": 1e999}}}`))
	f.Add([]byte(`{"source": {"kind": 3}}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`[`))
	h := &Handler{opts: Options{MaxBodyBytes: 4096}}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/api/v1/registry/models/m/versions", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var c registry.VersionCreate
		err := h.decodeBody(httptest.NewRecorder(), r, &c, false)
		if err == nil {
			return
		}
		status, code := statusOf(err)
		if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
			t.Fatalf("body %q: %d %s: %v", body, status, code, err)
		}
		if err.Error() == "" {
			t.Fatalf("body %q: an empty message", body)
		}
	})
}
