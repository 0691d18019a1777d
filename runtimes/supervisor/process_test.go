package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartProcessNoAnnounce(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	p, err := StartProcess(context.Background(), ProcessOptions{
		Path: "/bin/sh", Args: []string{"-c", `echo "out $FOO"; echo err >&2; exit 4`},
		LogPath: log, NoAnnounce: true, Env: []string{"FOO=bar"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.RESTAddr != "" || p.GRPCAddr != "" {
		t.Errorf("addresses %q %q, want none", p.RESTAddr, p.GRPCAddr)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process did not exit")
	}
	if p.Err() == nil || !strings.Contains(p.Err().Error(), "exit status 4") {
		t.Errorf("Err = %v, want exit status 4", p.Err())
	}
	if got, want := LogTail(p.LogPath(), 10), "out bar\nerr"; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

func TestStartProcessCannotExecute(t *testing.T) {
	for _, path := range []string{"/nonexistent/runtime", "infergate-no-such-runtime", t.TempDir()} {
		for _, quiet := range []bool{false, true} {
			_, err := StartProcess(context.Background(), ProcessOptions{Path: path, NoAnnounce: quiet})
			if !errors.Is(err, ErrExec) || !strings.Contains(err.Error(), path) {
				t.Errorf("StartProcess(%s, NoAnnounce %v) = %v, want ErrExec naming it", path, quiet, err)
			}
		}
	}
}

// TestStopAfterExitKillsLeftovers: a process that exits leaving a child of
// its own in the group; Stop after the exit kills that child.
func TestStopAfterExitKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	p, err := StartProcess(context.Background(), ProcessOptions{
		Path: "/bin/sh", Args: []string{"-c", "sleep 300 & echo $! > " + pidFile}, NoAnnounce: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child := atoi(strings.TrimSpace(string(b)))
	if child == 0 || syscall.Kill(child, 0) != nil {
		t.Fatalf("child %q not running", b)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(child, 0) == nil && !zombie(child) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if syscall.Kill(child, 0) == nil && !zombie(child) {
		_ = syscall.Kill(child, syscall.SIGKILL)
		t.Error("the exited process's child outlived Stop")
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])[0] == "Z"
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var lines []string
	for i := 1; i <= 30; i++ {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	long := strings.Repeat("x", 1000)
	var big []string
	for i := range 100 {
		big = append(big, fmt.Sprintf("%d %s", i, long))
	}
	tests := []struct {
		name, path string
		n          int
		want       string
	}{
		{"last n of many", write("many", strings.Join(lines, "\n")+"\n"), 3, "line 28\nline 29\nline 30"},
		{"fewer than n", write("few", "a\nb"), 20, "a\nb"},
		{"empty", write("empty", ""), 20, ""},
		{"missing", filepath.Join(dir, "nope"), 20, ""},
		{"no path", "", 20, ""},
		{"larger than the window", write("big", strings.Join(big, "\n")+"\n"), 2, "98 " + long + "\n99 " + long},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := LogTail(tc.path, tc.n); got != tc.want {
				t.Errorf("LogTail = %.80q, want %.80q", got, tc.want)
			}
		})
	}
}

// TestProcessErrorSummary: StartProcess's errors say everything in Error
// (path, log lines) and what happened in Summary, with neither.
func TestProcessErrorSummary(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret-model-path")
	tests := []struct {
		name        string
		opts        ProcessOptions
		wantSummary string
		wantError   []string
	}{
		{
			name:        "exits before listening",
			opts:        ProcessOptions{Path: "/bin/sh", Args: []string{"-c", "echo 'cannot open " + secret + "' >&2; exit 3"}, LogPath: filepath.Join(dir, "a.log")},
			wantSummary: "exited before listening (exit status 3)",
			wantError:   []string{"/bin/sh", "cannot open " + secret, "a.log", "exit status 3"},
		},
		{
			name:        "does not listen in time",
			opts:        ProcessOptions{Path: "/bin/sh", Args: []string{"-c", "echo 'loading " + secret + "' >&2; exec sleep 60"}, LogPath: filepath.Join(dir, "b.log"), StartTimeout: 200 * time.Millisecond},
			wantSummary: "did not listen within 200ms",
			wantError:   []string{"/bin/sh", "loading " + secret},
		},
		{
			name:        "executable missing",
			opts:        ProcessOptions{Path: secret},
			wantSummary: "executable not found",
			wantError:   []string{secret},
		},
		{
			name:        "not in PATH",
			opts:        ProcessOptions{Path: "infergate-no-such-runtime"},
			wantSummary: "executable not found in PATH",
			wantError:   []string{"infergate-no-such-runtime"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := StartProcess(context.Background(), tc.opts)
			var pe *ProcessError
			if !errors.As(err, &pe) {
				t.Fatalf("StartProcess = %v, want a *ProcessError", err)
			}
			if pe.Summary != tc.wantSummary {
				t.Errorf("Summary = %q, want %q", pe.Summary, tc.wantSummary)
			}
			for _, w := range tc.wantError {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Error() = %q, want it to hold %q", err, w)
				}
			}
		})
	}
}

// TestProcessStopKillsGroup starts a shell that starts a grandchild, and
// checks that Stop leaves neither behind.
func TestProcessStopKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	script := "sleep 300 & echo $! > " + pidFile + "; echo " + AnnouncePrefix + " rest=127.0.0.1:1 grpc=127.0.0.1:2; wait"
	p, err := StartProcess(context.Background(), ProcessOptions{Path: "/bin/sh", Args: []string{"-c", script}, LogPath: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	if p.RESTAddr != "127.0.0.1:1" || p.GRPCAddr != "127.0.0.1:2" {
		t.Errorf("announced %q %q", p.RESTAddr, p.GRPCAddr)
	}
	var grandchild int
	deadline := time.Now().Add(5 * time.Second)
	for grandchild == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 1 {
			grandchild = atoi(strings.TrimSpace(string(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if grandchild == 0 {
		t.Fatal("grandchild never started")
	}
	if err := p.Stop(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for syscall.Kill(grandchild, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if syscall.Kill(grandchild, 0) == nil {
		_ = syscall.Kill(grandchild, syscall.SIGKILL)
		t.Error("grandchild outlived Stop")
	}
}

func TestProcessExitBeforeListenShowsLog(t *testing.T) {
	dir := t.TempDir()
	_, err := StartProcess(context.Background(), ProcessOptions{
		Path: "/bin/sh", Args: []string{"-c", "echo 'model file is corrupt' >&2; exit 3"}, LogPath: filepath.Join(dir, "log"),
	})
	if err == nil || !strings.Contains(err.Error(), "model file is corrupt") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("StartProcess = %v, want the exit status and the log's last lines", err)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
