package dashboard

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/mlagent/mlagent/internal/trackio"
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

// browser is a headless Chromium page; it records every uncaught
// exception and console error or warning, and the test fails on any.
type browser struct {
	ctx context.Context
	mu  sync.Mutex
	js  []string
}

func newBrowser(t testing.TB) context.Context { return newBrowserPage(t).ctx }

func newBrowserPage(t testing.TB) *browser {
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
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	b := &browser{ctx: ctx}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.js {
			t.Errorf("page: %s", e)
		}
		cancelC()
		cancelA()
	})
	// The first action starts the browser, under the long-lived context.
	if err := chromedp.Do(ctx); err != nil {
		t.Skipf("chromium did not start: %v", err)
	}
	chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "uncaught: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeWarning {
				return
			}
			msg = "console." + string(e.Type) + ":"
			for _, a := range e.Args {
				msg += " " + string(a.Value) + a.Description
			}
		default:
			return
		}
		b.mu.Lock()
		b.js = append(b.js, msg)
		b.mu.Unlock()
	})
	return b
}

// pointsJS is the number of points drawn in the chart of metric m (-1
// while there is no such chart).
func pointsJS(m string) string {
	return `(() => {
  for (const c of document.querySelectorAll('.chart')) if (c.dataset.metric === ` + jsString(m) + `) return +c.dataset.points;
  return -1;
})()`
}

// waitJS waits until the JavaScript expression cond is true.
func waitJS(t testing.TB, ctx context.Context, what, cond string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("%s: %s never true (%v)", what, cond, err)
	}
}

func evalJS[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func waitPoints(t *testing.T, ctx context.Context, want int) {
	t.Helper()
	// A generous deadline for a slow CI machine; the 2 s target is measured
	// by BenchmarkRowToBrowserChart, not asserted here.
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	_, err := chromedp.Run(wctx, chromedp.Poll[bool](pointsJS("loss")+` === `+strconv.Itoa(want), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[int](pointsJS("loss")))
		t.Fatalf("loss chart has %d points; want %d (%v)", got, want, err)
	}
}

func TestBrowserSeesLivePoints(t *testing.T) {
	requireChromium(t)
	ctx := context.Background()
	dir := t.TempDir()
	w := newWriter(t, dir, "demo")
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

	cfg, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("config").textContent`))
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

// Strings a sandbox controls, each a would-be injection: the project name
// (the file name), run ids and names, metric names, config keys and
// values. Executed, each sets window.__xss.
const (
	xssProject = `p<img src=x onerror="window.__xss=1">`
	xssRunName = `<script>window.__xss=2</script>`
	xssRunID   = `"><svg onload="window.__xss=3">`
	xssMetric  = `<b onmouseover="window.__xss=4">m</b>`
	xssConfig  = `<img src=y onerror="window.__xss=5">`
)

// TestHostileStringsStayText: every string from a Trackio database shows
// as text, creates no element and runs no script; metric and config keys
// that are Object.prototype's own names (constructor, __proto__,
// toString) neither break the live page nor pollute prototypes.
func TestHostileStringsStayText(t *testing.T) {
	requireChromium(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, xssProject+".db")
	w, err := trackiotest.OpenWriter(ctx, dir, "tmp", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Rename(w.Path+s, path+s)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	logRow := func(runID, runName string, step int64, values map[string]any) {
		t.Helper()
		js, _ := trackiotest.EncodeValues(values)
		if _, err := db.Exec(trackio.InsertMetricSQL, trackiotest.FormatTimestamp(now), runID, runName, step, js); err != nil {
			t.Fatal(err)
		}
	}
	hostile := func(v float64) map[string]any {
		return map[string]any{"constructor": v, "__proto__": v, "toString": v, xssMetric: v}
	}
	logRow("plain", "plain", 0, map[string]any{"loss": 1.0})
	if _, err := db.Exec(trackio.UpsertConfigSQL, xssRunID, xssRunName,
		`{"`+strings.ReplaceAll(xssConfig, `"`, `\"`)+`":"`+strings.ReplaceAll(xssConfig, `"`, `\"`)+`","__proto__":{"polluted":1},"constructor":"c"}`,
		trackiotest.FormatTimestamp(now)); err != nil {
		t.Fatal(err)
	}
	_, hs := newTestServer(t, dir)

	bctx := newBrowser(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(hs.URL+"/?project="+url.QueryEscape(xssProject))); err != nil {
		t.Fatal(err)
	}
	waitPoints(t, bctx, 1)
	// The hostile run and its metrics arrive live, after the snapshot.
	logRow(xssRunID, xssRunName, 0, hostile(1))
	logRow(xssRunID, xssRunName, 1, hostile(0.5))
	logRow("plain", "plain", 1, map[string]any{"loss": 0.5})
	waitPoints(t, bctx, 2)
	for _, m := range []string{"constructor", "__proto__", "toString", xssMetric} {
		wctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		_, err := chromedp.Run(wctx, chromedp.Poll[bool](pointsJS(m)+` === 2`, chromedp.WithPollingInterval(20*time.Millisecond)))
		cancel()
		if err != nil {
			got, _ := chromedp.Run(bctx, chromedp.Evaluate[int](pointsJS(m)))
			t.Errorf("chart %q has %d points; want 2 (%v)", m, got, err)
		}
	}
	checks := map[string]string{
		"no script ran":          `window.__xss === undefined`,
		"no prototype polluted":  `({}).polluted === undefined && Object.prototype.polluted === undefined`,
		"no element injected":    `document.querySelectorAll("img, script:not([src]), [onerror], [onload], [onmouseover], b").length === 0`,
		"run name shown as text": `document.body.textContent.includes(` + jsString(xssRunName) + `)`,
		"project shown as text":  `document.body.textContent.includes(` + jsString(xssProject) + `)`,
		"config shown as text":   `document.body.textContent.includes(` + jsString(xssConfig) + `)`,
	}
	for what, js := range checks {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js))
		if err != nil || !ok {
			t.Errorf("%s: %s is false (%v)", what, js, err)
		}
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
