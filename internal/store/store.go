// Package store opens mlagent's SQLite database (pure-Go driver) with the
// settings every part shares, and applies each part's own named schema
// migrations. Parts own their tables: the gateway its tokens and usage,
// the sandbox backends their sandboxes, the CLI its sessions.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is the shared database handle; *sql.DB is safe for concurrent use.
type DB struct {
	*sql.DB
	Path string
}

// Open opens (creating if needed) the database at path in WAL mode with a
// busy timeout, so several mlagent processes can share it. Transactions
// begin IMMEDIATE: one that reads and then writes takes the write lock
// first (waiting its turn) instead of failing when another process wrote
// in between. Opening a new database races with other processes switching
// it to WAL; that is retried for up to openWait.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	deadline := time.Now().Add(openWait)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		db, err := open(ctx, path)
		if err == nil {
			return db, nil
		}
		if !IsBusy(err) || time.Now().After(deadline) {
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open store %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// openWait bounds how long Open retries a database another process holds.
const openWait = 15 * time.Second

func open(ctx context.Context, path string) (*DB, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')))`); err != nil {
		db.Close()
		return nil, err
	}
	return &DB{DB: db, Path: path}, nil
}

// IsBusy reports whether err is SQLite's "database is locked" (another
// connection holds the lock), for callers that retry.
func IsBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
			return true
		}
	}
	return false
}

// OpenMemory opens a private in-memory database, for tests.
func OpenMemory(ctx context.Context) (*DB, error) {
	db, err := sql.Open("sqlite", "file::memory:?_pragma=foreign_keys(1)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one connection, or each sees its own empty database
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')))`); err != nil {
		return nil, err
	}
	return &DB{DB: db, Path: ":memory:"}, nil
}

// Migrate applies, once per database, each named migration in order. Names
// must be globally unique, e.g. "gateway/001_tokens".
func (db *DB) Migrate(ctx context.Context, migrations ...Migration) error {
	// Most opens find everything applied: check that without a
	// transaction, which is IMMEDIATE and would queue behind writers.
	applied := map[string]bool{}
	if rows, err := db.QueryContext(ctx, `SELECT name FROM schema_migrations`); err == nil {
		for rows.Next() {
			var name string
			if rows.Scan(&name) == nil {
				applied[name] = true
			}
		}
		rows.Close()
	}
	for _, m := range migrations {
		if applied[m.Name] {
			continue
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, m.Name).Scan(&n); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		if n > 0 {
			tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(name) VALUES (?)`, m.Name); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
	}
	return nil
}

// Migration is one named schema change.
type Migration struct {
	Name string
	SQL  string
}
