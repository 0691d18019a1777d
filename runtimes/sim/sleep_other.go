//go:build !linux

package sim

import (
	"context"
	"time"
)

// preciseSleep has no precise timer to offer off Linux: Sleep uses a
// runtime timer.
func preciseSleep(context.Context, time.Duration) error { return errNoPreciseTimer }
