package trackio

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors a Reader returns, wrapped with the database path.
var (
	// ErrBusy: a writer holds a lock right now; retry on the next poll.
	ErrBusy = errors.New("trackio database busy")
	// ErrCorrupt: the file is not a readable SQLite database (truncated,
	// corrupt, or not SQLite at all).
	ErrCorrupt = errors.New("trackio database unreadable")
)

// Layout is the schema generation of a database.
type Layout int

const (
	LayoutUnknown Layout = iota // metrics table not created yet
	LayoutLegacy                // rows keyed on run_name only
	LayoutRunID                 // rows carry run_id
)

func (l Layout) String() string {
	switch l {
	case LayoutLegacy:
		return "legacy"
	case LayoutRunID:
		return "run_id"
	}
	return "unknown"
}

// Row is one metrics or system_metrics row.
type Row struct {
	ID        int64           `json:"id"`
	RunID     string          `json:"run_id"` // run_name in legacy databases
	RunName   string          `json:"run_name"`
	Step      int64           `json:"step"` // 0 for system metrics
	Timestamp string          `json:"timestamp"`
	Raw       json.RawMessage `json:"metrics"` // the stored JSON object, verbatim
}

// Config is one run's config row.
type Config struct {
	ID        int64           `json:"id"`
	RunID     string          `json:"run_id"`
	RunName   string          `json:"run_name"`
	CreatedAt string          `json:"created_at"`
	Raw       json.RawMessage `json:"config"`
}

// Cursor is the last row id read from each table.
type Cursor struct {
	Metrics int64 `json:"metrics"`
	System  int64 `json:"system_metrics"`
	Configs int64 `json:"configs"`
}

// Batch is what one Poll found.
type Batch struct {
	Metrics []Row
	System  []Row
	Configs []Config
}

// Empty reports whether the batch holds no rows.
func (b Batch) Empty() bool { return len(b.Metrics)+len(b.System)+len(b.Configs) == 0 }

// Reader follows one Trackio database read-only and incrementally (by row
// id). It never writes, never checkpoints, and holds no lock between
// queries, so it cannot block or corrupt the training process writing.
// A Reader is not safe for concurrent use.
type Reader struct {
	Path   string
	db     *sql.DB
	layout Layout
	tables map[string]bool
	cur    Cursor
}

// OpenReader opens path read-only. It does not fail if the database has no
// tables yet; errors surface on Poll.
func OpenReader(path string) (*Reader, error) {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro&_pragma=busy_timeout(250)&_pragma=query_only(1)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("open trackio db %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return &Reader{Path: path, db: db, tables: map[string]bool{}}, nil
}

// Close closes the connection.
func (r *Reader) Close() error { return r.db.Close() }

// Cursor returns how far the reader has read.
func (r *Reader) Cursor() Cursor { return r.cur }

// SetCursor makes the next Poll start after c (a restored position).
func (r *Reader) SetCursor(c Cursor) { r.cur = c }

// Layout detects (and caches) the schema generation.
func (r *Reader) Layout(ctx context.Context) (Layout, error) {
	if r.layout != LayoutUnknown {
		return r.layout, nil
	}
	rows, err := r.db.QueryContext(ctx, `SELECT name FROM pragma_table_info('metrics')`)
	if err != nil {
		return LayoutUnknown, r.wrap(err)
	}
	defer rows.Close()
	found := false
	l := LayoutLegacy
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return LayoutUnknown, r.wrap(err)
		}
		found = true
		if name == "run_id" {
			l = LayoutRunID
		}
	}
	if err := rows.Err(); err != nil {
		return LayoutUnknown, r.wrap(err)
	}
	if !found {
		return LayoutUnknown, nil
	}
	r.layout = l
	return l, nil
}

func (r *Reader) hasTable(ctx context.Context, name string) (bool, error) {
	if r.tables[name] {
		return true, nil
	}
	var n int
	if err := r.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?`, name).Scan(&n); err != nil {
		return false, r.wrap(err)
	}
	if n > 0 {
		r.tables[name] = true
	}
	return n > 0, nil
}

// hasColumn reports whether table has column; system_metrics and configs
// gained run_id at the same time as metrics, but check each table anyway.
func (r *Reader) hasColumn(ctx context.Context, table, col string) (bool, error) {
	var n int
	if err := r.db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name=?`, table, col).Scan(&n); err != nil {
		return false, r.wrap(err)
	}
	return n > 0, nil
}

// ReadMetrics returns up to limit metrics rows with id > after, by id.
func (r *Reader) ReadMetrics(ctx context.Context, after int64, limit int) ([]Row, error) {
	l, err := r.Layout(ctx)
	if err != nil || l == LayoutUnknown {
		return nil, err
	}
	runID := "run_name"
	if l == LayoutRunID {
		runID = "run_id"
	}
	q := `SELECT id, ` + runID + `, run_name, step, timestamp, CAST(metrics AS BLOB) FROM metrics WHERE id > ? ORDER BY id LIMIT ?`
	return r.readRows(ctx, q, after, limit)
}

