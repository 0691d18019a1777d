package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infergate/infergate/internal/cliflags"
	"github.com/infergate/infergate/registry"
	"github.com/infergate/infergate/registry/registryapi"
)

// `infergate registry ...` and `infergate events`: the model registry's
// CLI, a client of the admin port's registry API (registry/registryapi).

const registryUsage = `Usage:
  infergate registry models create NAME [-description TEXT] [-owner WHO] [-label k=v]...
  infergate registry models list [-name PREFIX] [-label k=v]... [-state LIVE|ARCHIVED] [-limit N]
  infergate registry models get NAME
  infergate registry models archive NAME
  infergate registry versions create MODEL [-description TEXT] [-author WHO] [-label k=v]...
                                     [-metric k=NUMBER]... [-param k=v]... [-property k=TYPE:v]...
  infergate registry versions list MODEL [-label k=v]... [-state LIVE|ARCHIVED] [-status PENDING|READY|FAILED] [-limit N]
  infergate registry versions get MODEL N
  infergate registry versions ready MODEL N
  infergate registry versions archive MODEL N
  infergate registry upload MODEL PATH [-version N] [-format F] [-ready] [the flags of versions create]
  infergate registry aliases set MODEL ALIAS N [-reason TEXT]
  infergate registry aliases list MODEL
  infergate registry aliases history MODEL ALIAS
  infergate registry aliases delete MODEL ALIAS [-reason TEXT]
  infergate registry resolve REF          (registry://MODEL, MODEL/N, MODEL@ALIAS, MODEL@sha256:HEX)

Every command takes -admin HOST:PORT or URL (the gateway's admin address,
default 127.0.0.1:8090) and -o table|json (-json is -o json). Flags may
come before, between or after the words and arguments. upload sends a file,
or every file of a directory under its relative path, each with its SHA-256
computed here for the server to check; without -version it registers a new
version, and -ready marks it READY once every file is stored. -property
types are string, int, double and bool (-property epochs=int:10).
`

// regFlags holds every flag of the registry commands; each command
// registers the ones it takes (regFlagDefs).
type regFlags struct {
	admin, output                       string
	asJSON, ready, follow               bool
	description, owner, author          string
	name, state, status, format, reason string
	model, kind, since                  string
	version                             int64
	limit                               int
	labels, metrics, params, properties stringList
}

// regFlagDefs registers each flag of the registry commands by name. A
// flag takes a value, or not, alike in every command, so that
// registryWords can parse any command's flags before it knows which.
var regFlagDefs = map[string]func(fs *flag.FlagSet, f *regFlags){
	"description": func(fs *flag.FlagSet, f *regFlags) { fs.StringVar(&f.description, "description", "", "description") },
	"owner":       func(fs *flag.FlagSet, f *regFlags) { fs.StringVar(&f.owner, "owner", "", "owner (default: you)") },
	"author":      func(fs *flag.FlagSet, f *regFlags) { fs.StringVar(&f.author, "author", "", "author (default: you)") },
	"label":       func(fs *flag.FlagSet, f *regFlags) { fs.Var(&f.labels, "label", "label key=value (repeatable)") },
	"metric":      func(fs *flag.FlagSet, f *regFlags) { fs.Var(&f.metrics, "metric", "metric key=number (repeatable)") },
	"param":       func(fs *flag.FlagSet, f *regFlags) { fs.Var(&f.params, "param", "parameter key=value (repeatable)") },
	"property": func(fs *flag.FlagSet, f *regFlags) {
		fs.Var(&f.properties, "property", "custom property key=TYPE:value, TYPE string, int, double or bool (repeatable)")
	},
	"name": func(fs *flag.FlagSet, f *regFlags) {
		fs.StringVar(&f.name, "name", "", "only models whose name starts with this")
	},
	"state": func(fs *flag.FlagSet, f *regFlags) { fs.StringVar(&f.state, "state", "", "only LIVE or ARCHIVED ones") },
	"status": func(fs *flag.FlagSet, f *regFlags) {
		fs.StringVar(&f.status, "status", "", "only PENDING, READY or FAILED versions")
	},
	"limit": func(fs *flag.FlagSet, f *regFlags) { fs.IntVar(&f.limit, "limit", 1000, "show at most this many") },
	"version": func(fs *flag.FlagSet, f *regFlags) {
		fs.Int64Var(&f.version, "version", 0, "upload into this PENDING version (default: register a new one)")
	},
	"format": func(fs *flag.FlagSet, f *regFlags) {
		fs.StringVar(&f.format, "format", "", "the files' format, such as onnx (default: from each file's extension: .onnx onnx, .pt pytorch...)")
	},
	"ready": func(fs *flag.FlagSet, f *regFlags) {
		fs.BoolVar(&f.ready, "ready", false, "mark the version READY once every file is stored")
	},
	"reason": func(fs *flag.FlagSet, f *regFlags) {
		fs.StringVar(&f.reason, "reason", "", "why, kept in the alias's history")
	},
	"f": func(fs *flag.FlagSet, f *regFlags) {
		fs.BoolVar(&f.follow, "f", false, "follow: print events as they happen")
	},
	"model": func(fs *flag.FlagSet, f *regFlags) {
		fs.StringVar(&f.model, "model", "", "only the events of this model")
	},
	"kind": func(fs *flag.FlagSet, f *regFlags) {
		fs.StringVar(&f.kind, "kind", "", "only events of this kind (a trailing * matches a prefix: alias.*)")
	},
	"since": func(fs *flag.FlagSet, f *regFlags) {
		fs.StringVar(&f.since, "since", "", "events after this event id, at or after this RFC 3339 time, or this long ago (1h, 30m); default 24h ago, or now with -f")
	},
}

