package trackio_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/trackio"
	"github.com/mlagent/mlagent/internal/trackio/trackiotest"
)

func TestDBFileName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"my-project", "my-project.db"},
		{"a b/c..d", "abcd.db"},
		{"../../etc", "etc.db"},
		{"", "default.db"},
		{"!!!", "default.db"},
		{"run_1", "run_1.db"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := trackio.DBFileName(tt.in); got != tt.want {
				t.Errorf("trackio.DBFileName(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRoundTripBothLayouts(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run("legacy="+strconv.FormatBool(legacy), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			w, err := trackiotest.OpenWriter(ctx, dir, "proj", trackiotest.WriterOptions{Legacy: legacy})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			for i := 0; i < 5; i++ {
				if _, err := w.Log(ctx, "id-a", "run-a", int64(i), map[string]any{"loss": 1.0 / float64(i+1), "acc": math.NaN()}, ts); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.SetConfig(ctx, "id-a", "run-a", map[string]any{"lr": 0.1}, ts); err != nil {
				t.Fatal(err)
			}
			if !legacy {
				if _, err := w.LogSystem(ctx, "id-a", "run-a", map[string]any{"gpu/0/util": 50.0}, ts); err != nil {
					t.Fatal(err)
				}
			}
			r, err := trackio.OpenReader(ctx, w.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			b, err := r.Poll(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			wantLayout := trackio.LayoutRunID
			wantRunID := "id-a"
			if legacy {
				wantLayout, wantRunID = trackio.LayoutLegacy, "run-a"
			}
			if l := r.Layout(); l != wantLayout {
				t.Errorf("layout = %v; want %v", l, wantLayout)
			}
			if len(b.Metrics) != 5 {
				t.Fatalf("got %d metrics rows; want 5", len(b.Metrics))
			}
			if b.Metrics[2].RunID != wantRunID || b.Metrics[2].RunName != "run-a" || b.Metrics[2].Step != 2 {
				t.Errorf("row = %+v; want run %q/run-a step 2", b.Metrics[2], wantRunID)
			}
			if b.Metrics[0].Timestamp != "2026-01-02T03:04:05+00:00" {
				t.Errorf("timestamp = %q; want 2026-01-02T03:04:05+00:00", b.Metrics[0].Timestamp)
			}
			v, err := trackio.Values(b.Metrics[1].Raw)
			if err != nil {
				t.Fatal(err)
			}
			if v["loss"] != 0.5 || !math.IsNaN(v["acc"]) {
				t.Errorf("values = %v; want loss 0.5, acc NaN", v)
			}
			if len(b.Configs) != 1 || b.Configs[0].RunID != wantRunID {
				t.Errorf("configs = %+v; want one for %q", b.Configs, wantRunID)
			}
			wantSys := 1
			if legacy {
				wantSys = 0
			}
			if len(b.System) != wantSys {
				t.Errorf("got %d system rows; want %d", len(b.System), wantSys)
			}
			// Incremental: nothing new, then exactly the new row.
			if b, err = r.Poll(ctx, 0); err != nil || !b.Empty() {
				t.Fatalf("second poll = %+v, %v; want empty", b, err)
			}
			if _, err := w.Log(ctx, "id-a", "run-a", 5, map[string]any{"loss": 0.1}, ts); err != nil {
				t.Fatal(err)
			}
			if b, err = r.Poll(ctx, 0); err != nil || len(b.Metrics) != 1 || b.Metrics[0].Step != 5 {
				t.Fatalf("third poll = %+v, %v; want the step-5 row", b.Metrics, err)
			}
		})
	}
}

// TestOldestLayoutWithProjectName reads a database from the first Trackio
// releases (project_name column, no configs table).
func TestOldestLayoutWithProjectName(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
		project_name TEXT NOT NULL, run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL);
		INSERT INTO metrics (timestamp, project_name, run_name, step, metrics) VALUES ('2025-01-01T00:00:00', 'old', 'r1', 0, '{"loss": 2.5}');`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r, err := trackio.OpenReader(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := r.Poll(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Metrics) != 1 || b.Metrics[0].RunID != "r1" || len(b.Configs) != 0 {
		t.Fatalf("got %+v; want one r1 row and no configs", b)
	}
}

// TestBlobJSON: Trackio writes orjson bytes, which SQLite stores as BLOB.
func TestBlobJSON(t *testing.T) {
	ctx := context.Background()
	w, err := trackiotest.OpenWriter(ctx, t.TempDir(), "p", trackiotest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.DB().Exec(trackio.InsertMetricSQL, "2026-01-01T00:00:00+00:00", "i", "n", 3, []byte(`{"loss":1.5,"img":{"_type":"trackio.image"}}`)); err != nil {
		t.Fatal(err)
	}
	r, _ := trackio.OpenReader(ctx, w.Path)
	defer r.Close()
	rows, err := r.ReadMetrics(ctx, 0, 10)
	if err != nil || len(rows) != 1 {
		t.Fatalf("got %v, %v; want one row", rows, err)
	}
	v, _ := trackio.Values(rows[0].Raw)
	if len(v) != 1 || v["loss"] != 1.5 {
		t.Errorf("values = %v; want only loss=1.5", v)
	}
}

func TestMissingTablesIsEmptyNotError(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "empty.db")
	db, _ := sql.Open("sqlite", path)
	db.Exec(`CREATE TABLE other (x)`)
	db.Close()
	r, _ := trackio.OpenReader(ctx, path)
	defer r.Close()
	b, err := r.Poll(ctx, 0)
	if err != nil || !b.Empty() {
		t.Fatalf("got %+v, %v; want empty batch, no error", b, err)
	}
}

func TestTruncatedAndCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, err := trackiotest.OpenWriter(ctx, dir, "good", trackiotest.WriterOptions{JournalMode: "DELETE"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		w.Log(ctx, "i", "n", int64(i), map[string]any{"loss": float64(i), "pad": strings.Repeat("x", 200)}, time.Now())
	}
	w.Close()
	good, _ := os.ReadFile(w.Path)

	cases := map[string][]byte{
		"truncated": good[:len(good)/3],
		"garbage":   []byte(strings.Repeat("not a database ", 400)),
		"zeroed-header": func() []byte {
			b := append([]byte(nil), good...)
			for i := 0; i < 100; i++ {
				b[i] = 0xff
			}
			return b
		}(),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".db")
			os.WriteFile(path, data, 0o644)
			r, err := trackio.OpenReader(ctx, path)
			if err == nil {
				_, err = r.Poll(ctx, 0)
				r.Close()
			}
			if !errors.Is(err, trackio.ErrCorrupt) {
				t.Fatalf("open or Poll error = %v; want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// TestLockedByWriter: in rollback-journal mode a writer holding an
// exclusive lock makes the reader report trackio.ErrBusy (retry next poll) quickly,
// and the writer's transaction still commits.
func TestLockedByWriter(t *testing.T) {
	ctx := context.Background()
	w, err := trackiotest.OpenWriter(ctx, t.TempDir(), "locked", trackiotest.WriterOptions{JournalMode: "DELETE"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Log(ctx, "i", "n", 0, map[string]any{"loss": 1.0}, time.Now())
	r, err := trackio.OpenReader(ctx, w.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conn, err := w.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	conn.ExecContext(ctx, trackio.InsertMetricSQL, "t", "i", "n", 1, `{"loss":0.5}`)
	if _, err := r.Poll(ctx, 0); !errors.Is(err, trackio.ErrBusy) {
		t.Fatalf("Poll under exclusive lock = %v; want trackio.ErrBusy", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatalf("writer commit after reader retried: %v", err)
	}
	b, err := r.Poll(ctx, 0)
	if err != nil || len(b.Metrics) != 2 {
		t.Fatalf("after unlock got %d rows, %v; want 2", len(b.Metrics), err)
	}
}

// TestConcurrentPythonWriter: a separate Python process writes Trackio rows
// with the stdlib sqlite3 module (WAL, one commit per row, as trackio.log
// does) while the reader follows; every row is seen exactly once, in order.
func TestConcurrentPythonWriter(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3 with the sqlite3 module")
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, trackio.DBFileName("live"))
	const n = 300
	script := `
import sqlite3, sys, json
conn = sqlite3.connect(sys.argv[1], timeout=30)
conn.execute("PRAGMA journal_mode = WAL")
conn.executescript(sys.argv[2])
for i in range(int(sys.argv[3])):
    conn.execute(sys.argv[4], ("2026-01-01T00:00:00+00:00", "rid", "run", i, json.dumps({"loss": 1.0 / (i + 1)}).encode()))
    conn.commit()
conn.close()
`
	cmd := exec.Command(py, "-c", script, path, trackio.SchemaSQL, strconv.Itoa(n), trackio.InsertMetricSQL)
	out := &strings.Builder{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var r *trackio.Reader
	var seen []int64
	finished := false
	for !finished || len(seen) < n {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("python writer: %v\n%s", err, out)
			}
			finished = true
		default:
		}
		if r == nil {
			if _, err := os.Stat(path); err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			var err error
			if r, err = trackio.OpenReader(ctx, path); err != nil {
				t.Fatal(err)
			}
			defer r.Close()
		}
		b, err := r.Poll(ctx, 50)
		if errors.Is(err, trackio.ErrBusy) {
			continue
		}
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		for _, row := range b.Metrics {
			seen = append(seen, row.Step)
		}
		if finished && b.Empty() && len(seen) < n {
			t.Fatalf("writer finished, reader saw %d rows; want %d", len(seen), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i, s := range seen {
		if s != int64(i) {
			t.Fatalf("row %d has step %d; want %d (rows out of order or duplicated)", i, s, i)
		}
	}
	// The writer's database is intact after being read concurrently.
	db, _ := sql.Open("sqlite", path)
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v; want ok", check, err)
	}
}

// valuesReference is the plain encoding/json decoding Values must agree
// with.
func valuesReference(raw []byte) (map[string]float64, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if len(v) == 0 {
			continue
		}
		switch v[0] {
		case '"':
			var s string
			if json.Unmarshal(v, &s) != nil {
				continue
			}
			// Trackio writes these three exactly; an escaped spelling is
			// some other string.
			switch string(v) {
			case `"NaN"`:
				out[k] = math.NaN()
			case `"Infinity"`:
				out[k] = math.Inf(1)
			case `"-Infinity"`:
				out[k] = math.Inf(-1)
			}
		case 't', 'f', 'n', '{', '[':
			continue
		default:
			var f float64
			if json.Unmarshal(v, &f) == nil {
				out[k] = f
			}
		}
	}
	return out, nil
}

func sameValues(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !(v == w || math.IsNaN(v) && math.IsNaN(w)) {
			return false
		}
	}
	return true
}

func FuzzValues(f *testing.F) {
	for _, s := range []string{`{"loss":1.5}`, `{"a":"NaN","b":"Infinity","c":"-Infinity"}`, `{"img":{"_type":"x","v":[1,{"a":"}"}]},"n":null,"t":true}`,
		`{}`, `[1]`, `{"x":1e400}`, `{"x":"`, `{"a":1,"a":"s"}`, `{"a":"s","a":2}`, `{"\u0061":3, "b\"c": 4}`, " {\n \"k\" : -0.5e-3 , \"\xff\":1}", `{"é":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := trackio.Values(data)
		want, werr := valuesReference(data)
		if (err != nil) != (werr != nil) {
			t.Fatalf("Values(%q) error %v; reference error %v", data, err, werr)
		}
		if err == nil && !sameValues(got, want) {
			t.Fatalf("Values(%q) = %v; reference %v", data, got, want)
		}
	})
}

