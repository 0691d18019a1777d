package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/infergate/infergate/registry"
)

// MaxParamBytes bounds an output parameter file; a larger value belongs
// in an artifact.
const MaxParamBytes = 1 << 20

// collectOutputs reads the declared outputs of an attempt that exited 0:
// each parameter parsed to its type, each artifact hashed. A missing or
// malformed output is an error naming it.
func collectOutputs(ctx context.Context, cs *cstep, outDir string, lineage ArtifactRef) (Outputs, error) {
	o := Outputs{}
	var errs []string
	for _, name := range keys(cs.outParams) {
		t := cs.outParams[name]
		if _, ok := cs.outFrom[name]; ok {
			continue // read from its artifact below
		}
		rel := "outputs/params/" + name
		f, err := os.Open(filepath.Join(outDir, "params", name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Sprintf("output %s: %s is missing (the step must write its %s value there)", name, rel, t))
			} else {
				errs = append(errs, fmt.Sprintf("output %s: %v", name, err))
			}
			continue
		}
		data, err := readAtMost(f, MaxParamBytes)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Sprintf("output %s: %s: %v (write large values as an artifact)", name, rel, err))
			continue
		}
		s := string(data)
		if t == TypeString {
			// A value written by echo ends with a newline that is not part
			// of it.
			s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
		}
		v, err := parseText(s, t)
		if err != nil {
			errs = append(errs, fmt.Sprintf("output %s: %s is malformed: %v", name, rel, err))
			continue
		}
		if o.Params == nil {
			o.Params = map[string]any{}
		}
		o.Params[name] = v
	}
	for _, name := range cs.outArtifacts {
		path := filepath.Join(outDir, "artifacts", name)
		ref := lineage
		a, err := hashArtifact(ctx, path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Sprintf("output %s: outputs/artifacts/%s is missing (the step must write that file or directory)", name, name))
			} else {
				errs = append(errs, fmt.Sprintf("output %s: %v", name, err))
			}
			continue
		}
		ref.Path, ref.Digest, ref.Size, ref.Dir = path, a.Digest, a.Size, a.Dir
		if o.Artifacts == nil {
			o.Artifacts = map[string]ArtifactRef{}
		}
		o.Artifacts[name] = ref
	}
	for _, name := range keys(cs.outFrom) {
		op := cs.outFrom[name]
		a, ok := o.Artifacts[op.Artifact]
		if !ok {
			continue // its artifact's problem is reported
		}
		v, err := jsonValue(a, op.Key, op.Type)
		if err != nil {
			errs = append(errs, fmt.Sprintf("output %s: artifact %s: %v", name, op.Artifact, err))
			continue
		}
		if o.Params == nil {
			o.Params = map[string]any{}
		}
		o.Params[name] = v
	}
	if len(errs) > 0 {
		return Outputs{}, errors.New(strings.Join(errs, "; "))
	}
	return o, nil
}

// MaxJSONArtifactBytes bounds a JSON artifact that output parameters are
// read from.
const MaxJSONArtifactBytes = 16 << 20

// jsonValue reads the value at key (dots going down nested objects) of
// the JSON object in an artifact file, as type t.
func jsonValue(a ArtifactRef, key string, t Type) (any, error) {
	if a.Dir {
		return nil, fmt.Errorf("is a directory, not a JSON file")
	}
	f, err := os.Open(a.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readAtMost(f, MaxJSONArtifactBytes)
	if err != nil {
		return nil, err
	}
	v, err := decodeJSON(string(data))
	if err != nil {
		return nil, fmt.Errorf("is not JSON: %v", err)
	}
	path := strings.Split(key, ".")
	for i, k := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s is %s, not an object", strings.Join(append([]string{"the file"}, path[:i]...), "."), describe(v))
		}
		if v, ok = obj[k]; !ok {
			return nil, fmt.Errorf("has no key %s%s", strings.Join(path[:i+1], "."), suggest(k, keys(obj)))
		}
	}
	out, err := conform(v, t)
	if err != nil {
		return nil, fmt.Errorf("key %s: %v", key, err)
	}
	return out, nil
}