var versionCreateFlags = []string{"description", "author", "label", "metric", "param", "property"}

// regCommand is one command: its words, positional arguments and flags.
type regCommand struct {
	words []string
	args  []string
	flags []string
	run   func(c *regCLI, pos []string) error
}

var regCommands = []regCommand{
	{[]string{"models", "create"}, []string{"NAME"}, []string{"description", "owner", "label"}, (*regCLI).modelsCreate},
	{[]string{"models", "list"}, nil, []string{"name", "label", "state", "limit"}, (*regCLI).modelsList},
	{[]string{"models", "get"}, []string{"NAME"}, nil, (*regCLI).modelsGet},
	{[]string{"models", "archive"}, []string{"NAME"}, nil, (*regCLI).modelsArchive},
	{[]string{"versions", "create"}, []string{"MODEL"}, versionCreateFlags, (*regCLI).versionsCreate},
	{[]string{"versions", "list"}, []string{"MODEL"}, []string{"label", "state", "status", "limit"}, (*regCLI).versionsList},
	{[]string{"versions", "get"}, []string{"MODEL", "N"}, nil, (*regCLI).versionsGet},
	{[]string{"versions", "ready"}, []string{"MODEL", "N"}, nil, (*regCLI).versionsReady},
	{[]string{"versions", "archive"}, []string{"MODEL", "N"}, nil, (*regCLI).versionsArchive},
	{[]string{"upload"}, []string{"MODEL", "PATH"}, append([]string{"version", "format", "ready"}, versionCreateFlags...), (*regCLI).upload},
	{[]string{"aliases", "set"}, []string{"MODEL", "ALIAS", "N"}, []string{"reason"}, (*regCLI).aliasesSet},
	{[]string{"aliases", "list"}, []string{"MODEL"}, nil, (*regCLI).aliasesList},
	{[]string{"aliases", "history"}, []string{"MODEL", "ALIAS"}, []string{"limit"}, (*regCLI).aliasesHistory},
	{[]string{"aliases", "delete"}, []string{"MODEL", "ALIAS"}, []string{"reason"}, (*regCLI).aliasesDelete},
	{[]string{"resolve"}, []string{"REF"}, nil, (*regCLI).resolve},
}

// regCLI is one run of a registry command.
type regCLI struct {
	ctx            context.Context
	f              regFlags
	api            *registryapi.Client
	stdout, stderr io.Writer
}