// ReadSystem returns up to limit system_metrics rows with id > after.
func (r *Reader) ReadSystem(ctx context.Context, after int64, limit int) ([]Row, error) {
	ok, err := r.hasTable(ctx, TableSystemMetrics)
	if err != nil || !ok {
		return nil, err
	}
	runID := "run_name"
	if has, err := r.hasColumn(ctx, TableSystemMetrics, "run_id"); err != nil {
		return nil, err
	} else if has {
		runID = "run_id"
	}
	q := `SELECT id, ` + runID + `, run_name, 0, timestamp, CAST(metrics AS BLOB) FROM system_metrics WHERE id > ? ORDER BY id LIMIT ?`
	return r.readRows(ctx, q, after, limit)
}

func (r *Reader) readRows(ctx context.Context, q string, after int64, limit int) ([]Row, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := r.db.QueryContext(ctx, q, after, limit)
	if err != nil {
		return nil, r.wrap(err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var row Row
		var raw []byte
		if err := rows.Scan(&row.ID, &row.RunID, &row.RunName, &row.Step, &row.Timestamp, &raw); err != nil {
			return nil, r.wrap(err)
		}
		if !json.Valid(raw) {
			// A row Trackio did not write (or a torn value): keep the row so
			// ids stay contiguous, but with an empty object.
			raw = []byte("{}")
		}
		row.Raw = raw
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, r.wrap(err)
	}
	return out, nil
}

// ReadConfigs returns config rows with id > after (Trackio replaces a
// run's config with a new row, so a changed config has a new id).
func (r *Reader) ReadConfigs(ctx context.Context, after int64) ([]Config, error) {
	ok, err := r.hasTable(ctx, TableConfigs)
	if err != nil || !ok {
		return nil, err
	}
	runID := "run_name"
	if has, err := r.hasColumn(ctx, TableConfigs, "run_id"); err != nil {
		return nil, err
	} else if has {
		runID = "run_id"
	}
	rows, err := r.db.QueryContext(ctx, `SELECT id, `+runID+`, run_name, created_at, CAST(config AS BLOB) FROM configs WHERE id > ? ORDER BY id`, after)
	if err != nil {
		return nil, r.wrap(err)
	}
	defer rows.Close()
	var out []Config
	for rows.Next() {
		var c Config
		var raw []byte
		if err := rows.Scan(&c.ID, &c.RunID, &c.RunName, &c.CreatedAt, &raw); err != nil {
			return nil, r.wrap(err)
		}
		if !json.Valid(raw) {
			raw = []byte("{}")
		}
		c.Raw = raw
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, r.wrap(err)
	}
	return out, nil
}

// Replaced reports whether the database no longer holds the rows the
// cursor has passed (it was deleted and created again, restarting ids),
// which a file-identity check misses when the inode number is reused.
func (r *Reader) Replaced(ctx context.Context) (bool, error) {
	if r.cur.Metrics == 0 {
		return false, nil
	}
	r.layout = LayoutUnknown
	r.tables = map[string]bool{}
	if l, err := r.Layout(ctx); err != nil || l == LayoutUnknown {
		return err == nil, err
	}
	var max sql.NullInt64
	if err := r.db.QueryRowContext(ctx, `SELECT max(id) FROM metrics`).Scan(&max); err != nil {
		return false, r.wrap(err)
	}
	return !max.Valid || max.Int64 < r.cur.Metrics, nil
}

// Metadata returns the project_metadata table (empty when absent).
func (r *Reader) Metadata(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	ok, err := r.hasTable(ctx, TableProjectMetadata)
	if err != nil || !ok {
		return out, err
	}
	rows, err := r.db.QueryContext(ctx, `SELECT key, CAST(value AS TEXT) FROM project_metadata`)
	if err != nil {
		return nil, r.wrap(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, r.wrap(err)
		}
		out[k] = v
	}
	return out, r.wrap(rows.Err())
}

// Poll reads every table past the reader's cursor (at most limit rows per
// table; 0 = no limit) and advances the cursor past what it returns.
func (r *Reader) Poll(ctx context.Context, limit int) (Batch, error) {
	var b Batch
	var err error
	if b.Metrics, err = r.ReadMetrics(ctx, r.cur.Metrics, limit); err != nil {
		return Batch{}, err
	}
	if b.System, err = r.ReadSystem(ctx, r.cur.System, limit); err != nil {
		return Batch{}, err
	}
	if b.Configs, err = r.ReadConfigs(ctx, r.cur.Configs); err != nil {
		return Batch{}, err
	}
	if n := len(b.Metrics); n > 0 {
		r.cur.Metrics = b.Metrics[n-1].ID
	}
	if n := len(b.System); n > 0 {
		r.cur.System = b.System[n-1].ID
	}
	if n := len(b.Configs); n > 0 {
		r.cur.Configs = b.Configs[n-1].ID
	}
	return b, nil
}

// wrap classifies SQLite errors so callers can tell "retry later" from
// "this file is broken".
func (r *Reader) wrap(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%s: %w: %v", r.Path, ErrBusy, err)
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return fmt.Errorf("%s: %w: %v", r.Path, ErrCorrupt, err)
		}
	}
	return fmt.Errorf("%s: %w", r.Path, err)
}

// Values decodes a row's numeric scalars. Trackio's "NaN", "Infinity" and
// "-Infinity" strings become the float values; everything else that is not
// a number (media objects, strings, nested tables) is skipped.
func Values(raw json.RawMessage) (map[string]float64, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("trackio values: %w", err)
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
			switch s {
			case "NaN":
				out[k] = math.NaN()
			case "Infinity":
				out[k] = math.Inf(1)
			case "-Infinity":
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
