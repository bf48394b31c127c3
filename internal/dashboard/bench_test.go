package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func benchServer(b *testing.B) (*trackiotest.Writer, string) {
	ctx := context.Background()
	dir := b.TempDir()
	w, err := trackiotest.OpenWriter(ctx, dir, "bench", trackiotest.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	w.Log(ctx, "r", "r", 0, map[string]any{"loss": 1.0}, time.Now())
	// Default options: what `mlagent dashboard` runs with.
	s, err := New(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	_, hs := newTestServerFrom(b, s)
	return w, hs
}

// BenchmarkRowToSSE measures the time from a row committed to the
// database to the SSE event carrying it arriving at a client.
// Run: go test -run '^$' -bench RowToSSE -benchtime 30x ./internal/dashboard/
func BenchmarkRowToSSE(b *testing.B) {
	ctx := context.Background()
	w, base := benchServer(b)
	c := openEvents(b, base, "bench")
	c.until(b, "snapshot", func([]byte) bool { return true })
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		id, err := w.Log(ctx, "r", "r", int64(i+1), map[string]any{"loss": 1.0 / float64(i+2)}, t0)
		if err != nil {
			b.Fatal(err)
		}
		c.until(b, "delta", func(data []byte) bool {
			var d delta
			json.Unmarshal(data, &d)
			return d.MaxID >= id
		})
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(float64(median(lat).Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(maxDur(lat).Microseconds())/1000, "ms-max")
}

// BenchmarkRowToBrowserChart measures row committed → chart re-rendered
// in headless Chromium with that row (timestamps from the same clock).
// Run: go test -run '^$' -bench RowToBrowserChart -benchtime 30x ./internal/dashboard/
func BenchmarkRowToBrowserChart(b *testing.B) {
	requireChromium(b)
	ctx := context.Background()
	w, base := benchServer(b)
	bctx := newBrowser(b)
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/?project=bench")); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		id, err := w.Log(ctx, "r", "r", int64(i+1), map[string]any{"loss": 1.0 / float64(i+2)}, t0)
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		at, err := chromedp.Run(wctx, chromedp.Poll[int64](
			`(window.__dash && window.__dash.renderedMaxID >= `+strconv.FormatInt(id, 10)+`) ? window.__dash.renderedAt : 0`,
			chromedp.WithPollingInterval(5*time.Millisecond)))
		cancel()
		if err != nil {
			b.Fatalf("row %d never drawn: %v", id, err)
		}
		lat = append(lat, time.UnixMilli(at).Sub(t0))
	}
	b.ReportMetric(float64(median(lat).Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(maxDur(lat).Microseconds())/1000, "ms-max")
}

func maxDur(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// scaleDB returns a Trackio directory holding one project of runs ×
// metrics × steps (the 50 × 20 × 10,000 = 10 million points),
// made once and kept in the system's temporary directory between runs.
func scaleDB(b *testing.B, runs, metrics, steps int) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mlagent-bench-scale-%dx%dx%d", runs, metrics, steps))
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return dir
	}
	os.RemoveAll(dir)
	ctx := context.Background()
	w, err := trackiotest.OpenWriter(ctx, dir, "scale", trackiotest.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	tx, err := w.DB().Begin()
	if err != nil {
		b.Fatal(err)
	}
	st, err := tx.Prepare(trackio.InsertMetricSQL)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-time.Hour)
	var js []byte
	for r := 0; r < runs; r++ {
		id := fmt.Sprintf("run-%02d", r)
		for s := 0; s < steps; s++ {
			js = append(js[:0], '{')
			for m := 0; m < metrics; m++ {
				if m > 0 {
					js = append(js, ',')
				}
				js = fmt.Appendf(js, `"%s/m%02d":`, []string{"train", "val", "eval", "opt"}[m%4], m)
				v := math.Exp(-float64(s)/float64(2000+100*r))*float64(m+1) + 0.01*math.Sin(float64(s+r*7+m))
				js = strconv.AppendFloat(js, v, 'g', -1, 64)
			}
			js = append(js, '}')
			ts := trackiotest.FormatTimestamp(start.Add(time.Duration(s) * 300 * time.Millisecond))
			if _, err := st.Exec(ts, id, id, s, string(js)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "done"), nil, 0o644)
	return dir
}

func rssMB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkScale loads a project of 50 runs × 20 metrics × 10,000 steps
// (10 M points) and reports: the dashboard's catch-up time and memory
// (Go heap in use after a GC, and the process RSS, which includes the
// test's own SQLite cache), the /api/series answer for all 20 charts
// (time, size), the page in headless Chromium until the charts on the
// first screen are drawn and until all 20 are (ms since navigation), and a zoom by dragging until the zoomed window
// is redrawn at full resolution, and a hover until the tooltip lists all
// 50 runs. Browser figures are medians of three page loads.
// Run: go test -run '^$' -bench Scale -benchtime 1x -timeout 30m ./internal/dashboard/
func BenchmarkScale(b *testing.B) {
	const runs, metrics, steps = 50, 20, 10000
	dir := scaleDB(b, runs, metrics, steps)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		s, err := New(dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, base := newTestServerFrom(b, s)
		for {
			s.mu.RLock()
			p := s.projects["scale"]
			n := int64(0)
			if p != nil {
				n = p.points
			}
			s.mu.RUnlock()
			if n >= runs*metrics*steps {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "ingest-s")
		b.Logf("ingest %v", time.Since(t0))
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
		b.ReportMetric(rssMB(), "rss-MB")

		q := "/api/series?project=scale&points=500"
		for m := 0; m < metrics; m++ {
			q += "&m=" + url.QueryEscape(fmt.Sprintf("%s/m%02d", []string{"train", "val", "eval", "opt"}[m%4], m))
		}
		var lat []time.Duration
		size := 0
		for k := 0; k < 5; k++ {
			t1 := time.Now()
			resp, err := http.Get(base + q)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(t1))
			size = len(body)
		}
		b.ReportMetric(float64(median(lat).Microseconds())/1000, "series-ms")
		b.ReportMetric(float64(size)/1024, "series-KB")
		b.Logf("heap %.0f MB, rss %.0f MB, series %v, %d KB", float64(ms.HeapInuse)/(1<<20), rssMB(), median(lat), size/1024)

		if _, err := os.Stat(chromiumPath); err != nil || testing.Short() {
			continue
		}
		var firsts, loads, zooms, hovers []time.Duration
		for k := 0; k < 3; k++ {
			page := newBrowserPage(b)
			if err := chromedp.Do(page.ctx, chromedp.Navigate(base+"/?project=scale")); err != nil {
				b.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(page.ctx, 120*time.Second)
			at, err := chromedp.Run(wctx, chromedp.Poll[float64](`window.__dash && window.__dash.allDrawnAt`, chromedp.WithPollingInterval(10*time.Millisecond)))
			cancel()
			if err != nil {
				b.Fatalf("charts never all drawn: %v", err)
			}
			loads = append(loads, time.Duration(at*float64(time.Millisecond)))
			first := evalJS[float64](b, page.ctx, `window.__dash.firstScreenAt`)
			firsts = append(firsts, time.Duration(first*float64(time.Millisecond)))
			b.Logf("first screen %.0f ms, every chart %.0f ms; %s", first, at, evalJS[string](b, page.ctx, `JSON.stringify(window.__dash.perf)`))
			// Zoom train/m00 to 10% of its range by dragging.
			box := evalJS[plotBox](b, page.ctx, `(() => { const c = window.__dash.chart("m:train/m00"); c.el.scrollIntoView(); const r = c.u.over.getBoundingClientRect(); return {Left: r.left, Top: r.top, Width: r.width, Height: r.height}; })()`)
			y := box.Top + box.Height/2
			x0, x1 := box.Left+box.Width*0.45, box.Left+box.Width*0.55
			t2 := time.Now()
			if err := chromedp.Do(page.ctx,
				chromedp.MouseEvent(chromedp.MouseMoved, x0, y),
				chromedp.MouseEvent(chromedp.MousePressed, x0, y, chromedp.ButtonLeft),
				chromedp.MouseEvent(chromedp.MouseMoved, x1, y, chromedp.ButtonLeft),
				chromedp.MouseEvent(chromedp.MouseReleased, x1, y, chromedp.ButtonLeft),
			); err != nil {
				b.Fatal(err)
			}
			wctx, cancel = context.WithTimeout(page.ctx, 60*time.Second)
			_, err = chromedp.Run(wctx, chromedp.Poll[bool](`(() => { const c = window.__dash.chart("m:train/m00"), d = c.data.get("run-00"); return !!d && d.x.length > 0 && d.x.length === d.x.at(-1) - d.x[0] + 1 && c.u.scales.x.max - c.u.scales.x.min < 2000; })()`, chromedp.WithPollingInterval(5*time.Millisecond)))
			cancel()
			if err != nil {
				st, _ := chromedp.Run(page.ctx, chromedp.Evaluate[string](`(() => { const c = window.__dash.chart("m:train/m00"), d = c.data.get("run-00"); return JSON.stringify({n: d && d.x.length, first: d && d.x[0], last: d && d.x.at(-1), min: c.u.scales.x.min, max: c.u.scales.x.max, zoom: [...window.__dash.zoom], loc: location.search}); })()`))
				b.Fatalf("zoom never drawn at full resolution: %v; %s", err, st)
			}
			zooms = append(zooms, time.Since(t2))
			// Hover: the tooltip with all 50 runs' values.
			evalJS[bool](b, page.ctx, `(() => { document.getElementById("tooltip").hidden = true; return true; })()`)
			t3 := time.Now()
			if err := chromedp.Do(page.ctx, chromedp.MouseEvent(chromedp.MouseMoved, box.Left+box.Width*0.3, y)); err != nil {
				b.Fatal(err)
			}
			wctx, cancel = context.WithTimeout(page.ctx, 30*time.Second)
			_, err = chromedp.Run(wctx, chromedp.Poll[bool](`document.querySelectorAll("#tooltip .tt-row").length === 50 && !document.getElementById("tooltip").hidden`, chromedp.WithPollingInterval(5*time.Millisecond)))
			cancel()
			if err != nil {
				b.Fatalf("tooltip never showed 50 runs: %v", err)
			}
			hovers = append(hovers, time.Since(t3))
		}
		b.ReportMetric(float64(median(firsts).Milliseconds()), "first-screen-ms")
		b.ReportMetric(float64(median(loads).Milliseconds()), "all-charts-ms")
		b.ReportMetric(float64(median(zooms).Milliseconds()), "zoom-ms")
		b.ReportMetric(float64(median(hovers).Milliseconds()), "hover-ms")
	}
}

// BenchmarkScaleFresh starts a dashboard on the 10 M-point project of
// BenchmarkScale and opens the page at once, as a user does after
// `mlagent dashboard`: it reports the time from the server's start until
// every chart shows something, and until every chart shows every run's
// last step with the page no longer showing a preview (the whole project
// loaded), in ms; medians of three starts.
// Run: go test -run '^$' -bench ScaleFresh -benchtime 1x -timeout 30m ./internal/dashboard/
func BenchmarkScaleFresh(b *testing.B) {
	requireChromium(b)
	const runs, metrics, steps = 50, 20, 10000
	dir := scaleDB(b, runs, metrics, steps)
	complete := fmt.Sprintf(`(() => { const d = window.__dash; if (!d || (d.project && d.project.preview) || d.charts.size !== %d) return false;
		for (const c of d.charts.values()) { if (c.data.size !== %d) return false; for (const r of c.data.values()) if (!r.x.length || r.x.at(-1) !== %d) return false; }
		return true; })()`, metrics, runs, steps-1)
	for i := 0; i < b.N; i++ {
		var drawn, full []time.Duration
		for k := 0; k < 3; k++ {
			page := newBrowserPage(b)
			t0 := time.Now()
			s, err := New(dir, nil)
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(s.Handler())
			previewAt := make(chan time.Duration, 1)
			go func() {
				for time.Since(t0) < time.Minute {
					s.mu.RLock()
					p := s.projects["scale"]
					ok := p != nil && p.preview != nil
					s.mu.RUnlock()
					if ok {
						previewAt <- time.Since(t0)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
				previewAt <- -1
			}()
			t1 := time.Now()
			if err := chromedp.Do(page.ctx, chromedp.Navigate(hs.URL+"/?project=scale")); err != nil {
				b.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(page.ctx, 180*time.Second)
			_, err = chromedp.Run(wctx, chromedp.Poll[bool](fmt.Sprintf(`!!window.__dash && window.__dash.charts.size === %d && [...window.__dash.charts.values()].every((c) => c.drawnOnce)`, metrics), chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(170*time.Second)))
			if err != nil {
				cancel()
				b.Fatalf("charts never drawn: %v", err)
			}
			drawn = append(drawn, time.Since(t0))
			_, err = chromedp.Run(wctx, chromedp.Poll[bool](complete, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(170*time.Second)))
			cancel()
			if err != nil {
				b.Fatalf("project never shown whole: %v", err)
			}
			full = append(full, time.Since(t0))
			b.Logf("start %d: every chart drawn %v, whole project shown %v; rss %.0f MB; sample ready %v, navigated %v; page %s", k, drawn[k], full[k], rssMB(),
				<-previewAt, t1.Sub(t0), evalJS[string](b, page.ctx, `JSON.stringify({snapshots: __dash.snapshots, snapshotAt: __dash.snapshotAt, firstScreenAt: __dash.firstScreenAt, allDrawnAt: __dash.allDrawnAt, perf: __dash.perf})`))
			// The page away first, then the server: it ends the page's
			// event stream, which hs.Close would otherwise wait for.
			if err := chromedp.Do(page.ctx, chromedp.Navigate("about:blank")); err != nil {
				b.Fatal(err)
			}
			s.Close()
			hs.Close()
		}
		b.ReportMetric(float64(median(drawn).Milliseconds()), "drawn-ms")
		b.ReportMetric(float64(median(full).Milliseconds()), "whole-ms")
	}
}
