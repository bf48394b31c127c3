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
	"sync"
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
	changes := WatchProjects(ctx, dir, fallback, log)
	go func() {
		defer close(ch)
		for range changes.C {
			changes.Take()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch
}

// Changes is what WatchProjects saw: C signals (coalesced) that Take has
// something; it closes when the watch's context ends.
type Changes struct {
	C <-chan struct{}

	mu       sync.Mutex
	all      bool
	projects map[string]bool
}

// Take returns what changed since the last Take: all (the fallback
// interval passed, or notifications may have been lost, so every project
// may have changed), or the projects whose files had notifications.
func (c *Changes) Take() (all bool, projects map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all, projects = c.all, c.projects
	c.all, c.projects = false, nil
	return all, projects
}

// WatchProjects is Watch that says which projects changed, so that a
// reader of many projects wakes only those. The directory is the
// sandbox's: a program touching one file in a loop must not make the host
// poll every project each time (300 idle projects and ~200 creates a
// second cost the dashboard 45% of a core when every wake-up woke all).
// Every fallback interval, and when the notifications overflowed, all
// projects are reported.
func WatchProjects(ctx context.Context, dir string, fallback time.Duration, log *slog.Logger) *Changes {
	ch := make(chan struct{}, 1)
	c := &Changes{C: ch}
	signal := func(project string) {
		c.mu.Lock()
		if project == "" {
			c.all = true
		} else if !c.all {
			if c.projects == nil {
				c.projects = map[string]bool{}
			}
			if len(c.projects) < 10000 {
				c.projects[project] = true
			} else {
				c.all = true
			}
		}
		c.mu.Unlock()
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
		signal("")
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
				if p, ok := projectOfFile(filepath.Base(ev.Name)); ok {
					signal(p)
				}
				if ev.Has(fsnotify.Remove) && ev.Name == dir {
					watching = false
				}
			case err, ok := <-errs:
				if ok {
					log.Debug("trackio watch error", "err", err)
					signal("") // events may have been lost (a queue overflow)
				}
			case <-t.C:
				addWatch()
				signal("")
			}
		}
	}()
	return c
}

// projectOfFile is the project a file of the Trackio directory belongs
// to: <project>.db and its -wal, -shm and -journal files.
func projectOfFile(name string) (string, bool) {
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		name = strings.TrimSuffix(name, suffix)
	}
	p, ok := strings.CutSuffix(name, DBExt)
	return p, ok && p != "" && !strings.HasPrefix(name, ".")
}
