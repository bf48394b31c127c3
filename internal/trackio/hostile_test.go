package trackio

// Databases a hostile sandbox can plant in the Trackio volume. Each test
// would hang, leak a host file, or load a huge value with the reader as it
// was; each bounds its own wait, so a regression fails instead of hanging
// the suite.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// makeDB writes a Trackio database (WAL, as trackio does) with one run.
func makeDB(t testing.TB, path, run string, steps int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(SchemaSQL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < steps; i++ {
		if _, err := db.Exec(InsertMetricSQL, "2026-01-01T00:00:00+00:00", run, run, i, `{"loss":1.5}`); err != nil {
			t.Fatal(err)
		}
	}
}

// within runs f and fails the test if it has not returned after d; f is
// left running (it may be blocked in a system call for good).
func within[T any](t *testing.T, d time.Duration, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
		panic("unreachable")
	}
}

type openResult struct {
	r   *Reader
	b   Batch
	err error
}

// openAndPoll opens path and polls it once, as the dashboard does.
func openAndPoll(ctx context.Context, path string, limits Limits) openResult {
	r, err := OpenReaderLimits(ctx, path, limits)
	if err != nil {
		return openResult{err: err}
	}
	b, err := r.Poll(ctx, 0)
	return openResult{r: r, b: b, err: err}
}

func TestRefusesWhatIsNotARegularFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	host := filepath.Join(t.TempDir(), "host.db")
	makeDB(t, host, "host-secret-run", 3)

	fifo := filepath.Join(dir, "fifo.db")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.db")
	os.Symlink(host, link)
	walFIFO := filepath.Join(dir, "walfifo.db")
	makeDB(t, walFIFO, "r", 1)
	os.Remove(walFIFO + "-wal")
	syscall.Mkfifo(walFIFO+"-wal", 0o644)
	walLink := filepath.Join(dir, "wallink.db")
	makeDB(t, walLink, "r", 1)
	os.Remove(walLink + "-wal")
	os.Symlink(host+"-wal", walLink+"-wal")
	shmLink := filepath.Join(dir, "shmlink.db")
	makeDB(t, shmLink, "r", 1)
	os.Remove(shmLink + "-shm")
	os.Symlink(host+"-shm", shmLink+"-shm")
	sub := filepath.Join(dir, "dir.db")
	os.Mkdir(sub, 0o755)

	tests := []struct{ name, path, want string }{
		{"fifo", fifo, "named pipe"},
		{"symlink to a host database", link, "symbolic link"},
		{"fifo as the WAL", walFIFO, "named pipe"},
		{"symlink as the WAL", walLink, "symbolic link"},
		{"symlink as the shared memory", shmLink, "symbolic link"},
		{"directory", sub, "directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := within(t, 10*time.Second, "open of "+tt.name, func() openResult { return openAndPoll(ctx, tt.path, Limits{}) })
			if !errors.Is(res.err, ErrRefused) || !strings.Contains(res.err.Error(), tt.want) {
				t.Fatalf("open = %v; want ErrRefused saying %q", res.err, tt.want)
			}
		})
	}
}

// TestSwapAfterCheck swaps the file in the window between the reader's
// check and SQLite's open by name, where a sandbox racing the host would.
func TestSwapAfterCheck(t *testing.T) {
	ctx := context.Background()
	host := filepath.Join(t.TempDir(), "host.db")
	makeDB(t, host, "host-secret-run", 3)
	tests := []struct {
		name string
		swap func(t *testing.T, path string)
		want error
	}{
		{"fifo", func(t *testing.T, path string) {
			os.Remove(path)
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"fifo with a writer that never writes", func(t *testing.T, path string) {
			os.Remove(path)
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
			// O_RDWR never blocks on a FIFO: the "sandbox" holds a write end.
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
		}, nil},
		{"symlink to a host database", func(t *testing.T, path string) {
			for _, s := range []string{"", "-wal", "-shm"} {
				os.Remove(path + s)
			}
			os.Symlink(host, path)
		}, ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			makeDB(t, path, "sandbox-run", 2)
			testHookBeforeOpen = func(p string) {
				if p == path {
					tt.swap(t, p)
				}
			}
			defer func() { testHookBeforeOpen = func(string) {} }()
			res := within(t, 10*time.Second, "open after the swap", func() openResult { return openAndPoll(ctx, path, Limits{}) })
			if res.err == nil {
				t.Fatalf("open after swapping in a %s succeeded with %d rows; want an error", tt.name, len(res.b.Metrics))
			}
			if tt.want != nil && !errors.Is(res.err, tt.want) {
				t.Errorf("open = %v; want %v", res.err, tt.want)
			}
			if strings.Contains(res.err.Error(), "host-secret-run") {
				t.Errorf("error %q shows the host database's content", res.err)
			}
		})
	}
}