// newFlagSet returns a FlagSet with the common flags and those named.
func newRegFlagSet(name string, f *regFlags, stderr io.Writer, names []string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.admin, "admin", "127.0.0.1:8090", "the gateway's admin address: HOST:PORT or a URL")
	fs.StringVar(&f.output, "o", "table", "output: table or json")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON (-o json)")
	for _, n := range names {
		regFlagDefs[n](fs, f)
	}
	return fs
}

// runRegistry runs `infergate registry ...` (see registryUsage).
func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	words, help, err := registryWords(args)
	if err != nil {
		fmt.Fprint(stderr, registryUsage)
		return fmt.Errorf("registry: %w", err)
	}
	var cmd *regCommand
	for i := range regCommands {
		c := &regCommands[i]
		if len(words) >= len(c.words) && slices.Equal(words[:len(c.words)], c.words) {
			cmd = c
			break
		}
	}
	if cmd == nil {
		fmt.Fprint(stderr, registryUsage)
		if help {
			return flag.ErrHelp
		}
		if len(words) == 0 {
			return errors.New("registry: say what to do, as in: infergate registry models list")
		}
		return fmt.Errorf("registry: unknown command %q", strings.Join(words[:min(2, len(words))], " "))
	}
	c := &regCLI{ctx: ctx, stdout: stdout, stderr: stderr}
	name := "registry " + strings.Join(cmd.words, " ")
	fs := newRegFlagSet(name, &c.f, stderr, cmd.flags)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: infergate %s %s [flags]\nFlags may come before, between or after the arguments.\n", name, strings.Join(cmd.args, " "))
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	pos = pos[len(cmd.words):]
	if len(pos) != len(cmd.args) {
		fs.Usage()
		if len(pos) < len(cmd.args) {
			return fmt.Errorf("%s: missing %s", name, strings.Join(cmd.args[len(pos):], " "))
		}
		return fmt.Errorf("%s: unexpected argument %q", name, pos[len(cmd.args)])
	}
	if c.api, err = newRegistryClient(c.f.admin); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if c.f.asJSON {
		c.f.output = "json"
	}
	if c.f.output != "table" && c.f.output != "json" {
		return fmt.Errorf("%s: -o %q: want table or json", name, c.f.output)
	}
	if err := cmd.run(c, pos); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(pos, " "), err)
	}
	return nil
}

// registryWords finds the command words among args wherever the flags
// stand: it parses them with every registry flag, which take a value or
// not alike in every command. help says -h was among them.
func registryWords(args []string) (words []string, help bool, err error) {
	var f regFlags
	fs := newRegFlagSet("registry", &f, io.Discard, slices.Collect(maps.Keys(regFlagDefs)))
	fs.Usage = func() {}
	return cliflags.Words(fs, args)
}

// json reports whether the output is JSON.
func (c *regCLI) json() bool { return c.f.output == "json" }

// --- models

func (c *regCLI) modelsCreate(pos []string) error {
	labels, err := keyValues("-label", c.f.labels)
	if err != nil {
		return err
	}
	var m registry.RegisteredModel
	if err := c.api.Call(c.ctx, "POST", "/api/v1/registry/models", registry.ModelCreate{Name: pos[0], Description: c.f.description, Owner: c.f.owner, Labels: labels}, &m); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, m)
	}
	fmt.Fprintf(c.stdout, "model %s registered\n", m.Name)
	return nil
}

func (c *regCLI) modelsList([]string) error {
	q, err := c.listQuery()
	if err != nil {
		return err
	}
	if c.f.name != "" {
		q.Set("name", c.f.name)
	}
	var all []registry.RegisteredModel
	more, err := listAll(c, "/api/v1/registry/models", q, &all)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, nonNilSlice(all))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tOWNER\tLABELS\tCREATED\tDESCRIPTION")
	for _, m := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.State, dash(m.Owner), formatMap(m.Labels), when(m.CreateTime), dash(firstLine(m.Description)))
	}
	c.moreNote(more)
	return tw.Flush()
}

