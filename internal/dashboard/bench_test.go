package dashboard

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
