package tlsconf

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long Run waits after a change in the watched
// directories for more before it reloads: a tool that renames a new
// certificate and then a new key into place makes two changes.
const DefaultDebounce = 100 * time.Millisecond

// files is a set of files that make one TLS state, loaded and reloaded
// together; apply parses their contents and, if they are good, puts them
// in use.
type files struct {
	what     string   // "server certificate": for errors and logs
	paths    []string // in the order apply wants them
	apply    func(data [][]byte) error
	log      *slog.Logger
	onReload func(error)
	debounce time.Duration

	mu        sync.Mutex // serialises reloads
	sum       [sha256.Size]byte
	failedSum [sha256.Size]byte // of the last bytes that failed, or zero
	failedErr error

	reloads  atomic.Uint64
	failures atomic.Uint64

	watching     chan struct{}
	watchingOnce sync.Once
}

func newFiles(what string, paths []string, apply func([][]byte) error, log *slog.Logger, onReload func(error), debounce time.Duration) *files {
	if log == nil {
		log = slog.Default()
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	return &files{what: what, paths: paths, apply: apply, log: log, onReload: onReload, debounce: debounce, watching: make(chan struct{})}
}

// read returns the files' contents and a digest of them all.
func (f *files) read() ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	data := make([][]byte, len(f.paths))
	for i, p := range f.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, [sha256.Size]byte{}, err
		}
		data[i] = b
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return data, sum, nil
}

// load reads and applies the files for the first time.
func (f *files) load() error {
	data, sum, err := f.read()
	if err == nil {
		err = f.apply(data)
	}
	if err != nil {
		return fmt.Errorf("tlsconf: %s: %w", f.what, err)
	}
	f.sum = sum
	return nil
}

// reload reads the files again and puts them in use if they changed and
// load. A failure is counted, logged and reported to onReload, unless
// quiet is set and the same bytes failed last time.
func (f *files) reload(quiet bool) error {
	report, err := f.reloadLocked(quiet)
	if report && f.onReload != nil {
		f.onReload(err)
	}
	return err
}

func (f *files) reloadLocked(quiet bool) (report bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, sum, err := f.read()
	if err == nil {
		if sum == f.sum {
			return false, nil
		}
		if quiet && sum == f.failedSum {
			return false, f.failedErr
		}
		err = f.apply(data)
	}
	if err != nil {
		err = fmt.Errorf("tlsconf: %s: %w", f.what, err)
		f.failures.Add(1)
		f.failedSum, f.failedErr = sum, err // a read error leaves sum zero
		f.log.Error("TLS files did not load; keeping the ones in use", "what", f.what, "files", f.paths, "err", err)
		return true, err
	}
	f.sum = sum
	f.failedSum, f.failedErr = [sha256.Size]byte{}, nil
	f.reloads.Add(1)
	f.log.Info("TLS files reloaded", "what", f.what, "files", f.paths)
	return true, nil
}

// run watches the files' directories until ctx ends, reloading after each
// burst of changes to them.
func (f *files) run(ctx context.Context) error {
	if len(f.paths) == 0 {
		f.watchingOnce.Do(func() { close(f.watching) })
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("tlsconf: watch %s: %w", f.what, err)
	}
	defer w.Close()
	names := make(map[string]bool)
	dirs := make(map[string]bool)
	for _, p := range f.paths {
		dir, name := filepath.Split(p)
		names[name] = true
		if dir == "" {
			dir = "."
		}
		dir = filepath.Clean(dir)
		if dirs[dir] {
			continue
		}
		dirs[dir] = true
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("tlsconf: watch %s: directory %s: %w", f.what, dir, err)
		}
	}
	f.watchingOnce.Do(func() { close(f.watching) })
	// What changed between the first load and the watch.
	_ = f.reload(true)

	var (
		timer *time.Timer
		fire  <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("tlsconf: the watcher stopped")
			}
			if !relevant(ev, names) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(f.debounce)
			} else {
				timer.Reset(f.debounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("tlsconf: the watcher stopped")
			}
			// An overflowed event queue may have dropped the change we
			// wait for: look at the files again.
			f.log.Warn("watching TLS files", "what", f.what, "err", err)
			_ = f.reload(true)
		case <-fire:
			fire = nil
			_ = f.reload(true)
		}
	}
}

// relevant reports whether ev may have changed one of the files: an
// event on one of their names, or on a Kubernetes secret volume's "..data"
// link and the "..TIMESTAMP" directories it points to. A change of mode
// alone is not.
func relevant(ev fsnotify.Event, names map[string]bool) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	return names[base] || strings.HasPrefix(base, "..")
}