func (c *regCLI) modelsGet(pos []string) error {
	var m registry.RegisteredModel
	if err := c.api.Call(c.ctx, "GET", registryapi.ModelPath(pos[0]), nil, &m); err != nil {
		return err
	}
	var aliases struct{ Items []registry.Alias }
	if err := c.api.Call(c.ctx, "GET", registryapi.ModelPath(pos[0])+"/aliases", nil, &aliases); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, struct {
			registry.RegisteredModel
			Aliases []registry.Alias `json:"aliases"`
		}{m, nonNilSlice(aliases.Items)})
	}
	var as []string
	for _, a := range aliases.Items {
		as = append(as, fmt.Sprintf("%s -> %d", a.Name, a.Version))
	}
	printFields(c.stdout, [][2]string{
		{"Name", m.Name}, {"State", string(m.State)}, {"Owner", m.Owner}, {"Description", m.Description},
		{"Labels", formatMap(m.Labels)}, {"Aliases", strings.Join(as, ", ")},
		{"Created", when(m.CreateTime)}, {"Updated", when(m.UpdateTime)}, {"ETag", m.ETag},
	})
	return nil
}

func (c *regCLI) modelsArchive(pos []string) error {
	var m registry.RegisteredModel
	if err := c.api.Call(c.ctx, "POST", registryapi.ModelPath(pos[0])+"/archive", struct{}{}, &m); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, m)
	}
	fmt.Fprintf(c.stdout, "model %s archived: none of its versions resolves or deploys now\n", m.Name)
	return nil
}

// --- versions

// versionCreate builds a version's registration from the flags.
func (c *regCLI) versionCreate() (registry.VersionCreate, error) {
	v := registry.VersionCreate{Description: c.f.description, Author: c.f.author}
	var err error
	if v.Labels, err = keyValues("-label", c.f.labels); err != nil {
		return v, err
	}
	if v.Params, err = keyValues("-param", c.f.params); err != nil {
		return v, err
	}
	metrics, err := keyValues("-metric", c.f.metrics)
	if err != nil {
		return v, err
	}
	for k, s := range metrics {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return v, fmt.Errorf("-metric %s=%s: want a number", k, s)
		}
		if v.Metrics == nil {
			v.Metrics = map[string]float64{}
		}
		v.Metrics[k] = x
	}
	props, err := keyValues("-property", c.f.properties)
	if err != nil {
		return v, err
	}
	for k, tv := range props {
		val, err := parseProperty(tv)
		if err != nil {
			return v, fmt.Errorf("-property %s=%s: %w", k, tv, err)
		}
		if v.CustomProperties == nil {
			v.CustomProperties = map[string]registry.Value{}
		}
		v.CustomProperties[k] = val
	}
	return v, nil
}

// parseProperty parses TYPE:value.
func parseProperty(tv string) (registry.Value, error) {
	typ, s, ok := strings.Cut(tv, ":")
	if !ok {
		return registry.Value{}, errors.New("want TYPE:value, TYPE string, int, double or bool")
	}
	switch typ {
	case "string":
		return registry.StringValue(s), nil
	case "int":
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return registry.Value{}, fmt.Errorf("%q is not an int", s)
		}
		return registry.IntValue(i), nil
	case "double":
		d, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return registry.Value{}, fmt.Errorf("%q is not a double", s)
		}
		return registry.DoubleValue(d), nil
	case "bool":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return registry.Value{}, fmt.Errorf("%q is not a bool", s)
		}
		return registry.BoolValue(b), nil
	}
	return registry.Value{}, fmt.Errorf("type %q: want string, int, double or bool", typ)
}

func (c *regCLI) versionsCreate(pos []string) error {
	body, err := c.versionCreate()
	if err != nil {
		return err
	}
	var v registry.ModelVersion
	if err := c.api.Call(c.ctx, "POST", registryapi.ModelPath(pos[0])+"/versions", body, &v); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, v)
	}
	fmt.Fprintf(c.stdout, "%s version %d registered: %s (upload its files with: infergate registry upload %s PATH -version %d -ready)\n", v.Model, v.Version, v.Status, v.Model, v.Version)
	return nil
}

