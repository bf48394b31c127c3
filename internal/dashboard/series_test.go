package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio"
)

func runWith(steps []int64, vals []float64) (*runData, *series) {
	r := newRun("r", "r")
	s := newSeries()
	for i, st := range steps {
		idx := r.push(st, float64(1000+i))
		r.seen(float64(1000 + i))
		s.add(idx, vals[i])
	}
	r.metrics["m"] = s
	return r, s
}

func TestDownsampleKeepsExtremesAndGaps(t *testing.T) {
	var steps []int64
	var vals []float64
	for i := 0; i < 1000; i++ {
		steps = append(steps, int64(i))
		vals = append(vals, math.Sin(float64(i)/50))
	}
	vals[500] = 9  // a spike
	vals[700] = -9 // a dip
	vals[300] = math.NaN()
	r, s := runWith(steps, vals)
	v := newView(r, s, false, xAxis{kind: "step"})
	i, j := v.span(math.Inf(-1), math.Inf(1))
	got := v.downsample(i, j, 100, 0, 999)
	if len(got) > 160 || len(got) < 50 {
		t.Fatalf("downsampled to %d points; want about 100", len(got))
	}
	has := func(x float64, pred func(float32) bool) bool {
		for _, p := range got {
			if p.x == x && pred(p.y) {
				return true
			}
		}
		return false
	}
	if !has(500, func(y float32) bool { return y == 9 }) || !has(700, func(y float32) bool { return y == -9 }) {
		t.Error("the spike or the dip was dropped")
	}
	if !has(300, func(y float32) bool { return y != y }) {
		t.Error("the NaN gap was dropped")
	}
	if got[0].x != 0 || got[len(got)-1].x != 999 {
		t.Errorf("first and last = %v, %v; want 0 and 999", got[0].x, got[len(got)-1].x)
	}
	for k := 1; k < len(got); k++ {
		if got[k].x < got[k-1].x {
			t.Fatalf("points out of x order at %d", k)
		}
	}
	// A window holding fewer points than asked: every point, unchanged.
	i, j = v.span(100, 149)
	if full := v.downsample(i, j, 100, 100, 149); len(full) != 50 || full[0].x != 100 || full[49].x != 149 {
		t.Errorf("window 100–149 = %d points from %v; want all 50", len(full), full[0].x)
	}
}

func TestViewOrdersStepsThatGoBack(t *testing.T) {
	// A resumed run logs steps 0–4, then 2–3 again.
	r, s := runWith([]int64{0, 1, 2, 3, 4, 2, 3}, []float64{0, 1, 2, 3, 4, 20, 30})
	v := newView(r, s, false, xAxis{kind: "step"})
	var xs []float64
	for k := 0; k < v.len(); k++ {
		xs = append(xs, v.xAt(k))
	}
	for k := 1; k < len(xs); k++ {
		if xs[k] < xs[k-1] {
			t.Fatalf("x = %v; want ascending", xs)
		}
	}
	if i, j := v.span(2, 3); j-i != 4 {
		t.Errorf("span 2–3 has %d points; want 4 (both passes)", j-i)
	}
}

func TestMetricAsXAxis(t *testing.T) {
	r, loss := runWith([]int64{0, 1, 2, 3}, []float64{4, 3, 2, 1})
	epoch := newSeries()
	epoch.add(1, 0.5) // rows 1 and 3 only
	epoch.add(3, 1.0)
	r.metrics["epoch"] = epoch
	v := newView(r, loss, false, xAxis{kind: "metric", metric: "epoch"})
	if v.len() != 2 || v.xAt(0) != 0.5 || v.yAt(0) != 3 || v.xAt(1) != 1 || v.yAt(1) != 1 {
		t.Errorf("loss by epoch = %d points, first (%v, %v); want (0.5, 3), (1, 1)", v.len(), v.xAt(0), v.yAt(0))
	}
	if newView(r, loss, false, xAxis{kind: "metric", metric: "absent"}) != nil {
		t.Error("a view on a missing x metric; want none")
	}
}

