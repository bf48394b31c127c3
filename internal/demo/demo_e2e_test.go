package demo

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mlagent/mlagent/internal/sandbox/sandboxtest"
	"github.com/mlagent/mlagent/internal/testbin"
	"github.com/mlagent/mlagent/internal/trackio"
)

// TestDemoEndToEnd runs `mlagent demo` as a user would (small sizes) and
// checks what it leaves behind against what it reported.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo trains a model")
	}
	sandboxtest.RequireBwrap(t)
	requirePython(t, "torch, numpy")
	bin := testbin.Path(t)
	home, err := os.MkdirTemp("", "mlh") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	env := append(os.Environ(), "MLAGENT_HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "cfg"),
		"ANTHROPIC_API_KEY=") // the demo must need no key
	cmd := exec.Command(bin, "demo", "--per-class", "60", "--epochs", "3", "--dashboard-listen", "127.0.0.1:0")
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mlagent demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"live metrics: http://127.0.0.1:", "? Which model and dataset", "| **Accuracy** |", "**Overall:", "CSV saved to", "── demo finished ──"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}

	runs, _ := filepath.Glob(filepath.Join(home, "volumes", "data", "runs", "eurosat13-cnn-*"))
	if len(runs) != 1 {
		t.Fatalf("runs on the data volume: %v; want exactly one\n%s", runs, out)
	}
	run := runs[0]
	if st, err := os.Stat(filepath.Join(run, "checkpoint", "model.pt")); err != nil || st.Size() == 0 {
		t.Errorf("checkpoint: %v", err)
	}
	var metrics struct {
		NTest        int     `json:"n_test"`
		TestAccuracy float64 `json:"test_accuracy"`
		Steps        int     `json:"steps"`
		Project      string  `json:"project"`
	}
	readJSON(t, filepath.Join(run, "metrics.json"), &metrics)

	// The CSV: right columns, one row per test sample, rows sum to 1.
	f, err := os.Open(filepath.Join(run, "test_results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := rows[0]
	wantCols := []string{"index", "true_label", "predicted_label", "confidence", "correct"}
	if len(header) != len(wantCols)+10 || strings.Join(header[:5], ",") != strings.Join(wantCols, ",") {
		t.Fatalf("CSV header = %v", header)
	}
	for _, c := range header[5:] {
		if !strings.HasPrefix(c, "prob_") {
			t.Errorf("column %q; want prob_<Class>", c)
		}
	}
	if got := len(rows) - 1; got != metrics.NTest {
		t.Errorf("CSV rows = %d; want n_test = %d", got, metrics.NTest)
	}
	correct := 0
	for i, r := range rows[1:] {
		sum := 0.0
		for _, v := range r[5:] {
			p, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("row %d: %v", i, err)
			}
			sum += p
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("row %d: probabilities sum to %v", i, sum)
		}
		if (r[1] == r[2]) != (r[4] == "1") {
			t.Errorf("row %d: correct=%s but labels %s/%s", i, r[4], r[1], r[2])
		}
		if r[1] == r[2] {
			correct++
		}
	}
	csvAcc := float64(correct) / float64(len(rows)-1)

	// The accuracy the agent reported is the one recomputed from the CSV.
	m := regexp.MustCompile(`\*\*Overall: ([0-9.]+)% accuracy\*\* \((\d+) / (\d+) correct`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall accuracy in the report:\n%s", out)
	}
	reported, _ := strconv.ParseFloat(m[1], 64)
	if math.Abs(reported-100*csvAcc) > 0.005 {
		t.Errorf("reported %.2f%%; CSV says %.4f%%", reported, 100*csvAcc)
	}
	if m[2] != strconv.Itoa(correct) {
		t.Errorf("reported %s correct; CSV has %d", m[2], correct)
	}
	if csvAcc < 0.25 {
		t.Errorf("test accuracy %.3f; want well above the 0.10 of chance", csvAcc)
	}
	if math.Abs(csvAcc-metrics.TestAccuracy) > 1e-9 {
		t.Errorf("inference accuracy %.4f differs from training's test accuracy %.4f", csvAcc, metrics.TestAccuracy)
	}

	// The Trackio database holds the logged steps.
	db := filepath.Join(home, "volumes", "trackio", metrics.Project+".db")
	r, err := trackio.OpenReader(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rowsLogged, err := r.ReadMetrics(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	maxStep := int64(-1)
	for _, row := range rowsLogged {
		maxStep = max(maxStep, row.Step)
	}
	if len(rowsLogged) < 3 || maxStep < int64(metrics.Steps)-1 {
		t.Errorf("trackio: %d rows up to step %d; want the run's %d steps logged", len(rowsLogged), maxStep, metrics.Steps)
	}

	// The gateway's ledger holds the demo's usage.
	u := exec.Command(bin, "usage", "--json")
	u.Env = env
	uout, err := u.Output()
	if err != nil {
		t.Fatalf("mlagent usage: %v", err)
	}
	var usage []struct {
		Requests    int64   `json:"requests"`
		InputTokens int64   `json:"input_tokens"`
		CostUSD     float64 `json:"cost_usd"`
		RevokedAt   *string `json:"revoked_at"`
	}
	if err := json.Unmarshal(uout, &usage); err != nil {
		t.Fatalf("usage --json: %v\n%s", err, uout)
	}
	if len(usage) != 1 || usage[0].Requests < 10 || usage[0].InputTokens == 0 || usage[0].CostUSD == 0 {
		t.Errorf("ledger = %+v; want one token with the demo's requests", usage)
	}
	if len(usage) == 1 && usage[0].RevokedAt == nil {
		t.Error("the demo's token was not revoked at the end")
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