// TestViewsAreNotRead: a metrics "table" that is a recursive view never
// finishes a query; the reader refuses it without running it.
func TestViewsAreNotRead(t *testing.T) {
	ctx := context.Background()
	const forever = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
		SELECT x AS id, 'r' AS run_id, 'r' AS run_name, x AS step, '' AS timestamp, '{}' AS metrics, '' AS config, '' AS created_at, '' AS key, '' AS value FROM c`
	for _, table := range []string{TableMetrics, TableSystemMetrics, TableConfigs, TableProjectMetadata} {
		t.Run(table, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "view.db")
			db, _ := sql.Open("sqlite", path)
			ddl := strings.ReplaceAll(SchemaSQL, "CREATE TABLE IF NOT EXISTS "+table+" (", "CREATE TABLE IF NOT EXISTS unused_"+table+" (")
			ddl = strings.ReplaceAll(ddl, " ON "+table+"(", " ON unused_"+table+"(")
			if _, err := db.Exec(ddl); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("CREATE VIEW " + table + " AS " + forever); err != nil {
				t.Fatal(err)
			}
			db.Close()
			res := within(t, 20*time.Second, "read of a recursive view", func() openResult {
				res := openAndPoll(ctx, path, Limits{})
				if res.err == nil {
					_, res.err = res.r.Metadata(ctx)
				}
				return res
			})
			if !errors.Is(res.err, ErrCorrupt) || !strings.Contains(res.err.Error(), "view") {
				t.Fatalf("read = %v; want ErrCorrupt saying it is a view", res.err)
			}
		})
	}
}

// TestSlowReadIsInterrupted: a metrics table whose id is a generated
// column building a 10 MB string per row makes every read crawl; the time
// limit interrupts it.
//
// The expression depends on the row (n), so SQLite computes it for every
// row: a constant one is factored out of the loop and computed once, and
// the whole read then took 0.2–1 s, which made the test pass only while
// the machine was slow enough. Here one row costs milliseconds and the
// 100,000 rows the read sorts by id take many minutes on any machine, so
// the read cannot finish on its own. The column is added after the rows:
// an INSERT computes it too.
func TestSlowReadIsInterrupted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "slow.db")
	db, _ := sql.Open("sqlite", path)
	if _, err := db.Exec(`CREATE TABLE metrics (n, run_id, timestamp, run_name, step, metrics);
		WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
		INSERT INTO metrics (n, run_id, timestamp, run_name, step, metrics) SELECT x, 'r', '', 'r', x, '{"loss":1}' FROM c;
		ALTER TABLE metrics ADD COLUMN id AS (length(printf('%.*c', 10000000, n)) - n)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Opened with the default limit, so a loaded machine cannot make the
	// open itself (connect, schema check) run out of a short one; the
	// short limit is for the read under test.
	r, err := OpenReader(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const limit = time.Second
	r.limits.Timeout = limit
	// Sample and Spans look ids up by value: on this table each is a scan
	// as slow as Poll's.
	for _, read := range []struct {
		name string
		f    func() error
	}{
		{"Poll", func() error { _, err := r.Poll(ctx, 10); return err }},
		{"Spans", func() error { _, _, err := r.Spans(ctx); return err }},
		{"Sample", func() error { _, _, _, err := r.Sample(ctx, 10); return err }},
	} {
		start := time.Now()
		err := within(t, 60*time.Second, "a slow "+read.name, read.f)
		d := time.Since(start)
		t.Logf("%s returned after %v", read.name, d)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("%s = %v after %v; want ErrTimeout", read.name, err, d)
		}
		if d < limit {
			t.Errorf("%s returned ErrTimeout after %v; want it only once the %v limit has passed", read.name, d, limit)
		}
		// One row is a few milliseconds (tens on a loaded machine): the
		// interrupt lands within a row or two of the deadline.
		if d > 10*time.Second {
			t.Errorf("%s returned after %v; want soon after the %v limit", read.name, d, limit)
		}
	}
}

