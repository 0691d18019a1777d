package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// writeOutputs writes the summary, whatever happened, and the best trial's
// parameters and directory when there is one.
func (s *Sweep) writeOutputs(res Result) error {
	var errs []error
	if s.opts.Summary != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err == nil {
			err = writeFileAtomic(s.opts.Summary, append(b, '\n'))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep: summary: %w", err))
		}
	}
	if res.Best == nil {
		return errors.Join(errs...)
	}
	if s.opts.ParamsDir != "" {
		for _, p := range s.opts.Space {
			path := filepath.Join(s.opts.ParamsDir, p.Name)
			if err := writeFileAtomic(path, []byte(formatValue(res.Best.Params[p.Name])+"\n")); err != nil {
				errs = append(errs, fmt.Errorf("sweep: best parameters: %w", err))
				break
			}
		}
	}
	if s.opts.BestDir != "" {
		if err := os.MkdirAll(s.opts.BestDir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("sweep: best trial: %w", err))
		} else if err := os.CopyFS(s.opts.BestDir, os.DirFS(res.Best.Dir)); err != nil {
			errs = append(errs, fmt.Errorf("sweep: copying the best trial %s to %s: %w", res.Best.Dir, s.opts.BestDir, err))
		}
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, renamed into place, so that a reader (the pipeline engine,
// reading a step's outputs) never sees part of it. The directory is made
// if missing.
func writeFileAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
