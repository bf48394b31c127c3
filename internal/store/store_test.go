package store

import (
	"context"
	"path/filepath"
	"testing"
)

func TestMigrateOnce(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := Migration{Name: "test/001", SQL: `CREATE TABLE t (x INTEGER)`}
	for i := 0; i < 2; i++ {
		if err := db.Migrate(ctx, m); err != nil {
			t.Fatalf("Migrate #%d: %v", i, err)
		}
	}
	bad := Migration{Name: "test/002", SQL: `CREATE TABLE t (x INTEGER)`}
	if err := db.Migrate(ctx, bad); err == nil {
		t.Fatal("a failing migration reported success")
	}
	var n int
	db.QueryRow(`SELECT count(*) FROM schema_migrations WHERE name='test/002'`).Scan(&n)
	if n != 0 {
		t.Errorf("failed migration recorded as applied")
	}
}
