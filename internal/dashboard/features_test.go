package dashboard

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the light and dark screenshots to testdata/screenshots")

// The fixture: project "vision" (the newest) with three runs, and project
// "older" written an hour before.
const fixtureSteps = 3000

var fixtureRuns = []struct {
	id, name string
	lr       float64
	batch    int
}{
	{"r1", "bright-sun-1", 0.001, 32},
	{"r2", "calm-moon-2", 0.0003, 32},
	{"r3", "dark-star-3", 0.001, 64},
}

// trainLoss is run i's train/loss at step s (a decay with a wiggle, so
// the downsampled overview and the full resolution differ).
func trainLoss(i, s int) float64 {
	return 2.5*math.Exp(-float64(s)/float64(800+300*i)) + 0.05*math.Sin(float64(s)/7+float64(i)) + 0.1
}

type fixture struct {
	dir  string
	w    *trackiotest.Writer
	base time.Time // time of step 0
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	old, err := trackiotest.OpenWriter(ctx, dir, "older", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old.Log(ctx, "o1", "old-run", 0, map[string]any{"loss": 1.0}, time.Now().Add(-time.Hour))
	old.Close()

	w, err := trackiotest.OpenWriter(ctx, dir, "vision", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	f := &fixture{dir: dir, w: w, base: time.Now().Add(-20 * time.Minute)}
	tx, err := w.DB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range fixtureRuns {
		cfg, _ := trackiotest.EncodeValues(map[string]any{"lr": r.lr, "batch_size": r.batch, "optimizer": map[string]any{"name": "adamw", "eps": 1e-8}, "model": "resnet18"})
		tx.Exec(trackio.UpsertConfigSQL, r.id, r.name, cfg, trackiotest.FormatTimestamp(f.base))
		for s := 0; s < fixtureSteps; s++ {
			v := map[string]any{"train/loss": trainLoss(i, s), "train/acc": 1 - trainLoss(i, s)/3, "train/epoch": float64(s) / 50}
			if s%500 == 0 {
				v["val/loss"] = trainLoss(i, s) + 0.1
			}
			js, _ := trackiotest.EncodeValues(v)
			// Run r3 stopped ten minutes ago; the others are fresh.
			at := f.base.Add(time.Duration(s) * 300 * time.Millisecond)
			if i == 2 {
				at = f.base.Add(-30 * time.Minute).Add(time.Duration(s) * 100 * time.Millisecond)
			}
			if _, err := tx.Exec(trackio.InsertMetricSQL, trackiotest.FormatTimestamp(at), r.id, r.name, s, js); err != nil {
				t.Fatal(err)
			}
		}
		js, _ := trackiotest.EncodeValues(map[string]any{"gpu/0/utilization": 87.5 - float64(i), "gpu/0/memory_used": 6.5e9})
		at := f.base
		if i == 2 {
			at = f.base.Add(-30 * time.Minute)
		}
		tx.Exec(trackio.InsertSystemMetricSQL, trackiotest.FormatTimestamp(at), r.id, r.name, js)
	}
	// Media: an image file under media/ and a table.
	img := image.NewRGBA(image.Rect(0, 0, 24, 24))
	for x := 0; x < 24; x++ {
		for y := 0; y < 24; y++ {
			img.Set(x, y, color.RGBA{uint8(10 * x), uint8(10 * y), 160, 255})
		}
	}
	var pngb bytes.Buffer
	png.Encode(&pngb, img)
	rel := "vision/bright-sun-1/10/sample.png"
	os.MkdirAll(filepath.Join(dir, MediaDir, filepath.Dir(rel)), 0o755)
	os.WriteFile(filepath.Join(dir, MediaDir, rel), pngb.Bytes(), 0o644)
	tx.Exec(trackio.InsertMetricSQL, trackiotest.FormatTimestamp(f.base), "r1", "bright-sun-1", 10,
		`{"samples":{"_type":"trackio.image","file_path":"`+rel+`","caption":"a sample"},"preds":{"_type":"trackio.table","_value":[{"a":1,"b":2,"c":3},{"a":4,"b":5,"c":6}]}}`)
	// Run r2 ended with a crash marker.
	tx.Exec(trackio.UpsertMetadataSQL, MarkerPrefix+"r2", "crashed")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return f
}

// log writes one more train/loss row of run r1 at step s, now.
func (f *fixture) log(t *testing.T, s int) {
	t.Helper()
	if _, err := f.w.Log(context.Background(), "r1", "bright-sun-1", int64(s), map[string]any{"train/loss": trainLoss(0, s)}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) serve(t *testing.T) string {
	t.Helper()
	s, err := NewWithOptions(f.dir, nil, Options{Fallback: 50 * time.Millisecond, Debounce: time.Millisecond, StaleAfter: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, base := newTestServerFrom(t, s)
	return base
}

// open loads the page at base+path and waits until the train/loss chart
// is drawn.
func (b *browser) open(t *testing.T, base, path string) {
	t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(base+path)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b.ctx, "train/loss drawn", pointsJS("train/loss")+` > 0`)
}

// plotBox is the screen rectangle of a chart's plotting area.
type plotBox struct{ Left, Top, Width, Height float64 }

func (b *browser) plot(t *testing.T, metric string) plotBox {
	t.Helper()
	return evalJS[plotBox](t, b.ctx, `(() => {
  const r = window.__dash.chart(`+jsString("m:"+metric)+`).u.over.getBoundingClientRect();
  return {Left: r.left, Top: r.top, Width: r.width, Height: r.height};
})()`)
}

func (b *browser) mouse(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserChartFeatures(t *testing.T) {
	requireChromium(t)
	f := newFixture(t)
	base := f.serve(t)
	b := newBrowserPage(t)
	b.open(t, base, "/?project=vision")
	chart := func(js string) string { return `window.__dash.chart("m:train/loss")` + js }

	t.Run("groups by prefix, collapsible, searchable", func(t *testing.T) {
		groups := evalJS[[]string](t, b.ctx, `[...document.querySelectorAll("details.group")].map(d => d.dataset.group)`)
		if strings.Join(groups, ",") != "train,val,system" {
			t.Errorf("groups = %v; want train, val, system", groups)
		}
		evalJS[bool](t, b.ctx, `(() => { const d = document.querySelector('details[data-group="val"]'); d.open = false; return true; })()`)
		waitJS(t, b.ctx, "fold in the URL", `location.search.includes("fold=val")`)
		evalJS[bool](t, b.ctx, `(() => { const s = document.getElementById("search"); s.value = "acc"; s.dispatchEvent(new Event("input")); return true; })()`)
		visible := evalJS[[]string](t, b.ctx, `[...document.querySelectorAll(".chart")].filter(c => !c.hidden && !c.closest("details").hidden).map(c => c.dataset.metric)`)
		if strings.Join(visible, ",") != "train/acc" {
			t.Errorf("charts shown for search acc = %v; want train/acc", visible)
		}
		evalJS[bool](t, b.ctx, `(() => { const s = document.getElementById("search"); s.value = ""; s.dispatchEvent(new Event("input")); document.querySelector('details[data-group="val"]').open = true; return true; })()`)
	})

	t.Run("downsampled overview", func(t *testing.T) {
		n := evalJS[int](t, b.ctx, chart(`.data.get("r1").x.length`))
		if n >= fixtureSteps || n < 100 {
			t.Errorf("overview has %d points of run r1; want fewer than the %d logged (downsampled), at least 100", n, fixtureSteps)
		}
	})

	t.Run("hover shows every run's value with its colour", func(t *testing.T) {
		box := b.plot(t, "train/loss")
		b.mouse(t, chromedp.MouseEvent(chromedp.MouseMoved, box.Left+box.Width*0.4, box.Top+box.Height/2))
		waitJS(t, b.ctx, "tooltip", `!document.getElementById("tooltip").hidden`)
		type ttRow struct{ Run, Name, Value, Color, X string }
		rows := evalJS[[]ttRow](t, b.ctx, `[...document.querySelectorAll("#tooltip .tt-row")].map(r => ({Run: r.dataset.run, X: r.dataset.x, Name: r.querySelector(".tt-name").textContent, Value: r.querySelector(".tt-val").textContent, Color: r.querySelector(".swatch").style.backgroundColor}))`)
		head := evalJS[string](t, b.ctx, `document.querySelector("#tooltip .tt-x").textContent`)
		if !strings.HasPrefix(head, "≈ step ") || len(rows) != 3 {
			t.Fatalf("tooltip = %q, %+v; want an approximate step (the overview is downsampled) and three runs", head, rows)
		}
		for _, r := range rows {
			i := map[string]int{"r1": 0, "r2": 1, "r3": 2}[r.Run]
			got, err := strconv.ParseFloat(r.Value, 64)
			step, errX := strconv.Atoi(r.X)
			// Each run's point nearest the cursor: its step is on the row.
			want := trainLoss(i, step)
			if err != nil || errX != nil || math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) || r.Name != fixtureRuns[i].name || r.Color == "" || step < 1000 || step > 1400 {
				t.Errorf("tooltip row %+v; want %s %.6g at a step near 40%% of the axis, with a colour", r, fixtureRuns[i].name, want)
			}
		}
	})

	t.Run("drag zooms in at full resolution, double-click resets", func(t *testing.T) {
		box := b.plot(t, "train/loss")
		y := box.Top + box.Height/2
		x0, x1 := box.Left+box.Width*0.30, box.Left+box.Width*0.40
		b.mouse(t,
			chromedp.MouseEvent(chromedp.MouseMoved, x0, y),
			chromedp.MouseEvent(chromedp.MousePressed, x0, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(chromedp.MouseMoved, (x0+x1)/2, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(chromedp.MouseMoved, x1, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(chromedp.MouseReleased, x1, y, chromedp.ButtonLeft),
		)
		waitJS(t, b.ctx, "zoom in the URL", `location.search.includes("zoom=")`)
		lo := evalJS[float64](t, b.ctx, chart(`.u.scales.x.min`))
		hi := evalJS[float64](t, b.ctx, chart(`.u.scales.x.max`))
		if !(lo > 500 && hi < 1500 && hi > lo) {
			t.Fatalf("x scale after zoom = [%v, %v]; want about 30%%–40%% of 0–%d", lo, hi, fixtureSteps)
		}
		// Full resolution: every step in the window, from the server.
		want := int(math.Floor(hi) - math.Ceil(lo) + 1)
		waitJS(t, b.ctx, "full resolution in the zoomed window", chart(`.data.get("r1").x.length === `+strconv.Itoa(want)))
		b.mouse(t, chromedp.MouseClickXY(box.Left+box.Width/2, y, chromedp.ClickCount(2)))
		waitJS(t, b.ctx, "zoom reset", `!location.search.includes("zoom=") && `+chart(`.u && `)+chart(`.u.scales.x.min === 0`))
	})

	t.Run("log scale", func(t *testing.T) {
		b.mouse(t, chromedp.Click(chromedp.CSS("#logscale")))
		waitJS(t, b.ctx, "log y scale", chart(`.u && `)+chart(`.u.scales.y.distr === 3`))
		b.mouse(t, chromedp.Click(chromedp.CSS("#logscale")))
		waitJS(t, b.ctx, "linear y scale", chart(`.u && `)+chart(`.u.scales.y.distr === 1`))
	})

	t.Run("round ticks", func(t *testing.T) {
		labels := evalJS[[]string](t, b.ctx, chart(`.u.axes[1]._values`))
		if len(labels) < 3 {
			t.Fatalf("y tick labels = %v; want several", labels)
		}
		for _, l := range labels {
			digits := strings.TrimLeft(strings.ReplaceAll(strings.TrimLeft(l, "-"), ".", ""), "0")
			if len(digits) > 3 {
				t.Errorf("y tick %q of %v is not a round number", l, labels)
			}
		}
	})

	t.Run("x-axis: wall, relative time, a metric", func(t *testing.T) {
		for _, tt := range []struct{ value, label string }{{"rel", "relative time"}, {"m:train/epoch", "train/epoch"}, {"wall", "wall time"}, {"step", "step"}} {
			b.mouse(t, chromedp.SetValue(chromedp.CSS("#xaxis"), tt.value))
			evalJS[bool](t, b.ctx, `document.getElementById("xaxis").dispatchEvent(new Event("change")) || true`)
			waitJS(t, b.ctx, "x-axis "+tt.value, chart(`.u && `)+chart(`.u.axes[0].label === `+jsString(tt.label)))
		}
		waitJS(t, b.ctx, "steps again", chart(`.u && `)+chart(`.data.get("r1").x.at(-1) === `+strconv.Itoa(fixtureSteps-1)))
	})

	t.Run("smoothing is visibly off until set", func(t *testing.T) {
		if got := evalJS[string](t, b.ctx, `document.getElementById("smoothing-value").textContent`); got != "off" {
			t.Errorf("smoothing label = %q; want off", got)
		}
		evalJS[bool](t, b.ctx, `(() => { const s = document.getElementById("smoothing"); s.value = "0.8"; s.dispatchEvent(new Event("input")); return true; })()`)
		waitJS(t, b.ctx, "smoothed series drawn", chart(`.u && `)+chart(`.u.series.length === 7`))
		if got := evalJS[string](t, b.ctx, `document.getElementById("smoothing-value").textContent`); got != "0.80" {
			t.Errorf("smoothing label = %q; want 0.80", got)
		}
	})

	t.Run("single points are dots", func(t *testing.T) {
		c := `window.__dash.chart("s:gpu/0/utilization")`
		waitJS(t, b.ctx, "system chart", c+` && `+c+`.u && +`+c+`.el.dataset.points === 3`)
		if !evalJS[bool](t, b.ctx, `(() => { const u = `+c+`.u; return u.series.slice(1).every(s => s.points.show === true || (typeof s.points.show === "function" && s.points.show(u, 1))); })()`) {
			t.Error("single-point series are not drawn as points")
		}
		waitJS(t, b.ctx, "a relative time axis from 0, not −1…1", `(() => { const x = `+c+`.u.scales.x; return x.min === 0 && x.max > 0; })()`)
	})
}

func TestBrowserURLReproducesView(t *testing.T) {
	requireChromium(t)
	f := newFixture(t)
	base := f.serve(t)
	b := newBrowserPage(t)
	zoom := url.QueryEscape(`{"m:train/loss":[100,200]}`)
	path := "/?project=vision&x=rel&smooth=0.5&log=1&hide=r2&fold=val&zoom=" + zoom
	b.open(t, base, path)
	// Reload: the view must come back from the URL the page keeps.
	loc := evalJS[string](t, b.ctx, `location.href`)
	b2 := newBrowserPage(t)
	if err := chromedp.Do(b2.ctx, chromedp.Navigate(loc)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b2.ctx, "train/loss drawn", pointsJS("train/loss")+` > 0`)
	checks := map[string]string{
		"x-axis":          `document.getElementById("xaxis").value === "rel"`,
		"smoothing":       `document.getElementById("smoothing").value === "0.5"`,
		"log scale":       `document.getElementById("logscale").checked`,
		"hidden run":      `!document.querySelector('#runs li[data-run="r2"] input').checked && document.querySelector('#runs li[data-run="r1"] input').checked`,
		"folded group":    `!document.querySelector('details[data-group="val"]').open`,
		"zoom restored":   `(() => { const u = window.__dash.chart("m:train/loss").u; return u.scales.x.min === 100 && u.scales.x.max === 200; })()`,
		"hidden run gone": `!window.__dash.chart("m:train/loss").u.series.some(s => s.label === "calm-moon-2")`,
	}
	for what, js := range checks {
		waitJS(t, b2.ctx, what, js)
	}
	// And the page wrote the same view back.
	if got := evalJS[string](t, b2.ctx, `location.search`); !strings.Contains(got, "x=rel") || !strings.Contains(got, "hide=r2") || !strings.Contains(got, "zoom=") {
		t.Errorf("URL after reload = %s; want the same view", got)
	}
	_ = loc
}

func TestBrowserRunsConfigCompareMedia(t *testing.T) {
	requireChromium(t)
	f := newFixture(t)
	base := f.serve(t)
	b := newBrowserPage(t)
	// No project in the URL: the newest one is shown.
	if err := chromedp.Do(b.ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b.ctx, "newest project selected", `document.getElementById("project").value === "vision" && `+pointsJS("train/loss")+` > 0`)

	status := func(id string) string {
		return `(document.querySelector('#runs li[data-run="` + id + `"] .badge') || {}).textContent`
	}
	// r1 is still writing; keep it so while checking the others.
	f.log(t, fixtureSteps)
	waitJS(t, b.ctx, "r1 running", status("r1")+` === "running"`)
	waitJS(t, b.ctx, "r2 crashed (end marker)", status("r2")+` === "crashed"`)
	waitJS(t, b.ctx, "r3 finished (stopped long ago)", status("r3")+` === "finished"`)
	if d := evalJS[string](t, b.ctx, `document.querySelector('#runs li[data-run="r3"] .duration').textContent`); d != "5m" {
		t.Errorf("r3 duration = %q; want 5m (3000 rows 100 ms apart)", d)
	}
	// r1 stops writing: after StaleAfter (3s) it shows as finished.
	waitJS(t, b.ctx, "r1 finished once it stopped writing", status("r1")+` === "finished"`)

	t.Run("config comparison", func(t *testing.T) {
		diff := evalJS[[]string](t, b.ctx, `[...document.querySelectorAll("#config tr.diff th")].map(th => th.textContent)`)
		if strings.Join(diff, ",") != "batch_size,lr" {
			t.Errorf("differing config rows = %v; want batch_size, lr", diff)
		}
		row := evalJS[[]string](t, b.ctx, `[...[...document.querySelectorAll("#config tr")].find(tr => tr.firstChild.textContent === "lr").querySelectorAll("td")].map(td => td.textContent)`)
		if strings.Join(row, ",") != "0.001,0.0003,0.001" {
			t.Errorf("lr row = %v; want 0.001, 0.0003, 0.001", row)
		}
		if eps := evalJS[string](t, b.ctx, `[...document.querySelectorAll("#config tr")].find(tr => tr.firstChild.textContent === "optimizer.eps").querySelector("td").textContent`); eps != "1e-8" {
			t.Errorf("optimizer.eps shown as %q; want 1e-8", eps)
		}
	})

	t.Run("media listed, image shown", func(t *testing.T) {
		waitJS(t, b.ctx, "image loaded", `(() => { const i = document.querySelector('.media-item[data-type="trackio.image"] img'); return i && i.complete && i.naturalWidth === 24; })()`)
		if got := evalJS[string](t, b.ctx, `document.querySelector('.media-item[data-type="trackio.table"]').textContent`); !strings.Contains(got, "2 rows × 3 columns") {
			t.Errorf("table item = %q; want its size", got)
		}
	})

	t.Run("compare page", func(t *testing.T) {
		b.mouse(t, chromedp.Click(chromedp.CSS("#tab-compare")))
		waitJS(t, b.ctx, "compare table", `document.querySelectorAll("#compare-metrics thead th").length === 4`)
		best := evalJS[[]string](t, b.ctx, `[...document.querySelectorAll('#compare-metrics tr[data-metric="train/loss"] td')].map(td => td.className + ":" + td.textContent)`)
		if len(best) != 3 || strings.Count(strings.Join(best, " "), "best:") != 1 {
			t.Fatalf("train/loss final values = %v; want three, one marked best", best)
		}
		finals := []float64{trainLoss(0, fixtureSteps), trainLoss(1, fixtureSteps-1), trainLoss(2, fixtureSteps-1)}
		lowest := 0
		for i, v := range finals {
			if v < finals[lowest] {
				lowest = i
			}
		}
		if !strings.HasPrefix(best[lowest], "best:") {
			t.Errorf("train/loss finals = %v; want the lowest, of %s, marked best", best, fixtureRuns[lowest].name)
		}
		if got := evalJS[string](t, b.ctx, `location.search`); !strings.Contains(got, "view=compare") {
			t.Errorf("URL = %s; want view=compare", got)
		}
		b.mouse(t, chromedp.Click(chromedp.CSS("#compare-pick input[value=r3]")))
		waitJS(t, b.ctx, "run removed from the comparison", `document.querySelectorAll("#compare-metrics thead th").length === 3`)
	})
}

// TestBrowserScreenshots renders the dashboard in light and dark mode
// (the system's preference, emulated) and saves both; with
// -update-screenshots into testdata/screenshots, for review.
func TestBrowserScreenshots(t *testing.T) {
	requireChromium(t)
	f := newFixture(t)
	base := f.serve(t)
	out := t.TempDir()
	if *updateScreenshots {
		out = filepath.Join("testdata", "screenshots")
		os.MkdirAll(out, 0o755)
	}
	for _, scheme := range []string{"light", "dark"} {
		b := newBrowserPage(t)
		if err := chromedp.Do(b.ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return err
		})); err != nil {
			t.Fatal(err)
		}
		b.open(t, base, "/?project=vision&smooth=0.6")
		bg := evalJS[string](t, b.ctx, `getComputedStyle(document.body).backgroundColor`)
		if dark := bg == "rgb(15, 17, 21)"; dark != (scheme == "dark") {
			t.Errorf("%s: body background %s", scheme, bg)
		}
		box := b.plot(t, "train/loss")
		b.mouse(t, chromedp.MouseEvent(chromedp.MouseMoved, box.Left+box.Width*0.6, box.Top+box.Height/2))
		waitJS(t, b.ctx, "tooltip", `!document.getElementById("tooltip").hidden`)
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if len(png) < 10000 {
			t.Errorf("%s screenshot is %d bytes", scheme, len(png))
		}
		path := filepath.Join(out, "dashboard-"+scheme+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s screenshot: %s", scheme, path)
	}
}
