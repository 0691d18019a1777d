package supervisor

import (
	"testing"
	"time"
)

func TestStartProbeWait(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name              string
		elapsed, interval time.Duration
		want              time.Duration
	}{
		{"just started", 0, 500 * ms, 1 * ms},
		{"young: the floor", 15 * ms, 500 * ms, 1 * ms},
		{"a twentieth of the age", 200 * ms, 500 * ms, 10 * ms},
		{"old: the cap", 10 * time.Second, 500 * ms, 50 * ms},
		{"never above the interval", 10 * time.Second, 20 * ms, 20 * ms},
		{"an interval under the floor wins", 0, ms / 2, ms / 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := startProbeWait(tc.elapsed, tc.interval); got != tc.want {
				t.Errorf("startProbeWait(%s, %s) = %s, want %s", tc.elapsed, tc.interval, got, tc.want)
			}
		})
	}
}

func TestUnreadyTooLong(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		for_  time.Duration
		limit time.Duration
		want  bool
	}{
		{"just turned unready", 0, 30 * time.Second, false},
		{"under the limit", 30*time.Second - 1, 30 * time.Second, false},
		{"at the limit", 30 * time.Second, 30 * time.Second, true},
		{"past it", time.Hour, 30 * time.Second, true},
		{"never when negative", time.Hour, -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := unreadyTooLong(t0, t0.Add(tc.for_), tc.limit); got != tc.want {
				t.Errorf("unreadyTooLong(unready for %s, limit %s) = %v, want %v", tc.for_, tc.limit, got, tc.want)
			}
		})
	}
}
