package store

import (
	"context"
	"path/filepath"
	"sync"
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

// Processes that start together (mlagent run in one terminal, sandbox
// exec in another) open and migrate a new database at once: each must
// wait its turn, not fail with "database is locked".
func TestConcurrentOpenAndMigrate(t *testing.T) {
	for round := 0; round < 10; round++ {
		path := filepath.Join(t.TempDir(), "x.db")
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db, err := Open(context.Background(), path)
				if err != nil {
					errs <- err
					return
				}
				defer db.Close()
				errs <- db.Migrate(context.Background(),
					Migration{"test/001", "CREATE TABLE t1(x)"}, Migration{"test/002", "CREATE TABLE t2(x)"})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("round %d: %v", round, err)
			}
		}
	}
}
