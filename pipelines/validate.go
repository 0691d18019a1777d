package pipelines

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"
)

// Bounds of a pipeline.
const (
	// MaxSteps bounds the steps (finally steps included) of a pipeline.
	MaxSteps = 1000
	// MaxItems bounds a parallelFor's items.
	MaxItems = 10000
	// maxRetries bounds retry.limit.
	maxRetries = 100
)

var (
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	stepNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	identRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// refKind is what a reference names.
type refKind uint8

const (
	refParam refKind = iota + 1
	refStep
	refItem
	refRunStatus
)

// ref is a parsed reference: params.NAME, steps.STEP.outputs.NAME, item,
// run.status.
type ref struct {
	kind   refKind
	name   string // the param's or the output's
	step   string
	text   string
	typ    Type // the value's type as the referrer sees it (a list for a fan-in)
	artif  bool // an artifact, or (fan-in) a list of artifacts
	fanIn  bool // from a parallelFor step: a list of its iterations' values
	elemOf Type // a fan-in's element type
}

// compiled is a validated pipeline, ready to run.
type compiled struct {
	steps map[string]*cstep
	// main and final are the steps and finally steps in declaration order.
	main, final []*cstep
}

// cstep is a validated step.
type cstep struct {
	s       *Step
	name    string
	finally bool
	// deps are the steps this one waits for, sorted; depField says which
	// field makes each.
	deps         []string
	depField     map[string]string
	cmd          []*template.Template
	envKeys      []string
	env          map[string]*template.Template
	inputKeys    []string
	inputs       map[string]*cinput
	outParams    map[string]Type
	outFrom      map[string]OutputParam // output params read from a JSON artifact
	outArtifacts []string
	when         exprNode
	whenRefs     []string // steps the condition reads
	items        *ref     // parallelFor items by reference
	itemsLit     []any    // or literal
	parallel     bool
	parallelism  int
	retry        RetryPolicy
	timeout      time.Duration
	cache        bool
}

// inputKind is where an input comes from.
type inputKind uint8

const (
	inRef inputKind = iota + 1
	inValue
	inFile
)

type cinput struct {
	name  string
	kind  inputKind
	ref   ref
	value any
	file  *template.Template
}

// artifact reports an input that is a path (or, fan-in, a list of them).
func (in *cinput) artifact() bool {
	return in.kind == inFile || (in.kind == inRef && in.ref.artif)
}

// Validate checks the whole pipeline (names, references, types, cycles,
// templates, conditions, bounds) and reports every problem it finds (up
// to 20), each an *Error naming the step and the field. A valid pipeline
// is ready for Engine.Submit.
func (pl *Pipeline) Validate() error {
	p := &problems{source: pl.Source}
	c := validate(pl, p)
	if p.len() > 0 {
		return p.err()
	}
	pl.c = c
	return nil
}

func validate(pl *Pipeline, p *problems) *compiled {
	top := at{p: p}
	if pl.APIVersion != APIVersion {
		if pl.APIVersion == "" {
			top.addf("apiVersion", "missing (want %s)", APIVersion)
		} else {
			top.addf("apiVersion", "%q is not %s", pl.APIVersion, APIVersion)
		}
	}
	if pl.Kind != Kind {
		top.addf("kind", "%q is not %s", pl.Kind, Kind)
	}
	if !dnsLabelRE.MatchString(pl.Metadata.Name) {
		top.addf("metadata.name", "%q is not a DNS label (1-63 lowercase letters, digits and '-', starting and ending with a letter or digit)", pl.Metadata.Name)
	}
	for _, name := range keys(pl.Spec.Params) {
		ps := pl.Spec.Params[name]
		f := "spec.params." + name
		if !identRE.MatchString(name) {
			top.addf(f, "%q is not a parameter name (letters, digits and '_', not starting with a digit, at most 63)", name)
		}
		if !ps.Type.param() {
			top.addf(f+".type", "%q is not a parameter type (want string, int, double, bool or list)", ps.Type)
			continue
		}
		if ps.Default != nil {
			v, err := canonical(ps.Default)
			if err == nil {
				_, err = conform(v, ps.Type)
			}
			if err != nil {
				top.addf(f+".default", "type mismatch: %v", err)
			}
		}
	}
	if len(pl.Spec.Steps) == 0 {
		top.addf("spec.steps", "a pipeline has at least one step")
	}
	if n := len(pl.Spec.Steps) + len(pl.Spec.Finally); n > MaxSteps {
		top.addf("spec.steps", "%d steps is more than %d", n, MaxSteps)
		return nil
	}
	c := &compiled{steps: map[string]*cstep{}}
	add := func(list []Step, finally bool) {
		for i := range list {
			s := &list[i]
			cs := &cstep{s: s, name: s.Name, finally: finally}
			a := at{p: p, step: s.Name, finally: finally}
			if s.Name == "" {
				continue // reported by the decoder, or below for Go-built pipelines
			}
			if !stepNameRE.MatchString(s.Name) {
				a.addf("name", "%q is not a step name (1-63 lowercase letters, digits, '_' and '-', starting with a letter)", s.Name)
			}
			if _, dup := c.steps[s.Name]; dup {
				a.addf("name", "duplicate step name %s", s.Name)
				continue
			}
			c.steps[s.Name] = cs
			if finally {
				c.final = append(c.final, cs)
			} else {
				c.main = append(c.main, cs)
			}
		}
	}
	add(pl.Spec.Steps, false)
	add(pl.Spec.Finally, true)
	for _, list := range [][]Step{pl.Spec.Steps, pl.Spec.Finally} {
		for i := range list {
			if list[i].Name == "" && p.len() == 0 {
				top.addf(fmt.Sprintf("spec.steps[%d].name", i), "missing")
			}
		}
	}
	// Output types first: references need them.
	for _, cs := range c.all() {
		checkOutputs(cs, at{p: p, step: cs.name, finally: cs.finally})
	}
	for _, cs := range c.all() {
		checkStep(pl, c, cs, at{p: p, step: cs.name, finally: cs.finally})
	}
	if p.len() == 0 {
		checkCycles(c, p)
	}
	return c
}

// all returns the steps then the finally steps.
func (c *compiled) all() []*cstep { return append(slices.Clip(c.main), c.final...) }

func checkOutputs(cs *cstep, a at) {
	s := cs.s
	cs.outParams = map[string]Type{}
	for _, name := range keys(s.Outputs.Params) {
		f := "outputs.params." + name
		if !identRE.MatchString(name) {
			a.addf(f, "%q is not an output name (letters, digits and '_', not starting with a digit)", name)
		}
		t := s.Outputs.Params[name].Type
		if !t.param() {
			a.addf(f+".type", "%q is not a parameter type (want string, int, double, bool or list)", t)
			continue
		}
		cs.outParams[name] = t
		if op := s.Outputs.Params[name]; op.Artifact != "" {
			if cs.outFrom == nil {
				cs.outFrom = map[string]OutputParam{}
			}
			cs.outFrom[name] = op
		}
	}
	seen := map[string]bool{}
	for i, name := range s.Outputs.Artifacts {
		f := fmt.Sprintf("outputs.artifacts[%d]", i)
		switch {
		case !identRE.MatchString(name):
			a.addf(f, "%q is not an output name (letters, digits and '_', not starting with a digit)", name)
		case seen[name]:
			a.addf(f, "duplicate artifact %s", name)
		case cs.outParams[name] != "":
			a.addf(f, "%s is declared both as a parameter and as an artifact", name)
		default:
			seen[name] = true
			cs.outArtifacts = append(cs.outArtifacts, name)
		}
	}
	// Output params read from a JSON artifact name one of the step's.
	for _, name := range keys(s.Outputs.Params) {
		op := s.Outputs.Params[name]
		f := "outputs.params." + name
		switch {
		case op.Artifact == "" && op.Key == "":
		case op.Artifact == "":
			a.addf(f+".key", "a key needs the artifact that holds it (artifact: NAME)")
		case !seen[op.Artifact]:
			a.addf(f+".artifact", "the step declares no output artifact %s%s", op.Artifact, suggest(op.Artifact, s.Outputs.Artifacts))
		case op.Key == "" || slices.Contains(strings.Split(op.Key, "."), ""):
			a.addf(f+".key", "%q is not a key (want a name, or names joined by dots for nested objects)", op.Key)
		}
	}
}

// resolveRef parses and checks a reference made by step cs.
func resolveRef(pl *Pipeline, c *compiled, cs *cstep, text string) (ref, error) {
	r := ref{text: text}
	parts := strings.Split(text, ".")
	switch {
	case len(parts) == 2 && parts[0] == "params":
		ps, ok := pl.Spec.Params[parts[1]]
		if !ok {
			return r, fmt.Errorf("no param %s%s", parts[1], suggest(parts[1], keys(pl.Spec.Params)))
		}
		r.kind, r.name, r.typ = refParam, parts[1], ps.Type
		return r, nil
	case len(parts) == 4 && parts[0] == "steps" && parts[2] == "outputs":
		up, ok := c.steps[parts[1]]
		switch {
		case !ok:
			return r, fmt.Errorf("no step %s%s", parts[1], suggest(parts[1], keys(c.steps)))
		case up == cs:
			return r, fmt.Errorf("a step cannot use its own outputs")
		case up.finally && !cs.finally:
			return r, fmt.Errorf("step %s is a finally step: only finally steps may use its outputs", up.name)
		}
		r.kind, r.step, r.name = refStep, up.name, parts[3]
		if t, ok := up.outParams[parts[3]]; ok {
			r.typ = t
		} else if slices.Contains(up.outArtifacts, parts[3]) {
			r.typ, r.artif = TypeArtifact, true
		} else {
			return r, fmt.Errorf("step %s declares no output %s%s", up.name, parts[3], suggest(parts[3], append(keys(up.outParams), up.outArtifacts...)))
		}
		if up.s.ParallelFor != nil {
			r.fanIn, r.elemOf, r.typ = true, r.typ, TypeList
		}
		return r, nil
	case len(parts) == 1 && parts[0] == "item":
		if cs.s.ParallelFor == nil {
			return r, fmt.Errorf("item is set only in a parallelFor step")
		}
		r.kind = refItem
		r.typ = itemType(pl, c, cs)
		return r, nil
	case len(parts) == 2 && parts[0] == "run" && parts[1] == "status":
		if !cs.finally {
			return r, fmt.Errorf("run.status is known only to finally steps")
		}
		r.kind, r.typ = refRunStatus, TypeString
		return r, nil
	}
	return r, fmt.Errorf("%q is not a reference (want params.NAME, steps.STEP.outputs.NAME or item)", text)
}

// itemType is the static type of a parallelFor's items when all are of
// one parameter type, else "" (unknown until run).
func itemType(pl *Pipeline, c *compiled, cs *cstep) Type {
	switch it := cs.s.ParallelFor.Items.(type) {
	case []any:
		var t Type
		for i, e := range it {
			et := typeOfValue(e)
			if i == 0 {
				t = et
			} else if et != t && !((et == TypeInt || et == TypeDouble) && (t == TypeInt || t == TypeDouble)) {
				return ""
			} else if et == TypeDouble {
				t = TypeDouble
			}
		}
		return t
	case string:
		parts := strings.Split(it, ".")
		if len(parts) == 4 && parts[0] == "steps" {
			if up, ok := c.steps[parts[1]]; ok {
				if up.s.ParallelFor != nil {
					return up.outParams[parts[3]] // a fan-in: the element type
				}
			}
		}
	}
	return ""
}

func checkStep(pl *Pipeline, c *compiled, cs *cstep, a at) {
	s := cs.s
	deps := map[string]string{} // step -> the field that makes the dependency
	dep := func(step, field string) {
		if _, ok := deps[step]; !ok {
			deps[step] = field
		}
	}
	// inputs
	cs.inputs = map[string]*cinput{}
	for _, name := range keys(s.Inputs) {
		in := s.Inputs[name]
		f := "inputs." + name
		if !identRE.MatchString(name) {
			a.addf(f, "%q is not an input name (letters, digits and '_', not starting with a digit)", name)
			continue
		}
		ci := &cinput{name: name}
		n := 0
		if in.From != "" {
			n++
		}
		if in.Value != nil {
			n++
		}
		if in.File != "" {
			n++
		}
		if n != 1 {
			a.addf(f, "want exactly one of from, value and file")
			continue
		}
		if in.Type != "" && !in.Type.param() && in.Type != TypeArtifact {
			a.addf(f+".type", "%q is not an input type (want string, int, double, bool, list or artifact)", in.Type)
			continue
		}
		switch {
		case in.From != "":
			r, err := resolveRef(pl, c, cs, in.From)
			if err != nil {
				a.addf(f+".from", "%v", err)
				continue
			}
			if r.kind == refRunStatus {
				a.addf(f+".from", "run.status is not an input (use {{.Status}} or INFERGATE_RUN_STATUS)")
				continue
			}
			if in.Type != "" && r.typ != "" && in.Type != r.typ && !(in.Type == TypeDouble && r.typ == TypeInt) {
				what := "a " + string(r.typ)
				if r.typ == TypeArtifact {
					what = "an artifact"
				} else if r.fanIn && r.artif {
					what = "a list of artifacts (paths)"
				}
				a.addf(f+".type", "type mismatch: %s is %s, the input says %s", in.From, what, in.Type)
				continue
			}
			ci.kind, ci.ref = inRef, r
			if r.kind == refStep {
				dep(r.step, f+".from")
			}
		case in.Value != nil:
			v, err := canonical(in.Value)
			if err == nil && typeOfValue(v) == "" {
				err = fmt.Errorf("want a string, number, bool or list, got %s", describe(v))
			}
			if err == nil && in.Type != "" {
				if in.Type == TypeArtifact {
					err = fmt.Errorf("a value is not an artifact (use file)")
				} else {
					v, err = conform(v, in.Type)
				}
			}
			if err != nil {
				a.addf(f+".value", "type mismatch: %v", err)
				continue
			}
			ci.kind, ci.value = inValue, v
		default:
			if in.Type != "" && in.Type != TypeArtifact {
				a.addf(f+".type", "type mismatch: a file is an artifact, the input says %s", in.Type)
				continue
			}
			t, err := compileTemplate(f+".file", in.File, tmplScope{params: pl.Spec.Params, onlyPrms: true})
			if err != nil {
				a.addf(f+".file", "%v", err)
				continue
			}
			ci.kind, ci.file = inFile, t
		}
		cs.inputs[name] = ci
		cs.inputKeys = append(cs.inputKeys, name)
	}
	// command and env
	outs := map[string]bool{}
	for n := range cs.outParams {
		outs[n] = true
	}
	for _, n := range cs.outArtifacts {
		outs[n] = true
	}
	sc := tmplScope{params: pl.Spec.Params, inputs: s.Inputs, outputs: outs, item: s.ParallelFor != nil, finally: cs.finally}
	if len(s.Command) == 0 {
		a.addf("command", "missing: a step runs a command (a list: program and arguments)")
	}
	for i, w := range s.Command {
		f := fmt.Sprintf("command[%d]", i)
		t, err := compileTemplate(f, w, sc)
		if err != nil {
			a.addf(f, "%v", err)
			continue
		}
		cs.cmd = append(cs.cmd, t)
	}
	if len(s.Command) > 0 && s.Command[0] == "" {
		a.addf("command[0]", "the program is empty")
	}
	cs.env = map[string]*template.Template{}
	for _, k := range keys(s.Env) {
		f := "env." + k
		switch {
		case !envNameRE.MatchString(k):
			a.addf(f, "%q is not an environment variable name", k)
			continue
		case strings.HasPrefix(k, "INFERGATE_"):
			a.addf(f, "INFERGATE_ variables are set by the engine")
			continue
		}
		t, err := compileTemplate(f, s.Env[k], sc)
		if err != nil {
			a.addf(f, "%v", err)
			continue
		}
		cs.env[k] = t
		cs.envKeys = append(cs.envKeys, k)
	}
	// dependsOn
	for i, d := range s.DependsOn {
		f := fmt.Sprintf("dependsOn[%d]", i)
		up, ok := c.steps[d]
		switch {
		case !ok:
			a.addf(f, "no step %s%s", d, suggest(d, keys(c.steps)))
		case up == cs:
			a.addf(f, "a step cannot depend on itself")
		case up.finally && !cs.finally:
			a.addf(f, "step %s is a finally step: a step cannot depend on it (finally steps run after every step)", d)
		default:
			dep(d, f)
		}
	}
	// when
	if s.When != "" {
		n, err := parseExpr(s.When)
		if err != nil {
			a.addf("when", "bad condition %q: %v", clip(s.When, 80), err)
		} else {
			var refs []string
			t, err := checkExpr(n, func(path []string) (Type, error) {
				r, err := resolveRef(pl, c, cs, strings.Join(path, "."))
				if err != nil {
					return "", err
				}
				if r.kind == refItem {
					return "", fmt.Errorf("a condition is the step's, not an iteration's: it cannot use item")
				}
				if r.artif {
					return "", fmt.Errorf("an artifact is a file, not a value to compare")
				}
				if r.kind == refStep {
					refs = append(refs, r.step)
				}
				return r.typ, nil
			})
			switch {
			case err != nil:
				a.addf("when", "%q: %v", clip(s.When, 80), err)
			case t != TypeBool:
				a.addf("when", "%q: type mismatch: the condition is a %s, want a bool", clip(s.When, 80), t)
			default:
				cs.when = n
				for _, r := range refs {
					dep(r, "when")
				}
				slices.Sort(refs)
				cs.whenRefs = slices.Compact(refs)
			}
		}
	}
	// retry and timeout
	if r := s.Retry; r != nil {
		if r.Limit < 0 || r.Limit > maxRetries {
			a.addf("retry.limit", "%d is not within 0-%d", r.Limit, maxRetries)
		}
		if r.Backoff < 0 {
			a.addf("retry.backoff", "%s is negative", time.Duration(r.Backoff))
		}
		if r.Factor != 0 && (r.Factor < 1 || r.Factor > 100) {
			a.addf("retry.factor", "%g is not within 1-100", r.Factor)
		}
		if r.MaxBackoff < 0 {
			a.addf("retry.maxBackoff", "%s is negative", time.Duration(r.MaxBackoff))
		}
		cs.retry = *r
		if cs.retry.Backoff == 0 {
			cs.retry.Backoff = Duration(time.Second)
		}
		if cs.retry.Factor == 0 {
			cs.retry.Factor = 2
		}
		if cs.retry.MaxBackoff == 0 {
			cs.retry.MaxBackoff = Duration(time.Minute)
		}
		if cs.retry.MaxBackoff < cs.retry.Backoff {
			a.addf("retry.maxBackoff", "%s is less than backoff %s", time.Duration(cs.retry.MaxBackoff), time.Duration(cs.retry.Backoff))
		}
	}
	if s.Timeout < 0 {
		a.addf("timeout", "%s is negative", time.Duration(s.Timeout))
	}
	cs.timeout = time.Duration(s.Timeout)
	// parallelFor
	if pf := s.ParallelFor; pf != nil {
		cs.parallel = true
		if pf.Parallelism < 0 {
			a.addf("parallelFor.parallelism", "%d is negative", pf.Parallelism)
		}
		cs.parallelism = pf.Parallelism
		switch it := pf.Items.(type) {
		case string:
			r, err := resolveRef(pl, c, cs, it)
			switch {
			case err != nil:
				a.addf("parallelFor.items", "%v", err)
			case r.kind == refItem || r.kind == refRunStatus:
				a.addf("parallelFor.items", "%s is not a list", it)
			case r.typ != TypeList || r.artif:
				a.addf("parallelFor.items", "type mismatch: %s is a %s, want a list", it, r.typ)
			default:
				cs.items = &r
				if r.kind == refStep {
					dep(r.step, "parallelFor.items")
				}
			}
		case []any:
			if len(it) > MaxItems {
				a.addf("parallelFor.items", "%d items is more than %d", len(it), MaxItems)
			}
			v, err := canonical(it)
			if err != nil {
				a.addf("parallelFor.items", "%v", err)
			} else {
				cs.itemsLit = v.([]any)
			}
		default:
			a.addf("parallelFor.items", "want a reference to a list (params.NAME, steps.STEP.outputs.NAME) or a list, got %s", describe(it))
		}
	}
	cs.cache = s.Cache == nil || *s.Cache
	cs.deps = keys(deps)
	cs.depField = deps
}

// checkCycles reports each dependency cycle once, naming its steps.
func checkCycles(c *compiled, p *problems) {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		cs := c.steps[n]
		for _, d := range cs.deps {
			switch color[d] {
			case grey:
				i := slices.Index(stack, d)
				cycle := append(slices.Clone(stack[i:]), d)
				at{p: p, step: n, finally: cs.finally}.addf(cs.depField[d], "dependency cycle: %s", strings.Join(cycle, " → "))
				return true
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, cs := range c.all() {
		if color[cs.name] == white {
			stack = stack[:0]
			if visit(cs.name) {
				// One cycle is enough to fix at a time; more may follow.
				return
			}
		}
	}
}