func (c *regCLI) versionsList(pos []string) error {
	q, err := c.listQuery()
	if err != nil {
		return err
	}
	if c.f.status != "" {
		q.Set("status", c.f.status)
	}
	q.Set("order", "desc")
	var all []registry.ModelVersion
	more, err := listAll(c, registryapi.ModelPath(pos[0])+"/versions", q, &all)
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, nonNilSlice(all))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATUS\tSTATE\tALIASES\tAUTHOR\tFILES\tDIGEST\tCREATED")
	for _, v := range all {
		status := string(v.Status)
		if v.StatusMessage != "" {
			status += ": " + firstLine(v.StatusMessage)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Version, status, v.State, dash(strings.Join(v.Aliases, ",")), dash(v.Author), len(v.Artifacts), shortDigest(v.Digest), when(v.CreateTime))
	}
	c.moreNote(more)
	return tw.Flush()
}

func (c *regCLI) versionPath(model, n string) (string, error) {
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v < 1 {
		return "", fmt.Errorf("version %q: want a version number (1, 2, ...)", n)
	}
	return registryapi.VersionPath(model, v), nil
}

// versionCall makes one call on a version and shows the answer.
func (c *regCLI) versionCall(method string, pos []string, suffix string, say func(v *registry.ModelVersion)) error {
	p, err := c.versionPath(pos[0], pos[1])
	if err != nil {
		return err
	}
	var body any
	if method == "POST" {
		body = struct{}{}
	}
	var v registry.ModelVersion
	if err := c.api.Call(c.ctx, method, p+suffix, body, &v); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, v)
	}
	say(&v)
	return nil
}

func (c *regCLI) versionsGet(pos []string) error {
	return c.versionCall("GET", pos, "", func(v *registry.ModelVersion) { printVersion(c.stdout, v) })
}

func (c *regCLI) versionsReady(pos []string) error {
	return c.versionCall("POST", pos, "/ready", func(v *registry.ModelVersion) {
		fmt.Fprintf(c.stdout, "%s version %d: %s, digest %s\n", v.Model, v.Version, v.Status, v.Digest)
	})
}

func (c *regCLI) versionsArchive(pos []string) error {
	return c.versionCall("POST", pos, "/archive", func(v *registry.ModelVersion) {
		fmt.Fprintf(c.stdout, "%s version %d archived: it no longer resolves or deploys\n", v.Model, v.Version)
	})
}

