package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/controlplane"
	"github.com/infergate/infergate/internal/jsonhttp"
	"github.com/infergate/infergate/serving"
)

// runApply runs `infergate apply -f FILE|DIR|-`: it sends InferenceService
// documents to a running gateway's admin API, which validates them all
// and applies them together or not at all.
func runApply(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files stringList
	fs.Var(&files, "f", "InferenceService YAML file, directory of *.yaml/*.yml files, or - for stdin (repeatable)")
	admin := adminFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: infergate apply -f FILE|DIR|- [-f ...] [-admin HOST:PORT]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(files) == 0 || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("apply: give the declarations with -f")
	}
	var req controlplane.ApplyRequest
	for _, f := range files {
		got, err := readApplyFiles(f, stdin)
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		req.Files = append(req.Files, got...)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var ch controlplane.Changes
	if err := adminCall(*admin, http.MethodPost, "/api/v1/apply", body, &ch); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	for _, m := range ch.Models {
		fmt.Fprintf(stdout, "inferenceservice/%s %s", m.Model, m.Action)
		if m.Revision != "" {
			fmt.Fprintf(stdout, ": revision %s", m.Revision)
		}
		if m.Pending {
			fmt.Fprintf(stdout, " (pending: it takes its traffic once ready)")
		}
		if len(m.Traffic) > 0 {
			fmt.Fprintf(stdout, "; traffic %s", controlplane.FormatTraffic(m.Traffic))
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// readApplyFiles reads one -f argument: a file, the YAML files of a
// directory in name order (as serve -config reads them), or stdin.
func readApplyFiles(path string, stdin io.Reader) ([]controlplane.ApplyFile, error) {
	if path == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, config.MaxFileBytes+1))
		if err != nil {
			return nil, err
		}
		wd, _ := os.Getwd()
		return []controlplane.ApplyFile{{Source: "stdin", BaseDir: wd, YAML: string(b)}}, nil
	}
	names, err := config.Files(path)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml or *.yml file", path)
	}
	var out []controlplane.ApplyFile
	for _, n := range names {
		b, err := config.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		dir, err := filepath.Abs(filepath.Dir(n))
		if err != nil {
			return nil, err
		}
		out = append(out, controlplane.ApplyFile{Source: n, BaseDir: dir, YAML: string(b)})
	}
	return out, nil
}

// adminFlag registers -admin, the running gateway's admin address that
// the CLI commands talk to.
func adminFlag(fs *flag.FlagSet) *string {
	return fs.String("admin", "127.0.0.1:8090", "the gateway's admin address")
}

// envKey names the environment variable holding the API key (or JWT)
// the CLI sends to the admin port; envKeyFile, a file holding one.
// Without either the CLI sends the local key of a server whose data
// directory is ./data (serving.LocalKeyFile), if it can read it.
const (
	envKey     = "INFERGATE_KEY"
	envKeyFile = "INFERGATE_KEY_FILE"
)

// adminKey is the key the CLI sends to the admin port at admin, "" for
// none. A key from a file (the local key, a server's own) goes only to an
// admin port on this machine, which is the only one that accepts it.
func adminKey(admin string) string {
	if k := os.Getenv(envKey); k != "" {
		return k
	}
	if !loopbackAdmin(admin) {
		return ""
	}
	path := os.Getenv(envKeyFile)
	if path == "" {
		path = filepath.Join(serving.DefaultDataDir, serving.LocalKeyFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// adminCall calls the admin API and decodes a 2xx answer into out; an
// error answer becomes an error with the API's message.
func adminCall(admin, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	base, err := jsonhttp.BaseURL(admin)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	if key := adminKey(admin); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(controlplane.ActorHeader, osUser())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s answered %s", admin, resp.Status)
	}
	return json.Unmarshal(b, out)
}

// loopbackAdmin reports whether an admin address (HOST:PORT or a URL)
// names this machine: localhost or a loopback IP.
func loopbackAdmin(admin string) bool {
	if u, err := url.Parse(admin); err == nil && u.Host != "" {
		admin = u.Host
	}
	host, _, err := net.SplitHostPort(admin)
	if err != nil {
		host = admin
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}
