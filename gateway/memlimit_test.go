package gateway

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestMemoryLimitDecision(t *testing.T) {
	cgroup := func(n int64, ok bool) func() (int64, bool) { return func() (int64, bool) { return n, ok } }
	tests := []struct {
		name     string
		flag     int64
		env      bool
		cgroup   func() (int64, bool)
		want     int64
		wantFrom string
	}{
		{"GOMEMLIMIT wins over the flag", 1 << 30, true, cgroup(4<<30, true), 0, MemoryLimitFromEnv},
		{"flag", 1 << 30, false, cgroup(4<<30, true), 1 << 30, MemoryLimitFromFlag},
		{"auto: 90% of the cgroup's", 0, false, cgroup(10<<30, true), 9 << 30, MemoryLimitFromCgroup},
		{"auto without a cgroup limit", 0, false, cgroup(0, false), math.MaxInt64, MemoryLimitNone},
		{"off", -1, false, cgroup(10<<30, true), math.MaxInt64, MemoryLimitNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, from := memoryLimit(tc.flag, tc.env, tc.cgroup)
			if got != tc.want || from != tc.wantFrom {
				t.Errorf("memoryLimit = %d, %s; want %d, %s", got, from, tc.want, tc.wantFrom)
			}
		})
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name   string
		fs     fstest.MapFS
		want   int64
		wantOK bool
	}{
		{"v2 in its own namespace", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("2147483648\n"),
		}, 2 << 30, true},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 0, false},
		{"v2 nested, a parent is tighter", fstest.MapFS{
			"proc/self/cgroup":                          file("0::/kubepods/pod1/c1\n"),
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": file("4294967296\n"),
			"sys/fs/cgroup/kubepods/pod1/memory.max":    file("1073741824\n"),
			"sys/fs/cgroup/kubepods/memory.max":         file("max\n"),
		}, 1 << 30, true},
		{"v2 host path not mounted", fstest.MapFS{
			"proc/self/cgroup":         file("0::/system.slice/docker-abc.scope\n"),
			"sys/fs/cgroup/memory.max": file("536870912\n"),
		}, 512 << 20, true},
		{"v1", fstest.MapFS{
			"proc/self/cgroup": file("12:cpu,cpuacct:/x\n9:memory:/docker/abc\n"),
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": file("268435456\n"),
		}, 256 << 20, true},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           file("9:memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0, false},
		{"no cgroup", fstest.MapFS{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cgroupMemoryLimit(tc.fs)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("cgroupMemoryLimit = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestSetGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	if p, from := SetGCPercent(250); p != 250 || from != MemoryLimitFromFlag || debug.SetGCPercent(250) != 250 {
		t.Fatalf("SetGCPercent(250) = %d, %s; want 250 from the flag, in force", p, from)
	}
	if p, _ := SetGCPercent(0); p != DefaultGCPercent || debug.SetGCPercent(DefaultGCPercent) != DefaultGCPercent {
		t.Fatalf("SetGCPercent(0) = %d; want the default %d, in force", p, DefaultGCPercent)
	}
	// GOGC wins: what the runtime applied at start stays.
	debug.SetGCPercent(150)
	t.Setenv("GOGC", "150")
	if p, from := SetGCPercent(250); p != 150 || from != "GOGC" || debug.SetGCPercent(150) != 150 {
		t.Fatalf("with GOGC set, SetGCPercent(250) = %d, %s; want 150 from GOGC, unchanged", p, from)
	}
}
