package dashboard

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

const chromiumPath = "/usr/bin/chromium"

// requireChromium skips when Debian's chromium is not installed (CI
// installs it, so the test runs there).
func requireChromium(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test needs %s (apt-get install chromium)", chromiumPath)
	}
}

func newBrowser(t testing.TB) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	// The first action starts the browser, under the long-lived context.
	if err := chromedp.Do(ctx); err != nil {
		t.Skipf("chromium did not start: %v", err)
	}
	return ctx
}

// chartPointsJS counts the vertices actually drawn in the loss chart.
const chartPointsJS = `(() => {
  const c = document.querySelector('.chart[data-metric="loss"]');
  if (!c) return -1;
  let n = 0;
  for (const p of c.querySelectorAll('polyline')) n += p.points.numberOfItems;
  return n;
})()`

func waitPoints(t *testing.T, ctx context.Context, want int) {
	t.Helper()
	// A generous deadline for a slow CI machine; the 2 s target is measured
	// by BenchmarkRowToDashboard, not asserted here.
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	_, err := chromedp.Run(wctx, chromedp.Poll[bool](chartPointsJS+` === `+strconv.Itoa(want), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[int](chartPointsJS))
		t.Fatalf("loss chart has %d points; want %d (%v)", got, want, err)
	}
}

func TestBrowserSeesLivePoints(t *testing.T) {
	requireChromium(t)
	ctx := context.Background()
	dir := t.TempDir()
	w, err := trackiotest.OpenWriter(ctx, dir, "demo", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Now()
	for i := 0; i < 5; i++ {
		w.Log(ctx, "run-1", "bright-sun-1", int64(i), map[string]any{"loss": 2.0 / float64(i+1), "acc": 0.1 * float64(i)}, now)
	}
	w.SetConfig(ctx, "run-1", "bright-sun-1", map[string]any{"learning_rate": 0.001}, now)
	_, hs := newTestServer(t, dir)

	bctx := newBrowser(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+"/?project=demo")); err != nil {
		t.Fatal(err)
	}
	waitPoints(t, bctx, 5)

	cfg, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("configs").textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "learning_rate"; !strings.Contains(cfg, want) {
		t.Errorf("config panel = %q; want it to show %q", cfg, want)
	}

	renders, _ := chromedp.Run(bctx, chromedp.Evaluate[int](`window.__dash.renders`))
	w.Log(ctx, "run-1", "bright-sun-1", 5, map[string]any{"loss": 0.25}, now)
	waitPoints(t, bctx, 6)

	// No page reload: the same page object rendered again.
	after, _ := chromedp.Run(bctx, chromedp.Evaluate[int](`window.__dash.renders`))
	if after <= renders {
		t.Errorf("renders %d -> %d; want the live page to re-render, not reload", renders, after)
	}
}
