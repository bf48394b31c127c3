package trackio

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors a Reader returns, wrapped with the database path.
var (
	// ErrBusy: a writer holds a lock right now; retry on the next poll.
	ErrBusy = errors.New("trackio database busy")
	// ErrCorrupt: the file is not a readable Trackio database (truncated,
	// corrupt, not SQLite at all, or with a view where Trackio has a table).
	ErrCorrupt = errors.New("trackio database unreadable")
	// ErrRefused: the path is not a regular file (a symbolic link, a FIFO,
	// a directory), so it is not opened at all.
	ErrRefused = errors.New("trackio database refused")
	// ErrTimeout: a read ran past Limits.Timeout and was interrupted.
	ErrTimeout = errors.New("trackio database too slow")
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
	// Oversize: the stored value was over Limits.MaxValue; Raw is {}.
	Oversize bool `json:"-"`
}

// Config is one run's config row.
type Config struct {
	ID        int64           `json:"id"`
	RunID     string          `json:"run_id"`
	RunName   string          `json:"run_name"`
	CreatedAt string          `json:"created_at"`
	Raw       json.RawMessage `json:"config"`
	Oversize  bool            `json:"-"`
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
// reads, so it cannot block or corrupt the training process writing.
//
// The database sits in a volume the sandbox can write, so the Reader
// trusts nothing in it: it opens only a regular file that is not a
// symbolic link (nor a FIFO, which would block open(2) forever), reads only
// tables (a view could be a query that never ends), bounds every read in
// time and every value in size. A Reader is not safe for concurrent use.
type Reader struct {
	Path   string // canonical: absolute, directory symlinks resolved
	db     *sql.DB
	id     fileID
	limits Limits
	layout Layout
	cur    Cursor

	version int64 // PRAGMA data_version when the last Poll began
	polled  bool
	more    bool // the last Poll stopped at its limit
}

// OpenReader opens path read-only with the default Limits.
func OpenReader(ctx context.Context, path string) (*Reader, error) {
	return OpenReaderLimits(ctx, path, Limits{})
}

// OpenReaderLimits opens path read-only. It fails at once if path is not a
// regular file (ErrRefused) or not a database SQLite can open; a database
// without Trackio's tables yet is not an error (its reads are empty).
func OpenReaderLimits(ctx context.Context, path string, limits Limits) (*Reader, error) {
	cpath, err := canonical(path)
	if err != nil {
		return nil, fmt.Errorf("open trackio db %s: %w", path, err)
	}
	id, err := checkFile(cpath, false)
	if err != nil {
		return nil, err
	}
	db, err := openDB(cpath)
	if err != nil {
		return nil, fmt.Errorf("open trackio db %s: %w", cpath, err)
	}
	r := &Reader{Path: cpath, db: db, id: id, limits: limits.withDefaults()}
	// Connect now, so a refused or unreadable file fails the open.
	if err := r.read(ctx, func(context.Context, *sql.Tx, schema) error { return nil }); err != nil {
		db.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the connection.
func (r *Reader) Close() error { return r.db.Close() }

// SetCursor makes the next Poll start after c (a restored position).
func (r *Reader) SetCursor(c Cursor) { r.cur = c; r.polled = false }

// Layout is the schema generation seen by the last read.
func (r *Reader) Layout() Layout { return r.layout }

// schema is what one read transaction found in sqlite_master.
type schema struct {
	layout Layout
	// run-id column of each table present ("run_id" or "run_name");
	// "" when the table is absent.
	metrics, system, configs string
	metadata                 bool
}

// inspect reads the schema inside the read transaction that then reads
// the rows, so a table swapped for a view after the check is not read.
func inspect(ctx context.Context, tx *sql.Tx) (schema, error) {
	var s schema
	rows, err := tx.QueryContext(ctx, `SELECT m.name, m.type, coalesce(m.sql, '') LIKE 'CREATE VIRTUAL%',
		EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE name = 'run_id')
		FROM main.sqlite_master AS m
		WHERE m.name IN ('metrics', 'configs', 'system_metrics', 'project_metadata') AND m.type IN ('table', 'view')`)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, typ string
		var virtual, hasRunID bool
		if err := rows.Scan(&name, &typ, &virtual, &hasRunID); err != nil {
			return s, err
		}
		if typ != "table" || virtual {
			kind := "a view"
			if virtual {
				kind = "a virtual table"
			}
			return s, fmt.Errorf("%w: %s is %s, not a table (Trackio writes tables)", ErrCorrupt, name, kind)
		}
		col := "run_name"
		if hasRunID {
			col = "run_id"
		}
		switch name {
		case TableMetrics:
			s.metrics, s.layout = col, LayoutLegacy
			if hasRunID {
				s.layout = LayoutRunID
			}
		case TableSystemMetrics:
			s.system = col
		case TableConfigs:
			s.configs = col
		case TableProjectMetadata:
			s.metadata = true
		}
	}
	return s, rows.Err()
}

// read runs fn in one read transaction, after inspect, within the time
// limit; SQLite is interrupted when it runs out.
func (r *Reader) read(ctx context.Context, fn func(context.Context, *sql.Tx, schema) error) error {
	tctx, cancel := context.WithTimeout(ctx, r.limits.Timeout)
	defer cancel()
	err := func() error {
		tx, err := r.db.BeginTx(tctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		s, err := inspect(tctx, tx)
		if err != nil {
			return err
		}
		r.layout = s.layout
		return fn(tctx, tx, s)
	}()
	return r.wrap(ctx, tctx, err)
}

// text bounds a text column: a longer value is replaced without being
// read (octet_length does not load the value).
func (r *Reader) text(col string) string {
	return fmt.Sprintf(`CASE WHEN octet_length(%[1]s) > %[2]d THEN '%[3]s' ELSE coalesce(CAST(%[1]s AS TEXT), '') END`, col, r.limits.MaxName, LongName)
}

// value bounds a JSON column the same way; too long reads as NULL.
func (r *Reader) value(col string) string {
	return fmt.Sprintf(`CASE WHEN octet_length(%[1]s) > %[2]d THEN NULL ELSE CAST(%[1]s AS BLOB) END`, col, r.limits.MaxValue)
}

// metricsCols and systemCols are the columns readRows scans.
func (r *Reader) metricsCols(s schema) string {
	return `id, ` + r.text(s.metrics) + `, ` + r.text("run_name") + `, coalesce(CAST(step AS INTEGER), 0), ` +
		r.text("timestamp") + `, ` + r.value("metrics")
}

func (r *Reader) systemCols(s schema) string {
	return `id, ` + r.text(s.system) + `, ` + r.text("run_name") + `, 0, ` + r.text("timestamp") + `, ` + r.value("metrics")
}

func (r *Reader) metricsQuery(s schema) string {
	return `SELECT ` + r.metricsCols(s) + ` FROM main.metrics WHERE id > ? ORDER BY id LIMIT ?`
}

func (r *Reader) systemQuery(s schema) string {
	return `SELECT ` + r.systemCols(s) + ` FROM main.system_metrics WHERE id > ? ORDER BY id LIMIT ?`
}

// sampleQuery reads the rows of table whose ids step evenly from a
// first id to a last: the ids come from a counting CTE and each is one
// primary-key lookup, so the read costs the rows it returns, not the
// table's size.
func sampleQuery(cols, table string) string {
	return `WITH RECURSIVE ids(i) AS (SELECT ?1 UNION ALL SELECT i + ?2 FROM ids WHERE i + ?2 <= ?3)
		SELECT ` + cols + ` FROM ids CROSS JOIN ` + table + ` ON ` + table + `.id = ids.i ORDER BY ids.i LIMIT ?4`
}

func (r *Reader) configsQuery(s schema) string {
	return `SELECT id, ` + r.text(s.configs) + `, ` + r.text("run_name") + `, ` + r.text("created_at") + `, ` +
		r.value("config") + ` FROM main.configs WHERE id > ? ORDER BY id LIMIT ?`
}

// budget is what one read may still return, in bytes (Limits.MaxBatch).
type budget struct {
	left int
	hit  bool // a table stopped short because the budget ran out
}

func (r *Reader) newBudget() *budget { return &budget{left: r.limits.MaxBatch} }

// take books n bytes and reports whether the read may go on. The row
// that spends the budget is kept.
func (b *budget) take(n int) bool {
	b.left -= n
	return b.left > 0
}

// ReadMetrics returns up to limit metrics rows with id > after, by id,
// fewer once they hold Limits.MaxBatch bytes.
func (r *Reader) ReadMetrics(ctx context.Context, after int64, limit int) ([]Row, error) {
	var out []Row
	err := r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) (err error) {
		if s.metrics != "" {
			out, err = readRows(ctx, tx, r.metricsQuery(s), after, limit, r.newBudget())
		}
		return err
	})
	return out, err
}

// ReadSystem returns up to limit system_metrics rows with id > after,
// fewer once they hold Limits.MaxBatch bytes.
func (r *Reader) ReadSystem(ctx context.Context, after int64, limit int) ([]Row, error) {
	var out []Row
	err := r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) (err error) {
		if s.system != "" {
			out, err = readRows(ctx, tx, r.systemQuery(s), after, limit, r.newBudget())
		}
		return err
	})
	return out, err
}