func TestThinKeepsExtremes(t *testing.T) {
	var steps []int64
	var vals []float64
	for i := 0; i < 400; i++ {
		steps = append(steps, int64(i))
		vals = append(vals, float64(i%7))
	}
	vals[123] = 100
	_, s := runWith(steps, vals)
	freed := s.thin()
	if freed < 150 || len(s.rows) != 400-freed {
		t.Fatalf("thin freed %d of 400, %d left", freed, len(s.rows))
	}
	found := false
	for k, v := range s.vals {
		found = found || (v == 100 && s.rows[k] == 123)
	}
	if !found || s.thinned != 1 || s.max != 100 {
		t.Errorf("after thinning the spike is kept %v, thinned %d, max %v; want kept, 1, 100", found, s.thinned, s.max)
	}
}

// TestMemoryBound: with MaxPoints below what the project holds, the
// dashboard keeps at most MaxPoints, thinning the longest series.
func TestMemoryBound(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, "p")
	tx, _ := w.DB().Begin()
	for i := 0; i < 5000; i++ {
		tx.Exec(trackio.InsertMetricSQL, "2026-01-01T00:00:00+00:00", "r", "r", i, `{"a":1,"b":2}`)
	}
	tx.Commit()
	s, err := NewWithOptions(dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond, MaxPoints: 4000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventually(t, 30*time.Second, "all rows read", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.projects["p"] != nil && s.projects["p"].maxID == 5000
	})
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.projects["p"]
	n := 0
	for _, sr := range p.runs[0].metrics {
		n += len(sr.rows)
	}
	if s.points > 4000 || int64(n) != s.points || p.points != s.points {
		t.Errorf("points kept = %d (counted %d, project %d); want at most 4000, consistent", s.points, n, p.points)
	}
}

func TestSeriesRequests(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := newWriter(t, dir, "p")
	for i := 0; i < 10; i++ {
		w.Log(ctx, "r", "r", int64(i), map[string]any{"loss": float64(i), "epoch": float64(i) / 5}, time.Now())
	}
	_, hs := newTestServer(t, dir)
	eventually(t, 15*time.Second, "rows read", func() bool { return hasPoint(t, hs.URL, "p", "loss", 9, 9) })
	tests := []struct {
		query string
		code  int
	}{
		{"project=p&m=loss", 200},
		{"project=p&m=loss&x=m:epoch", 200},
		{"project=p&m=loss&x=rel&xmin=0&xmax=1e9&points=5", 200},
		{"project=nope&m=loss", 404},
		{"project=p&m=loss&x=sideways", 400},
		{"project=p&m=loss&points=-1", 400},
		{"project=p&m=loss&xmin=NaN", 400},
		{"project=p" + strings.Repeat("&m=x", maxChartsPerRequest+1), 400},
	}
	for _, tt := range tests {
		resp, err := http.Get(hs.URL + "/api/series?" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("GET /api/series?%.60s = %d; want %d", tt.query, resp.StatusCode, tt.code)
		}
	}
	if got := seriesOf(t, hs.URL, "p", "loss", "&xmin=3&xmax=5"); len(got["r"]) != 3 || got["r"][0] != [2]float64{3, 3} {
		t.Errorf("window 3–5 = %v; want steps 3, 4, 5", got)
	}
	if got := seriesOf(t, hs.URL, "p", "loss", "&x=m:epoch"); len(got["r"]) != 10 || got["r"][5] != [2]float64{1, 5} {
		t.Errorf("loss by epoch = %v; want (1, 5) sixth", got)
	}
}