// printVersion shows one version and its artifacts.
func printVersion(w io.Writer, v *registry.ModelVersion) {
	status := string(v.Status)
	if v.StatusMessage != "" {
		status += ": " + v.StatusMessage
	}
	source := v.Source.Kind
	for _, s := range []string{v.Source.Name, v.Source.ID, v.Source.Actor} {
		if s != "" {
			source += " " + s
		}
	}
	var props []string
	for _, k := range slices.Sorted(maps.Keys(v.CustomProperties)) {
		b, _ := json.Marshal(v.CustomProperties[k])
		props = append(props, k+"="+string(b))
	}
	metrics := map[string]string{}
	for k, x := range v.Metrics {
		metrics[k] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	printFields(w, [][2]string{
		{"Model", v.Model}, {"Version", strconv.FormatInt(v.Version, 10)}, {"Status", status}, {"State", string(v.State)},
		{"Author", v.Author}, {"Source", source}, {"Description", v.Description}, {"Labels", formatMap(v.Labels)},
		{"Digest", v.Digest}, {"Aliases", strings.Join(v.Aliases, ", ")}, {"Metrics", formatMap(metrics)},
		{"Params", formatMap(v.Params)}, {"Properties", strings.Join(props, ", ")},
		{"Created", when(v.CreateTime)}, {"Updated", when(v.UpdateTime)}, {"ETag", v.ETag},
	})
	fmt.Fprintln(w, "Artifacts:")
	printArtifacts(w, v.Artifacts, "  ")
}

func printArtifacts(w io.Writer, as []registry.Artifact, indent string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%sNAME\tSIZE\tFORMAT\tDIGEST\n", indent)
	for _, a := range as {
		fmt.Fprintf(tw, "%s%s\t%d\t%s\t%s\n", indent, a.Name, a.Size, dash(a.Format), a.Digest)
	}
	tw.Flush()
}

// --- upload

// formatOf is a file's format: -format, else its extension's.
func (c *regCLI) formatOf(name string) string {
	if c.f.format != "" {
		return c.f.format
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".onnx":
		return "onnx"
	case ".pt", ".pth":
		return "pytorch"
	case ".safetensors":
		return "safetensors"
	case ".gguf":
		return "gguf"
	case ".keras":
		return "keras"
	case ".joblib":
		return "joblib"
	}
	return ""
}

// upload sends PATH's files as a version's artifacts (a new version's,
// unless -version), each hashed first and checked by the server, and
// marks the version READY with -ready. A version it registered itself
// and could not fill is marked FAILED with the reason.
func (c *regCLI) upload(pos []string) (err error) {
	model, root := pos[0], pos[1]
	files, err := registryapi.PrepareUploads(root)
	if err != nil {
		return err
	}
	n := c.f.version
	if n < 0 {
		return fmt.Errorf("-version %d: want a version number", n)
	}
	if n == 0 {
		body, cerr := c.versionCreate()
		if cerr != nil {
			return cerr
		}
		var v registry.ModelVersion
		if cerr := c.api.Call(c.ctx, "POST", registryapi.ModelPath(model)+"/versions", body, &v); cerr != nil {
			return cerr
		}
		n = v.Version
		defer func() {
			if err != nil {
				// The reason stays with the version; the upload's error
				// is what the user reads.
				msg, _ := json.Marshal(map[string]string{"message": "upload failed: " + err.Error()})
				_ = c.api.Call(context.WithoutCancel(c.ctx), "POST", registryapi.VersionPath(model, n)+"/failed", json.RawMessage(msg), nil)
				err = fmt.Errorf("version %d (now FAILED): %w", n, err)
			}
		}()
	} else if c.hasVersionFlags() {
		return errors.New("-description, -author, -label, -metric, -param and -property describe a new version: leave out -version, or set them with the API's PATCH")
	}
	vpath := registryapi.VersionPath(model, n)
	var uploaded []registry.Artifact
	for _, f := range files {
		f.Format = c.formatOf(f.Name)
		f.ContentType = mime.TypeByExtension(filepath.Ext(f.Name))
		a, err := c.api.UploadFile(c.ctx, model, n, f)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		uploaded = append(uploaded, *a)
	}
	var v registry.ModelVersion
	if c.f.ready {
		err = c.api.Call(c.ctx, "POST", vpath+"/ready", struct{}{}, &v)
	} else {
		err = c.api.Call(c.ctx, "GET", vpath, nil, &v)
	}
	if err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, v)
	}
	fmt.Fprintf(c.stdout, "uploaded %d file(s) to %s version %d:\n", len(uploaded), model, n)
	printArtifacts(c.stdout, uploaded, "  ")
	if v.Status == registry.StatusReady {
		fmt.Fprintf(c.stdout, "%s version %d: READY, digest %s\n", model, n, v.Digest)
	} else {
		fmt.Fprintf(c.stdout, "%s version %d: %s (mark it READY with: infergate registry versions ready %s %d)\n", model, n, v.Status, model, n)
	}
	return nil
}

func (c *regCLI) hasVersionFlags() bool {
	return c.f.description != "" || c.f.author != "" || len(c.f.labels)+len(c.f.metrics)+len(c.f.params)+len(c.f.properties) > 0
}

// --- aliases and references

func (c *regCLI) aliasesSet(pos []string) error {
	n, err := strconv.ParseInt(pos[2], 10, 64)
	if err != nil || n < 1 {
		return fmt.Errorf("version %q: want a version number (1, 2, ...)", pos[2])
	}
	var a registry.Alias
	body := map[string]any{"version": n, "reason": c.f.reason}
	if err := c.api.Call(c.ctx, "PUT", registryapi.AliasPath(pos[0], pos[1]), body, &a); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, a)
	}
	fmt.Fprintf(c.stdout, "%s@%s -> version %d\n", a.Model, a.Name, a.Version)
	return nil
}

