package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mlagent/mlagent/internal/trackio"
)

// fillProject writes runs × steps metrics rows ("loss" = the step) in one
// transaction.
func fillProject(t testing.TB, dir, project string, runs []string, steps int) {
	t.Helper()
	w := newWriter(t, dir, project)
	tx, err := w.DB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.Prepare(trackio.InsertMetricSQL)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15:04:05.000000+00:00")
	for _, r := range runs {
		for i := 0; i < steps; i++ {
			if _, err := st.Exec(ts, r, r, i, `{"loss":`+itoa(i)+`}`); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

type seriesAnswer struct {
	MaxID  int64 `json:"max_id"`
	Charts []struct {
		Key  string `json:"key"`
		Runs []struct {
			ID    string    `json:"id"`
			Total int       `json:"total"`
			X     []float64 `json:"x"`
		} `json:"runs"`
	} `json:"charts"`
}

func getSeriesAnswer(t *testing.T, base, query string) seriesAnswer {
	t.Helper()
	resp, err := http.Get(base + "/api/series?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a seriesAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("series: %v: %.200s", err, body)
	}
	return a
}

// previewServer serves a project of two runs × steps rows, shown from a
// sample of previewRows rows; the follower holds before its first read of
// the rows until release is called.
func previewServer(t *testing.T, steps, previewRows int) (*Server, *httptest.Server, func()) {
	t.Helper()
	dir := t.TempDir()
	fillProject(t, dir, "big", []string{"a", "b"}, steps)
	gate := make(chan struct{})
	held := make(chan struct{}, 1)
	s, err := NewWithOptions(dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond, PreviewRows: previewRows, MaxSeries: 100,
		catchUpHook: func() {
			select {
			case held <- struct{}{}:
			default:
			}
			<-gate
		}})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { release(); hs.Close(); s.Close() })
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the follower never started reading behind a preview")
	}
	return s, hs, release
}

// TestPreviewWhileReading: a large project is shown at once from an
// evenly spaced sample of its rows (first and last included), with a
// notice of how far the server has read; once every row is read, the
// pages are told to reload and get every row. The sample spends none of
// the server's series budget.
func TestPreviewWhileReading(t *testing.T) {
	const steps = 600
	s, hs, release := previewServer(t, steps, 40)

	c := openEvents(t, hs.URL, "big")
	var snap snapshotJSON
	json.Unmarshal(c.until(t, "snapshot", func([]byte) bool { return true }), &snap)
	if snap.Project == nil || snap.Project.Preview == nil {
		t.Fatalf("snapshot of a project of %d rows held behind its reading: no preview (%+v)", 2*steps, snap.Project)
	}
	pr := snap.Project.Preview
	if pr.Total != 2*steps || pr.Sampled < 40 || pr.Sampled > 44 || pr.Loaded != 0 {
		t.Errorf("preview = %+v; want total %d, about 40 sampled, 0 loaded", *pr, 2*steps)
	}
	if len(snap.Project.Runs) != 2 {
		t.Errorf("preview runs = %d; want 2", len(snap.Project.Runs))
	}
	a := getSeriesAnswer(t, hs.URL, "project=big&m=loss&points=5000")
	if len(a.Charts) != 1 || len(a.Charts[0].Runs) != 2 {
		t.Fatalf("preview series = %+v; want one chart of two runs", a)
	}
	for _, r := range a.Charts[0].Runs {
		if n := len(r.X); n < 15 || n > 25 {
			t.Errorf("preview of run %s: %d points; want about 20 (a sample)", r.ID, n)
		}
	}
	if last := a.Charts[0].Runs[1].X; last[len(last)-1] != steps-1 {
		t.Errorf("preview of run b ends at step %v; want %d (the last row)", last[len(last)-1], steps-1)
	}

	release()
	c.until(t, "reset", func([]byte) bool { return true })
	c = openEvents(t, hs.URL, "big")
	snap = snapshotJSON{}
	json.Unmarshal(c.until(t, "snapshot", func([]byte) bool { return true }), &snap)
	if snap.Project == nil || snap.Project.Preview != nil {
		t.Fatalf("snapshot after the project is read: %+v; want no preview", snap.Project)
	}
	for _, r := range snap.Project.Runs {
		if r.Rows != steps {
			t.Errorf("run %s: %d rows; want %d", r.ID, r.Rows, steps)
		}
	}
	a = getSeriesAnswer(t, hs.URL, "project=big&m=loss&points=5000")
	for _, r := range a.Charts[0].Runs {
		if len(r.X) != steps {
			t.Errorf("run %s: %d points; want every one of %d", r.ID, len(r.X), steps)
		}
	}
	s.mu.RLock()
	left := s.seriesLeft
	s.mu.RUnlock()
	if left != 100-2 {
		t.Errorf("series budget left = %d; want 98 (the preview's own series returned)", left)
	}
}

// TestNoPreviewOfSmallProject: a project read in a moment is shown whole
// from the start.
func TestNoPreviewOfSmallProject(t *testing.T) {
	dir := t.TempDir()
	fillProject(t, dir, "small", []string{"a"}, 100)
	_, hs := newTestServer(t, dir)
	c := openEvents(t, hs.URL, "small")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var snap snapshotJSON
		json.Unmarshal(c.until(t, "snapshot", func([]byte) bool { return true }), &snap)
		if snap.Project != nil && snap.Project.Preview != nil {
			t.Fatalf("a project of 100 rows previewed: %+v", *snap.Project.Preview)
		}
		if snap.Project != nil && len(snap.Project.Runs) == 1 && snap.Project.Runs[0].Rows == 100 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("project never read")
		}
		time.Sleep(50 * time.Millisecond)
		c = openEvents(t, hs.URL, "small")
	}
}

// TestBrowserPreview: the page shows the sample with a notice saying so,
// then the whole project without it, with no reload by the user.
func TestBrowserPreview(t *testing.T) {
	requireChromium(t)
	// Few enough points for the page to ask for all of them.
	const steps = 150
	_, hs, release := previewServer(t, steps, 20)
	bctx := newBrowser(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+"/?project=big")); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	sampled := pointsJS("loss") + ` > 0`
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](sampled+` && !document.getElementById("notice").hidden`, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("sample never drawn with its notice: %v", err)
	}
	if n := evalJS[int](t, bctx, pointsJS("loss")); n < 15 || n > 25 {
		t.Errorf("the sample's chart has %d points; want about 20", n)
	}
	notice := evalJS[string](t, bctx, `document.getElementById("notice").textContent`)
	if !strings.Contains(notice, "sample of 21 of its 300 rows") {
		t.Errorf("notice = %q; want it to say the chart shows a sample of 21 of 300 rows", notice)
	}
	release()
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](pointsJS("loss")+` === `+itoa(2*steps)+` && document.getElementById("notice").hidden`, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		got := evalJS[int](t, bctx, pointsJS("loss"))
		t.Fatalf("whole project never drawn: %d points; want %d (%v)", got, 2*steps, err)
	}
}
