package trackio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ListDBs returns the Trackio project databases in dir, sorted, at most
// max of them (0: no limit). SQLite side files (-wal, -shm, -journal), lock
// files and exports are not projects. A name ending in .db that is not a
// regular file (a FIFO, a symlink) is listed all the same, so the reader
// refuses it and the user sees why; directories are skipped. A directory
// with more databases than max returns the first max and an error saying
// so.
//
// The directory is the sandbox's and is listed on every wake-up, so with
// max set at most scanLimit(max) entries are read (a project has a
// database and two side files, and there is media/): past that, the
// databases among those and an error. Without the bound, a sandbox that
// made millions of empty files kept a host core busy listing them.
func ListDBs(dir string, max int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	scanned := 0
	for {
		ents, err := f.ReadDir(256)
		for _, e := range ents {
			scanned++
			if e.IsDir() || !strings.HasSuffix(e.Name(), DBExt) || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if max > 0 && len(out) == max {
				sort.Strings(out)
				return out, fmt.Errorf("%s: more than %d databases; following %d of them", dir, max, max)
			}
			out = append(out, filepath.Join(dir, e.Name()))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			sort.Strings(out)
			return out, err
		}
		if max > 0 && scanned >= scanLimit(max) {
			sort.Strings(out)
			return out, fmt.Errorf("%s: more than %d entries; following the databases among the first %d read", dir, scanLimit(max), scanned)
		}
	}
	sort.Strings(out)
	return out, nil
}

// scanLimit is the most directory entries ListDBs reads for max databases.
func scanLimit(max int) int { return 4*max + 100 }

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
