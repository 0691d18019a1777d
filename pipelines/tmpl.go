package pipelines

import (
	"fmt"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

// The fields a command, env or file template may use; see the package
// documentation.
var tmplFields = []string{"Params", "Inputs", "Outputs", "OutputDir", "StepDir", "Item", "Iteration", "RunID", "Attempt", "Status"}

// tmplScope is what a template may name.
type tmplScope struct {
	params   map[string]ParamSpec
	inputs   map[string]Input
	outputs  map[string]bool // output params and artifacts
	item     bool            // a parallelFor step
	finally  bool
	onlyPrms bool // a file input: .Params only
}

// compileTemplate parses one template and checks the fields it names.
func compileTemplate(name, text string, sc tmplScope) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		// "template: NAME:1: ..." names the field the error names already.
		msg := strings.TrimPrefix(err.Error(), "template: "+name+":")
		return nil, fmt.Errorf("bad template %q: %s", clip(text, 80), msg)
	}
	if len(t.Templates()) > 1 {
		return nil, fmt.Errorf("bad template %q: {{define}} and {{block}} are not supported", clip(text, 80))
	}
	var errs []string
	if t.Tree != nil && t.Tree.Root != nil {
		walkTemplate(t.Tree.Root, true, sc, &errs)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("template %q: %s", clip(text, 80), strings.Join(errs, "; "))
	}
	return t, nil
}

// walkTemplate checks the field references of a template tree whose dot
// is the template's data while root holds.
func walkTemplate(n parse.Node, root bool, sc tmplScope, errs *[]string) {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return
		}
		for _, c := range x.Nodes {
			walkTemplate(c, root, sc, errs)
		}
	case *parse.ActionNode:
		walkTemplate(x.Pipe, root, sc, errs)
	case *parse.PipeNode:
		if x == nil {
			return
		}
		for _, c := range x.Cmds {
			walkTemplate(c, root, sc, errs)
		}
	case *parse.CommandNode:
		for _, a := range x.Args {
			walkTemplate(a, root, sc, errs)
		}
	case *parse.FieldNode:
		if root {
			checkFields(x.Ident, sc, errs)
		}
	case *parse.VariableNode:
		if len(x.Ident) > 1 && x.Ident[0] == "$" {
			checkFields(x.Ident[1:], sc, errs)
		}
	case *parse.ChainNode:
		walkTemplate(x.Node, root, sc, errs)
	case *parse.IfNode:
		walkTemplate(x.Pipe, root, sc, errs)
		walkTemplate(x.List, root, sc, errs)
		walkTemplate(x.ElseList, root, sc, errs)
	case *parse.RangeNode:
		walkTemplate(x.Pipe, root, sc, errs)
		walkTemplate(x.List, false, sc, errs)
		walkTemplate(x.ElseList, root, sc, errs)
	case *parse.WithNode:
		walkTemplate(x.Pipe, root, sc, errs)
		walkTemplate(x.List, false, sc, errs)
		walkTemplate(x.ElseList, root, sc, errs)
	case *parse.TemplateNode:
		*errs = append(*errs, "{{template}} is not supported")
	}
}

// checkFields checks a chain of fields of the template data.
func checkFields(ident []string, sc tmplScope, errs *[]string) {
	if len(ident) == 0 {
		return
	}
	top := ident[0]
	if !slices.Contains(tmplFields, top) {
		*errs = append(*errs, fmt.Sprintf(".%s is not a template field (want one of .%s)", top, strings.Join(tmplFields, ", .")))
		return
	}
	if sc.onlyPrms && top != "Params" {
		*errs = append(*errs, fmt.Sprintf(".%s: a file input may use .Params only", top))
		return
	}
	sub := ""
	if len(ident) > 1 {
		sub = ident[1]
	}
	switch top {
	case "Params":
		if sub != "" {
			if _, ok := sc.params[sub]; !ok {
				*errs = append(*errs, fmt.Sprintf(".Params.%s: no such param%s", sub, suggest(sub, keys(sc.params))))
			}
		}
	case "Inputs":
		if sub != "" {
			if _, ok := sc.inputs[sub]; !ok {
				*errs = append(*errs, fmt.Sprintf(".Inputs.%s: the step has no input %s%s", sub, sub, suggest(sub, keys(sc.inputs))))
			}
		}
	case "Outputs":
		if sub != "" && !sc.outputs[sub] {
			*errs = append(*errs, fmt.Sprintf(".Outputs.%s: the step declares no output %s%s", sub, sub, suggest(sub, keys(sc.outputs))))
		}
	case "Item", "Iteration":
		if !sc.item {
			*errs = append(*errs, fmt.Sprintf(".%s is set only in a parallelFor step", top))
		}
	case "Status":
		if !sc.finally {
			*errs = append(*errs, ".Status (the run's status) is set only in finally steps")
		}
	}
	if top != "Params" && top != "Inputs" && top != "Outputs" && top != "Item" && len(ident) > 1 {
		*errs = append(*errs, fmt.Sprintf(".%s has no field %s", top, ident[1]))
	}
}

// execTemplate renders a template with data.
func execTemplate(t *template.Template, data map[string]any) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		msg := err.Error()
		if i := strings.Index(msg, ": executing "); i >= 0 {
			if j := strings.Index(msg[i+len(": executing "):], ": "); j >= 0 {
				msg = msg[i+len(": executing ")+j+2:]
			}
		}
		return "", fmt.Errorf("template %q: %s", clip(t.Root.String(), 80), msg)
	}
	return b.String(), nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// suggest returns " (did you mean X?)" for the closest of names to s, or
// " (have: a, b)" when none is close.
func suggest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return " (did you mean " + best + "?)"
	}
	if len(names) == 0 {
		return ""
	}
	if len(names) > 10 {
		names = append(names[:10:10], "...")
	}
	return " (have: " + strings.Join(names, ", ") + ")"
}

// editDistance is the Levenshtein distance of short names.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
