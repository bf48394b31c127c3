package trackiotest

import (
	"context"
	"os"
	"testing"
	"time"
)

// sizeAndMtime is the change detector the dashboard used to have (issue
// 16): size and mtime of the database and of its WAL.
type sizeAndMtime struct {
	size, walSize   int64
	mtime, walMtime time.Time
}

func statSig(path string) sizeAndMtime {
	var s sizeAndMtime
	if fi, err := os.Stat(path); err == nil {
		s.size, s.mtime = fi.Size(), fi.ModTime()
	}
	if fi, err := os.Stat(path + "-wal"); err == nil {
		s.walSize, s.walMtime = fi.Size(), fi.ModTime()
	}
	return s
}

// WALRestartStep is the step of the row WALRestart commits.
const WALRestartStep = 1000

// WALRestart commits a row of run "r" (step WALRestartStep, loss 0.25)
// the way that fooled a size-and-mtime change detector: it logs a row and
// checkpoints the WAL, calls settled (where the reader under test catches
// up), then commits the row, which restarts the WAL from its beginning, so
// the WAL keeps its size. With a coarse mtime (the kernel's file clock
// ticks every few ms) the mtimes do not change either; WALRestart makes
// that certain by setting them back, and fails the test if size or mtime
// of the database or its WAL differ from before the commit.
func WALRestart(t testing.TB, w *Writer, settled func()) {
	t.Helper()
	ctx := context.Background()
	if _, err := w.Log(ctx, "r", "r", WALRestartStep-1, map[string]any{"loss": 0.5}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.DB().Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
		t.Fatal(err)
	}
	settled()
	before := statSig(w.Path)
	if _, err := w.Log(ctx, "r", "r", WALRestartStep, map[string]any{"loss": 0.25}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for p, mt := range map[string]time.Time{w.Path: before.mtime, w.Path + "-wal": before.walMtime} {
		if err := os.Chtimes(p, time.Time{}, mt); err != nil {
			t.Fatal(err)
		}
	}
	if after := statSig(w.Path); after != before {
		t.Fatalf("WALRestart: size or mtime changed (%+v -> %+v); the scenario needs them equal", before, after)
	}
}
