package registryapi

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/registry"
)

// Digest headers an upload may carry; each names the SHA-256 of the body.
const (
	// DigestHeader is RFC 3230's: "sha-256=<base64>" (also "sha256=").
	DigestHeader = "Digest"
	// ContentDigestHeader is RFC 9530's: "sha-256=:<base64>:".
	ContentDigestHeader = "Content-Digest"
	// SHA256Header is "<64 hex digits>", as S3's x-amz-content-sha256.
	SHA256Header = "X-Content-SHA256"
)

// upload streams a PUT body into the registry as one artifact of a
// PENDING version. What the client announces (Content-Length, a digest
// header) is checked against the bytes; whatever fails stores nothing.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) error {
	n, err := versionParam(r)
	var q url.Values
	if err == nil {
		q, err = query(r, "format")
	}
	var up registry.ArtifactUpload
	if err == nil {
		up.Format, err = single(q, "format")
	}
	if err == nil {
		up.Digest, err = requestDigest(r.Header)
	}
	if err != nil {
		return err
	}
	up.Name = r.PathValue("path")
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if _, _, err := mime.ParseMediaType(ct); err != nil {
			return invalid("Content-Type %q: %v", ct, err)
		}
		up.ContentType = ct
	}
	if r.ContentLength > 0 {
		up.Size = r.ContentLength
	}
	body := io.Reader(r.Body)
	if max := h.opts.MaxUploadBytes; max > 0 {
		if r.ContentLength > max {
			// Refused before a byte is read (a client that sent
			// Expect: 100-continue sends none).
			return &registry.Error{Code: registry.CodeTooLarge,
				Msg: fmt.Sprintf("artifact %s: Content-Length %d is more than the %d-byte upload limit", up.Name, r.ContentLength, max)}
		}
		body = http.MaxBytesReader(w, r.Body, max)
	}
	a, err := h.reg.AddArtifact(actorContext(r), r.PathValue("model"), n, up, body)
	if err != nil {
		return err
	}
	writeTagged(w, http.StatusOK, a.Digest, a)
	return nil
}

// requestDigest returns the body digest a request announces, as
// "sha256:<hex>", or "" when it announces none. Headers that disagree, or
// a SHA-256 entry that is not one, are an error; other algorithms (an MD5
// beside the SHA-256) are ignored, as RFC 3230 lets a server do.
func requestDigest(hd http.Header) (string, error) {
	var found []string
	for _, v := range hd.Values(DigestHeader) {
		for _, item := range strings.Split(v, ",") {
			alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok || !isSHA256(alg) {
				continue
			}
			sum, err := decodeB64Digest(val)
			if err != nil {
				return "", invalid("%s header %q: %v", DigestHeader, v, err)
			}
			found = append(found, sum)
		}
	}
	for _, v := range hd.Values(ContentDigestHeader) {
		for _, item := range strings.Split(v, ",") {
			alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok || !isSHA256(alg) {
				continue
			}
			val = strings.TrimSpace(val)
			if len(val) < 2 || val[0] != ':' || val[len(val)-1] != ':' {
				return "", invalid("%s header %q: want sha-256=:<base64>:", ContentDigestHeader, v)
			}
			sum, err := decodeB64Digest(val[1 : len(val)-1])
			if err != nil {
				return "", invalid("%s header %q: %v", ContentDigestHeader, v, err)
			}
			found = append(found, sum)
		}
	}
	for _, v := range hd.Values(SHA256Header) {
		s := strings.ToLower(strings.TrimSpace(v))
		if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
			return "", invalid("%s header %q: want the 64 hex digits of the body's SHA-256", SHA256Header, v)
		}
		found = append(found, s)
	}
	if len(found) == 0 {
		return "", nil
	}
	for _, f := range found[1:] {
		if f != found[0] {
			return "", invalid("the digest headers disagree: sha256:%s and sha256:%s; send one", found[0], f)
		}
	}
	return "sha256:" + found[0], nil
}

func isSHA256(alg string) bool {
	return strings.EqualFold(alg, "sha-256") || strings.EqualFold(alg, "sha256")
}

// decodeB64Digest decodes a base64 SHA-256 (padded or not) to hex.
func decodeB64Digest(s string) (string, error) {
	s = strings.TrimSpace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("want the base64 of the body's 32-byte SHA-256")
	}
	return hex.EncodeToString(b), nil
}

// download answers an artifact's bytes with their length, digest and a
// file name; http.ServeContent adds If-None-Match, HEAD and Range.
func (h *Handler) download(w http.ResponseWriter, r *http.Request) error {
	n, err := versionNoQuery(r)
	if err != nil {
		return err
	}
	f, a, err := h.reg.OpenArtifact(r.Context(), r.PathValue("model"), n, r.PathValue("path"))
	if err != nil {
		return err
	}
	defer f.Close()
	hd := w.Header()
	ct := a.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	hd.Set("Content-Type", ct)
	hd.Set("ETag", strconv.Quote(a.Digest))
	hexSum := strings.TrimPrefix(a.Digest, "sha256:")
	hd.Set(SHA256Header, hexSum)
	if b, err := hex.DecodeString(hexSum); err == nil {
		hd.Set(ContentDigestHeader, "sha-256=:"+base64.StdEncoding.EncodeToString(b)+":")
	}
	hd.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(a.Name)}))
	// ServeContent answers its own errors (416, 304, a failed read).
	http.ServeContent(w, r, "", a.CreateTime, f)
	return nil
}

func (h *Handler) listArtifacts(w http.ResponseWriter, r *http.Request) error {
	v, err := h.version(r)
	if err != nil {
		return err
	}
	jsonhttp.WriteJSON(w, http.StatusOK, items[registry.Artifact]{Items: nonNil(v.Artifacts)})
	return nil
}