func (c *regCLI) aliasesList(pos []string) error {
	var list struct{ Items []registry.Alias }
	if err := c.api.Call(c.ctx, "GET", registryapi.ModelPath(pos[0])+"/aliases", nil, &list); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, nonNilSlice(list.Items))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALIAS\tVERSION\tUPDATED\tBY")
	for _, a := range list.Items {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", a.Name, a.Version, when(a.UpdateTime), dash(a.Actor))
	}
	return tw.Flush()
}

func (c *regCLI) aliasesHistory(pos []string) error {
	var list struct{ Items []registry.AliasChange }
	q := url.Values{"limit": {strconv.Itoa(min(max(c.f.limit, 1), 1000))}}
	if err := c.api.Call(c.ctx, "GET", registryapi.AliasPath(pos[0], pos[1])+"/history?"+q.Encode(), nil, &list); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, nonNilSlice(list.Items))
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tFROM\tTO\tBY\tREASON")
	v := func(n int64) string {
		if n == 0 {
			return "-"
		}
		return strconv.FormatInt(n, 10)
	}
	for _, h := range list.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", when(h.Time), v(h.From), v(h.To), dash(h.Actor), dash(firstLine(h.Reason)))
	}
	return tw.Flush()
}

func (c *regCLI) aliasesDelete(pos []string) error {
	body := map[string]string{"reason": c.f.reason}
	if err := c.api.Call(c.ctx, "DELETE", registryapi.AliasPath(pos[0], pos[1]), body, nil); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, map[string]string{"model": pos[0], "alias": pos[1], "deleted": "true"})
	}
	fmt.Fprintf(c.stdout, "%s@%s deleted\n", pos[0], pos[1])
	return nil
}

func (c *regCLI) resolve(pos []string) error {
	var v registry.ModelVersion
	if err := c.api.Call(c.ctx, "GET", "/api/v1/registry/resolve?"+url.Values{"ref": {pos[0]}}.Encode(), nil, &v); err != nil {
		return err
	}
	if c.json() {
		return writeIndented(c.stdout, v)
	}
	fmt.Fprintf(c.stdout, "%s -> %s version %d (%s, digest %s)\n", pos[0], v.Model, v.Version, v.Status, v.Digest)
	printArtifacts(c.stdout, v.Artifacts, "  ")
	return nil
}

// --- lists

// listQuery holds the filters every list takes.
func (c *regCLI) listQuery() (url.Values, error) {
	q := url.Values{}
	labels, err := keyValues("-label", c.f.labels)
	if err != nil {
		return nil, err
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		q.Add("label", k+"="+labels[k])
	}
	if c.f.state != "" {
		q.Set("state", c.f.state)
	}
	if c.f.limit < 1 {
		return nil, fmt.Errorf("-limit %d: want 1 or more", c.f.limit)
	}
	return q, nil
}

// listAll reads a paged list until its end or -limit items, and reports
// whether there were more.
func listAll[T any](c *regCLI, path string, q url.Values, out *[]T) (more bool, err error) {
	*out, more, err = registryapi.ListAll[T](c.ctx, c.api, path, q, "items", c.f.limit)
	return more, err
}

func (c *regCLI) moreNote(more bool) {
	if more {
		fmt.Fprintf(c.stderr, "(more than %d: raise -limit to see them)\n", c.f.limit)
	}
}

// --- events

