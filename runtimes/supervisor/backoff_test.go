package supervisor

import (
	"testing"
	"time"
)

func TestPolicyNext(t *testing.T) {
	p := policy{initial: time.Second, max: 30 * time.Second, reset: time.Minute, maxFailures: 5}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name       string
		h          history
		e          exit
		wantH      history
		wantDelay  time.Duration
		wantFailed bool
	}{
		{
			name:      "first crash at start",
			e:         exit{started: t0, at: at(time.Second)},
			wantH:     history{crashes: 1, unready: 1},
			wantDelay: time.Second,
		},
		{
			name:      "second crash doubles",
			h:         history{crashes: 1, unready: 1},
			e:         exit{started: t0, at: at(time.Second)},
			wantH:     history{crashes: 2, unready: 2},
			wantDelay: 2 * time.Second,
		},
		{
			name:      "fourth crash waits 8s",
			h:         history{crashes: 3, unready: 3},
			e:         exit{started: t0, at: at(time.Second)},
			wantH:     history{crashes: 4, unready: 4},
			wantDelay: 8 * time.Second,
		},
		{
			name:       "fifth crash before ready fails the model",
			h:          history{crashes: 4, unready: 4},
			e:          exit{started: t0, at: at(time.Second)},
			wantH:      history{crashes: 5, unready: 5},
			wantFailed: true,
		},
		{
			name:      "backoff is capped",
			h:         history{crashes: 9},
			e:         exit{started: t0, readyAt: at(time.Second), at: at(2 * time.Second)},
			wantH:     history{crashes: 10},
			wantDelay: 30 * time.Second,
		},
		{
			name:      "huge crash count does not overflow",
			h:         history{crashes: 1 << 20},
			e:         exit{started: t0, readyAt: at(time.Second), at: at(2 * time.Second)},
			wantH:     history{crashes: 1<<20 + 1},
			wantDelay: 30 * time.Second,
		},
		{
			name:      "a crash after ready clears the failure count but not the backoff",
			h:         history{crashes: 4, unready: 4},
			e:         exit{started: t0, readyAt: at(time.Second), at: at(10 * time.Second)},
			wantH:     history{crashes: 5, unready: 0},
			wantDelay: 16 * time.Second,
		},
		{
			name:      "ready for the reset period starts the backoff over",
			h:         history{crashes: 7},
			e:         exit{started: t0, readyAt: at(time.Second), at: at(61 * time.Second)},
			wantH:     history{crashes: 1},
			wantDelay: time.Second,
		},
		{
			name:      "up long but never ready does not reset",
			h:         history{crashes: 2, unready: 2},
			e:         exit{started: t0, at: at(10 * time.Minute)},
			wantH:     history{crashes: 3, unready: 3},
			wantDelay: 4 * time.Second,
		},
		{
			name:       "a command that cannot run fails at once",
			e:          exit{started: t0, at: t0, permanent: true},
			wantH:      history{crashes: 1, unready: 1},
			wantFailed: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, delay, failed := p.next(tc.h, tc.e)
			if h != tc.wantH || delay != tc.wantDelay || failed != tc.wantFailed {
				t.Errorf("next(%+v) = %+v, %v, %v; want %+v, %v, %v", tc.h, h, delay, failed, tc.wantH, tc.wantDelay, tc.wantFailed)
			}
		})
	}
}
