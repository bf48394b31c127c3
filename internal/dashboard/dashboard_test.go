package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

// sseClient reads events from the dashboard's stream.
type sseClient struct {
	resp *http.Response
	sc   *bufio.Scanner
}

type sseEvent struct {
	Name string
	Data []byte
}

func openEvents(t testing.TB, base, project string) *sseClient {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/events?project="+project, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content-type = %q; want text/event-stream", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	c := &sseClient{resp: resp, sc: sc}
	t.Cleanup(func() { resp.Body.Close() })
	return c
}

// next returns the next named event (skipping comments and retry lines).
func (c *sseClient) next() (sseEvent, error) {
	var ev sseEvent
	for c.sc.Scan() {
		line := c.sc.Text()
		switch {
		case line == "":
			if ev.Name != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, "event: "):
			ev.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.Data = append(ev.Data, strings.TrimPrefix(line, "data: ")...)
		}
	}
	if err := c.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}

// until reads events until one named name satisfies ok.
func (c *sseClient) until(t testing.TB, name string, ok func([]byte) bool) []byte {
	t.Helper()
	for {
		ev, err := c.next()
		if err != nil {
			t.Fatalf("waiting for %s event: %v", name, err)
		}
		if ev.Name == name && ok(ev.Data) {
			return ev.Data
		}
	}
}

