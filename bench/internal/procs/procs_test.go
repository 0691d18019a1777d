package procs

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitLimit bounds every wait in these tests.
const waitLimit = 10 * time.Second

func needSh(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to start")
	}
}

// firstLine is an Options.Stdout that hands the first line of the stream
// to lines and copies the rest to the log.
func firstLine(lines chan<- string) func(io.Reader, io.Writer) {
	return func(r io.Reader, log io.Writer) {
		br := bufio.NewReader(r)
		line, _ := br.ReadString('\n')
		lines <- line
		_, _ = io.Copy(log, br)
	}
}

func waitDone(t *testing.T, p *Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(waitLimit):
		t.Fatalf("process %d still running after %s", p.Pid(), waitLimit)
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStartOutput(t *testing.T) {
	needSh(t)
	const script = `echo "out $PROCS_TEST"; echo more; echo err >&2`
	tests := []struct {
		name           string
		stdout, stderr bool // through a firstLine filter
		wantFirst      string
		wantLog        []string
		notInLog       []string
	}{
		{name: "both to the log", wantLog: []string{"out set\n", "more\n", "err\n"}},
		{name: "stdout filtered", stdout: true, wantFirst: "out set\n",
			wantLog: []string{"more\n", "err\n"}, notInLog: []string{"out set"}},
		{name: "stderr filtered", stderr: true, wantFirst: "err\n",
			wantLog: []string{"out set\n", "more\n"}, notInLog: []string{"err"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "child.log")
			lines := make(chan string, 1)
			opts := Options{Path: "sh", Args: []string{"-c", script}, Env: []string{"PROCS_TEST=set"}, LogPath: logPath}
			if tc.stdout {
				opts.Stdout = firstLine(lines)
			}
			if tc.stderr {
				opts.Stderr = firstLine(lines)
			}
			p, err := Start(opts)
			if err != nil {
				t.Fatal(err)
			}
			waitDone(t, p)
			if err := p.Err(); err != nil {
				t.Errorf("Err() = %v, want nil for exit status 0", err)
			}
			if tc.wantFirst != "" {
				// Done is closed after the filter returned: its line is there.
				select {
				case got := <-lines:
					if got != tc.wantFirst {
						t.Errorf("filter's first line = %q, want %q", got, tc.wantFirst)
					}
				default:
					t.Error("Done closed before the filter read its first line")
				}
			}
			log := readLog(t, logPath)
			for _, want := range tc.wantLog {
				if !strings.Contains(log, want) {
					t.Errorf("log %q lacks %q", log, want)
				}
			}
			for _, not := range tc.notInLog {
				if strings.Contains(log, not) {
					t.Errorf("log %q has %q, which the filter kept out", log, not)
				}
			}
		})
	}
}

func TestStartFails(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, path, logPath string
		want                string
	}{
		{"no such program", filepath.Join(dir, "missing"), filepath.Join(dir, "log"), "start " + filepath.Join(dir, "missing") + ": "},
		{"no such log directory", "sh", filepath.Join(dir, "no", "log"), "start sh: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start(Options{Path: tc.path, LogPath: tc.logPath})
			if err == nil {
				p.Stop(time.Second)
				t.Fatal("Start succeeded")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
		})
	}
}