func BenchmarkValues(b *testing.B) {
	raw := []byte(`{"train/loss":0.123456789,"train/acc":0.9,"train/epoch":3.5,"lr":1e-05,"grad_norm":"NaN","val/loss":1.25,"samples":{"_type":"trackio.image","file_path":"a/b.png","caption":null}}`)
	for i := 0; i < b.N; i++ {
		trackio.Values(raw)
	}
}

func TestReplacedDetectsRestartedIDs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, _ := trackiotest.OpenWriter(ctx, dir, "p", trackiotest.WriterOptions{})
	for i := 0; i < 3; i++ {
		w.Log(ctx, "a", "a", int64(i), map[string]any{"loss": 1.0}, time.Now())
	}
	r, _ := trackio.OpenReader(ctx, w.Path)
	defer r.Close()
	r.Poll(ctx, 0)
	if rep, err := r.Replaced(ctx); err != nil || rep {
		t.Fatalf("Replaced on the same db = %v, %v; want false", rep, err)
	}
	// Same file, rows gone and ids restarted (what a new database looks like).
	w.DB().Exec(`DELETE FROM metrics; DELETE FROM sqlite_sequence`)
	w.Log(ctx, "b", "b", 0, map[string]any{"loss": 1.0}, time.Now())
	w.Close()
	if rep, err := r.Replaced(ctx); err != nil || !rep {
		t.Fatalf("Replaced after ids restarted = %v, %v; want true", rep, err)
	}
}
