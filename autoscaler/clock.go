package autoscaler

import "time"

// Clock is the time the Autoscaler's loop runs on; tests give it a fake.
type Clock interface {
	Now() time.Time
	// NewTicker returns a Ticker that delivers the time every d, dropping
	// ticks a slow reader misses, as time.NewTicker does.
	NewTicker(d time.Duration) Ticker
}

// Ticker is a time.Ticker behind an interface.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// SystemClock is the real time.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTicker(d time.Duration) Ticker { return systemTicker{time.NewTicker(d)} }

type systemTicker struct{ t *time.Ticker }

func (t systemTicker) C() <-chan time.Time { return t.t.C }
func (t systemTicker) Stop()               { t.t.Stop() }
