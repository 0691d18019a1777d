package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const module = "github.com/infergate/infergate"

// rule says which packages of the module the package at prefix (relative to
// the module, with its sub-packages) may import besides its own
// sub-packages. "*" allows every package but cmd. deny names sub-packages
// of allowed packages that it may not import all the same.
type rule struct {
	prefix string
	allow  []string
	deny   []string
}

// rules is DESIGN.md's import direction. Keep the two in step.
var rules = []rule{
	{"cmd", []string{"*"}, nil},
	{"examples", []string{"*"}, nil},
	{"gateway", []string{"router", "batcher", "autoscaler", "runtimes", "oip", "auth", "internal/keyhash", "internal/tlsconf"}, nil},
	// The control plane decides; it never imports the data plane's
	// request path (the gateway, the activator that holds requests).
	{"controlplane", []string{"registry", "router", "runtimes", "autoscaler", "config", "auth", "internal/jsonhttp"}, []string{"autoscaler/activator"}},
	// serving runs on one machine what the control plane decides: it
	// wires controlplane to the data plane, and only cmd imports it.
	{"serving", []string{"controlplane", "gateway", "router", "batcher", "autoscaler", "runtimes", "oip", "config", "auth", "internal/tlsconf"}, nil},
	// The router picks revisions, not replicas: it shares only the
	// hashing of sticky keys with the pools.
	// Quotas and fair sharing know tenants by name, never how they were
	// authenticated.
	{"gateway/quota", []string{"oip"}, nil},
	// Who is calling: keys, tokens and grants, for the gateway and the
	// admin API alike.
	{"auth", []string{"oip"}, nil},
	// Certificates from files, for every TLS listener and client.
	{"internal/tlsconf", nil, nil},
	{"router", []string{"oip", "internal/keyhash"}, nil},
	{"batcher", []string{"oip"}, nil},
	{"autoscaler", nil, nil},
	{"runtimes", []string{"oip", "internal/keyhash"}, nil},
	{"registry", nil, nil},
	// The registry's API shares the admin port's JSON plumbing with the
	// pipelines' and the tenants'; the registry itself needs none.
	{"registry/registryapi", []string{"registry", "internal/jsonhttp"}, nil},
	// The pipeline engine runs steps as processes and keeps its state in
	// the registry's store; training is the built-in train and evaluate
	// steps, evaluating through the built-in runtime.
	{"pipelines", []string{"registry", "config", "internal/jsonhttp"}, nil},
	{"training", []string{"runtimes", "oip"}, nil},
	// sweep is Katib's job as a step: it runs trials as processes and
	// knows nothing of what they train.
	{"sweep", nil, nil},
	{"bench", []string{"oip", "runtimes"}, nil},
	{"oip", nil, nil},
	{"config", nil, nil},
	{"internal/archtest", nil, nil},
	{"internal/cliflags", nil, nil},
	{"internal/keyhash", nil, nil},
	// What the admin port's JSON APIs share: handlers that return errors,
	// 404/405, strict bodies, the client's calls.
	{"internal/jsonhttp", nil, nil},
	{"internal/testbin", nil, nil}, // builds cmd/infergate as a subprocess; imports nothing of ours
}

// dataPath are the packages that never depend, even transitively, on the
// heavy Kubernetes client packages.
var (
	dataPath = []string{"gateway", "router", "batcher", "runtimes", "oip"}
	heavy    = []string{"k8s.io/client-go", "k8s.io/apimachinery"}
)

// goPackage is the part of `go list -json` output the checks read.
type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func TestImportDirection(t *testing.T) {
	pkgs := goList(t)
	ours := 0
	for _, p := range pkgs {
		if _, ok := relative(p.ImportPath); ok {
			ours++
		}
	}
	if ours == 0 {
		t.Fatalf("go list found no package of %s", module)
	}
	t.Logf("checked %d packages of %s and %d dependencies", ours, module, len(pkgs)-ours)
	for _, v := range checkImports(pkgs) {
		t.Error(v)
	}
	for _, v := range checkHeavyDeps(pkgs) {
		t.Error(v)
	}
}

