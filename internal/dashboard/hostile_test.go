package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

// eventually fails the test if ok has not held after d.
func eventually(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func projectList(t *testing.T, base string) map[string]projectSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/projects", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/projects: %v", err)
	}
	defer resp.Body.Close()
	var list []projectSummary
	json.NewDecoder(resp.Body).Decode(&list)
	out := map[string]projectSummary{}
	for _, p := range list {
		out[p.Name] = p
	}
	return out
}

// snapshotOf returns the first snapshot of project's event stream, or ""
// if none came within 5s.
func snapshotOf(t *testing.T, base, project string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events?project="+project, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	c := &sseClient{resp: resp, sc: newScanner(resp.Body)}
	for {
		ev, err := c.next()
		if err != nil {
			return ""
		}
		if ev.Name == "snapshot" {
			return string(ev.Data)
		}
	}
}

// TestHostileFilesDoNotStopOthers: with a FIFO, a symlink to a host
// database and a recursive view next to it, a good project still updates
// live, each bad one shows why it is refused, the host database is never
// shown, and Close returns (mlagent run calls it on the way out).
func TestHostileFilesDoNotStopOthers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	want := trackiotest.PlantHostile(t, dir)
	w := newWriter(t, dir, "good")
	w.Log(ctx, "r", "r", 0, map[string]any{"loss": 1.0}, time.Now())

	s, err := NewWithOptions(dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := newHTTPServer(t, s)
	eventually(t, 15*time.Second, "the good project's first row", func() bool {
		return hasPoint(t, hs, "good", "loss", 0, 1)
	})
	w.Log(ctx, "r", "r", 1, map[string]any{"loss": 0.5}, time.Now())
	eventually(t, 15*time.Second, "the good project's second row", func() bool {
		return hasPoint(t, hs, "good", "loss", 1, 0.5)
	})
	eventually(t, 15*time.Second, "every hostile project refused with its reason", func() bool {
		list := projectList(t, hs)
		for name, why := range want {
			if !strings.Contains(list[name].Error, why) {
				return false
			}
		}
		return true
	})
	if snap := snapshotOf(t, hs, "b-link"); strings.Contains(snap, trackiotest.HostRun) {
		t.Errorf("the symlinked host database is shown: %s", snap)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close still blocked after 15s")
	}
}

// TestRelativeDir: mlagent dashboard --dir tk marked every database
// "invalid uri authority".
func TestRelativeDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, err := trackiotest.OpenWriter(ctx, filepath.Join(dir, "tk"), "proj", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Log(ctx, "r", "r", 0, map[string]any{"loss": 2.5}, time.Now())
	t.Chdir(dir)
	s, err := NewWithOptions("tk", nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hs := newHTTPServer(t, s)
	eventually(t, 15*time.Second, "the project read from a relative directory", func() bool {
		return hasPoint(t, hs, "proj", "loss", 0, 2.5)
	})
	if e := projectList(t, hs)["proj"].Error; e != "" {
		t.Errorf("project error = %q; want none", e)
	}
}

// hasPoint reports whether some run of project has the point (x, y) in
// metric m (false while the project is not known yet).
func hasPoint(t *testing.T, base, project, m string, x, y float64) bool {
	t.Helper()
	resp, err := http.Get(base + "/api/series?project=" + project + "&m=" + m)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false
	}
	for _, pts := range seriesOf(t, base, project, m, "") {
		for _, p := range pts {
			if p == [2]float64{x, y} {
				return true
			}
		}
	}
	return false
}

// newHTTPServer serves s; the caller closes s.
func newHTTPServer(t *testing.T, s *Server) string {
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func newScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	return sc
}

// TestNoCommittedRowIsMissed: a row committed into a restarted WAL, with
// the files' sizes and mtimes as before, reaches the page (issue 16: the
// size-and-mtime detector left it out for good).
func TestNoCommittedRowIsMissed(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, "p")
	s, err := NewWithOptions(dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hs := newHTTPServer(t, s)
	trackiotest.WALRestart(t, w, func() {
		eventually(t, 15*time.Second, "the row before the checkpoint", func() bool {
			return hasPoint(t, hs, "p", "loss", trackiotest.WALRestartStep-1, 0.5)
		})
		time.Sleep(300 * time.Millisecond) // several polls after the checkpoint
	})
	eventually(t, 10*time.Second, "the row committed into the restarted WAL", func() bool {
		return hasPoint(t, hs, "p", "loss", trackiotest.WALRestartStep, 0.25)
	})
}
