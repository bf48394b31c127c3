// Package trackio reads Trackio's SQLite project databases in
// the exact layout the `trackio` Python package uses (one <project>.db per
// project in the Trackio directory), so training code in the sandbox can log
// with Trackio while the dashboard and the syncer follow along read-only.
//
// Two layouts exist in the wild and both are supported:
//
//   - current Trackio: rows carry run_id (a stable id) and run_name;
//   - legacy Trackio (before run_id existed): rows are keyed by run_name only,
//     and the oldest releases also had a project_name column.
//
// The schema constants below are the contract other parts (the demo's
// training script, tests) write against; they match trackio's
// sqlite_storage.init_db.
package trackio

import (
	"path/filepath"
	"strings"
	"unicode"
)

// Table names Trackio uses.
const (
	TableMetrics         = "metrics"
	TableConfigs         = "configs"
	TableSystemMetrics   = "system_metrics"
	TableProjectMetadata = "project_metadata"
)

// DBExt is the file extension of a Trackio project database.
const DBExt = ".db"

// SchemaSQL creates the current (run_id) Trackio schema. The metrics and
// system_metrics JSON columns hold one JSON object per row; Trackio writes
// them with orjson, so the stored type may be TEXT or BLOB. Non-finite floats
// are stored as the strings "NaN", "Infinity" and "-Infinity".
const SchemaSQL = `
CREATE TABLE IF NOT EXISTS metrics (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id TEXT NOT NULL,
	timestamp TEXT NOT NULL,
	run_name TEXT NOT NULL,
	step INTEGER NOT NULL,
	metrics TEXT NOT NULL,
	log_id TEXT,
	space_id TEXT
);
CREATE TABLE IF NOT EXISTS configs (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id TEXT NOT NULL,
	run_name TEXT NOT NULL,
	config TEXT NOT NULL,
	created_at TEXT NOT NULL,
	UNIQUE(run_id)
);
CREATE TABLE IF NOT EXISTS system_metrics (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id TEXT NOT NULL,
	timestamp TEXT NOT NULL,
	run_name TEXT NOT NULL,
	metrics TEXT NOT NULL,
	log_id TEXT,
	space_id TEXT
);
CREATE TABLE IF NOT EXISTS project_metadata (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_metrics_run_step ON metrics(run_id, step);
CREATE INDEX IF NOT EXISTS idx_metrics_run_timestamp ON metrics(run_id, timestamp);
CREATE INDEX IF NOT EXISTS idx_configs_run_name ON configs(run_name);
CREATE INDEX IF NOT EXISTS idx_system_metrics_run_timestamp ON system_metrics(run_id, timestamp);
CREATE UNIQUE INDEX IF NOT EXISTS idx_metrics_log_id ON metrics(log_id) WHERE log_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_system_metrics_log_id ON system_metrics(log_id) WHERE log_id IS NOT NULL;
`

// LegacySchemaSQL creates the schema of Trackio releases before run_id:
// every row is keyed by run_name and configs are unique per run_name.
const LegacySchemaSQL = `
CREATE TABLE IF NOT EXISTS metrics (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	timestamp TEXT NOT NULL,
	run_name TEXT NOT NULL,
	step INTEGER NOT NULL,
	metrics TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS configs (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	run_name TEXT NOT NULL,
	config TEXT NOT NULL,
	created_at TEXT NOT NULL,
	UNIQUE(run_name)
);
CREATE INDEX IF NOT EXISTS idx_metrics_run_step ON metrics(run_name, step);
CREATE INDEX IF NOT EXISTS idx_configs_run_name ON configs(run_name);
`

// Insert statements for the current schema, in Trackio's column order.
const (
	InsertMetricSQL       = `INSERT INTO metrics (timestamp, run_id, run_name, step, metrics) VALUES (?, ?, ?, ?, ?)`
	InsertSystemMetricSQL = `INSERT INTO system_metrics (timestamp, run_id, run_name, metrics) VALUES (?, ?, ?, ?)`
	UpsertConfigSQL       = `INSERT OR REPLACE INTO configs (run_id, run_name, config, created_at) VALUES (?, ?, ?, ?)`
	UpsertMetadataSQL     = `INSERT OR REPLACE INTO project_metadata (key, value) VALUES (?, ?)`
)

// Insert statements for the legacy (run_name only) schema.
const (
	LegacyInsertMetricSQL = `INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES (?, ?, ?, ?)`
	LegacyUpsertConfigSQL = `INSERT OR REPLACE INTO configs (run_name, config, created_at) VALUES (?, ?, ?)`
)

// TimestampLayout is the timestamp format Trackio writes
// (Python datetime.isoformat() of an aware UTC time).
const TimestampLayout = "2006-01-02T15:04:05.999999-07:00"

// DBFileName returns the database file name Trackio uses for project: only
// letters, digits, '-' and '_' are kept; an empty result becomes "default".
func DBFileName(project string) string {
	var b strings.Builder
	for _, r := range project {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	name := b.String()
	if name == "" {
		name = "default"
	}
	return name + DBExt
}

// ProjectOf returns the project name for a database path (its base name
// without the extension), as Trackio lists projects.
func ProjectOf(path string) string {
	return strings.TrimSuffix(filepath.Base(path), DBExt)
}
