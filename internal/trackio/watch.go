package trackio

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ListDBs returns the Trackio project databases in dir, sorted. SQLite side
// files (-wal, -shm, -journal), lock files and exports are not projects.
func ListDBs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), DBExt) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out, nil
}

// FileSig is a cheap change detector for a database: size and mtime of the
// main file and of its WAL. Polling compares signatures before querying, so
// an idle project costs two stat calls per poll, not a query.
type FileSig struct {
	Size, WALSize   int64
	MTime, WALMTime int64
}

// Sig stats path and path-wal.
func Sig(path string) FileSig {
	var s FileSig
	if fi, err := os.Stat(path); err == nil {
		s.Size, s.MTime = fi.Size(), fi.ModTime().UnixNano()
	}
	if fi, err := os.Stat(path + "-wal"); err == nil {
		s.WALSize, s.WALMTime = fi.Size(), fi.ModTime().UnixNano()
	}
	return s
}

// Watch signals on the returned channel whenever something in dir may have
// changed: on file notifications (fsnotify) when the platform delivers
// them, and every fallback interval regardless, because notifications are
// not delivered on every filesystem (NFS, some container volumes). Signals
// coalesce; the channel closes when ctx ends.
func Watch(ctx context.Context, dir string, fallback time.Duration, log *slog.Logger) <-chan struct{} {
	ch := make(chan struct{}, 1)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(ch)
		var w *fsnotify.Watcher
		watching := false
		addWatch := func() {
			if watching {
				return
			}
			if w == nil {
				var err error
				if w, err = fsnotify.NewWatcher(); err != nil {
					log.Debug("trackio watch: no file notifications, polling only", "err", err)
					return
				}
			}
			if err := w.Add(dir); err == nil {
				watching = true
			}
		}
		addWatch()
		defer func() {
			if w != nil {
				w.Close()
			}
		}()
		t := time.NewTicker(fallback)
		defer t.Stop()
		signal()
		for {
			var events chan fsnotify.Event
			var errs chan error
			if w != nil {
				events, errs = w.Events, w.Errors
			}
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					w, watching = nil, false
					continue
				}
				if strings.Contains(filepath.Base(ev.Name), DBExt) {
					signal()
				}
				if ev.Has(fsnotify.Remove) && ev.Name == dir {
					watching = false
				}
			case err, ok := <-errs:
				if ok {
					log.Debug("trackio watch error", "err", err)
				}
			case <-t.C:
				addWatch()
				signal()
			}
		}
	}()
	return ch
}