// TestMediaServesOnlyImagesInsideMedia: the image endpoint serves a PNG
// that a row lists, and refuses what a hostile sandbox could put there
// instead.
func TestMediaServesOnlyImagesInsideMedia(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	media := filepath.Join(dir, MediaDir)
	os.MkdirAll(filepath.Join(media, "p"), 0o755)
	pngBytes := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	os.WriteFile(filepath.Join(media, "p", "ok.png"), pngBytes, 0o644)
	os.WriteFile(filepath.Join(media, "p", "page.png"), []byte("<html><script>alert(1)</script>"), 0o644)
	secret := filepath.Join(t.TempDir(), "secret.png")
	os.WriteFile(secret, pngBytes, 0o644)
	os.Symlink(secret, filepath.Join(media, "p", "link.png"))
	os.Symlink(filepath.Dir(secret), filepath.Join(media, "p", "dirlink"))
	syscall.Mkfifo(filepath.Join(media, "p", "fifo.png"), 0o644)
	w := newWriter(t, dir, "p")
	for _, rel := range []string{"p/ok.png", "p/page.png", "p/link.png", "p/dirlink/secret.png", "p/fifo.png", "../outside.png"} {
		w.Log(ctx, "r", "r", 0, map[string]any{"img": map[string]any{"_type": "trackio.image", "file_path": rel}}, time.Now())
	}
	s, hs := newTestServer(t, dir)
	eventually(t, 15*time.Second, "media listed", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.projects["p"] != nil && len(s.projects["p"].media) == 6
	})
	tests := []struct {
		path string
		code int
	}{
		{"p/ok.png", 200},
		{"p/page.png", http.StatusUnsupportedMediaType},
		{"p/link.png", 404},
		{"p/dirlink/secret.png", 404},
		{"p/fifo.png", http.StatusForbidden},
		{"../outside.png", 404},
		{"p/unlisted.png", 404},
	}
	for _, tt := range tests {
		done := make(chan *http.Response, 1)
		go func() {
			resp, err := http.Get(hs.URL + "/api/media?project=p&path=" + url.QueryEscape(tt.path))
			if err != nil {
				t.Error(err)
				done <- nil
				return
			}
			done <- resp
		}()
		select {
		case resp := <-done:
			if resp == nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("media %s = %d; want %d", tt.path, resp.StatusCode, tt.code)
			}
			if tt.code == 200 && (resp.Header.Get("Content-Type") != "image/png" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") || string(body) != string(pngBytes)) {
				t.Errorf("media %s: type %q, CSP %q, %d bytes", tt.path, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"), len(body))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("media %s still blocked after 10s", tt.path)
		}
	}
}

// TestMediaDirectoryLinkIsNotFollowed: the media directory is the
// sandbox's too; swapped for a link to a host directory, its images must
// not be served (os.OpenRoot follows a link in the root's own name).
func TestMediaDirectoryLinkIsNotFollowed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	host := t.TempDir()
	pngBytes := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	os.WriteFile(filepath.Join(host, "secret.png"), pngBytes, 0o644)
	if err := os.Symlink(host, filepath.Join(dir, MediaDir)); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir, "p")
	w.Log(ctx, "r", "r", 0, map[string]any{"img": map[string]any{"_type": "trackio.image", "file_path": "secret.png"}}, time.Now())
	s, hs := newTestServer(t, dir)
	eventually(t, 15*time.Second, "media listed", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.projects["p"] != nil && len(s.projects["p"].media) == 1
	})
	resp, err := http.Get(hs.URL + "/api/media?project=p&path=secret.png")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("an image behind a linked media directory = %d, %d bytes; want 404", resp.StatusCode, len(body))
	}
}

