package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/registry"
)

// waitLimit bounds every wait of a test on the engine: generous, since
// the machine is shared; no test asserts a duration.
const waitLimit = 60 * time.Second

type testEnv struct {
	t   *testing.T
	dir string
	reg *registry.Registry
	e   *Engine
}

// newTestEnv opens a registry and an engine in a fresh directory; the
// engine and registry are closed at the end of the test.
func newTestEnv(t *testing.T, mod func(*Options)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: dir, Store: testStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	te := &testEnv{t: t, dir: dir, reg: reg}
	if _, d := reg.DB(); d != "sqlite" {
		t.Logf("store: %s", d)
	}
	opts := Options{Registry: reg, DataDir: dir, KillGrace: 2 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	te.e, err = Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		te.e.Close()
		reg.Close()
	})
	return te
}

func mustParse(t testing.TB, yaml string) *Pipeline {
	t.Helper()
	p, err := ParseSource(t.Name()+".yaml", []byte(yaml), "")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

// run submits p and waits for the run to end.
func (te *testEnv) run(p *Pipeline, params map[string]string, o SubmitOptions) *Run {
	te.t.Helper()
	id, err := te.e.Submit(te.t.Context(), p, params, o)
	if err != nil {
		te.t.Fatalf("submit: %v", err)
	}
	return te.wait(id)
}

func (te *testEnv) wait(id RunID) *Run {
	te.t.Helper()
	ctx, cancel := context.WithTimeout(te.t.Context(), waitLimit)
	defer cancel()
	run, err := te.e.Wait(ctx, id)
	if err != nil {
		te.t.Fatalf("wait %s: %v", id, err)
	}
	return run
}

// step returns a run's step by name.
func step(t testing.TB, run *Run, name string) StepRun {
	t.Helper()
	for _, s := range run.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("run %s has no step %s", run.ID, name)
	return StepRun{}
}

// wantSteps checks each named step's state and reason, given as
// "STATE REASON" ("succeeded " for no reason).
func wantSteps(t testing.TB, run *Run, want map[string]string) {
	t.Helper()
	for name, w := range want {
		s := step(t, run, name)
		if got := string(s.State) + " " + s.Reason; got != w {
			t.Errorf("step %s: %q, want %q", name, got, w)
		}
	}
}

// describeRun prints a run's steps for a failure message.
func describeRun(run *Run) string {
	var b strings.Builder
	b.WriteString(string(run.ID) + " " + string(run.State) + ": " + run.Reason + "\n")
	for _, s := range run.Steps {
		b.WriteString("  " + s.Name + " " + string(s.State) + ": " + s.Reason + "\n")
		for _, it := range s.Iterations {
			b.WriteString("    [" + string(rune('0'+it.Iteration%10)) + "] " + string(it.State) + ": " + it.Reason + "\n")
		}
	}
	return b.String()
}

func wantState(t testing.TB, run *Run, want RunState) {
	t.Helper()
	if run.State != want {
		t.Fatalf("run state %s, want %s\n%s", run.State, want, describeRun(run))
	}
}

// waitFor polls cond (a store read) until it holds: for states of
// another process or of the store, which signal nothing to a test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventuallyGone waits (bounded) for a process that was sent SIGKILL to
// be gone: the signal is delivered, not waited for.
func eventuallyGone(pid int) bool {
	deadline := time.Now().Add(waitLimit)
	for !gone(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// gone reports whether a process has exited (a zombie counts as gone: it
// runs nothing, and our test process is not its parent to reap it).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// fakeClock is a Clock whose timers fire when the test says: it records
// each timer's duration, so a test can check the backoffs asked for
// without waiting for them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan time.Duration
}

type fakeTimer struct {
	d       time.Duration
	ch      chan time.Time
	stopped bool
	fired   bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), added: make(chan time.Duration, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{d: d, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.added <- d
	return t.ch, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped && !t.fired
		t.stopped = true
		return was
	}
}

// fire advances the clock by d and fires every live timer of exactly
// duration d; it returns how many fired.
func (c *fakeClock) fire(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.fired && t.d == d {
			t.fired = true
			t.ch <- c.now
			n++
		}
	}
	return n
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// pgDSN, while TestPostgres runs, names the PostgreSQL database the
// engine tests run on (a fresh schema each); "" is SQLite.
var pgDSN string

// testStore returns the registry store of a test: SQLite in its data
// directory, or a fresh schema of pgDSN.
func testStore(t *testing.T) string {
	t.Helper()
	if pgDSN == "" {
		return ""
	}
	schema := fmt.Sprintf("pipelines_test_%d", time.Now().UnixNano())
	reg, err := registry.Open(t.Context(), registry.Options{DataDir: t.TempDir(), Store: pgDSN})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if err := reg.Update(t.Context(), func(ctx context.Context, tx *registry.Tx) error {
		_, err := tx.ExecContext(ctx, "CREATE SCHEMA "+schema)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(pgDSN, "?") {
		sep = "&"
	}
	return pgDSN + sep + "search_path=" + schema
}
