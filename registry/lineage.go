package registry

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"
)

// EventArtifactProduced is appended with each new lineage row of PutBlob.
// Its Detail is {"digest", "size", "run", "step", "iteration", "attempt",
// "name"}.
const EventArtifactProduced = "artifact.produced"

// Blob is content of the artifact store: its "sha256:<hex>" digest and
// its size in bytes.
type Blob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Lineage says which pipeline run made a blob: the run and step,
// Iteration (-1 unless a parallelFor iteration did), Attempt (1, 2, ...)
// and the artifact's Name there (a clean relative slash path, such as
// "model" or, for a file of a directory artifact, "model/weights.bin").
// Digest, Size, Actor and Time are set by the registry: PutBlob ignores
// them.
type Lineage struct {
	Digest    string    `json:"digest,omitempty"`
	Size      int64     `json:"size,omitempty"`
	Run       string    `json:"run"`
	Step      string    `json:"step"`
	Iteration int       `json:"iteration"`
	Attempt   int       `json:"attempt"`
	Name      string    `json:"name"`
	Actor     string    `json:"actor,omitempty"`
	Time      time.Time `json:"time,omitzero"`
}

// MaxLineage bounds the lineage rows BlobLineage returns for one blob.
const MaxLineage = 1000

func checkLineage(lin Lineage) error {
	if lin.Run == "" || lin.Step == "" {
		return errorf(CodeInvalidArgument, "blob lineage: run %q and step %q must both be set", lin.Run, lin.Step)
	}
	if err := checkText("blob lineage run", lin.Run, maxShortText, false); err != nil {
		return err
	}
	if err := checkText("blob lineage step", lin.Step, maxShortText, false); err != nil {
		return err
	}
	if lin.Iteration < -1 {
		return errorf(CodeInvalidArgument, "blob lineage iteration %d: want -1 (no parallelFor) or an index from 0", lin.Iteration)
	}
	if lin.Attempt < 1 {
		return errorf(CodeInvalidArgument, "blob lineage attempt %d: want the attempt's number, from 1", lin.Attempt)
	}
	return checkArtifactName(lin.Name)
}

func checkBlobDigest(digest string) error {
	if !hexDigestRE.MatchString(digest) {
		return errorf(CodeInvalidArgument, "blob digest %q: want sha256: and 64 lowercase hex digits", digest)
	}
	return nil
}

// PutBlob streams r into the artifact store (the content-addressed store
// of model versions' artifacts; content already stored is kept once) and
// records lin, the run and step that produced it, in one transaction with
// an EventArtifactProduced event. want, when not "", is the digest the
// bytes must hash to. The same lineage recorded again for the same content
// is kept once (and appends no event).
//
// Whatever fails (a digest mismatch, a reader cut off or past
// MaxArtifactBytes, a full disk, a cancelled ctx), no lineage row is
// recorded and no blob is left that was not stored before. A blob with
// lineage is never removed by the registry.
func (r *Registry) PutBlob(ctx context.Context, body io.Reader, want string, lin Lineage) (Blob, error) {
	b, err := r.putBlob(ctx, body, want, lin)
	if err != nil {
		r.metrics.uploads.WithLabelValues(CodeOf(err).String()).Inc()
		return Blob{}, err
	}
	r.metrics.uploads.WithLabelValues("stored").Inc()
	r.metrics.uploadBytes.Add(float64(b.Size))
	return b, nil
}