func TestEndMarkers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := newWriter(t, dir, "p")
	w.Log(ctx, "a", "a", 0, map[string]any{"loss": 1.0}, time.Now())
	w.Log(ctx, "b", "b", 0, map[string]any{"loss": 1.0}, time.Now())
	w.DB().Exec(trackio.UpsertMetadataSQL, MarkerPrefix+"a", "finished")
	w.DB().Exec(trackio.UpsertMetadataSQL, MarkerPrefix+"b", "exploded") // not a status: ignored
	_, hs := newTestServer(t, dir)
	var snap snapshotMsg
	eventually(t, 15*time.Second, "marker read", func() bool {
		c := openEvents(t, hs.URL, "p")
		data := c.until(t, "snapshot", func([]byte) bool { return true })
		c.resp.Body.Close()
		snap = snapshotMsg{}
		return jsonUnmarshal(data, &snap) == nil && snap.Project != nil && len(snap.Project.Runs) == 2 && snap.Project.Runs[0].Marker != ""
	})
	if snap.Project.Runs[0].Marker != "finished" || snap.Project.Runs[1].Marker != "" {
		t.Errorf("markers = %q, %q; want finished and none", snap.Project.Runs[0].Marker, snap.Project.Runs[1].Marker)
	}
	// Run a resumes: its marker is removed, and a row logged.
	c := openEvents(t, hs.URL, "p")
	c.until(t, "snapshot", func([]byte) bool { return true })
	w.DB().Exec(`DELETE FROM project_metadata WHERE key = ?`, MarkerPrefix+"a")
	w.Log(ctx, "a", "a", 1, map[string]any{"loss": 0.5}, time.Now())
	c.until(t, "delta", func(b []byte) bool { return strings.Contains(string(b), `"markers":[{"run_id":"a","marker":""}]`) })
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestSeriesBound: a database naming more metrics than MaxSeries allows
// gets only MaxSeries charted; the budget comes back when it is replaced.
func TestSeriesBound(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, "p")
	tx, _ := w.DB().Begin()
	for i := 0; i < 50; i++ {
		tx.Exec(trackio.InsertMetricSQL, "2026-01-01T00:00:00+00:00", "r", "r", i, `{"m`+strings.Repeat("x", i)+`":1}`)
	}
	tx.Commit()
	s, err := NewWithOptions(dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond, MaxSeries: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	eventually(t, 30*time.Second, "all rows read", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.projects["p"] != nil && s.projects["p"].maxID == 50
	})
	s.mu.RLock()
	n := len(s.projects["p"].runs[0].metrics)
	left := s.seriesLeft
	s.mu.RUnlock()
	if n != 20 || left != 0 {
		t.Errorf("series kept = %d, budget left %d; want 20 and 0", n, left)
	}
}

// TestDownsampleStepsMatchesGeneric: the fast path for steps read in
// place keeps exactly the points the general one does, gaps and repeated
// extremes included.
func TestDownsampleStepsMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 300; trial++ {
		n := 2 + rng.IntN(3000)
		var steps []int64
		var vals []float64
		st := int64(rng.IntN(10))
		for i := 0; i < n; i++ {
			st += int64(rng.IntN(4)) // repeated steps too
			steps = append(steps, st)
			v := float64(rng.IntN(20)) // ties between extremes
			switch rng.IntN(50) {
			case 0:
				v = math.NaN()
			case 1:
				v = math.Inf(1 - 2*rng.IntN(2))
			}
			vals = append(vals, v)
		}
		r, s := runWith(steps, vals)
		v := newView(r, s, false, xAxis{kind: "step"})
		i := rng.IntN(n)
		j := i + rng.IntN(n-i+1)
		if j-i < 2 {
			continue
		}
		max := 4 + rng.IntN(400)
		blo, bhi := float64(steps[i])-float64(rng.IntN(5)), float64(steps[j-1])+float64(rng.IntN(5))
		fast := v.downsample(i, j, max, blo, bhi)
		slowDownsample = true
		slow := v.downsample(i, j, max, blo, bhi)
		slowDownsample = false
		if len(fast) != len(slow) {
			t.Fatalf("trial %d: fast path kept %d points; general %d", trial, len(fast), len(slow))
		}
		for k := range fast {
			if fast[k].x != slow[k].x || math.Float32bits(fast[k].y) != math.Float32bits(slow[k].y) {
				t.Fatalf("trial %d: point %d = %v; general %v", trial, k, fast[k], slow[k])
			}
		}
	}
}