// TestOversizeValuesAreNotLoaded: values over the limits come back as
// placeholders, not as the megabytes stored.
func TestOversizeValuesAreNotLoaded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "huge.db")
	makeDB(t, path, "ok", 1)
	db, _ := sql.Open("sqlite", path)
	huge := `{"loss":1,"pad":"` + strings.Repeat("x", 8<<20) + `"}`
	longName := strings.Repeat("n", 1<<20)
	if _, err := db.Exec(InsertMetricSQL, "2026-01-01T00:00:00+00:00", longName, longName, 1, huge); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(UpsertConfigSQL, "ok", "ok", huge, "2026-01-01T00:00:00+00:00"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r, err := OpenReader(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := r.Poll(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Metrics) != 2 {
		t.Fatalf("got %d rows; want 2 (an oversize row is kept, emptied)", len(b.Metrics))
	}
	got := b.Metrics[1]
	if string(got.Raw) != "{}" || !got.Oversize || got.RunID != LongName || got.RunName != LongName {
		t.Errorf("oversize row = run %.20q name %.20q, %d bytes, oversize %v; want %q, {} and oversize", got.RunID, got.RunName, len(got.Raw), got.Oversize, LongName)
	}
	if len(b.Configs) != 1 || string(b.Configs[0].Raw) != "{}" || !b.Configs[0].Oversize {
		t.Errorf("oversize config = %d configs; want one, emptied", len(b.Configs))
	}
}

// TestReadsAreBoundedInBytes: every value may be just under MaxValue and
// cost the sandbox nothing (a generated column makes megabytes per row
// from a file of a few kilobytes), so one read returned rows times
// MaxValue bytes: 5,000 rows of 4 MiB, 20 GB, for the dashboard's Poll;
// 1,000 configs of 4 MiB for the syncer's. A read now stops once its rows
// hold MaxBatch bytes, and the next read goes on from there.
func TestReadsAreBoundedInBytes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "big.db")
	db, _ := sql.Open("sqlite", path)
	// 1 MiB of JSON per row; 100 rows in each table.
	const rows, value = 100, 1 << 20
	big := `'{"pad":"' || printf('%.*c', ` + fmt.Sprint(value-10) + `, 'x') || '"}'`
	if _, err := db.Exec(`CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id, timestamp, run_name, step, metrics AS (` + big + `));
		CREATE TABLE system_metrics (id INTEGER PRIMARY KEY, run_id, timestamp, run_name, metrics AS (` + big + `));
		CREATE TABLE configs (id INTEGER PRIMARY KEY, run_id, run_name, created_at, config AS (` + big + `));
		CREATE TABLE project_metadata (key, value AS (` + big + `));
		INSERT INTO metrics (run_id, timestamp, run_name, step) SELECT 'r', '', 'r', x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ` + fmt.Sprint(rows) + `) SELECT x FROM c);
		INSERT INTO system_metrics (run_id, timestamp, run_name) SELECT 'r', '', 'r' FROM metrics;
		INSERT INTO configs (run_id, run_name, created_at) SELECT 'r' || id, 'r', '' FROM metrics;
		INSERT INTO project_metadata (key) SELECT 'k' || id FROM metrics`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r, err := OpenReader(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// What one read may hold: MaxBatch, and one row past it per table.
	const bound = 64 << 20
	size := func(b Batch) int {
		n := 0
		for _, row := range b.Metrics {
			n += len(row.Raw)
		}
		for _, row := range b.System {
			n += len(row.Raw)
		}
		for _, c := range b.Configs {
			n += len(c.Raw)
		}
		return n
	}
	var total Batch
	for i := 0; ; i++ {
		b, err := r.Poll(ctx, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if n := size(b); n > bound {
			t.Fatalf("one Poll returned %d MiB (%d metrics, %d system, %d configs); want at most %d MiB", n>>20, len(b.Metrics), len(b.System), len(b.Configs), bound>>20)
		}
		total.Metrics = append(total.Metrics, b.Metrics...)
		total.System = append(total.System, b.System...)
		total.Configs = append(total.Configs, b.Configs...)
		// As the dashboard does: poll again while Changed says a Poll
		// may find rows, which it must after one that stopped short.
		changed, err := r.Changed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !changed {
			break
		}
		if i > 100 {
			t.Fatal("Poll never ran dry")
		}
	}
	if len(total.Metrics) != rows || len(total.System) != rows || len(total.Configs) != rows {
		t.Errorf("Polls read %d metrics, %d system, %d configs; want %d of each, over several reads", len(total.Metrics), len(total.System), len(total.Configs), rows)
	}
	for name, read := range map[string]func() (int, error){
		"ReadMetrics": func() (int, error) {
			rows, err := r.ReadMetrics(ctx, 0, 5000)
			return size(Batch{Metrics: rows}), err
		},
		"ReadSystem": func() (int, error) {
			rows, err := r.ReadSystem(ctx, 0, 5000)
			return size(Batch{System: rows}), err
		},
		"ReadConfigs": func() (int, error) {
			cfgs, err := r.ReadConfigs(ctx, 0)
			return size(Batch{Configs: cfgs}), err
		},
		"Metadata": func() (int, error) {
			m, err := r.Metadata(ctx)
			n := 0
			for _, v := range m {
				n += len(v)
			}
			return n, err
		},
	} {
		n, err := read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n > bound {
			t.Errorf("%s returned %d MiB; want at most %d MiB", name, n>>20, bound>>20)
		}
	}
}

// TestRelativePath: a relative directory (mlagent dashboard --dir tk)
// used to become the URI's authority, "file://tk/x.db".
func TestRelativePath(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "tk"), 0o755)
	makeDB(t, filepath.Join(dir, "tk", "x.db"), "r", 2)
	t.Chdir(dir)
	r, err := OpenReader(context.Background(), filepath.Join("tk", "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := r.Poll(context.Background(), 0)
	if err != nil || len(b.Metrics) != 2 {
		t.Fatalf("Poll = %d rows, %v; want 2", len(b.Metrics), err)
	}
}

// TestListingIsBounded: the Trackio directory is the sandbox's, and
// ListDBs runs on every wake-up of the dashboard and the syncer (every
// 500 ms at least). It read and sorted every entry: 300,000 empty files
// cost 0.8–1.6 s a listing on a loaded machine, a core kept busy for as
// long as they stay. It now reads a bounded number of entries.
func TestListingIsBounded(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("p%d.db", i)), nil, 0o644)
	}
	paths, err := ListDBs(dir, 10)
	if err != nil || len(paths) != 3 {
		t.Fatalf("ListDBs = %v, %v; want the 3 databases", paths, err)
	}
	for i := 0; i < 2000; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("junk%05d", i)), nil, 0o644)
	}
	paths, err = ListDBs(dir, 10)
	if err == nil || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("ListDBs of 2,003 entries with max 10 = %d paths, %v; want an error saying it read only some entries", len(paths), err)
	}
	if len(paths) > 10 {
		t.Errorf("ListDBs returned %d paths; want at most 10", len(paths))
	}
}
