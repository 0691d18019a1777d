package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MaxFileBytes bounds the size of one file of declarations.
const MaxFileBytes = 4 << 20

// Parse reads the InferenceService documents of one YAML stream, separated
// by "---" lines, and returns them as validated Models with defaults applied,
// in document order. Empty documents (only comments or whitespace) are
// skipped and not counted. source names the stream in Model.Source and in
// errors. A relative storage path resolves against baseDir; with baseDir ""
// it stays relative (to the process's working directory, later).
//
// Parse does no I/O: it does not check that a model path exists, which is
// the runtime's business when it loads the model. It returns every problem it
// finds (see Error) and no Models if there is any; a stream with no non-empty
// document yields no Models and no error.
func Parse(source string, data []byte, baseDir string) ([]Model, error) {
	var p problems
	models := parse(source, data, baseDir, &p)
	checkDuplicates(models, &p)
	if p.len() > 0 {
		return nil, p.err()
	}
	return models, nil
}

func parse(source string, data []byte, baseDir string, p *problems) []Model {
	if len(data) > MaxFileBytes {
		p.add(&Error{Source: source, Msg: fmt.Sprintf("%d bytes, more than the limit of %d", len(data), MaxFileBytes)})
		return nil
	}
	var models []Model
	n := 0
	for _, doc := range splitDocuments(data) {
		d := &docProblems{p: p, source: source, doc: n + 1}
		isvc, empty := decodeDocument(doc, d)
		if empty {
			continue
		}
		n++
		if isvc == nil {
			continue
		}
		m := toModel(isvc, d, baseDir)
		if d.n == 0 {
			models = append(models, m)
		}
	}
	return models
}

// checkDuplicates reports a model name declared twice, naming both places.
func checkDuplicates(models []Model, p *problems) {
	first := make(map[string]string, len(models))
	for _, m := range models {
		if where, ok := first[m.Name]; ok {
			source, doc := splitSource(m.Source)
			p.add(&Error{Source: source, Document: doc, Field: fName,
				Msg: fmt.Sprintf("%s is also declared at %s", quote(m.Name), where)})
			continue
		}
		first[m.Name] = m.Source
	}
}

// splitSource undoes the "FILE#N" of Model.Source.
func splitSource(s string) (string, int) {
	i := strings.LastIndexByte(s, '#')
	n, _ := strconv.Atoi(s[i+1:])
	return s[:i], n
}

// LoadPath reads declarations from a file, or from the *.yaml and *.yml
// files of a directory (not its subdirectories; names starting with "." are
// skipped), in name order. Storage paths resolve against the directory of
// the file that declares them, made absolute, so that a runtime started in
// another working directory finds them. Model names are unique across all
// the files. LoadPath returns every problem it finds and no Models if there
// is any; a directory with no such files yields no Models and no error.
func LoadPath(path string) ([]Model, error) {
	files, err := Files(path)
	if err != nil {
		return nil, err
	}
	var p problems
	var models []Model
	for _, f := range files {
		data, err := ReadFile(f)
		if err != nil {
			p.add(&Error{Source: f, Msg: err.Error()})
			continue
		}
		dir, err := filepath.Abs(filepath.Dir(f))
		if err != nil {
			p.add(&Error{Source: f, Msg: err.Error()})
			continue
		}
		models = append(models, parse(f, data, dir, &p)...)
	}
	checkDuplicates(models, &p)
	if p.len() > 0 {
		return nil, p.err()
	}
	return models, nil
}

// Files returns the declaration files at path, as LoadPath reads them: the
// file itself, or the *.yaml and *.yml files of a directory (not its
// subdirectories; names starting with "." skipped) in name order.
func Files(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") || e.IsDir() {
			continue
		}
		files = append(files, filepath.Join(path, name))
	}
	slices.Sort(files)
	return files, nil
}

// ReadFile reads a declaration file of at most MaxFileBytes.
func ReadFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		// The error names the file already.
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, pe.Err
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("more than the limit of %d bytes", MaxFileBytes)
	}
	return data, nil
}
