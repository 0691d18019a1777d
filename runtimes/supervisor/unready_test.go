package supervisor_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/infergate/infergate/runtimes/supervisor"
)

// fakeControl moves the fake runtime at addr to state (see fakeRuntime).
func fakeControl(t *testing.T, addr, state string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/test/"+state, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /test/%s: %s", state, resp.Status)
	}
}

// unreadyProbes returns how many probes the fake runtime at addr found it
// not ready or hung.
func unreadyProbes(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/test/unready-probes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("unready probes %q: %v", b, err)
	}
	return n
}

// counter returns the counter name's value for model, 0 if none.
func counter(t *testing.T, reg *prometheus.Registry, name, model string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabel(m, "model", model) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestUnreadyRestart: a replica that was ready and then stays not ready,
// because its model is no longer ready (unloaded) or because it no longer
// answers probes (hung, its probes time out), is withdrawn from the pool,
// then stopped and started again once UnreadyRestart has passed; the new
// process becomes ready, the restart is counted, and the replica's last
// exit says why in full and in a client-safe cause.
func TestUnreadyRestart(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"unready", "hang"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			r := start(t, supervisor.Options{
				Model:          "m",
				Command:        []string{self, "-port", "{{.HTTPPort}}"},
				Env:            []string{fakeRuntimeEnv + "=ready"},
				ProbeTimeout:   200 * time.Millisecond,
				UnreadyRestart: 500 * time.Millisecond,
				Registerer:     reg,
			}, 1)
			before := r.waitReady(t, 1).Replicas[0]
			fakeControl(t, before.Addr, how)

			waitFor(t, 30*time.Second, "the replica to leave the ready ones", func() bool {
				return readyInPool(r.pool) == 0
			})
			var st supervisor.Status
			waitFor(t, 60*time.Second, "the replica's restart", func() bool {
				st = r.Status()
				return st.Restarts == 1 && st.Ready == 1 && readyInPool(r.pool) == 1
			})
			after := st.Replicas[0]
			if after.Pid == before.Pid {
				t.Errorf("replica still runs pid %d", after.Pid)
			}
			waitDead(t, before.Pid, "the unready replica's process")
			if want := "was not ready for 500ms after it was ready"; after.LastExitCause != want {
				t.Errorf("LastExitCause = %q, want %q", after.LastExitCause, want)
			}
			if !strings.Contains(after.LastExit, "the last probe") || !strings.Contains(after.LastExit, "fake runtime ready") {
				t.Errorf("LastExit = %q, want the last probe's failure and the log's lines", after.LastExit)
			}
			if st.Failed {
				t.Errorf("the model failed: %+v", st)
			}
			if got := counter(t, reg, "infergate_runtime_unready_restarts_total", "m"); got != 1 {
				t.Errorf("unready restarts counted %v, want 1", got)
			}
		})
	}
}

// TestUnreadyRestartOff: with UnreadyRestart negative, a replica that
// turns unready waits out of the pool, is not restarted however many
// probes find it so, and serves again when it is ready again.
func TestUnreadyRestartOff(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, supervisor.Options{
		Model:          "m",
		Command:        []string{self, "-port", "{{.HTTPPort}}"},
		Env:            []string{fakeRuntimeEnv + "=ready"},
		ProbeInterval:  10 * time.Millisecond,
		UnreadyRestart: -1,
	}, 1)
	before := r.waitReady(t, 1).Replicas[0]
	fakeControl(t, before.Addr, "unready")
	// At least half a second unready at this probe interval: what
	// TestUnreadyRestart restarts after.
	const probes = 50
	waitFor(t, 120*time.Second, fmt.Sprintf("%d probes of the unready replica", probes), func() bool {
		return unreadyProbes(t, before.Addr) >= probes
	})
	if st := r.Status(); st.Restarts != 0 || st.Replicas[0].Pid != before.Pid || st.Replicas[0].State != supervisor.StateUnready {
		t.Fatalf("status after %d unready probes: %+v, want the same process, unready, never restarted", probes, st)
	}
	fakeControl(t, before.Addr, "ready")
	st := r.waitReady(t, 1)
	if st.Restarts != 0 || st.Replicas[0].Pid != before.Pid {
		t.Errorf("status = %+v, want the same process ready again", st)
	}
}

// TestFailedCauseIsClientSafe: a model whose replicas keep exiting before
// they are ready fails with a Reason that has everything (log lines, the
// log's path) and a Cause that has none of it.
func TestFailedCauseIsClientSafe(t *testing.T) {
	dir := t.TempDir()
	secret := dir + "/models/secret-path/model.onnx"
	r := start(t, supervisor.Options{
		Model:            "broken",
		Command:          []string{"/bin/sh", "-c", `echo "cannot open $0 from 10.1.2.3:9000" >&2; exit 1`, secret},
		DataDir:          dir,
		BackoffInitial:   10 * time.Millisecond,
		MaxStartFailures: 2,
	}, 1)
	var st supervisor.Status
	waitFor(t, 20*time.Second, "the model to fail", func() bool { st = r.Status(); return st.Failed })
	for _, want := range []string{secret, "10.1.2.3:9000", "broken-0.log", "exit status 1"} {
		if !strings.Contains(st.Reason, want) {
			t.Errorf("Reason %q lacks %q", st.Reason, want)
		}
	}
	want := "runtime failed: 2 starts in a row did not become ready; the last exited with exit status 1 before it was ready"
	if st.Cause != want {
		t.Errorf("Cause = %q, want %q", st.Cause, want)
	}
}

// TestCannotStartCause: a command that cannot run fails the model with a
// Cause that says so without the path.
func TestCannotStartCause(t *testing.T) {
	secret := t.TempDir() + "/bin/tritonserver"
	r := start(t, supervisor.Options{Command: []string{secret, "--http-port={{.HTTPPort}}"}}, 1)
	var st supervisor.Status
	waitFor(t, 10*time.Second, "the model to fail", func() bool { st = r.Status(); return st.Failed })
	if want := "runtime cannot start: executable not found"; st.Cause != want {
		t.Errorf("Cause = %q, want %q", st.Cause, want)
	}
	if !strings.Contains(st.Reason, secret) {
		t.Errorf("Reason %q does not name the executable", st.Reason)
	}
}

// procState returns the state letter of process pid ("R", "S", "T"...),
// "" if it cannot be read.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 {
		return f[0]
	}
	return ""
}

// TestReplicaErrorsNameNoAddress: the errors of the clients the supervisor
// makes, which reach the gateway's clients, name the model and the
// replica's index, not its address.
func TestReplicaErrorsNameNoAddress(t *testing.T) {
	r := start(t, supervisor.Options{}, 1)
	st := r.waitReady(t, 1)
	rep := r.pool.Replicas()[0]
	// A stopped process accepts connections (the kernel does) but never
	// answers: the call times out in transport.
	pid := st.Replicas[0].Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT) //nolint:errcheck
	waitFor(t, 10*time.Second, "the replica's process to stop", func() bool { return procState(pid) == "T" })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := rep.Client.Infer(ctx, irisRequest())
	if err == nil {
		t.Fatal("Infer to a stopped process succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, st.Replicas[0].Addr) || strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, `model "iris" replica 0`) {
		t.Errorf("client error %q: want it to name the model and replica, and no address", msg)
	}
}