// ReadConfigs returns config rows with id > after (Trackio replaces a
// run's config with a new row, so a changed config has a new id), at most
// Limits.MaxConfigs of them, fewer once they hold Limits.MaxBatch bytes.
func (r *Reader) ReadConfigs(ctx context.Context, after int64) ([]Config, error) {
	var out []Config
	err := r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) (err error) {
		if s.configs != "" {
			out, err = readConfigs(ctx, tx, r.configsQuery(s), after, r.limits.MaxConfigs, r.newBudget())
		}
		return err
	})
	return out, err
}

// readRows reads rows until limit or until they spend the budget; it
// always returns the first row there is, so every table makes progress.
func readRows(ctx context.Context, tx *sql.Tx, q string, after int64, limit int, b *budget) ([]Row, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	return readRowsQuery(ctx, tx, q, limit, b, after, limit)
}

// readRowsQuery runs q with args and scans up to limit rows of it.
func readRowsQuery(ctx context.Context, tx *sql.Tx, q string, limit int, b *budget, args ...any) ([]Row, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var row Row
		var raw []byte
		if err := rows.Scan(&row.ID, &row.RunID, &row.RunName, &row.Step, &row.Timestamp, &raw); err != nil {
			return nil, err
		}
		row.Raw, row.Oversize = jsonValue(raw)
		out = append(out, row)
		if !b.take(len(raw) + len(row.RunID) + len(row.RunName) + len(row.Timestamp)) {
			b.hit = b.hit || len(out) < limit
			break
		}
	}
	return out, rows.Err()
}