// TestStop starts a shell (the group's leader) with a member, a sleep
// that says its pid first, and checks that Stop leaves neither alive.
func TestStop(t *testing.T) {
	needSh(t)
	// The member's stdout goes to /dev/null once it has said its pid, so
	// that only the leader holds the pipe the test reads.
	const member = `sh -c 'echo $$; exec sleep 30 >/dev/null'`
	tests := []struct {
		name       string
		script     string
		grace      time.Duration
		wantSignal syscall.Signal // that ended the leader
	}{
		{"both end on SIGTERM", member + ` & wait`, waitLimit, syscall.SIGTERM},
		// Both ignore SIGTERM (the ignore is inherited): SIGKILL after the grace.
		{"both ignore SIGTERM", `trap '' TERM; ` + member + ` & wait`, 200 * time.Millisecond, syscall.SIGKILL},
		// The leader ends on SIGTERM; the member, left behind, is killed.
		{"member ignores SIGTERM", `(trap '' TERM; exec ` + member + `) & wait`, waitLimit, syscall.SIGTERM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := make(chan string, 1)
			p, err := Start(Options{Path: "sh", Args: []string{"-c", tc.script},
				LogPath: filepath.Join(t.TempDir(), "child.log"), Stdout: firstLine(lines)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop(0)
			var line string
			select {
			case line = <-lines:
			case <-time.After(waitLimit):
				t.Fatalf("the member did not say its pid within %s", waitLimit)
			}
			memberPid, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("the member's first line %q: %v", line, err)
			}
			for _, pid := range []int{p.Pid(), memberPid} {
				if pgid, err := syscall.Getpgid(pid); err != nil || pgid != p.Pid() {
					t.Fatalf("process %d is in group %d (%v), want the child's own group %d", pid, pgid, err, p.Pid())
				}
			}

			start := time.Now()
			p.Stop(tc.grace)
			took := time.Since(start)
			if !p.Exited() {
				t.Fatal("Stop returned before Done was closed")
			}
			if tc.wantSignal == syscall.SIGKILL && took < tc.grace {
				t.Errorf("Stop killed after %s, before the grace of %s", took, tc.grace)
			}
			if tc.wantSignal == syscall.SIGTERM && took >= tc.grace {
				t.Errorf("Stop took %s, the whole grace, for a child that ends on SIGTERM", took)
			}
			var ee *exec.ExitError
			if !errors.As(p.Err(), &ee) {
				t.Fatalf("Err() = %v, want an *exec.ExitError", p.Err())
			}
			if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != tc.wantSignal {
				t.Errorf("the leader ended with %v, want signal %v", ee, tc.wantSignal)
			}
			waitGone(t, memberPid)
		})
	}
}

// waitGone waits until pid has died: no longer there, or a zombie that
// its new parent has not reaped yet. A killed process is not ours to wait
// for, and it dies a moment after kill returns, so this polls.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive %s after Stop", pid, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	_, rest, ok := strings.Cut(string(b[bytes.LastIndexByte(b, ')')+1:]), " ")
	return ok && strings.HasPrefix(rest, "Z")
}

func TestStopExited(t *testing.T) {
	needSh(t)
	p, err := Start(Options{Path: "sh", Args: []string{"-c", "exit 3"}, LogPath: filepath.Join(t.TempDir(), "child.log")})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	p.Stop(waitLimit) // returns at once: nothing to stop
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != 3 {
		t.Errorf("Err() = %v, want exit status 3", p.Err())
	}
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	var twenty strings.Builder
	for i := 1; i <= 20; i++ {
		twenty.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	tests := []struct {
		name    string
		content *string // nil: no file
		n       int
		want    string // after "; last lines of PATH:\n", or "" for none
	}{
		{name: "last n of more", content: ptr(twenty.String()), n: 3, want: "line 18\nline 19\nline 20"},
		{name: "all of fewer", content: ptr("a\nb\n"), n: 15, want: "a\nb"},
		{name: "no final newline", content: ptr("a\nb"), n: 1, want: "b"},
		{name: "trailing blank lines dropped", content: ptr("a\nb\n\n\n"), n: 2, want: "a\nb"},
		{name: "empty log", content: ptr(""), n: 10},
		{name: "no log", n: 10},
		{name: "no lines asked", content: ptr("a\n"), n: 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strconv.Itoa(i)+".log")
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := ""
			if tc.want != "" {
				want = "; last lines of " + path + ":\n" + tc.want
			}
			if got := logTail(path, tc.n); got != want {
				t.Errorf("logTail(%d) = %q, want %q", tc.n, got, want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestFreeAddrs(t *testing.T) {
	addrs, err := FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 3 {
		t.Fatalf("FreeAddrs(3) = %v, want 3 addresses", addrs)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("address %q: want 127.0.0.1 and a port (%v)", a, err)
		}
		if seen[a] {
			t.Errorf("address %q given twice in %v", a, addrs)
		}
		seen[a] = true
		// Free: it can be listened on.
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("listen on %s: %v", a, err)
			continue
		}
		ln.Close()
	}
	if addrs, err := FreeAddrs(0); err != nil || len(addrs) != 0 {
		t.Errorf("FreeAddrs(0) = %v, %v; want none", addrs, err)
	}
}
