//go:build long

package long

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestLong runs every case, one at a time, each bounded (under three
// minutes, except the soak: LONG_SOAK plus about two minutes). Run one
// with -run 'TestLong/NAME', for instance 'TestLong/kill/min-replicas-1'.
func TestLong(t *testing.T) {
	t.Run("kill", func(t *testing.T) {
		t.Run("min-replicas-1", func(t *testing.T) { testKills(t, 1) })
		t.Run("min-replicas-3", func(t *testing.T) { testKills(t, 3) })
	})
	t.Run("hang", testHang)
	t.Run("garbage", testGarbage)
	t.Run("unready", testUnready)
	t.Run("reload", func(t *testing.T) {
		t.Run("weights-every-300ms", testReloadWeights)
		t.Run("bad-storage-uri", testBadReload)
	})
	t.Run("sigterm", func(t *testing.T) {
		t.Run("healthy", testSigtermHealthy)
		t.Run("hung-replica", testSigtermHung)
	})
	t.Run("flood", func(t *testing.T) {
		t.Run("connections", testConnFlood)
		t.Run("memory", testMemFlood)
	})
	t.Run("soak", testSoak)
}

// step names the load's phase and holds it for d while the load runs; it
// reports false (and fails the case) if infergate serve exited meanwhile.
func step(r *report, s *server, l *load, phase string, d time.Duration) bool {
	r.t.Helper()
	l.setPhase(phase)
	if !s.pause(d) {
		r.errorf("infergate serve exited (%v) during phase %q", s.waitErr, phase)
		return false
	}
	return true
}

// phases notes each phase's table line, in the order they ran.
func (r *report) phases(tl *tally) {
	tl.mu.Lock()
	names := append([]string(nil), tl.phases...)
	tl.mu.Unlock()
	for _, p := range names {
		r.notef("phase %s", tableLine(p, tl.phase(p)))
	}
}

// alive fails the case if infergate serve is no longer running.
func (r *report) alive(s *server) {
	r.t.Helper()
	if s.hasExited() {
		r.errorf("infergate serve exited during the case: %v", s.waitErr)
	}
}

// onlyStatuses fails the case if c holds answers with other statuses than
// allowed ("rest 200", "grpc INTERNAL"...).
func (r *report) onlyStatuses(what string, c *counts, allowed ...string) {
	r.t.Helper()
	var other []string
	for k, n := range c.answered {
		if !contains(allowed, k) {
			other = append(other, fmt.Sprintf("%s: %d", k, n))
		}
	}
	sort.Strings(other)
	if len(other) > 0 {
		r.errorf("%s: answers with statuses other than %s: %s (reasons: %s)", what, strings.Join(allowed, ", "), strings.Join(other, ", "), formatMap(c.reasons))
	}
}
