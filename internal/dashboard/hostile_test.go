package dashboard

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
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

// heldBytes is what the server keeps of the strings a database chose:
// configs, metric names, media captions, keys and paths.
func heldBytes(s *Server) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, p := range s.projects {
		for _, r := range p.runs {
			n += len(r.Config)
			for k := range r.metrics {
				n += len(k)
			}
			for k := range r.system {
				n += len(k)
			}
		}
		for _, m := range p.media {
			n += len(m.Caption) + len(m.Key) + len(m.Path) + len(m.Type)
		}
	}
	return n
}

// TestHeldBytesAreBounded: a database of a few kilobytes can make any
// number of megabyte values (generated columns), and the dashboard kept
// every run's config whole (up to 4 MiB each, 1,000 runs a project), every
// metric name however long, and every media caption: here 90 MiB from 60
// rows. mlagent run serves the dashboard, so this was the CLI's memory.
func TestHeldBytesAreBounded(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, "big.db"))
	if err != nil {
		t.Fatal(err)
	}
	const mb = `printf('%.*c', 500000, 'x')`
	if _, err := db.Exec(`CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id, timestamp, run_name, step,
			metrics AS ('{"' || ` + mb + ` || id || '":1,"img":{"_type":"trackio.image","file_path":"p/' || ` + mb + ` || '.png","caption":"' || ` + mb + ` || '"}}'));
		CREATE TABLE configs (id INTEGER PRIMARY KEY, run_id, run_name, created_at, config AS ('{"pad":"' || ` + mb + ` || '"}'));
		INSERT INTO metrics (run_id, timestamp, run_name, step) SELECT 'r', '2026-01-01T00:00:00+00:00', 'r', x FROM
			(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60) SELECT x FROM c);
		INSERT INTO configs (run_id, run_name, created_at) SELECT 'r' || id, 'r' || id, '' FROM metrics`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := NewWithOptions(dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond, ReadTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventually(t, 60*time.Second, "all rows read", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		p := s.projects["big"]
		return p != nil && p.maxID == 60 && len(p.runs) == 61 && p.runs[60].Config != nil
	})
	if n := heldBytes(s); n > 8<<20 {
		t.Errorf("the dashboard holds %d MiB of the database's strings; want at most 8 MiB", n>>20)
	}
}

// TestConfigBudget: configs draw on one budget for all projects; a
// config past it shows as a note, and a replaced config gives its bytes
// back.
func TestConfigBudget(t *testing.T) {
	left := int64(100)
	p := newProject("p", "")
	p.configLeft = &left
	a, b := p.run("a", "a"), p.run("b", "b")
	big := json.RawMessage(`{"x":"` + strings.Repeat("y", 72) + `"}`) // 80 bytes
	p.setConfig(a, big)
	p.setConfig(b, big)
	if string(a.Config) != string(big) || !strings.Contains(string(b.Config), "not kept") {
		t.Fatalf("configs = %s, %s; want the first kept, the second a note", a.Config, b.Config)
	}
	p.setConfig(a, json.RawMessage(`{}`))
	p.setConfig(b, big)
	if string(b.Config) != string(big) {
		t.Errorf("after a's config shrank, b's = %s; want it kept", b.Config)
	}
	if got := left + p.configBytes; got != 100 {
		t.Errorf("budget left %d + held %d = %d; want 100", left, p.configBytes, got)
	}
	huge := json.RawMessage(`{"x":"` + strings.Repeat("y", maxConfigBytes) + `"}`)
	left = 1 << 30
	p.setConfig(a, huge)
	if !strings.Contains(string(a.Config), "over the dashboard's limit") {
		t.Errorf("a config over %d bytes = %.60s; want a note", maxConfigBytes, a.Config)
	}
}

// TestDNSRebindingRefused: a web page the user opens can point its own
// host name at 127.0.0.1 and then read the dashboard as same-origin
// (DNS rebinding). On loopback only loopback names are answered.
func TestDNSRebindingRefused(t *testing.T) {
	_, hs := newTestServer(t, t.TempDir())
	for host, want := range map[string]int{
		"attacker.example:8080": http.StatusMisdirectedRequest,
		"attacker.example":      http.StatusMisdirectedRequest,
		"10.0.0.5:7000":         http.StatusMisdirectedRequest,
		"localhost:7000":        http.StatusOK,
		"LOCALHOST.":            http.StatusOK,
		"127.0.0.1:7000":        http.StatusOK,
		"[::1]:7000":            http.StatusOK,
	} {
		req, _ := http.NewRequest("GET", hs.URL+"/api/projects", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d; want %d", host, resp.StatusCode, want)
		}
	}
}

// TestWakeOnlyChangedProjects: a sandbox creating and removing a file in
// the Trackio directory in a loop made every notification wake every
// project (300 idle projects, ~200 creates a second: 45% of a host core).
// A notification now wakes the project it names; all are polled only
// every fallback interval.
func TestWakeOnlyChangedProjects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const idle = 40
	for i := 0; i < idle; i++ {
		w := newWriter(t, dir, fmt.Sprintf("p%03d", i))
		w.Log(ctx, "r", "r", 0, map[string]any{"loss": 1.0}, time.Now())
	}
	s, err := NewWithOptions(dir, nil, Options{Fallback: time.Second, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventually(t, 15*time.Second, "projects read", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return len(s.projects) == idle
	})
	before := s.polls.Load()
	start := time.Now()
	p := filepath.Join(dir, "zz.db")
	for time.Since(start) < 2*time.Second {
		f, _ := os.Create(p)
		f.Close()
		os.Remove(p)
		time.Sleep(5 * time.Millisecond)
	}
	polls := s.polls.Load() - before
	// Each idle project: one poll per fallback interval (2–3 in 2 s);
	// the churned file's own project a poll per notification at most.
	limit := int64(idle*4 + 400)
	t.Logf("%d polls in %v", polls, time.Since(start))
	if polls > limit {
		t.Errorf("%d polls while one file churned for 2s beside %d idle projects; want at most %d", polls, idle, limit)
	}
}
