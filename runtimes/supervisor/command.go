package supervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"text/template"
)

// Vars are what a command template sees at each start of a replica. The
// names are config.CommandFields; a test in cmd/infergate keeps the two in
// step.
type Vars struct {
	// Model is the model's name.
	Model string
	// ModelPath is Options.ModelPath: a model file or directory.
	ModelPath string
	// ModelDir is ModelPath when it is a directory (or does not exist),
	// else the directory holding it.
	ModelDir string
	// HTTPPort and GRPCPort are loopback ports that were free a moment
	// before the start, chosen anew at each start.
	HTTPPort int
	GRPCPort int
	// Host is the address to listen on (Options.Host).
	Host string
	// DataDir is Options.DataDir, absolute.
	DataDir string
}

// VarNames returns the names of Vars' fields, the fields a command template
// may use.
func VarNames() []string {
	t := reflect.TypeFor[Vars]()
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Name
	}
	return names
}

// command is a parsed command template: argv, each word a template.
type command struct {
	words []*template.Template
}

// parseCommand parses words (see Options.Command). A word that does not
// parse, or uses a field Vars does not have, is an error.
func parseCommand(words []string) (*command, error) {
	if len(words) == 0 {
		return nil, errors.New("supervisor: command is empty")
	}
	c := &command{}
	probe := Vars{Model: "m", ModelPath: "/m", ModelDir: "/m", HTTPPort: 1, GRPCPort: 2, Host: "127.0.0.1", DataDir: "/d"}
	for i, w := range words {
		t, err := template.New(fmt.Sprintf("word %d", i)).Option("missingkey=error").Parse(w)
		if err != nil {
			return nil, fmt.Errorf("supervisor: command word %d %q: %w", i, w, err)
		}
		// Executing once against sample values finds a field Vars lacks
		// now rather than at the first start.
		if err := t.Execute(new(strings.Builder), probe); err != nil {
			return nil, fmt.Errorf("supervisor: command word %d %q: %w", i, w, err)
		}
		c.words = append(c.words, t)
	}
	return c, nil
}

// expand returns the executable and its arguments for v.
func (c *command) expand(v Vars) (string, []string, error) {
	argv := make([]string, len(c.words))
	for i, t := range c.words {
		var b strings.Builder
		if err := t.Execute(&b, v); err != nil {
			return "", nil, fmt.Errorf("supervisor: expanding the command: %w", err)
		}
		argv[i] = b.String()
	}
	if argv[0] == "" {
		return "", nil, errors.New("supervisor: the command's executable expands to nothing")
	}
	return argv[0], argv[1:], nil
}

// modelDir returns path when it is a directory or cannot be seen, else the
// directory holding it.
func modelDir(path string) string {
	if path == "" {
		return ""
	}
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return filepath.Dir(path)
	}
	return path
}

// freePorts returns n distinct ports on host that were free a moment ago.
// They are held open together, so they differ, and closed before return:
// another process may take one before the runtime binds it. A runtime that
// loses that race exits, and its restart gets new ports.
func freePorts(host string, n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("supervisor: free port on %s: %w", host, err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
