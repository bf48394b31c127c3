package trackiotest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// HostRun is the run name in the host database PlantHostile links to; it
// must never show on a dashboard nor reach a Space.
const HostRun = "host-secret-run"

// PlantHostile fills dir with what a hostile sandbox can write into the
// Trackio volume, and returns each planted project with the word its
// refusal must contain:
//
//   - a-fifo.db, a FIFO (open(2) for reading blocks until a writer comes);
//   - b-link.db, a symlink to a database outside dir holding HostRun;
//   - c-view.db, whose metrics "table" is a recursive view that never ends.
func PlantHostile(t testing.TB, dir string) map[string]string {
	t.Helper()
	ctx := context.Background()
	hw, err := OpenWriter(ctx, t.TempDir(), "host", WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hw.Log(ctx, HostRun, HostRun, 0, map[string]any{"loss": 1.0}, time.Now()); err != nil {
		t.Fatal(err)
	}
	hw.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "a-fifo.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hw.Path, filepath.Join(dir, "b-link.db")); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "c-view.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE VIEW metrics AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
		SELECT x AS id, 'r' AS run_id, 'r' AS run_name, x AS step, '' AS timestamp, '{}' AS metrics FROM c`); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"a-fifo": "named pipe", "b-link": "symbolic link", "c-view": "view"}
}