// newWriter opens a Trackio writer for project in dir, closed with the test.
func newWriter(t testing.TB, dir, project string) *trackiotest.Writer {
	t.Helper()
	w, err := trackiotest.OpenWriter(context.Background(), dir, project, trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func newTestServer(t testing.TB, dir string) (*Server, *httptest.Server) {
	t.Helper()
	s, err := NewWithOptions(dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s, hs
}

func newTestServerFrom(t testing.TB, s *Server) (*Server, string) {
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s, hs.URL
}

func TestPageIsEmbeddedAndSelfContained(t *testing.T) {
	_, hs := newTestServer(t, t.TempDir())
	for _, path := range []string{"/", "/app.js", "/style.css", "/uPlot.iife.min.js", "/uPlot.min.css", "/uPlot.LICENSE"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d; want 200", path, resp.StatusCode)
		}
		// Our own files name nothing remote (uPlot's carry its home page
		// in a comment, loaded from nowhere).
		if !strings.Contains(path, "uPlot") && (strings.Contains(string(body), "http://") && path != "/app.js" || strings.Contains(string(body), "https://")) {
			t.Errorf("GET %s references a remote URL; the page must work offline", path)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q; want default-src 'self', nothing unsafe", path, csp)
		}
		if path == "/uPlot.LICENSE" && !strings.Contains(string(body), "MIT License") {
			t.Errorf("uPlot's licence is not served with it")
		}
	}
}

// seriesOf returns each run's points of metric m in project p, from
// /api/series with the given extra query.
func seriesOf(t testing.TB, base, project, m, extra string) map[string][][2]float64 {
	t.Helper()
	resp, err := http.Get(base + "/api/series?project=" + url.QueryEscape(project) + "&m=" + url.QueryEscape(m) + extra)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /api/series: %d %s", resp.StatusCode, b)
	}
	var res struct {
		Charts []struct {
			Key  string `json:"key"`
			Runs []struct {
				ID string     `json:"id"`
				X  []float64  `json:"x"`
				Y  []*float64 `json:"y"`
			} `json:"runs"`
		} `json:"charts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	out := map[string][][2]float64{}
	for _, c := range res.Charts {
		for _, r := range c.Runs {
			for i, x := range r.X {
				y := math.NaN()
				if r.Y[i] != nil {
					y = *r.Y[i]
				}
				out[r.ID] = append(out[r.ID], [2]float64{x, y})
			}
		}
	}
	return out
}

type snapshotRun struct {
	ID      string                `json:"id"`
	Name    string                `json:"name"`
	Config  map[string]any        `json:"config"`
	Marker  string                `json:"marker"`
	Metrics map[string][4]float64 `json:"metrics"`
	System  map[string][4]float64 `json:"system"`
}

type snapshotMsg struct {
	Projects []projectSummary `json:"projects"`
	Project  *struct {
		Name  string        `json:"name"`
		MaxID int64         `json:"max_id"`
		Runs  []snapshotRun `json:"runs"`
		Media []mediaItem   `json:"media"`
	} `json:"project"`
}

func TestSnapshotThenLiveDelta(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := newWriter(t, dir, "proj")
	now := time.Now()
	for i := 0; i < 3; i++ {
		w.Log(ctx, "rid", "run", int64(i), map[string]any{"loss": float64(10 - i)}, now)
	}
	w.SetConfig(ctx, "rid", "run", map[string]any{"lr": 0.01}, now)
	w.LogSystem(ctx, "rid", "run", map[string]any{"cpu": 12.5}, now)

	_, hs := newTestServer(t, dir)
	// Wait until the follower has read the rows, then subscribe.
	var snap snapshotMsg
	for {
		c := openEvents(t, hs.URL, "proj")
		data := c.until(t, "snapshot", func([]byte) bool { return true })
		json.Unmarshal(data, &snap)
		if snap.Project != nil && len(snap.Project.Runs) == 1 && snap.Project.Runs[0].Metrics["loss"][3] == 3 && len(snap.Project.Runs[0].System) == 1 {
			run := snap.Project.Runs[0]
			if run.Config["lr"] != 0.01 || run.System["cpu"] != [4]float64{12.5, 12.5, 12.5, 1} || run.Metrics["loss"] != [4]float64{8, 8, 10, 3} {
				t.Fatalf("snapshot run = %+v; want config lr=0.01, loss last 8 min 8 max 10 of 3, one cpu point", run)
			}
			if got := seriesOf(t, hs.URL, "proj", "loss", ""); !reflect.DeepEqual(got["rid"], [][2]float64{{0, 10}, {1, 9}, {2, 8}}) {
				t.Fatalf("series = %v; want the three points", got)
			}
			// Live: a new row arrives as a delta on this stream.
			w.Log(ctx, "rid", "run", 3, map[string]any{"loss": 6.5}, now)
			data := c.until(t, "delta", func(b []byte) bool { return strings.Contains(string(b), `"step":3`) })
			var d delta
			if err := json.Unmarshal(data, &d); err != nil {
				t.Fatal(err)
			}
			if d.Project != "proj" || len(d.Rows) != 1 || d.Rows[0].V["loss"] != 6.5 || d.Rows[0].ID != snap.Project.MaxID+1 {
				t.Fatalf("delta = %s; want one row loss=6.5 with the next id", data)
			}
			return
		}
		c.resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBrokenProjectDoesNotStopOthers: a corrupt database is reported on
// its own project while another project keeps streaming.
func TestBrokenProjectDoesNotStopOthers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.db"), []byte(strings.Repeat("garbage!", 512)), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir, "good")
	_, hs := newTestServer(t, dir)
	c := openEvents(t, hs.URL, "good")
	w.Log(ctx, "r", "r", 0, map[string]any{"loss": 1.0}, time.Now())
	c.until(t, "delta", func(b []byte) bool { return strings.Contains(string(b), `"loss":1`) })
	for {
		resp, err := http.Get(hs.URL + "/api/projects")
		if err != nil {
			t.Fatal(err)
		}
		var list []projectSummary
		json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		var broken *projectSummary
		for i := range list {
			if list[i].Name == "broken" {
				broken = &list[i]
			}
		}
		if broken != nil && broken.Error != "" {
			if !strings.Contains(broken.Error, "unreadable") {
				t.Errorf("broken error = %q; want it to say unreadable", broken.Error)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.Log(ctx, "r", "r", 1, map[string]any{"loss": 0.5}, time.Now())
	c.until(t, "delta", func(b []byte) bool { return strings.Contains(string(b), `"loss":0.5`) })
}

func TestNumbersJSONNonFinite(t *testing.T) {
	tests := []struct {
		v    float64
		bits int
		want string
	}{
		{2.5, 64, `2.5`},
		{0.1, 32, `0.1`},
		{math.NaN(), 64, `null`},
		{math.Inf(-1), 32, `null`},
	}
	for _, tt := range tests {
		if got := string(appendNum(nil, tt.v, tt.bits)); got != tt.want {
			t.Errorf("appendNum(%v, %d) = %s; want %s", tt.v, tt.bits, got, tt.want)
		}
	}
}

// TestReplacedDatabaseStartsOver: deleting a project's database and
// writing a new one (ids restart at 1) resets the project instead of
// ignoring the new rows.
func TestReplacedDatabaseStartsOver(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, err := trackiotest.OpenWriter(ctx, dir, "p", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		w.Log(ctx, "old", "old", int64(i), map[string]any{"loss": 1.0}, time.Now())
	}
	_, hs := newTestServer(t, dir)
	c := openEvents(t, hs.URL, "p")
	for {
		data := c.until(t, "snapshot", func([]byte) bool { return true })
		if strings.Contains(string(data), `"old"`) {
			break
		}
		c.resp.Body.Close()
		c = openEvents(t, hs.URL, "p")
	}
	w.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(dir, "p.db"+suffix))
	}
	w2, err := trackiotest.OpenWriter(ctx, dir, "p", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	w2.Log(ctx, "new", "new", 0, map[string]any{"loss": 3.0}, time.Now())
	c.until(t, "reset", func([]byte) bool { return true })
	for {
		c2 := openEvents(t, hs.URL, "p")
		data := c2.until(t, "snapshot", func([]byte) bool { return true })
		if strings.Contains(string(data), `"new"`) {
			if strings.Contains(string(data), `"old"`) {
				t.Fatalf("snapshot after replacement still has the old run: %s", data)
			}
			return
		}
		c2.resp.Body.Close()
		time.Sleep(10 * time.Millisecond)
	}
}
