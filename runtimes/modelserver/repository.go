package modelserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ModelConfig is the optional per-model config.json of a repository.
type ModelConfig struct {
	// Name overrides the directory's name.
	Name string `json:"name,omitempty"`
	// Platform is reported in metadata (default "onnx_onnxv1").
	Platform string `json:"platform,omitempty"`
	// MaxBatchSize rejects larger batches when positive.
	MaxBatchSize int `json:"max_batch_size,omitempty"`
}

// ModelSource is a model found in a repository: its name, config and the
// file of each version.
type ModelSource struct {
	Name     string
	Config   ModelConfig
	Versions []VersionSource // ascending by version number
}

// VersionSource is one version's model file.
type VersionSource struct {
	Version string
	Path    string
}

// ScanRepository lists the models under dir: each sub-directory is a model
// whose numeric sub-directories hold its versions' model.onnx files.
func ScanRepository(dir string) ([]ModelSource, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("modelserver: repository: %w", err)
	}
	var out []ModelSource
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		src, err := ScanModel(e.Name(), filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, src)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("modelserver: repository %s holds no model directory", dir)
	}
	return out, nil
}

// ScanModel reads one model from path, which is a model directory
// (<version>/model.onnx inside, optional config.json), a version directory,
// or a model.onnx file. name is used unless config.json names the model.
func ScanModel(name, path string) (ModelSource, error) {
	src := ModelSource{Name: name}
	fi, err := os.Stat(path)
	if err != nil {
		return src, fmt.Errorf("modelserver: model %q: %w", name, err)
	}
	if !fi.IsDir() {
		src.Versions = []VersionSource{{Version: "1", Path: path}}
		return src, nil
	}
	if err := readConfig(filepath.Join(path, "config.json"), &src.Config); err != nil {
		return src, fmt.Errorf("modelserver: model %q: %w", name, err)
	}
	if src.Config.Name != "" {
		src.Name = src.Config.Name
	}
	if f := filepath.Join(path, "model.onnx"); fileExists(f) {
		src.Versions = []VersionSource{{Version: "1", Path: f}}
		return src, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return src, fmt.Errorf("modelserver: model %q: %w", name, err)
	}
	for _, e := range entries {
		if _, err := strconv.ParseUint(e.Name(), 10, 63); err != nil || !e.IsDir() {
			continue
		}
		src.Versions = append(src.Versions, VersionSource{Version: e.Name(), Path: filepath.Join(path, e.Name(), "model.onnx")})
	}
	if len(src.Versions) == 0 {
		return src, fmt.Errorf("modelserver: model %q: %s has no model.onnx and no numeric version directory", name, path)
	}
	sort.Slice(src.Versions, func(i, j int) bool {
		a, _ := strconv.ParseUint(src.Versions[i].Version, 10, 63)
		b, _ := strconv.ParseUint(src.Versions[j].Version, 10, 63)
		return a < b
	})
	return src, nil
}

func readConfig(path string, c *ModelConfig) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if c.MaxBatchSize < 0 {
		return fmt.Errorf("%s: max_batch_size: %d is negative", path, c.MaxBatchSize)
	}
	return nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}
