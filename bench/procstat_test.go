package bench

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    procStat
		wantErr bool
	}{
		{"plain", "42 (nginx) S 7 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 100 0 0",
			procStat{ppid: 7, utime: 250, stime: 31}, false},
		{"name with spaces and parens", "43 (a) b (c) R 1 43 43 0 -1 0 0 0 0 0 9 8 0 0 20 0 1 0",
			procStat{ppid: 1, utime: 9, stime: 8}, false},
		{"truncated", "44 (x) S 1 2 3", procStat{}, true},
		{"no name", "garbage", procStat{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat(1, []byte(tc.line))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestProcessCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel has counted at least two ticks.
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		now, err := ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 2*clockTick {
			return
		}
	}
	t.Errorf("ProcessCPU did not grow while burning CPU (%d)", x)
}

func TestChildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("Children = %v, want %d among them", kids, cmd.Process.Pid)
	}
	if _, err := ProcessTreeCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
}