// hashArtifact returns the digest and size of a file, or of a
// directory's regular files (the registry's manifest digest, names
// relative to it). Symbolic links and other special files in a directory
// are refused: their content is not the step's.
func hashArtifact(ctx context.Context, path string) (ArtifactRef, error) {
	info, err := os.Stat(path)
	if err != nil {
		return ArtifactRef{}, err
	}
	if info.Mode().IsRegular() {
		d, n, err := registry.HashFile(ctx, path)
		return ArtifactRef{Path: path, Digest: d, Size: n}, err
	}
	if !info.IsDir() {
		return ArtifactRef{}, fmt.Errorf("%s is neither a file nor a directory", path)
	}
	var files []registry.Artifact
	var total int64
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file (links and special files are not artifacts)", p)
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		dg, n, err := registry.HashFile(ctx, p)
		if err != nil {
			return err
		}
		files = append(files, registry.Artifact{Name: filepath.ToSlash(rel), Digest: dg, Size: n})
		total += n
		return nil
	})
	if err != nil {
		return ArtifactRef{}, err
	}
	return ArtifactRef{Path: path, Digest: registry.ManifestDigest(files), Size: total, Dir: true}, nil
}

// blobPutter is the registry's content-addressed store, as storeArtifacts
// uses it (a *registry.Registry).
type blobPutter interface {
	PutBlob(ctx context.Context, r io.Reader, want string, lin registry.Lineage) (registry.Blob, error)
}

// storeArtifacts puts the artifacts of an attempt whose outputs were
// checked into the registry's content-addressed store, with their
// lineage (run, step, iteration, attempt, name): a file as one blob; a
// directory as a blob per file (named "<artifact>/<path>") and its
// manifest (registry.Manifest), whose digest is the directory's recorded
// digest. Each blob is checked against the digest collectOutputs recorded,
// so a file changed since is an error naming it, as is a store failure.
// The files stay where the step wrote them: downstream steps read those.
func storeArtifacts(ctx context.Context, blobs blobPutter, o Outputs, attempt int) error {
	for _, name := range keys(o.Artifacts) {
		a := o.Artifacts[name]
		lin := registry.Lineage{Run: string(a.Run), Step: a.Step, Iteration: a.Iteration, Attempt: attempt, Name: name}
		if err := storeArtifact(ctx, blobs, a, lin); err != nil {
			return fmt.Errorf("output %s: storing it in the registry: %w", name, err)
		}
	}
	return nil
}

func storeArtifact(ctx context.Context, blobs blobPutter, a ArtifactRef, lin registry.Lineage) error {
	putFile := func(path, want string, lin registry.Lineage) (registry.Blob, error) {
		f, err := os.Open(path)
		if err != nil {
			return registry.Blob{}, err
		}
		defer f.Close()
		return blobs.PutBlob(ctx, f, want, lin)
	}
	if !a.Dir {
		_, err := putFile(a.Path, a.Digest, lin)
		return err
	}
	var files []registry.Artifact
	err := filepath.WalkDir(a.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file (links and special files are not artifacts)", p)
		}
		rel, err := filepath.Rel(a.Path, p)
		if err != nil {
			return err
		}
		fl := lin
		fl.Name = lin.Name + "/" + filepath.ToSlash(rel)
		b, err := putFile(p, "", fl)
		if err != nil {
			return err
		}
		files = append(files, registry.Artifact{Name: filepath.ToSlash(rel), Digest: b.Digest, Size: b.Size})
		return nil
	})
	if err != nil {
		return err
	}
	// want: the directory as it was checked; a file changed since makes the
	// manifest differ and nothing is recorded under the directory's digest.
	_, err = blobs.PutBlob(ctx, bytes.NewReader(registry.Manifest(files)), a.Digest, lin)
	return err
}

// stillThere reports whether an earlier step's artifacts are still where
// it wrote them, at their size (a cache hit is refused otherwise; the
// bytes are not hashed again).
func stillThere(o Outputs) error {
	for name, a := range o.Artifacts {
		info, err := os.Stat(a.Path)
		if err != nil {
			return fmt.Errorf("artifact %s: %w", name, err)
		}
		if !a.Dir && info.Size() != a.Size {
			return fmt.Errorf("artifact %s: %s is %d bytes, %d were recorded", name, a.Path, info.Size(), a.Size)
		}
	}
	return nil
}
