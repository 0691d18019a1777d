package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// blobStore keeps artifact bytes content-addressed: <root>/sha256/<hex>,
// read-only, one copy per content. Uploads are written to <root>/tmp first,
// hashed while written, synced and renamed into place, so a blob file is
// always complete.
//
// A blob is removed only when no artifact row references it and no upload
// in this process is between writing it and committing its row (pins).
type blobStore struct {
	root string
	now  func() time.Time

	mu   sync.Mutex
	pins map[string]int // hex digest -> uploads in flight

	// createTemp makes the temp file of an upload (a test seam: tests wrap
	// it to simulate a full disk).
	createTemp func(dir string) (tempFile, error)
}

type tempFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// staleTemp is the age after which a temp file left by a crashed upload is
// removed at open.
const staleTemp = time.Hour

func newBlobStore(root string, now func() time.Time) (*blobStore, error) {
	b := &blobStore{root: root, now: now, pins: map[string]int{}}
	b.createTemp = func(dir string) (tempFile, error) { return os.CreateTemp(dir, "upload-*") }
	for _, d := range []string{b.dir(), b.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// Temp files of uploads cut off by a crash; recent ones may belong to
	// another process uploading right now.
	ents, err := os.ReadDir(b.tmpDir())
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && now().Sub(info.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(b.tmpDir(), e.Name()))
		}
	}
	return b, nil
}

func (b *blobStore) dir() string    { return filepath.Join(b.root, "sha256") }
func (b *blobStore) tmpDir() string { return filepath.Join(b.root, "tmp") }

// path returns the file of a digest ("sha256:<hex>").
func (b *blobStore) path(digest string) string {
	return filepath.Join(b.dir(), strings.TrimPrefix(digest, "sha256:"))
}

// errNoSpace reports a full disk.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// putResult is a stored blob, pinned until release is called.
type putResult struct {
	digest string
	size   int64
}

// ctxReader fails a read once ctx is done, so that an upload stops between
// chunks when its caller gives up.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// put streams r into the store and pins the blob (call unpin when its
// artifact row is committed or given up). It verifies the expected digest
// and size when given, and refuses more than max bytes. On any error it
// leaves no file behind.
func (b *blobStore) put(ctx context.Context, name string, r io.Reader, expectDigest string, expectSize, max int64) (res putResult, err error) {
	f, err := b.createTemp(b.tmpDir())
	if err != nil {
		if isNoSpace(err) {
			return res, errorf(CodeInsufficientStorage, "artifact %s: the artifact store %s is full: %w", name, b.root, err)
		}
		return res, errorf(CodeUnavailable, "artifact %s: creating a temp file in %s: %w", name, b.tmpDir(), err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	// Read one byte past the limit to tell "exactly max" from "more".
	src := io.LimitReader(ctxReader{ctx, r}, max+1)
	n, err := copyHashing(f, h, src)
	switch {
	case err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return res, errorf(CodeUnavailable, "artifact %s: upload abandoned after %d bytes: %w", name, n, err)
	case err != nil && isWriteErr(err):
		if isNoSpace(err) {
			return res, errorf(CodeInsufficientStorage, "artifact %s: the artifact store %s is full after %d bytes: %w", name, b.root, n, err)
		}
		return res, errorf(CodeInternal, "artifact %s: writing %s: %w", name, tmp, err)
	case err != nil:
		return res, errorf(CodeInvalidArgument, "artifact %s: upload cut off after %d bytes: %w", name, n, err)
	case n > max:
		return res, errorf(CodeTooLarge, "artifact %s: larger than the %d-byte limit (MaxArtifactBytes)", name, max)
	}
	res.size = n
	res.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if expectSize > 0 && expectSize != n {
		return res, errorf(CodeInvalidArgument, "artifact %s: size mismatch: the client announced %d bytes, received %d", name, expectSize, n)
	}
	if expectDigest != "" && expectDigest != res.digest {
		return res, errorf(CodeInvalidArgument, "artifact %s: digest mismatch: the client sent %s, the bytes hash to %s", name, expectDigest, res.digest)
	}
	if err := f.Sync(); err != nil {
		if isNoSpace(err) {
			return res, errorf(CodeInsufficientStorage, "artifact %s: the artifact store %s is full: %w", name, b.root, err)
		}
		return res, errorf(CodeInternal, "artifact %s: syncing %s: %w", name, tmp, err)
	}
	if err := f.Close(); err != nil {
		return res, errorf(CodeInternal, "artifact %s: closing %s: %w", name, tmp, err)
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return res, errorf(CodeInternal, "artifact %s: %w", name, err)
	}
	final := b.path(res.digest)
	b.mu.Lock()
	defer b.mu.Unlock()
	if info, statErr := os.Stat(final); statErr == nil && info.Size() == n {
		// Already stored: keep one copy.
		os.Remove(tmp)
	} else {
		// Absent, or (bad) a file of another size under that name: ours
		// is verified, so it replaces it.
		if err := os.Rename(tmp, final); err != nil {
			return res, errorf(CodeInternal, "artifact %s: storing %s: %w", name, final, err)
		}
		if err := syncDir(b.dir()); err != nil {
			return res, errorf(CodeInternal, "artifact %s: syncing %s: %w", name, b.dir(), err)
		}
	}
	b.pins[res.digest]++
	return res, nil
}

// writeErr marks an error of the destination, as opposed to the reader.
type writeErr struct{ err error }

func (w writeErr) Error() string { return w.err.Error() }
func (w writeErr) Unwrap() error { return w.err }

func isWriteErr(err error) bool {
	var w writeErr
	return errors.As(err, &w)
}

// copyBufs are the buffers of copyHashing and HashFile.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyHashing copies src into f and h; errors writing f are writeErr.
func copyHashing(f io.Writer, h io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return n, writeErr{err}
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// unpin ends the pin put took.
func (b *blobStore) unpin(digest string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pins[digest]--; b.pins[digest] <= 0 {
		delete(b.pins, digest)
	}
}

// removeUnreferenced removes a blob that no upload pins and that referenced
// says no artifact row uses. Errors are returned for logging only.
func (b *blobStore) removeUnreferenced(digest string, referenced func() (bool, error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pins[digest] > 0 {
		return nil
	}
	used, err := referenced()
	if err != nil || used {
		return err
	}
	if err := os.Remove(b.path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// check reports a blob that is missing or of the wrong size.
func (b *blobStore) check(digest string, size int64) error {
	info, err := os.Stat(b.path(digest))
	if err != nil {
		return fmt.Errorf("blob %s is missing from the artifact store: %w", digest, err)
	}
	if info.Size() != size {
		return fmt.Errorf("blob %s is %d bytes in the artifact store, the registry recorded %d", digest, info.Size(), size)
	}
	return nil
}

// HashFile returns the digest ("sha256:<hex>", as artifacts and blobs are
// named) and size of the file at path, reading it until ctx ends. The
// pipeline engine hashes step outputs with it.
func HashFile(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, *bp)
	if err != nil {
		return "", n, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}
