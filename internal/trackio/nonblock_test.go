package trackio

import (
	"context"
	"path/filepath"
	"testing"
)

// TestInstallTwiceKeepsOneWrapper: installing the non-blocking open again
// leaves the wrapper as it is (wrapping itself would recurse forever).
func TestInstallTwiceKeepsOneWrapper(t *testing.T) {
	if hookErr != nil {
		t.Fatalf("hook not installed: %v", hookErr)
	}
	before := sqliteOpen
	if err := installNonblockingOpen(); err != nil {
		t.Fatal(err)
	}
	if sqliteOpen != before {
		t.Fatal("a second install replaced the VFS's own open")
	}
	path := filepath.Join(t.TempDir(), "x.db")
	makeDB(t, path, "r", 1)
	r, err := OpenReader(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