func (r *Registry) putBlob(ctx context.Context, body io.Reader, want string, lin Lineage) (Blob, error) {
	if err := checkLineage(lin); err != nil {
		return Blob{}, err
	}
	if want != "" {
		if err := checkBlobDigest(want); err != nil {
			return Blob{}, err
		}
	}
	actor, err := actorOf(ctx)
	if err != nil {
		return Blob{}, err
	}
	res, err := r.blobs.put(ctx, lin.Name, body, want, 0, r.maxBytes)
	if err != nil {
		return Blob{}, err
	}
	blob := Blob{Digest: res.digest, Size: res.size}
	err = r.st.write(ctx, func(tx *wtx) error {
		// ON CONFLICT DO NOTHING: a step's outputs collected again (after
		// a crash between storing and recording the step) add no row.
		res, err := tx.ExecContext(ctx, `INSERT INTO blob_lineage (digest, size, run, step, iteration, attempt, name, actor, create_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
			blob.Digest, blob.Size, lin.Run, lin.Step, lin.Iteration, lin.Attempt, lin.Name, actor, micros(r.now()))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		where := "run " + lin.Run + " step " + lin.Step
		if lin.Iteration >= 0 {
			where += " iteration " + strconv.Itoa(lin.Iteration)
		}
		_, err = r.appendEvent(ctx, tx, EventArtifactProduced, "", 0, actor,
			where+" attempt "+strconv.Itoa(lin.Attempt)+" produced "+lin.Name+" "+blob.Digest,
			map[string]any{"digest": blob.Digest, "size": blob.Size, "run": lin.Run, "step": lin.Step,
				"iteration": lin.Iteration, "attempt": lin.Attempt, "name": lin.Name})
		return err
	})
	r.blobs.unpin(blob.Digest)
	if err != nil {
		r.dropBlob(blob.Digest)
		return Blob{}, err
	}
	return blob, nil
}

// BlobLineage returns the lineage recorded for a blob by PutBlob, oldest
// first, at most MaxLineage rows; none (and no error) for content no run
// produced.
func (r *Registry) BlobLineage(ctx context.Context, digest string) ([]Lineage, error) {
	if err := checkBlobDigest(digest); err != nil {
		return nil, err
	}
	var out []Lineage
	err := r.st.read(ctx, func(q querier) error {
		out = out[:0]
		rows, err := q.QueryContext(ctx, `SELECT digest, size, run, step, iteration, attempt, name, actor, create_time
FROM blob_lineage WHERE digest = $1 ORDER BY create_time, id LIMIT `+strconv.Itoa(MaxLineage), digest)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l Lineage
			var t int64
			if err := rows.Scan(&l.Digest, &l.Size, &l.Run, &l.Step, &l.Iteration, &l.Attempt, &l.Name, &l.Actor, &t); err != nil {
				return err
			}
			l.Time = fromMicros(t)
			out = append(out, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OpenBlob opens a blob of the artifact store that the registry knows (by
// an artifact of a version or by lineage) for reading; the caller closes
// the file. It fails with CodeNotFound for content the registry does not
// hold and CodeDataLoss when the file is missing or not of the recorded
// size. The bytes are not re-hashed here: readers check them against the
// digest.
func (r *Registry) OpenBlob(ctx context.Context, digest string) (*os.File, Blob, error) {
	if err := checkBlobDigest(digest); err != nil {
		return nil, Blob{}, err
	}
	var size int64 = -1
	err := r.st.read(ctx, func(q querier) error {
		err := q.QueryRowContext(ctx, `SELECT size FROM blob_lineage WHERE digest = $1 LIMIT 1`, digest).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			err = q.QueryRowContext(ctx, `SELECT size FROM artifacts WHERE digest = $1 LIMIT 1`, digest).Scan(&size)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(CodeNotFound, "blob %s not found in the registry", digest)
		}
		return err
	})
	if err != nil {
		return nil, Blob{}, err
	}
	f, err := os.Open(r.blobs.path(digest))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, Blob{}, errorf(CodeDataLoss, "blob %s is missing from the artifact store", digest)
		}
		return nil, Blob{}, errorf(CodeInternal, "blob %s: %w", digest, err)
	}
	info, err := f.Stat()
	if err != nil || info.Size() != size {
		f.Close()
		if err != nil {
			return nil, Blob{}, errorf(CodeInternal, "blob %s: %w", digest, err)
		}
		return nil, Blob{}, errorf(CodeDataLoss, "blob %s is %d bytes in the artifact store, the registry recorded %d", digest, info.Size(), size)
	}
	return f, Blob{Digest: digest, Size: size}, nil
}
