package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/infergate/infergate/config"
)

// DefaultConfigInterval is how often WatchConfig looks at the config's
// fingerprint by default.
const DefaultConfigInterval = time.Second

// ConfigWatchOptions configure WatchConfig.
type ConfigWatchOptions struct {
	// Path is the InferenceService YAML file or directory, as
	// config.LoadPath reads it. Required.
	Path string
	// Last is ConfigFingerprint(Path) taken before the declarations in
	// force were read from it, so that a change made while they were
	// read is applied at the first look. "" applies at the first look.
	Last string
	// Applier takes each new reading whole, with prune: the file is the
	// whole desired state. Required.
	Applier Applier
	// Interval is how often the fingerprint is looked at (default
	// DefaultConfigInterval).
	Interval time.Duration
	// Reload, when it receives (a SIGHUP from signal.Notify), re-reads
	// the config at once whether or not its fingerprint changed. nil:
	// only the fingerprint counts.
	Reload <-chan os.Signal
	// Logger receives what was applied and what was not (default
	// slog.Default()).
	Logger *slog.Logger
}

// WatchConfig re-reads the config at opts.Path when its fingerprint
// differs from the last one seen, and on Reload, until ctx ends; then it
// returns nil. It returns an error at once for options it cannot use.
//
// A new reading is applied whole or not at all: a bad document is logged
// with its file, field and reason and the running routes stay, and it is
// not read again until the files change (or Reload). The files' changes
// are found by polling their fingerprint: the module has no file
// notification library, and polling also sees what notifications miss
// (network file systems, a Kubernetes ConfigMap's symlink swap).
func WatchConfig(ctx context.Context, opts ConfigWatchOptions) error {
	switch {
	case opts.Path == "":
		return errors.New("controlplane: WatchConfig: Path is required")
	case opts.Applier == nil:
		return errors.New("controlplane: WatchConfig: Applier is required")
	case opts.Interval < 0:
		return fmt.Errorf("controlplane: WatchConfig: Interval %v is negative", opts.Interval)
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultConfigInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	last := opts.Last
	for {
		forced := false
		select {
		case <-ctx.Done():
			return nil
		case <-opts.Reload:
			forced = true
		case <-t.C:
		}
		fp := ConfigFingerprint(opts.Path)
		if !forced && fp == last {
			continue
		}
		last = fp
		models, err := config.LoadPath(opts.Path)
		if err == nil {
			var ch Changes
			if ch, err = opts.Applier.Apply(models, true); err == nil {
				for _, c := range ch.Models {
					if c.Action != ActionUnchanged {
						log.Info("config applied", "model", c.Model, "action", c.Action, "revision", c.Revision, "traffic", c.Traffic)
					}
				}
				continue
			}
		}
		log.Error("config not applied; the running routes stay", "path", opts.Path, "err", err)
	}
}

// ConfigFingerprint sums up the files config.LoadPath would read at path
// (names, sizes, modification times), so that a change shows without
// reading them.
func ConfigFingerprint(path string) string {
	var b strings.Builder
	files, _ := config.Files(path)
	for _, f := range append(files, path) {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}
