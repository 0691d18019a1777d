package config

import (
	"fmt"
	"slices"
	"strings"
	"text/template"
	tparse "text/template/parse"
)

// AnnotationCommand is the annotation that has infergate start a runtime of
// the user's choosing for the model, one process per replica, instead of
// its built-in one:
//
//	infergate.io/command: "tritonserver --model-repository={{.ModelDir}} --http-port={{.HTTPPort}} --grpc-port={{.GRPCPort}}"
//
// The value is split into words as a shell would split them, but no shell
// runs: words are separated by unquoted spaces, tabs or newlines; '...'
// keeps everything inside literally; "..." keeps spaces, with \" and \\ as
// the only escapes; a backslash outside quotes keeps the next character;
// and a {{...}} action is never split, whatever it holds. $VAR, |, >, ;,
// globs and the like mean nothing: they reach the program as written. Who
// wants a shell writes one: sh -c 'exec mlserver start {{.ModelDir}}'.
//
// Each word is then a Go text/template, expanded at every start of a
// replica with the fields in CommandFields. The first word is the
// executable, looked up in PATH when it holds no slash. The runtime must
// listen on {{.Host}}:{{.HTTPPort}} (OIP REST) and, if it speaks gRPC, on
// {{.Host}}:{{.GRPCPort}}; protocolVersion (v2 or grpc-v2) chooses which one
// the gateway talks to. With this annotation any modelFormat is accepted and
// storageUri is optional, unless the template uses .ModelDir or .ModelPath.
// It cannot be combined with AnnotationEndpoints.
const AnnotationCommand = "infergate.io/command"

// CommandFields are the fields a command template may use, each documented
// here; the supervisor that expands the template provides exactly these:
//
//	.Model      the model's name (metadata.name)
//	.ModelPath  storageUri as a local path (a model file or directory)
//	.ModelDir   ModelPath if it is a directory, else the directory holding it
//	.HTTPPort   a free loopback port for OIP REST, new at each start
//	.GRPCPort   a free loopback port for OIP gRPC, new at each start
//	.Host       the address to listen on (127.0.0.1)
//	.DataDir    infergate's data directory (serve's -data-dir), absolute
var CommandFields = []string{"Model", "ModelPath", "ModelDir", "HTTPPort", "GRPCPort", "Host", "DataDir"}

// parseCommand reads the infergate.io/command annotation into its words,
// each a checked template. hasStorage says storageUri is set.
func parseCommand(raw string, hasStorage bool, d *docProblems) []string {
	field := annotationField(AnnotationCommand)
	words, msg := splitCommand(raw)
	switch {
	case msg != "":
		d.addf(field, "%s: %s", quote(raw), msg)
		return nil
	case len(words) == 0:
		d.addf(field, "%s names no command", quote(raw))
		return nil
	case words[0] == "":
		d.addf(field, "%s: the executable (first word) is empty", quote(raw))
		return nil
	}
	ok := true
	for _, w := range words {
		used, msg := templateFields(w)
		if msg != "" {
			d.addf(field, "%s: %s", quote(w), msg)
			ok = false
			continue
		}
		for _, f := range used {
			if (f == "ModelDir" || f == "ModelPath") && !hasStorage {
				d.addf(field, "%s uses .%s but %s is not set", quote(w), f, fStorageURI)
				ok = false
			}
		}
	}
	if !ok {
		return nil
	}
	return words
}

// splitCommand splits s into words; see AnnotationCommand for the rules.
// It returns what is wrong instead when s cannot be split.
func splitCommand(s string) ([]string, string) {
	var (
		words  []string
		b      strings.Builder
		inWord bool
	)
	// action copies the {{...}} at s[i:] whole and returns the index
	// after it, or -1 when it is not closed.
	action := func(i int) int {
		end := strings.Index(s[i+2:], "}}")
		if end < 0 {
			return -1
		}
		b.WriteString(s[i : i+2+end+2])
		return i + 2 + end + 2
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			if i = action(i); i < 0 {
				return nil, "unterminated {{ action"
			}
			inWord = true
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, "unterminated single quote"
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 2
			inWord = true
		case c == '"':
			i++
			inWord = true
			for {
				if i >= len(s) {
					return nil, "unterminated double quote"
				}
				if strings.HasPrefix(s[i:], "{{") {
					if i = action(i); i < 0 {
						return nil, "unterminated {{ action"
					}
					continue
				}
				c := s[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					c = s[i+1]
					i++
				}
				b.WriteByte(c)
				i++
			}
		case c == '\\' && i+1 < len(s):
			b.WriteByte(s[i+1])
			i += 2
			inWord = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
			i++
		default:
			b.WriteByte(c)
			i++
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, ""
}

// templateFields parses one word as a template and returns the fields of
// CommandFields it uses, or what is wrong with it: a syntax error or a
// field that is not one of CommandFields.
func templateFields(word string) ([]string, string) {
	t, err := template.New("command").Option("missingkey=error").Parse(word)
	if err != nil {
		msg := err.Error()
		// "template: command:1: unexpected ..." says nothing the quoted
		// word does not.
		if _, rest, ok := strings.Cut(msg, "command:1: "); ok {
			msg = rest
		}
		return nil, msg
	}
	var (
		used []string
		bad  string
	)
	check := func(ident []string) {
		if len(ident) == 0 || bad != "" {
			return
		}
		switch {
		case !slices.Contains(CommandFields, ident[0]):
			bad = fmt.Sprintf("unknown field .%s (known: .%s)", ident[0], strings.Join(CommandFields, ", ."))
		case len(ident) > 1:
			bad = fmt.Sprintf(".%s has no field .%s", ident[0], ident[1])
		case !slices.Contains(used, ident[0]):
			used = append(used, ident[0])
		}
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walkFields(tt.Tree.Root, check)
		}
	}
	if bad != "" {
		return nil, bad
	}
	return used, ""
}

// walkFields calls fn with the identifiers of every field reference in the
// tree under n: .A.B gives [A B], $.A gives [A].
func walkFields(n tparse.Node, fn func([]string)) {
	switch n := n.(type) {
	case *tparse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkFields(c, fn)
		}
	case *tparse.ActionNode:
		walkFields(n.Pipe, fn)
	case *tparse.IfNode:
		walkBranch(&n.BranchNode, fn)
	case *tparse.RangeNode:
		walkBranch(&n.BranchNode, fn)
	case *tparse.WithNode:
		walkBranch(&n.BranchNode, fn)
	case *tparse.TemplateNode:
		walkFields(n.Pipe, fn)
	case *tparse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkFields(c, fn)
		}
	case *tparse.CommandNode:
		for _, a := range n.Args {
			walkFields(a, fn)
		}
	case *tparse.FieldNode:
		fn(n.Ident)
	case *tparse.ChainNode:
		walkFields(n.Node, fn)
	case *tparse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			fn(n.Ident[1:])
		}
	}
}

func walkBranch(b *tparse.BranchNode, fn func([]string)) {
	walkFields(b.Pipe, fn)
	walkFields(b.List, fn)
	walkFields(b.ElseList, fn)
}