func readConfigs(ctx context.Context, tx *sql.Tx, q string, after int64, limit int, b *budget) ([]Config, error) {
	rows, err := tx.QueryContext(ctx, q, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Config
	for rows.Next() {
		var c Config
		var raw []byte
		if err := rows.Scan(&c.ID, &c.RunID, &c.RunName, &c.CreatedAt, &raw); err != nil {
			return nil, err
		}
		c.Raw, c.Oversize = jsonValue(raw)
		out = append(out, c)
		if !b.take(len(raw) + len(c.RunID) + len(c.RunName) + len(c.CreatedAt)) {
			b.hit = b.hit || len(out) < limit
			break
		}
	}
	return out, rows.Err()
}

// jsonValue keeps a stored JSON object, or {} for one too large (NULL
// from the query) or not valid JSON (a row Trackio did not write, or a torn
// value): the row is kept so ids stay contiguous.
func jsonValue(raw []byte) (json.RawMessage, bool) {
	if raw == nil {
		return json.RawMessage("{}"), true
	}
	if !json.Valid(raw) {
		return json.RawMessage("{}"), false
	}
	return raw, false
}

// Sample reads about n rows of each of metrics and system_metrics,
// spread evenly over their ids (the first and the last row included), and
// every config row (at most Limits.MaxConfigs), in one read transaction,
// within the same time and byte limits as Poll. It leaves the cursor
// alone: it is a quick overview of a large database while Poll works
// through it in order. Spans is the id range (last − first + 1) of each
// of the two tables, 0 when empty.
func (r *Reader) Sample(ctx context.Context, n int) (b Batch, metricsSpan, systemSpan int64, err error) {
	n = max(n, 2)
	bud := r.newBudget()
	err = r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) (err error) {
		if s.metrics != "" {
			if b.Metrics, metricsSpan, err = sampleRows(ctx, tx, r.metricsCols(s), "main.metrics", n, bud); err != nil {
				return err
			}
		}
		if s.system != "" {
			if b.System, systemSpan, err = sampleRows(ctx, tx, r.systemCols(s), "main.system_metrics", pollLimit(n, bud), bud); err != nil {
				return err
			}
		}
		if s.configs != "" {
			if b.Configs, err = readConfigs(ctx, tx, r.configsQuery(s), 0, pollLimit(r.limits.MaxConfigs, bud), bud); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Batch{}, 0, 0, err
	}
	return b, metricsSpan, systemSpan, nil
}

// Spans returns the id range (last − first + 1) of metrics and of
// system_metrics, 0 for an empty or absent table: two primary-key
// lookups each.
func (r *Reader) Spans(ctx context.Context) (metricsSpan, systemSpan int64, err error) {
	err = r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) (err error) {
		if s.metrics != "" {
			if _, _, metricsSpan, err = idRange(ctx, tx, "main.metrics"); err != nil {
				return err
			}
		}
		if s.system != "" {
			_, _, systemSpan, err = idRange(ctx, tx, "main.system_metrics")
		}
		return err
	})
	return metricsSpan, systemSpan, err
}

