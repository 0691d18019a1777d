package controlplane

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/config"
)

// configApplier records the models of each Apply (prune must be set) and
// fails with err.
type configApplier struct {
	t   *testing.T
	err error

	mu      sync.Mutex
	applied [][]string
}

func (a *configApplier) Apply(models []config.Model, prune bool) (Changes, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !prune {
		a.t.Errorf("Apply without prune: the config is the whole state")
	}
	var names []string
	var ch Changes
	for _, m := range models {
		names = append(names, m.Name+"@"+m.Spec.Spec.Predictor.Model.StorageURI)
		ch.Models = append(ch.Models, ModelChange{Model: m.Name, Action: ActionCreated})
	}
	a.applied = append(a.applied, names)
	if a.err != nil {
		return Changes{}, a.err
	}
	return ch, nil
}

func (a *configApplier) take() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.applied
	a.applied = nil
	return out
}

// syncBuffer is a log sink the watcher writes from its goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// TestWatchConfig runs the watcher in a bubble of fake time: a change to
// the file is applied at the next look, a bad file is logged once and not
// applied, Reload re-reads at once, and an Applier's refusal is logged.
func TestWatchConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "models.yaml")
		// Each write changes the file's size: its modification time may
		// not move between two writes close together (the kernel's coarse
		// clock).
		write := func(storage string) {
			t.Helper()
			if err := os.WriteFile(path, []byte(isvcYAML("iris", storage)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("./v1")
		a := &configApplier{t: t}
		logs := &syncBuffer{}
		reload := make(chan os.Signal, 1)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- WatchConfig(ctx, ConfigWatchOptions{
				Path: path, Last: ConfigFingerprint(path), Applier: a, Reload: reload,
				Logger: slog.New(slog.NewTextHandler(logs, nil)),
			})
		}()
		// look lets a second pass, so that the watcher looks once, and
		// returns what it applied and logged.
		look := func() ([][]string, string) {
			time.Sleep(DefaultConfigInterval)
			synctest.Wait()
			return a.take(), logs.take()
		}
		check := func(what string, want [][]string, wantLog string) {
			t.Helper()
			got, log := look()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: applied (-want +got):\n%s", what, diff)
			}
			if (wantLog == "") != (log == "") || !strings.Contains(log, wantLog) {
				t.Errorf("%s: logged %q, want %q", what, log, wantLog)
			}
		}

		check("the file as it was read", nil, "")
		write("./v22")
		check("a change", [][]string{{"iris@./v22"}}, `msg="config applied" model=iris action=created`)
		check("no change since", nil, "")

		if err := os.WriteFile(path, []byte("kind: [nope"), 0o644); err != nil {
			t.Fatal(err)
		}
		check("a bad file", nil, `msg="config not applied; the running routes stay"`)
		check("the same bad file", nil, "")

		// Reload re-reads even though nothing changed.
		reload <- syscall.SIGHUP
		synctest.Wait()
		if got, log := a.take(), logs.take(); len(got) != 0 || !strings.Contains(log, "config not applied") {
			t.Errorf("reload of the bad file: applied %v, logged %q", got, log)
		}
		write("./v333")
		reload <- syscall.SIGHUP
		synctest.Wait()
		if diff := cmp.Diff([][]string{{"iris@./v333"}}, a.take()); diff != "" {
			t.Errorf("reload of a good file: applied (-want +got):\n%s", diff)
		}
		logs.take()

		a.err = errors.New("models.yaml#1: storageUri: ./v4444 does not exist")
		write("./v4444")
		check("a file the applier refuses", [][]string{{"iris@./v4444"}}, "./v4444 does not exist")

		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchConfig returned %v at the end of its context, want nil", err)
		}
	})
}

// TestWatchConfigAppliesAChangeMadeWhileReading: with the fingerprint
// taken before the declarations were read, a change made meanwhile is
// applied at the first look.
func TestWatchConfigAppliesAChangeMadeWhileReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "models.yaml")
		if err := os.WriteFile(path, []byte(isvcYAML("iris", "./v1")), 0o644); err != nil {
			t.Fatal(err)
		}
		last := ConfigFingerprint(path)
		if err := os.WriteFile(path, []byte(isvcYAML("iris", "./v1-while-read")), 0o644); err != nil {
			t.Fatal(err)
		}
		a := &configApplier{t: t}
		go WatchConfig(t.Context(), ConfigWatchOptions{Path: path, Last: last, Applier: a, Logger: slog.New(slog.DiscardHandler)})
		time.Sleep(DefaultConfigInterval)
		synctest.Wait()
		if diff := cmp.Diff([][]string{{"iris@./v1-while-read"}}, a.take()); diff != "" {
			t.Errorf("applied (-want +got):\n%s", diff)
		}
	})
}

func TestWatchConfigOptions(t *testing.T) {
	a := &configApplier{t: t}
	for _, tc := range []struct {
		name string
		opts ConfigWatchOptions
		want string
	}{
		{"no path", ConfigWatchOptions{Applier: a}, "Path"},
		{"no applier", ConfigWatchOptions{Path: "x.yaml"}, "Applier"},
		{"negative interval", ConfigWatchOptions{Path: "x.yaml", Applier: a, Interval: -time.Second}, "Interval"},
	} {
		if err := WatchConfig(t.Context(), tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

// TestConfigFingerprint: the fingerprint of a directory changes when a
// file of it changes, is added or goes, and not otherwise.
func TestConfigFingerprint(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	if err := os.WriteFile(a, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := ConfigFingerprint(dir)
	if again := ConfigFingerprint(dir); again != fp {
		t.Fatalf("fingerprint changed with nothing changed:\n%s\n%s", fp, again)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"a file grows", func() error { return os.WriteFile(a, []byte("xy"), 0o644) }},
		{"a file is added", func() error { return os.WriteFile(filepath.Join(dir, "b.yml"), []byte("y"), 0o644) }},
		{"a file goes", func() error { return os.Remove(a) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		next := ConfigFingerprint(dir)
		if next == fp {
			t.Errorf("%s: fingerprint unchanged", s.name)
		}
		fp = next
	}
	if ConfigFingerprint(filepath.Join(dir, "missing")) != "" {
		t.Errorf("a missing path has a fingerprint")
	}
}
