package demo

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
	_ "modernc.org/sqlite"
)

// torchPython is the interpreter with torch and numpy (Debian's
// python3-torch); the pyenv python3 on PATH has neither.
func torchPython() string {
	if p := os.Getenv("MLAGENT_TORCH_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// requirePython skips the test unless the interpreter can import modules.
func requirePython(t *testing.T, modules string) string {
	t.Helper()
	py := torchPython()
	if _, err := os.Stat(py); err != nil {
		t.Skipf("%s not found: the demo scripts need a Python with %s", py, modules)
	}
	out, err := exec.Command(py, "-c", "import "+modules).CombinedOutput()
	if err != nil {
		t.Skipf("%s cannot import %s (%v): %s", py, modules, err, lastLine(string(out)))
	}
	return py
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// runPy runs an embedded script from dir and decodes its last stdout line.
func runPy(t *testing.T, py, dir string, env []string, v any, script string, args ...string) {
	t.Helper()
	cmd := exec.Command(py, append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PYTHONDONTWRITEBYTECODE=1"}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", script, args, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal([]byte(lastLine(stdout.String())), v); err != nil {
		t.Fatalf("%s: last stdout line is not JSON: %v\n%s", script, err, stdout.String())
	}
}

func TestScriptsEmbedded(t *testing.T) {
	want := []string{ScriptSynth, ScriptInfer, ScriptSwin13, ScriptTrackioLite, ScriptTrain}
	sort.Strings(want)
	if got := Scripts(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Scripts() = %v; want %v", got, want)
	}
	for _, name := range want {
		if !strings.HasPrefix(Script(name), "#!/usr/bin/env python3\n\"\"\"") {
			t.Errorf("Script(%q) does not start with a shebang and a docstring", name)
		}
	}
	if got := Script("nope.py"); got != "" {
		t.Errorf("Script(nope.py) = %d bytes; want empty", len(got))
	}
}

// Two of the scripts are the bundled skills' helpers, not copies.
func TestScriptsFromSkills(t *testing.T) {
	for _, name := range []string{ScriptSwin13, ScriptTrackioLite} {
		if Script(name) == "" {
			t.Errorf("Script(%q) is empty; the skill file is missing", name)
		}
	}
}

// tableColumns lists a table's columns in order.
func tableColumns(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.Query("SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		t.Fatalf("table_info %s: %v", table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	return cols
}

// TestTrackioLiteSchema checks that trackio_lite writes the layout the Go
// reader expects, including Trackio's encoding of non-finite values.
func TestTrackioLiteSchema(t *testing.T) {
	py := requirePython(t, "sqlite3, json")
	dir := t.TempDir()
	if err := WriteScripts(dir); err != nil {
		t.Fatal(err)
	}
	tdir := filepath.Join(dir, "trackio")
	prog := `import trackio_lite as t
t.init(project="my proj!", name="r1", config={"lr": 0.1})
t.log({"loss": float("nan"), "up": float("inf"), "down": float("-inf"), "acc": 0.5}, step=3)
t.log({"acc": 0.75})
t.log_system({"gpu": 1.0})
t.finish()
try:
    t.init(project="my proj!", name="r1")
    print("reused")
except ValueError:
    print("refused")
t.init(project="my proj!", name="r1", resume="allow")
t.log({"acc": 0.9})
t.finish()
`
	cmd := exec.Command(py, "-c", prog)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TRACKIO_DIR="+tdir, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("trackio_lite: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "refused" {
		t.Errorf("init of an existing run without resume: got %q; want refused", got)
	}

	db, err := sql.Open("sqlite", filepath.Join(tdir, trackio.DBFileName("my proj!")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ref, err := sql.Open("sqlite", filepath.Join(dir, "ref.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if err := trackiotest.CreateSchema(context.Background(), ref, false); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{trackio.TableMetrics, trackio.TableConfigs, trackio.TableSystemMetrics, trackio.TableProjectMetadata} {
		if got, want := tableColumns(t, db, table), tableColumns(t, ref, table); !reflect.DeepEqual(got, want) {
			t.Errorf("%s columns = %v; want %v", table, got, want)
		}
	}

	rows, err := db.Query("SELECT run_id, run_name, step, metrics, timestamp FROM metrics ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		runID, name string
		step        int
		metrics     map[string]any
	}
	var got []row
	for rows.Next() {
		var r row
		var js, ts string
		if err := rows.Scan(&r.runID, &r.name, &r.step, &js, &ts); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(js), &r.metrics); err != nil {
			t.Fatalf("metrics %q: %v", js, err)
		}
		if !strings.HasSuffix(ts, "+00:00") || !strings.Contains(ts, "T") {
			t.Errorf("timestamp %q; want ISO 8601 UTC like Trackio", ts)
		}
		got = append(got, r)
	}
	if len(got) != 3 {
		t.Fatalf("got %d metric rows; want 3", len(got))
	}
	if m := got[0].metrics; m["loss"] != "NaN" || m["up"] != "Infinity" || m["down"] != "-Infinity" || m["acc"] != 0.5 {
		t.Errorf("first row = %v; want NaN/Infinity/-Infinity strings and acc 0.5", m)
	}
	if steps := []int{got[0].step, got[1].step, got[2].step}; !reflect.DeepEqual(steps, []int{3, 4, 5}) {
		t.Errorf("steps = %v; want [3 4 5] (implicit steps continue, also after resume)", steps)
	}
	if got[0].runID == "" || got[0].runID != got[2].runID {
		t.Errorf("run ids %q, %q; want one non-empty id kept across resume", got[0].runID, got[2].runID)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM configs WHERE run_name = 'r1'").Scan(&n); err != nil || n != 1 {
		t.Errorf("configs rows for r1 = %d (%v); want 1", n, err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM system_metrics").Scan(&n); err != nil || n != 1 {
		t.Errorf("system_metrics rows = %d (%v); want 1", n, err)
	}
}

// TestPipeline runs the demo's Python end to end at a small size:
// data → expansion check → training → inference.
func TestPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs torch training; skipped with -short")
	}
	py := requirePython(t, "torch, numpy")
	dir := t.TempDir()
	if err := WriteScripts(dir); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	run := filepath.Join(dir, "runs", "eurosat-1700000000")
	tdir := filepath.Join(dir, "trackio")
	env := []string{"TRACKIO_DIR=" + tdir}

	var meta struct {
		Classes []string
		Splits  map[string]int
	}
	runPy(t, py, dir, env, &meta, ScriptSynth, "--out", data, "--n-per-class", "50", "--seed", "3")
	if len(meta.Classes) != 10 || meta.Splits["test"] != 80 || meta.Splits["train"] != 340 {
		t.Fatalf("meta = %+v; want 10 classes, 340 train, 80 test", meta)
	}

	var swin struct {
		OK        bool
		InChans   int               `json:"in_chans"`
		Scale     []float64         `json:"scale"`
		MaxAbsErr float64           `json:"max_abs_err"`
		RelPos    struct{ OK bool } `json:"rel_pos_bias"`
		Swin      struct {
			Available bool
			OK        bool
			Reason    string
		}
	}
	runPy(t, py, dir, env, &swin, ScriptSwin13)
	if !swin.OK || swin.InChans != 13 || swin.MaxAbsErr > 1e-9 || !swin.RelPos.OK {
		t.Errorf("swin13 check = %+v; want ok, 13 bands, error <= 1e-9, bias tables ok", swin)
	}
	if want := []float64{15.0 / 13, 12.0 / 13, 12.0 / 13}; len(swin.Scale) != 3 || math.Abs(swin.Scale[0]-want[0]) > 1e-12 || math.Abs(swin.Scale[1]-want[1]) > 1e-12 {
		t.Errorf("scale = %v; want %v", swin.Scale, want)
	}
	if swin.Swin.Available && !swin.Swin.OK {
		t.Errorf("transformers Swin adaptation failed: %+v", swin.Swin)
	}
	if !swin.Swin.Available {
		t.Logf("Swin adaptation not run: %s", swin.Swin.Reason)
	}

	var m struct {
		TestAccuracy float64 `json:"test_accuracy"`
		ValAccuracy  float64 `json:"val_accuracy"`
		Epochs       int
		Steps        int
		NTest        int    `json:"n_test"`
		RunName      string `json:"run_name"`
		TrackioDB    string `json:"trackio_db"`
		Tracker      string
	}
	runPy(t, py, dir, env, &m, ScriptTrain, "--data", data, "--out", run, "--epochs", "4",
		"--lr", "3e-3", "--batch-size", "32", "--project", "demo-test", "--run-name", "eurosat-1700000000")
	if m.Epochs != 4 || m.NTest != 80 || m.RunName != "eurosat-1700000000" {
		t.Errorf("metrics = %+v; want 4 epochs, 80 test samples, the given run name", m)
	}
	for _, f := range []string{"checkpoint/model.pt", "checkpoint/config.json", "metrics.json"} {
		if _, err := os.Stat(filepath.Join(run, f)); err != nil {
			t.Errorf("run file: %v", err)
		}
	}
	var onDisk map[string]any
	if b, err := os.ReadFile(filepath.Join(run, "metrics.json")); err != nil || json.Unmarshal(b, &onDisk) != nil {
		t.Errorf("metrics.json unreadable: %v", err)
	} else if onDisk["test_accuracy"] != m.TestAccuracy {
		t.Errorf("metrics.json test_accuracy = %v; stdout said %v", onDisk["test_accuracy"], m.TestAccuracy)
	}

	csvPath := filepath.Join(run, "test_results.csv")
	var inf struct {
		Accuracy float64
		Correct  int
		Total    int
		PerClass []struct {
			Class    string
			Samples  int
			Correct  int
			Accuracy float64
		} `json:"per_class"`
		TopConfusions []struct {
			True, Predicted string
			Count           int
		} `json:"top_confusions"`
		Throughput struct {
			SamplesPerSec float64 `json:"samples_per_sec"`
			MsPerSample   float64 `json:"ms_per_sample"`
		}
	}
	runPy(t, py, dir, env, &inf, ScriptInfer, "--data", data, "--run", run, "--out", csvPath)
	if _, err := os.Stat(filepath.Join(run, "inference.json")); err != nil {
		t.Errorf("inference.json: %v", err)
	}

	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("read CSV: %v", err)
	}
	header := []string{"index", "true_label", "predicted_label", "confidence", "correct"}
	for _, c := range meta.Classes {
		header = append(header, "prob_"+c)
	}
	if !reflect.DeepEqual(recs[0], header) {
		t.Fatalf("CSV header = %v; want %v", recs[0], header)
	}
	if got := len(recs) - 1; got != meta.Splits["test"] || got != inf.Total {
		t.Fatalf("CSV rows = %d; want %d (test size) = total %d", got, meta.Splits["test"], inf.Total)
	}
	correct := 0
	for i, r := range recs[1:] {
		sum, best, bestJ := 0.0, -1.0, -1
		for j, s := range r[5:] {
			p, err := strconv.ParseFloat(s, 64)
			if err != nil || p < 0 || p > 1 {
				t.Fatalf("row %d prob %q: %v", i, s, err)
			}
			sum += p
			if p > best {
				best, bestJ = p, j
			}
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("row %d probabilities sum to %v; want 1 ± 1e-4", i, sum)
		}
		if r[0] != strconv.Itoa(i) {
			t.Errorf("row %d index = %s", i, r[0])
		}
		if conf, _ := strconv.ParseFloat(r[3], 64); conf != best || r[2] != meta.Classes[bestJ] {
			t.Errorf("row %d: predicted %s conf %s; want the argmax %s %v", i, r[2], r[3], meta.Classes[bestJ], best)
		}
		want := "0"
		if r[1] == r[2] {
			want = "1"
			correct++
		}
		if r[4] != want {
			t.Errorf("row %d correct = %s; want %s", i, r[4], want)
		}
	}
	if acc := float64(correct) / float64(len(recs)-1); correct != inf.Correct || math.Abs(acc-inf.Accuracy) > 1e-12 {
		t.Errorf("CSV accuracy = %d/%d = %v; reported %d, %v", correct, len(recs)-1, acc, inf.Correct, inf.Accuracy)
	}
	if math.Abs(inf.Accuracy-m.TestAccuracy) > 1e-12 {
		t.Errorf("inference accuracy %v; training reported test accuracy %v", inf.Accuracy, m.TestAccuracy)
	}
	if inf.Accuracy <= 0.3 {
		t.Errorf("test accuracy = %v; want > 0.3 (chance is 0.1)", inf.Accuracy)
	}
	n, c := 0, 0
	for i, pc := range inf.PerClass {
		n += pc.Samples
		c += pc.Correct
		if i > 0 && pc.Accuracy > inf.PerClass[i-1].Accuracy {
			t.Errorf("per_class not sorted by accuracy: %v after %v", pc, inf.PerClass[i-1])
		}
	}
	if n != inf.Total || c != inf.Correct {
		t.Errorf("per_class sums %d/%d; want %d/%d", c, n, inf.Correct, inf.Total)
	}
	for _, tc := range inf.TopConfusions {
		if tc.True == tc.Predicted || tc.Count < 1 {
			t.Errorf("confusion %+v is not an off-diagonal count", tc)
		}
	}
	if inf.Throughput.SamplesPerSec <= 0 || inf.Throughput.MsPerSample <= 0 {
		t.Errorf("throughput = %+v; want positive", inf.Throughput)
	}

	// Trackio: the run's train rows every 5 steps (and the last), one val
	// row per epoch, one test row.
	if m.Tracker != "trackio_lite" {
		t.Logf("tracker = %s (the trackio package is installed)", m.Tracker)
	}
	if want := filepath.Join(tdir, trackio.DBFileName("demo-test")); m.TrackioDB != want {
		t.Errorf("trackio_db = %q; want %q", m.TrackioDB, want)
	}
	db, err := sql.Open("sqlite", m.TrackioDB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var trainRows, valRows, testRows, maxStep int
	q := `SELECT
		COALESCE(SUM(json_extract(metrics, '$."train/loss"') IS NOT NULL), 0),
		COALESCE(SUM(json_extract(metrics, '$."val/acc"') IS NOT NULL), 0),
		COALESCE(SUM(json_extract(metrics, '$."test/acc"') IS NOT NULL), 0),
		COALESCE(MAX(step), -1)
		FROM metrics WHERE run_name = ?`
	if err := db.QueryRow(q, m.RunName).Scan(&trainRows, &valRows, &testRows, &maxStep); err != nil {
		t.Fatalf("query trackio db: %v", err)
	}
	wantTrain := m.Steps / 5
	if m.Steps%5 != 0 {
		wantTrain++
	}
	if trainRows != wantTrain || valRows != m.Epochs || testRows != 1 || maxStep != m.Steps {
		t.Errorf("trackio rows: train %d, val %d, test %d, max step %d; want %d, %d, 1, %d",
			trainRows, valRows, testRows, maxStep, wantTrain, m.Epochs, m.Steps)
	}
	var cfg string
	if err := db.QueryRow("SELECT config FROM configs WHERE run_name = ?", m.RunName).Scan(&cfg); err != nil {
		t.Fatalf("trackio config: %v", err)
	}
	if !strings.Contains(cfg, `"classes"`) || !strings.Contains(cfg, `"lr": 0.003`) {
		t.Errorf("trackio config = %s; want the run's arguments and classes", cfg)
	}
}