// idRangeQuery selects the first and last id of table in two
// subqueries: SQLite answers a lone min() or max() of the primary key
// from one end of its b-tree, but both in one SELECT by scanning the
// table (0.4 s for 500,000 rows).
func idRangeQuery(table string) string {
	return `SELECT (SELECT min(id) FROM ` + table + `), (SELECT max(id) FROM ` + table + `)`
}

// idRange returns the first and last id of table and the span between.
func idRange(ctx context.Context, tx *sql.Tx, table string) (lo, hi, span int64, err error) {
	var l, h sql.NullInt64
	if err := tx.QueryRowContext(ctx, idRangeQuery(table)).Scan(&l, &h); err != nil {
		return 0, 0, 0, err
	}
	if !l.Valid || !h.Valid || h.Int64 < l.Int64 {
		return 0, 0, 0, nil
	}
	// Ids are the table's own: a span past int64 reads as the largest.
	if d := h.Int64 - l.Int64; d >= 0 && d < math.MaxInt64 {
		return l.Int64, h.Int64, d + 1, nil
	}
	return l.Int64, h.Int64, math.MaxInt64, nil
}

// sampleRows reads about n rows of table, evenly spaced over its ids.
func sampleRows(ctx context.Context, tx *sql.Tx, cols, table string, n int, b *budget) ([]Row, int64, error) {
	lo, hi, span, err := idRange(ctx, tx, table)
	if err != nil || span == 0 {
		return nil, span, err
	}
	stride := max(1, span/int64(n))
	rows, err := readRowsQuery(ctx, tx, sampleQuery(cols, table), n+1, b, lo, stride, hi, n+1)
	if err != nil {
		return nil, span, err
	}
	// The last row too: a chart of the sample ends where the data does.
	if len(rows) > 0 && rows[len(rows)-1].ID != hi && !b.hit && b.left > 0 {
		last, err := readRowsQuery(ctx, tx, sampleQuery(cols, table), 1, b, hi, 1, hi, 1)
		if err != nil {
			return nil, span, err
		}
		rows = append(rows, last...)
	}
	return rows, span, nil
}

// Replaced reports whether the file at Path is no longer the one this
// reader has open (deleted, renamed over, swapped), or the database no
// longer holds the rows the cursor has passed (ids restarted, which a
// file-identity check misses when the inode number is reused). Either way
// the caller should reopen and start over.
func (r *Reader) Replaced(ctx context.Context) (bool, error) {
	if r.Stale() {
		return true, nil
	}
	if r.cur.Metrics == 0 {
		return false, nil
	}
	var max sql.NullInt64
	err := r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) error {
		if s.metrics == "" {
			return nil
		}
		return tx.QueryRowContext(ctx, `SELECT max(id) FROM main.metrics`).Scan(&max)
	})
	if err != nil {
		return false, err
	}
	return !max.Valid || max.Int64 < r.cur.Metrics, nil
}

// Stale reports whether the file at Path is no longer the one this reader
// has open (deleted, renamed over, swapped for something else).
func (r *Reader) Stale() bool {
	id, ok := statID(r.Path)
	return !ok || id != r.id
}

