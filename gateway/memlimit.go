package gateway

import (
	"bufio"
	"bytes"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Where SetMemoryLimit's limit came from.
const (
	MemoryLimitFromEnv    = "GOMEMLIMIT"
	MemoryLimitFromFlag   = "flag"
	MemoryLimitFromCgroup = "cgroup"
	MemoryLimitNone       = "none"
)

// SetMemoryLimit sets the Go runtime's soft memory limit for a gateway
// process (see runtime/debug.SetMemoryLimit) and returns the limit in
// force and where it came from:
//   - GOMEMLIMIT in the environment wins: the runtime applied it at start;
//   - limit > 0 is set as it is;
//   - limit == 0 means auto: 90% of the memory limit of the process's
//     cgroup (v2, else v1) when it has one, so that the collector works
//     harder as the heap nears the container's limit instead of the
//     process being killed at it; 10% is left for what the Go runtime
//     does not count (the kernel's socket buffers, a cgo library);
//     without a cgroup limit, none;
//   - limit < 0 sets none.
//
// The limit is soft: the runtime never fails an allocation for it, and
// bounds the collector's share of CPU (about half) when the live heap is
// above it.
func SetMemoryLimit(limit int64) (int64, string) {
	_, envSet := os.LookupEnv("GOMEMLIMIT")
	n, from := memoryLimit(limit, envSet, func() (int64, bool) { return cgroupMemoryLimit(os.DirFS("/")) })
	switch from {
	case MemoryLimitFromEnv:
		n = debug.SetMemoryLimit(-1)
	case MemoryLimitNone:
		debug.SetMemoryLimit(math.MaxInt64)
	default:
		debug.SetMemoryLimit(n)
	}
	return n, from
}

// DefaultGCPercent is the collector's target a gateway process runs with
// unless GOGC or -gc-percent says otherwise: Go's own default. A higher
// target saves collector CPU where requests allocate (translated
// requests; gRPC calls allocated about 170 objects each on grpc-go's
// server and client, and at 400 the gateway's CPU per call fell by a
// sixth), but garbage then grows to that many times the live heap:
// under make test-long's flood of large bodies, with 256 MiB of request
// bytes held, RSS reached 1.35 GB at 400 against 0.59 GB at 100. The
// pass-throughs allocate little now (REST one object per request, gRPC
// about 34 on infergate's own server and client), so the collector runs
// about 20 times a second at 100 under h2load, on a heap of a few MiB.
const DefaultGCPercent = 100

// SetGCPercent sets the collector's target (runtime/debug.SetGCPercent)
// for a gateway process and returns the value in force and where it came
// from: GOGC in the environment wins (the runtime applied it at start);
// else percent is set, 0 meaning DefaultGCPercent and a negative value
// turning the collector off but for the memory limit.
func SetGCPercent(percent int) (int, string) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p, "GOGC"
	}
	if percent == 0 {
		percent = DefaultGCPercent
	}
	debug.SetGCPercent(percent)
	return percent, MemoryLimitFromFlag
}

// memoryLimit decides SetMemoryLimit's limit; see there.
func memoryLimit(flag int64, envSet bool, cgroup func() (int64, bool)) (int64, string) {
	switch {
	case envSet:
		return 0, MemoryLimitFromEnv
	case flag > 0:
		return flag, MemoryLimitFromFlag
	case flag < 0:
		return math.MaxInt64, MemoryLimitNone
	}
	if n, ok := cgroup(); ok {
		return n / 10 * 9, MemoryLimitFromCgroup
	}
	return math.MaxInt64, MemoryLimitNone
}

// cgroupMemoryLimit returns the memory limit of the process's cgroup, the
// smallest on its way up to the root, read from fsys (the file system at
// "/"): cgroup v2's memory.max, else v1's memory.limit_in_bytes. It
// returns false when there is none, or none can be read.
func cgroupMemoryLimit(fsys fs.FS) (int64, bool) {
	self, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	var v2, v1 string
	haveV2, haveV1 := false, false
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, haveV2 = parts[2], true
		case hasController(parts[1], "memory"):
			v1, haveV1 = parts[2], true
		}
	}
	if haveV2 {
		if n, ok := smallestLimit(fsys, "sys/fs/cgroup", v2, "memory.max"); ok {
			return n, true
		}
	}
	if haveV1 {
		return smallestLimit(fsys, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes")
	}
	return 0, false
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// smallestLimit reads file in the cgroup dir (under mount) and in each of
// its parents, and returns the smallest limit found. In a container with
// its own cgroup namespace the process's cgroup is the mount's root; in
// one without, its path (the host's) may not exist under the mount, and
// only the root is read.
func smallestLimit(fsys fs.FS, mount, dir, file string) (int64, bool) {
	var best int64
	found := false
	for d := path.Clean("/" + dir); ; d = path.Dir(d) {
		if n, ok := readLimit(fsys, path.Join(mount, d, file)); ok && (!found || n < best) {
			best, found = n, true
		}
		if d == "/" {
			return best, found
		}
	}
}

// readLimit reads a cgroup memory limit file: a number of bytes, or "max"
// (v2) or a huge number (v1) for none.
func readLimit(fsys fs.FS, name string) (int64, bool) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}
