// Package trackiotest writes Trackio databases the way the trackio Python
// package does, for tests and benchmarks that need a training process's
// side of the format. mlagent itself never writes to a training database.
package trackiotest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/mlagent/mlagent/internal/trackio"
)

// Writer writes rows in Trackio's format, the way trackio.log does (WAL
// journal, one transaction per call).
type Writer struct {
	db     *sql.DB
	legacy bool
	Path   string
}

// WriterOptions selects the layout to write.
type WriterOptions struct {
	// Legacy writes the pre-run_id schema (rows keyed on run_name only).
	Legacy bool
	// JournalMode is the SQLite journal mode; default "WAL" as Trackio uses
	// locally ("DELETE" on Spaces).
	JournalMode string
}

// CreateSchema creates Trackio's tables in db (current or legacy layout).
func CreateSchema(ctx context.Context, db *sql.DB, legacy bool) error {
	ddl := trackio.SchemaSQL
	if legacy {
		ddl = trackio.LegacySchemaSQL
	}
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create trackio schema: %w", err)
	}
	return nil
}

// OpenWriter opens (creating if needed) dir/trackio.DBFileName(project).
func OpenWriter(ctx context.Context, dir, project string, opts WriterOptions) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("trackio writer: %w", err)
	}
	path := filepath.Join(dir, trackio.DBFileName(project))
	jm := opts.JournalMode
	if jm == "" {
		jm = "WAL"
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)&_pragma=journal_mode("+jm+")&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("trackio writer %s: %w", path, err)
	}
	if err := CreateSchema(ctx, db, opts.Legacy); err != nil {
		db.Close()
		return nil, fmt.Errorf("trackio writer %s: %w", path, err)
	}
	return &Writer{db: db, legacy: opts.Legacy, Path: path}, nil
}

// DB exposes the handle, for tests that need raw statements.
func (w *Writer) DB() *sql.DB { return w.db }

// Close closes the database.
func (w *Writer) Close() error { return w.db.Close() }

// Log inserts one metrics row and returns its row id. Non-finite values are
// encoded the way Trackio's serialize_values does.
func (w *Writer) Log(ctx context.Context, runID, runName string, step int64, values map[string]any, ts time.Time) (int64, error) {
	js, err := EncodeValues(values)
	if err != nil {
		return 0, err
	}
	var res sql.Result
	if w.legacy {
		res, err = w.db.ExecContext(ctx, trackio.LegacyInsertMetricSQL, FormatTimestamp(ts), runName, step, js)
	} else {
		res, err = w.db.ExecContext(ctx, trackio.InsertMetricSQL, FormatTimestamp(ts), runID, runName, step, js)
	}
	if err != nil {
		return 0, fmt.Errorf("trackio log: %w", err)
	}
	return res.LastInsertId()
}

// LogSystem inserts one system_metrics row (current schema only).
func (w *Writer) LogSystem(ctx context.Context, runID, runName string, values map[string]any, ts time.Time) (int64, error) {
	if w.legacy {
		return 0, fmt.Errorf("trackio log system: legacy schema has no system_metrics")
	}
	js, err := EncodeValues(values)
	if err != nil {
		return 0, err
	}
	res, err := w.db.ExecContext(ctx, trackio.InsertSystemMetricSQL, FormatTimestamp(ts), runID, runName, js)
	if err != nil {
		return 0, fmt.Errorf("trackio log system: %w", err)
	}
	return res.LastInsertId()
}

// SetConfig stores a run's config (replacing an earlier one, as Trackio does).
func (w *Writer) SetConfig(ctx context.Context, runID, runName string, config map[string]any, ts time.Time) error {
	js, err := EncodeValues(config)
	if err != nil {
		return err
	}
	if w.legacy {
		_, err = w.db.ExecContext(ctx, trackio.LegacyUpsertConfigSQL, runName, js, FormatTimestamp(ts))
	} else {
		_, err = w.db.ExecContext(ctx, trackio.UpsertConfigSQL, runID, runName, js, FormatTimestamp(ts))
	}
	if err != nil {
		return fmt.Errorf("trackio config: %w", err)
	}
	return nil
}

// FormatTimestamp formats t as Trackio does (ISO 8601, UTC offset).
func FormatTimestamp(t time.Time) string {
	return t.UTC().Format(trackio.TimestampLayout)
}

// EncodeValues encodes a metrics or config object as Trackio stores it.
func EncodeValues(values map[string]any) (string, error) {
	out := make(map[string]any, len(values))
	for k, v := range values {
		out[k] = serializeValue(v)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("trackio encode: %w", err)
	}
	return string(b), nil
}

func serializeValue(v any) any {
	f, ok := v.(float64)
	if !ok {
		if f32, ok32 := v.(float32); ok32 {
			f, ok = float64(f32), true
		}
	}
	if !ok {
		return v
	}
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}