// Changed reports whether a Poll may find rows: the last Poll stopped at
// its limit, or another connection committed since it began (PRAGMA
// data_version, which SQLite guarantees to change on every commit by
// another connection, unlike the size and mtime of the files: a WAL that
// restarts from its beginning keeps its size, and mtime is coarse), or the
// file at Path was replaced. An idle database costs one lstat and one
// pragma, no table read.
func (r *Reader) Changed(ctx context.Context) (bool, error) {
	if !r.polled || r.more {
		return true, nil
	}
	if r.Stale() {
		return true, nil
	}
	v, err := r.dataVersion(ctx)
	if err != nil {
		return false, err
	}
	return v != r.version, nil
}

func (r *Reader) dataVersion(ctx context.Context) (int64, error) {
	tctx, cancel := context.WithTimeout(ctx, r.limits.Timeout)
	defer cancel()
	var v int64
	err := r.db.QueryRowContext(tctx, `PRAGMA data_version`).Scan(&v)
	return v, r.wrap(ctx, tctx, err)
}

// Metadata returns the project_metadata table (empty when absent): at
// most 1000 entries, each key and value at most Limits.MaxName and
// Limits.MaxValue bytes, all together about Limits.MaxBatch bytes at most.
func (r *Reader) Metadata(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) error {
		if !s.metadata {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+r.text("key")+`, `+
			fmt.Sprintf(`CASE WHEN octet_length(value) > %d THEN '' ELSE coalesce(CAST(value AS TEXT), '') END`, r.limits.MaxValue)+
			` FROM main.project_metadata LIMIT 1000`)
		if err != nil {
			return err
		}
		defer rows.Close()
		b := r.newBudget()
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			out[k] = v
			if !b.take(len(k) + len(v)) {
				break
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Poll reads every table past the reader's cursor (at most limit rows per
// table; 0 = no limit), in one read transaction, and advances the cursor
// past what it returns.
func (r *Reader) Poll(ctx context.Context, limit int) (Batch, error) {
	v, err := r.dataVersion(ctx)
	if err != nil {
		return Batch{}, err
	}
	var b Batch
	// One budget for the three tables: each still gets its first row.
	bud := r.newBudget()
	err = r.read(ctx, func(ctx context.Context, tx *sql.Tx, s schema) (err error) {
		if s.metrics != "" {
			if b.Metrics, err = readRows(ctx, tx, r.metricsQuery(s), r.cur.Metrics, limit, bud); err != nil {
				return err
			}
		}
		if s.system != "" {
			if b.System, err = readRows(ctx, tx, r.systemQuery(s), r.cur.System, pollLimit(limit, bud), bud); err != nil {
				return err
			}
		}
		if s.configs != "" {
			if b.Configs, err = readConfigs(ctx, tx, r.configsQuery(s), r.cur.Configs, pollLimit(r.limits.MaxConfigs, bud), bud); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
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
	r.version, r.polled = v, true
	r.more = limit > 0 && (len(b.Metrics) >= limit || len(b.System) >= limit) || len(b.Configs) >= r.limits.MaxConfigs || bud.hit
	return b, nil
}

// pollLimit is the row limit of a Poll's next table: one row once the
// budget is spent (the table still makes progress, and the Poll reports
// that there is more).
func pollLimit(limit int, b *budget) int {
	if b.left <= 0 {
		b.hit = true
		return 1
	}
	return limit
}

// wrap classifies errors so callers can tell "retry later" from "this
// file is broken" from "this file took too long" (tctx is the read's own
// deadline, ctx the caller's).
func (r *Reader) wrap(ctx, tctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", r.Path, ctx.Err())
	}
	if tctx.Err() != nil {
		return fmt.Errorf("%s: %w: a read took longer than %v", r.Path, ErrTimeout, r.limits.Timeout)
	}
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrCorrupt) {
		if strings.HasPrefix(err.Error(), r.Path) {
			return err
		}
		return fmt.Errorf("%s: %w", r.Path, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%s: %w: %v", r.Path, ErrBusy, err)
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return fmt.Errorf("%s: %w: %v", r.Path, ErrCorrupt, err)
		case sqlite3.SQLITE_INTERRUPT:
			return fmt.Errorf("%s: %w: %v", r.Path, ErrTimeout, err)
		}
	}
	return fmt.Errorf("%s: %w", r.Path, err)
}
