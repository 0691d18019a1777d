package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ManifestDigest returns the digest of an artifact set: "sha256:" and the
// hex SHA-256 of its manifest, one line per artifact sorted by name (byte
// order), each line "<digest> <size> <name>\n" with the artifact's
// "sha256:<hex>" digest and its size in decimal:
//
//	sha256:9f86d08... 1048576 iris/1/model.onnx
//	sha256:2c26b46... 412 iris/config.pbtxt
//
// Two versions have the same digest exactly when they have the same files
// under the same names; metadata (format, labels, metrics) does not count.
func ManifestDigest(artifacts []Artifact) string {
	sum := sha256.Sum256(Manifest(artifacts))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Manifest returns the manifest ManifestDigest hashes. Stored as a blob
// (PutBlob), it is the content whose digest is the set's digest, so that a
// directory of files can be found and listed by that one digest.
func Manifest(artifacts []Artifact) []byte {
	sorted := slices.Clone(artifacts)
	slices.SortFunc(sorted, func(a, b Artifact) int { return strings.Compare(a.Name, b.Name) })
	var b []byte
	for _, a := range sorted {
		b = append(b, a.Digest+" "+strconv.FormatInt(a.Size, 10)+" "+a.Name+"\n"...)
	}
	return b
}

// pending refuses changes to the artifacts of a version that is not
// PENDING, or archived, or of an archived model.
func pending(row *versionRow) error {
	ref := row.v.Ref()
	switch {
	case row.modelState != StateLive:
		return errorf(CodeConflict, "version %s: model %s is ARCHIVED", ref, ref.Model)
	case row.v.State != StateLive:
		return errorf(CodeConflict, "version %s is ARCHIVED", ref)
	case row.v.Status != StatusPending:
		return errorf(CodeConflict, "version %s is %s: artifacts can be added only while it is PENDING (register a new version)", ref, row.v.Status)
	}
	return nil
}

// AddArtifact streams body into the artifact store as the artifact
// up.Name of a PENDING version (an artifact of the same name is replaced).
// The bytes are hashed while written to a temp file, synced, checked
// against up.Digest and up.Size when given, and renamed into
// <DataDir>/artifacts/sha256/<hex> (content already stored is kept once).
//
// Whatever fails (a digest mismatch, a body cut off or over
// MaxArtifactBytes, a full disk, a cancelled ctx, the version leaving
// PENDING meanwhile), no artifact row and no file is left behind.
func (r *Registry) AddArtifact(ctx context.Context, model string, version int64, up ArtifactUpload, body io.Reader) (*Artifact, error) {
	a, err := r.addArtifact(ctx, model, version, up, body)
	if err != nil {
		r.metrics.uploads.WithLabelValues(CodeOf(err).String()).Inc()
		return nil, err
	}
	r.metrics.uploads.WithLabelValues("stored").Inc()
	r.metrics.uploadBytes.Add(float64(a.Size))
	return a, nil
}

func (r *Registry) addArtifact(ctx context.Context, model string, version int64, up ArtifactUpload, body io.Reader) (*Artifact, error) {
	if err := checkVersionArgs(model, version); err != nil {
		return nil, err
	}
	if err := checkUpload(up); err != nil {
		return nil, err
	}
	if up.Size > r.maxBytes {
		return nil, errorf(CodeTooLarge, "artifact %s: %d bytes is more than the %d-byte limit (MaxArtifactBytes)", up.Name, up.Size, r.maxBytes)
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, err
	}
	ref := VersionRef{model, version}
	// Refuse before reading what may be gigabytes.
	if err := r.st.read(ctx, func(q querier) error {
		row, err := loadVersion(ctx, q, model, version, "")
		if err != nil {
			return err
		}
		return pending(row)
	}); err != nil {
		return nil, err
	}
	blob, err := r.blobs.put(ctx, up.Name, body, up.Digest, up.Size, r.maxBytes)
	if err != nil {
		return nil, err
	}
	art := Artifact{Name: up.Name, URI: artifactURI(model, version, up.Name), Digest: blob.digest, Size: blob.size,
		Format: up.Format, ContentType: up.ContentType, CreateTime: r.now()}
	var replaced string
	err = r.st.write(ctx, func(tx *wtx) error {
		replaced = ""
		if _, err := lockModel(ctx, tx, model); err != nil {
			return err
		}
		row, err := loadVersion(ctx, tx, model, version, "")
		if err != nil {
			return err
		}
		if err := pending(row); err != nil {
			return err
		}
		i := slices.IndexFunc(row.v.Artifacts, func(a Artifact) bool { return a.Name == up.Name })
		if i >= 0 {
			if old := row.v.Artifacts[i].Digest; old != art.Digest {
				replaced = old
			}
			_, err = tx.ExecContext(ctx, `UPDATE artifacts SET digest = $1, size = $2, format = $3, content_type = $4, create_time = $5
WHERE version_id = $6 AND name = $7`, art.Digest, art.Size, art.Format, art.ContentType, micros(art.CreateTime), row.id, art.Name)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO artifacts (version_id, name, digest, size, format, content_type, create_time)
VALUES ($1, $2, $3, $4, $5, $6, $7)`, row.id, art.Name, art.Digest, art.Size, art.Format, art.ContentType, micros(art.CreateTime))
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE versions SET update_time = $1, generation = generation + 1 WHERE id = $2`, micros(art.CreateTime), row.id); err != nil {
			return err
		}
		_, err = r.appendEvent(ctx, tx, EventArtifactAdded, model, version, actor,
			"version "+ref.String()+" artifact "+art.Name+" "+art.Digest,
			map[string]any{"name": art.Name, "digest": art.Digest, "size": art.Size, "replaced": replaced != ""})
		return err
	})
	r.blobs.unpin(blob.digest)
	if err != nil {
		r.dropBlob(blob.digest)
		return nil, err
	}
	if replaced != "" {
		r.dropBlob(replaced)
	}
	return &art, nil
}

// dropBlob removes a blob that no artifact references any more and that
// has no lineage (a blob a pipeline step produced, PutBlob, is kept: a
// model version's lineage points at it).
func (r *Registry) dropBlob(digest string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.blobs.removeUnreferenced(digest, func() (bool, error) {
		var n int
		err := r.st.read(ctx, func(q querier) error {
			return q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM artifacts WHERE digest = $1) + (SELECT COUNT(*) FROM blob_lineage WHERE digest = $2)`,
				digest, digest).Scan(&n)
		})
		return n > 0, err
	})
	if err != nil {
		r.log.Warn("registry: an unreferenced artifact blob was not removed", "digest", digest, "err", err)
	}
}

// OpenArtifact opens an artifact's bytes for reading (a download). The
// caller closes the file. The bytes are not re-hashed here: clients check
// them against Artifact.Digest; Materialize re-verifies for runtimes.
func (r *Registry) OpenArtifact(ctx context.Context, model string, version int64, name string) (*os.File, *Artifact, error) {
	if err := checkArtifactName(name); err != nil {
		return nil, nil, err
	}
	v, err := r.GetVersion(ctx, model, version)
	if err != nil {
		return nil, nil, err
	}
	i := slices.IndexFunc(v.Artifacts, func(a Artifact) bool { return a.Name == name })
	if i < 0 {
		return nil, nil, errorf(CodeNotFound, "version %s has no artifact %s", v.Ref(), name)
	}
	a := v.Artifacts[i]
	f, err := os.Open(r.blobs.path(a.Digest))
	if err != nil {
		return nil, nil, errorf(CodeDataLoss, "version %s artifact %s: blob %s: %w", v.Ref(), name, a.Digest, err)
	}
	return f, &a, nil
}

// Materialize writes the files of a READY version into dir (created if
// missing) for a runtime: each artifact at dir/<name>, replacing a file of
// that name, hard-linked from the artifact store when the file system
// allows (copied otherwise). Every file is hashed again as it lands and
// compared with its digest, and the manifest with the version's digest; a
// mismatch (a blob altered on disk) removes that file and fails with
// CodeDataLoss, naming the artifact. A hard-linked file shares the
// store's read-only blob: runtimes must not write to it.
func (r *Registry) Materialize(ctx context.Context, ref VersionRef, dir string) (*ModelVersion, error) {
	v, err := r.GetVersion(ctx, ref.Model, ref.Version)
	if err != nil {
		return nil, err
	}
	if v.Status != StatusReady {
		return nil, errorf(CodeConflict, "version %s is %s: only a READY version is given to a runtime", ref, v.Status)
	}
	if got := ManifestDigest(v.Artifacts); got != v.Digest {
		return nil, errorf(CodeDataLoss, "version %s: its artifact set hashes to %s, the version records %s", ref, got, v.Digest)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, errorf(CodeInternal, "version %s: %w", ref, err)
	}
	for _, a := range v.Artifacts {
		if err := r.materializeOne(ctx, ref, a, dir); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (r *Registry) materializeOne(ctx context.Context, ref VersionRef, a Artifact, dir string) error {
	dst := filepath.Join(dir, filepath.FromSlash(a.Name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return errorf(CodeInternal, "version %s artifact %s: %w", ref, a.Name, err)
	}
	src := r.blobs.path(a.Digest)
	tmp, digest, size, err := placeVerified(ctx, src, filepath.Dir(dst))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errorf(CodeDataLoss, "version %s artifact %s: blob %s is missing from the artifact store", ref, a.Name, a.Digest)
		}
		if isNoSpace(err) {
			return errorf(CodeInsufficientStorage, "version %s artifact %s: %w", ref, a.Name, err)
		}
		return errorf(CodeInternal, "version %s artifact %s: %w", ref, a.Name, err)
	}
	if digest != a.Digest || size != a.Size {
		os.Remove(tmp)
		r.metrics.verifyFailed.Inc()
		return errorf(CodeDataLoss, "version %s artifact %s: the stored bytes (%d, %s) no longer match the recorded digest (%d, %s): the blob %s was altered on disk; re-upload it as a new version",
			ref, a.Name, size, digest, a.Size, a.Digest, src)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return errorf(CodeInternal, "version %s artifact %s: %w", ref, a.Name, err)
	}
	return nil
}

// placeVerified puts the blob at src under a fresh temp name in dir and
// hashes what landed there: it hard-links when possible and hashes the
// link (the same bytes the runtime will read), else copies while hashing.
// It returns the temp name, the digest and the size.
func placeVerified(ctx context.Context, src, dir string) (tmp, digest string, size int64, err error) {
	f, err := os.CreateTemp(dir, ".infergate-*")
	if err != nil {
		return "", "", 0, err
	}
	tmp = f.Name()
	f.Close()
	os.Remove(tmp)
	if err := os.Link(src, tmp); err == nil {
		digest, size, err := HashFile(ctx, tmp)
		if err != nil {
			os.Remove(tmp)
			return "", "", 0, err
		}
		return tmp, digest, size, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return "", "", 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", "", 0, err
	}
	h := sha256.New()
	size, err = copyHashing(out, h, ctxReader{ctx, in})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", "", 0, err
	}
	return tmp, "sha256:" + hex.EncodeToString(h.Sum(nil)), size, nil
}
