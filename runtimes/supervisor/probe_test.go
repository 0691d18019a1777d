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