// goList lists the module's packages and everything they depend on.
func goList(t *testing.T) []goPackage {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	cmd := exec.Command(goCmd, "list", "-e", "-deps", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// relative returns an import path relative to the module, and whether it is
// in the module.
func relative(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

// within reports whether path is prefix or one of its sub-packages.
func within(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// ruleFor returns the rule of the longest prefix that holds rel.
func ruleFor(rel string) (rule, bool) {
	var best rule
	found := false
	for _, r := range rules {
		if within(rel, r.prefix) && (!found || len(r.prefix) > len(best.prefix)) {
			best, found = r, true
		}
	}
	return best, found
}

func (r rule) allows(imp string) bool {
	if within(imp, r.prefix) {
		return true
	}
	if within(imp, "cmd") || r.denies(imp) {
		return false
	}
	for _, a := range r.allow {
		if a == "*" || within(imp, a) {
			return true
		}
	}
	return false
}

func (r rule) denies(imp string) bool {
	return slices.ContainsFunc(r.deny, func(d string) bool { return within(imp, d) })
}

// checkImports returns a message for every import of one of the module's
// packages by another that the rules forbid, and for every package that has
// no rule.
func checkImports(pkgs []goPackage) []string {
	var out []string
	for _, p := range pkgs {
		rel, ok := relative(p.ImportPath)
		if !ok {
			continue
		}
		r, ok := ruleFor(rel)
		if !ok {
			out = append(out, fmt.Sprintf("%s has no import rule: add one to rules in internal/archtest and a line to DESIGN.md", p.ImportPath))
			continue
		}
		for _, imp := range p.Imports {
			irel, ok := relative(imp)
			if !ok || r.allows(irel) {
				continue
			}
			allowed := "nothing else of ours"
			if len(r.allow) > 0 {
				allowed = strings.Join(r.allow, ", ")
			}
			if within(irel, "cmd") {
				allowed = "anything but cmd"
			}
			if r.denies(irel) {
				out = append(out, fmt.Sprintf("%s imports %s: %s may not import %s", p.ImportPath, imp, r.prefix, strings.Join(r.deny, ", ")))
				continue
			}
			out = append(out, fmt.Sprintf("%s imports %s: %s may import %s", p.ImportPath, imp, r.prefix, allowed))
		}
	}
	slices.Sort(out)
	return out
}

// checkHeavyDeps returns a message for every data-path package that
// depends on a heavy package, with the chain of imports that pulls it in.
func checkHeavyDeps(pkgs []goPackage) []string {
	imports := make(map[string][]string, len(pkgs))
	for _, p := range pkgs {
		imports[p.ImportPath] = p.Imports
	}
	var out []string
	for _, p := range pkgs {
		rel, ok := relative(p.ImportPath)
		if !ok || !slices.ContainsFunc(dataPath, func(d string) bool { return within(rel, d) }) {
			continue
		}
		for _, dep := range p.Deps {
			if !slices.ContainsFunc(heavy, func(h string) bool { return within(dep, h) }) {
				continue
			}
			out = append(out, fmt.Sprintf("%s depends on %s, which the data path must not: %s",
				p.ImportPath, dep, strings.Join(chain(imports, p.ImportPath, dep), " -> ")))
			break // One chain per package is enough to act on.
		}
	}
	slices.Sort(out)
	return out
}

// chain returns a shortest import chain from one package to another, or
// just the two when the import graph does not connect them.
func chain(imports map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for p := to; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return path
		}
		for _, next := range imports[cur] {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return []string{from, to}
}

// TestChecksFail proves the checks can fail: synthetic import graphs with
// one forbidden edge each, and what the checks say about them.
func TestChecksFail(t *testing.T) {
	pkg := func(rel string, imports ...string) goPackage {
		p := goPackage{ImportPath: module + "/" + rel}
		for _, i := range imports {
			if strings.Contains(i, ".") { // a domain: not ours
				p.Imports = append(p.Imports, i)
			} else {
				p.Imports = append(p.Imports, module+"/"+i)
			}
		}
		return p
	}
	const m = module + "/"
	tests := []struct {
		name  string
		pkgs  []goPackage
		heavy bool // run checkHeavyDeps rather than checkImports
		want  []string
	}{
		{
			name: "allowed edges",
			pkgs: []goPackage{
				pkg("cmd/infergate", "gateway", "config", "controlplane", "cmd/infergate/internal/flags"),
				pkg("cmd/infergate/internal/flags", "config"),
				pkg("gateway", "router", "batcher", "autoscaler/activator", "runtimes/onnx", "oip/inferencepb", "github.com/valyala/fasthttp"),
				pkg("controlplane", "registry", "router", "runtimes/supervisor", "autoscaler", "config"),
				pkg("serving", "controlplane", "gateway", "autoscaler/activator", "runtimes/supervisor", "batcher", "router", "oip", "config"),
				pkg("serving/servingtest"),
				pkg("router", "internal/keyhash", "oip"),
				pkg("autoscaler/activator", "autoscaler", "autoscaler/metrics"),
				pkg("runtimes/modelserver", "runtimes/onnx", "runtimes", "oip/rest"),
				pkg("oip", "oip/inferencepb"),
				pkg("bench", "oip", "runtimes"),
				pkg("config", "sigs.k8s.io/yaml"),
				pkg("examples/models"),
			},
			want: nil,
		},
		{
			name: "gateway imports config",
			pkgs: []goPackage{pkg("gateway", "router", "config")},
			want: []string{m + "gateway imports " + m + "config: gateway may import router, batcher, autoscaler, runtimes, oip, auth, internal/keyhash, internal/tlsconf"},
		},
		{
			name: "oip imports runtimes",
			pkgs: []goPackage{pkg("oip/rest", "oip", "runtimes")},
			want: []string{m + "oip/rest imports " + m + "runtimes: oip may import nothing else of ours"},
		},
		{
			name: "sub-package follows its parent's rule",
			pkgs: []goPackage{pkg("autoscaler/activator", "router")},
			want: []string{m + "autoscaler/activator imports " + m + "router: autoscaler may import nothing else of ours"},
		},
		{
			name: "runtimes imports router against the arrow",
			pkgs: []goPackage{pkg("runtimes", "router")},
			want: []string{m + "runtimes imports " + m + "router: runtimes may import oip, internal/keyhash"},
		},
		{
			name: "nothing imports cmd",
			pkgs: []goPackage{pkg("controlplane", "cmd/infergate/internal/flags"), pkg("examples/demo", "cmd/infergate")},
			want: []string{
				m + "controlplane imports " + m + "cmd/infergate/internal/flags: controlplane may import anything but cmd",
				m + "examples/demo imports " + m + "cmd/infergate: examples may import anything but cmd",
			},
		},
		{
			name: "controlplane imports the activator",
			pkgs: []goPackage{pkg("controlplane", "autoscaler", "autoscaler/activator")},
			want: []string{m + "controlplane imports " + m + "autoscaler/activator: controlplane may not import autoscaler/activator"},
		},
		{
			name: "only cmd imports serving",
			pkgs: []goPackage{pkg("controlplane", "serving"), pkg("gateway", "serving"), pkg("cmd/infergate", "serving")},
			want: []string{
				m + "controlplane imports " + m + "serving: controlplane may import registry, router, runtimes, autoscaler, config, auth, internal/jsonhttp",
				m + "gateway imports " + m + "serving: gateway may import router, batcher, autoscaler, runtimes, oip, auth, internal/keyhash, internal/tlsconf",
			},
		},
		{
			name: "serving imports registry",
			pkgs: []goPackage{pkg("serving", "controlplane", "registry")},
			want: []string{m + "serving imports " + m + "registry: serving may import controlplane, gateway, router, batcher, autoscaler, runtimes, oip, config, auth, internal/tlsconf"},
		},
		{
			name: "the admin APIs' JSON plumbing imports nothing of ours, and only the APIs import it",
			pkgs: []goPackage{
				pkg("registry/registryapi", "registry", "internal/jsonhttp"),
				pkg("pipelines/pipelinesapi", "pipelines", "registry", "internal/jsonhttp"),
				pkg("controlplane/tenants", "auth", "registry", "internal/jsonhttp"),
				pkg("registry", "internal/jsonhttp"),
				pkg("internal/jsonhttp", "registry"),
			},
			want: []string{
				m + "internal/jsonhttp imports " + m + "registry: internal/jsonhttp may import nothing else of ours",
				m + "registry imports " + m + "internal/jsonhttp: registry may import nothing else of ours",
			},
		},
		{
			name: "package without a rule",
			pkgs: []goPackage{pkg("metrics", "oip")},
			want: []string{m + "metrics has no import rule: add one to rules in internal/archtest and a line to DESIGN.md"},
		},
		{
			name:  "router pulls in client-go through runtimes",
			heavy: true,
			pkgs: []goPackage{
				{ImportPath: m + "router", Imports: []string{m + "runtimes"}, Deps: []string{"k8s.io/client-go/kubernetes", m + "runtimes"}},
				{ImportPath: m + "runtimes", Imports: []string{m + "runtimes/k8s"}, Deps: []string{"k8s.io/client-go/kubernetes", m + "runtimes/k8s"}},
				{ImportPath: m + "runtimes/k8s", Imports: []string{"k8s.io/client-go/kubernetes"}, Deps: []string{"k8s.io/client-go/kubernetes"}},
				{ImportPath: m + "controlplane", Imports: []string{"k8s.io/client-go/kubernetes"}, Deps: []string{"k8s.io/client-go/kubernetes"}},
				{ImportPath: "k8s.io/client-go/kubernetes"},
			},
			want: []string{
				m + "router depends on k8s.io/client-go/kubernetes, which the data path must not: " + m + "router -> " + m + "runtimes -> " + m + "runtimes/k8s -> k8s.io/client-go/kubernetes",
				m + "runtimes depends on k8s.io/client-go/kubernetes, which the data path must not: " + m + "runtimes -> " + m + "runtimes/k8s -> k8s.io/client-go/kubernetes",
				m + "runtimes/k8s depends on k8s.io/client-go/kubernetes, which the data path must not: " + m + "runtimes/k8s -> k8s.io/client-go/kubernetes",
			},
		},
		{
			name:  "oip pulls in apimachinery",
			heavy: true,
			pkgs: []goPackage{
				{ImportPath: m + "oip", Imports: []string{"k8s.io/apimachinery/pkg/types"}, Deps: []string{"k8s.io/apimachinery/pkg/types"}},
			},
			want: []string{m + "oip depends on k8s.io/apimachinery/pkg/types, which the data path must not: " + m + "oip -> k8s.io/apimachinery/pkg/types"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := checkImports
			if tc.heavy {
				check = checkHeavyDeps
			}
			if diff := cmp.Diff(tc.want, check(tc.pkgs)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}
