package modelserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/infergate/infergate/runtimes/sim"
)

// ModelConfig is the optional per-model config.json of a repository. It is
// decoded strictly: an unknown field is an error.
type ModelConfig struct {
	// Name overrides the directory's name.
	Name string `json:"name,omitempty"`
	// Platform is reported in metadata (default "onnx_onnxv1", or
	// sim.DefaultPlatform for a simulated model).
	Platform string `json:"platform,omitempty"`
	// MaxBatchSize rejects larger batches when positive.
	MaxBatchSize int `json:"max_batch_size,omitempty"`
	// VersionPolicy says which versions to serve (default: the latest one).
	VersionPolicy *VersionPolicy `json:"version_policy,omitempty"`
	// Simulate, when set, makes the model a simulated one for benchmarks
	// (package sim): it needs no model file.
	Simulate *sim.Spec `json:"simulate,omitempty"`
}

// VersionPolicy selects the versions of a model to serve, as Triton's
// version_policy does. Exactly one field is set; a nil policy means
// {"latest": 1}.
type VersionPolicy struct {
	// Latest serves the Latest highest-numbered versions.
	Latest int `json:"latest,omitempty"`
	// All serves every version.
	All bool `json:"all,omitempty"`
	// Specific serves the listed versions, each of which must exist.
	Specific []int64 `json:"specific,omitempty"`
}

// Validate reports a policy that sets no field, several, or a bad value.
func (p *VersionPolicy) Validate() error {
	if p == nil {
		return nil
	}
	set := 0
	if p.Latest != 0 {
		set++
		if p.Latest < 0 {
			return fmt.Errorf("version_policy.latest: %d is not a positive count", p.Latest)
		}
	}
	if p.All {
		set++
	}
	if p.Specific != nil {
		set++
		if len(p.Specific) == 0 {
			return errors.New("version_policy.specific: lists no version")
		}
		for _, v := range p.Specific {
			if v < 0 {
				return fmt.Errorf("version_policy.specific: %d is not a version number", v)
			}
		}
	}
	if set != 1 {
		return errors.New(`version_policy: set exactly one of "latest", "all" and "specific"`)
	}
	return nil
}

// Select returns the versions the policy serves out of versions, which are
// ascending by number. A specific version that is not among them is an
// error, as is a policy that selects nothing.
func (p *VersionPolicy) Select(versions []VersionSource) ([]VersionSource, error) {
	if len(versions) == 0 {
		return nil, errors.New("no version to serve")
	}
	switch {
	case p == nil:
		return versions[len(versions)-1:], nil
	case p.All:
		return versions, nil
	case p.Latest > 0:
		return versions[max(0, len(versions)-p.Latest):], nil
	}
	var out []VersionSource
	var missing []string
	for _, want := range p.Specific {
		found := false
		for _, v := range versions {
			if n, err := strconv.ParseInt(v.Version, 10, 64); err == nil && n == want {
				out = append(out, v)
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, strconv.FormatInt(want, 10))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("version_policy.specific: no directory for version %s", strings.Join(missing, ", "))
	}
	sortVersions(out)
	return out, nil
}

// ModelSource is a model found in a repository: its name, config and the
// file of each version.
type ModelSource struct {
	Name     string
	Config   ModelConfig
	Versions []VersionSource // ascending by version number
	// Path is the model directory or file the source was scanned from; a
	// load request rescans it. Empty for a source built in code, which
	// loads as it is.
	Path string
}

// VersionSource is one version's model file (or, for a simulated model,
// its directory).
type VersionSource struct {
	Version string
	Path    string
}

// ScanRepository lists the models under dir: each sub-directory is a model
// whose numeric sub-directories hold its versions' model.onnx files. Any
// model that cannot be read fails the scan, so that a typo in a config is
// found at start.
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
// or a model.onnx file. name is used unless config.json names the model. A
// simulated model (config.json "simulate") needs no model file: its
// versions are its numeric directories, or version 1 when it has none.
func ScanModel(name, path string) (ModelSource, error) {
	src := ModelSource{Name: name, Path: path}
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
	simulated := src.Config.Simulate != nil
	if f := filepath.Join(path, "model.onnx"); !simulated && fileExists(f) {
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
		v := VersionSource{Version: e.Name(), Path: filepath.Join(path, e.Name(), "model.onnx")}
		if simulated {
			v.Path = filepath.Join(path, e.Name())
		}
		src.Versions = append(src.Versions, v)
	}
	if len(src.Versions) == 0 {
		if simulated {
			src.Versions = []VersionSource{{Version: "1", Path: path}}
			return src, nil
		}
		return src, fmt.Errorf("modelserver: model %q: %s has no model.onnx and no numeric version directory", name, path)
	}
	sortVersions(src.Versions)
	return src, nil
}

// sortVersions orders versions by number.
func sortVersions(vs []VersionSource) {
	sort.Slice(vs, func(i, j int) bool { return versionNumber(vs[i].Version) < versionNumber(vs[j].Version) })
}

// versionNumber is the number of a version directory's name (0 if it is
// not one, which scanning never lets through).
func versionNumber(v string) uint64 {
	n, _ := strconv.ParseUint(v, 10, 63)
	return n
}

func readConfig(path string, c *ModelConfig) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if c.MaxBatchSize < 0 {
		return fmt.Errorf("%s: max_batch_size: %d is negative", path, c.MaxBatchSize)
	}
	if err := c.VersionPolicy.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if c.Simulate != nil {
		if err := c.Simulate.Validate(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// checkModelName rejects a name that could not be a model directory's name,
// before it is joined to the repository path.
func checkModelName(name string) error {
	switch {
	case name == "":
		return errors.New("a model name is required")
	case name == "." || name == ".." || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`+"\x00"):
		return fmt.Errorf("model name %q cannot name a repository directory", name)
	}
	return nil
}
