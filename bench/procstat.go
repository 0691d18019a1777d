package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ),
// which Linux fixes at 100 per second on every architecture it exports
// to user space.
const clockTick = 10 * time.Millisecond

// procStat is what ProcessCPU reads of /proc/<pid>/stat.
type procStat struct {
	ppid         int
	utime, stime uint64
}

// readProcStat reads /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its last ')'.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(pid, b)
}

func parseProcStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	// After ')': state(3) ppid(4) ... utime(14) stime(15).
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("bench: /proc/%d/stat: %d fields after the name", pid, len(f))
	}
	var (
		s   procStat
		err error
	)
	if s.ppid, err = strconv.Atoi(string(f[1])); err != nil {
		return procStat{}, fmt.Errorf("bench: /proc/%d/stat: ppid: %w", pid, err)
	}
	if s.utime, err = strconv.ParseUint(string(f[11]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("bench: /proc/%d/stat: utime: %w", pid, err)
	}
	if s.stime, err = strconv.ParseUint(string(f[12]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("bench: /proc/%d/stat: stime: %w", pid, err)
	}
	return s, nil
}

// ProcessCPU returns the CPU time (user and system, all threads) that the
// process pid has used so far, in clock ticks of 10ms. It works on Linux
// only; elsewhere it returns an error.
func ProcessCPU(pid int) (time.Duration, error) {
	s, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	return time.Duration(s.utime+s.stime) * clockTick, nil
}

// ProcessTreeCPU returns the CPU time of pid and of its direct children
// (such as nginx's master and workers), as ProcessCPU does. A child that
// exits between the listing and the reading is left out.
func ProcessTreeCPU(pid int) (time.Duration, error) {
	total, err := ProcessCPU(pid)
	if err != nil {
		return 0, err
	}
	kids, err := Children(pid)
	if err != nil {
		return 0, err
	}
	for _, k := range kids {
		c, err := ProcessCPU(k)
		if err != nil {
			continue
		}
		total += c
	}
	return total, nil
}

// Children returns the pids of pid's direct children, found by reading
// the parent pid of every process in /proc.
func Children(pid int) ([]int, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, errors.New("bench: /proc lists no process")
	}
	var kids []int
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil || p == pid {
			continue
		}
		s, err := readProcStat(p)
		if err != nil {
			continue
		}
		if s.ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids, nil
}