// runEvents runs `infergate events [-f] [-model M] [-kind K] [-since S]`:
// the event log, as a table (or JSON lines with -o json); -f follows the
// live stream, reconnecting where it left off if the connection drops.
func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f regFlags
	fs := newRegFlagSet("events", &f, stderr, []string{"f", "model", "kind", "since", "limit"})
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: infergate events [-f] [-model MODEL] [-kind KIND] [-since ID|TIME|DURATION] [-limit N] [-admin HOST:PORT] [-o table|json]")
		fmt.Fprintln(stderr, "-o json prints one JSON object per event and line.")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("events: unexpected argument %q", pos[0])
	}
	if f.asJSON {
		f.output = "json"
	}
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("events: -o %q: want table or json", f.output)
	}
	api, err := newRegistryClient(f.admin)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	since, err := eventsSince(f.since, f.follow, time.Now())
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	q := url.Values{}
	for k, v := range map[string]string{"since": since, "model": f.model, "kind": f.kind} {
		if v != "" {
			q.Set(k, v)
		}
	}
	p := &eventPrinter{w: stdout, json: f.output == "json"}
	if f.follow {
		err := api.Follow(ctx, q, p.print, func(why error, wait time.Duration) {
			fmt.Fprintf(stderr, "(events: %v; reconnecting in %s)\n", why, wait)
		})
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		return nil
	}
	if f.limit < 1 {
		return fmt.Errorf("events: -limit %d: want 1 or more", f.limit)
	}
	for shown := 0; shown < f.limit; {
		q.Set("limit", strconv.Itoa(min(f.limit-shown, 1000)))
		var page struct {
			Items         []registry.Event
			NextPageToken string
		}
		if err := api.Call(ctx, "GET", "/api/v1/events?"+q.Encode(), nil, &page); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		for _, e := range page.Items {
			p.print(e)
		}
		shown += len(page.Items)
		if page.NextPageToken == "" {
			return nil
		}
		q.Set("since", page.NextPageToken)
		if shown >= f.limit {
			fmt.Fprintf(stderr, "(more events: infergate events -since %s)\n", page.NextPageToken)
		}
	}
	return nil
}

// eventsSince turns -since into the API's since: an id or an RFC 3339
// time as given, a duration as the time that long before now; "" is 24h
// ago, or "" (from now on) when following.
func eventsSince(s string, follow bool, now time.Time) (string, error) {
	if s == "" {
		if follow {
			return "", nil
		}
		s = "24h"
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return s, nil
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return s, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("-since %q: want an event id, an RFC 3339 time (2025-01-02T15:04:05Z) or a duration (1h, 30m)", s)
}

// eventPrinter prints events as aligned lines (a header first) or JSON
// lines, one at a time, so that a followed stream shows each at once.
type eventPrinter struct {
	w      io.Writer
	json   bool
	header bool
}

func (p *eventPrinter) print(e registry.Event) {
	if p.json {
		b, _ := json.Marshal(e)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	const format = "%-19s  %-7s  %-22s  %-16s  %-14s  %s\n"
	if !p.header {
		fmt.Fprintf(p.w, format, "TIME", "ID", "KIND", "MODEL", "BY", "MESSAGE")
		p.header = true
	}
	model := e.Model
	if e.Version != 0 {
		model += "/" + strconv.FormatInt(e.Version, 10)
	}
	fmt.Fprintf(p.w, format, when(e.Time), strconv.FormatInt(e.ID, 10), e.Kind, dash(model), dash(e.Actor), firstLine(e.Message))
}

// newRegistryClient returns a client of the admin port at admin
// (HOST:PORT or a URL) that names the OS user as the actor of changes.
func newRegistryClient(admin string) (*registryapi.Client, error) {
	return registryapi.NewClient(admin, registryapi.ClientOptions{Actor: osUser(), Token: adminKey(admin)})
}

// osUser names the user running the CLI, the actor of the changes it asks
// for.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// --- formatting

func printFields(w io.Writer, fields [][2]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], dash(f[1]))
	}
	tw.Flush()
}

// keyValues parses repeated key=value flags.
func keyValues(flagName string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want key=value", flagName, kv)
		}
		if old, dup := out[k]; dup && old != v {
			return nil, fmt.Errorf("%s: key %q given twice (%q and %q)", flagName, k, old, v)
		}
		out[k] = v
	}
	return out, nil
}

func formatMap(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return dash(strings.Join(parts, ","))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// when shows a time in the local zone, to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// shortDigest shows the first 12 hex digits of a digest.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return dash(d)
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
