package gdrive

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/gdrive/gdrivetest"
)

// within fails the test if f has not returned after d (it may be blocked
// in open(2) for good: it is left running).
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
		return nil
	}
}

// TestHostileVolume: import and export run on a volume a sandbox may be
// using, so what is there may have been planted: a FIFO where the import
// writes its part file or where the export reads a file blocked the CLI
// in open(2) for good (a FIFO blocks until the other side opens).
func TestHostileVolume(t *testing.T) {
	ctx := context.Background()
	f := gdrivetest.New(t)
	id := f.Add(gdrivetest.Item{Name: "data.csv", MimeType: "text/csv", Parents: []string{"root"}, Data: []byte("a,b\n1,2\n")})
	c := newClient(t, f)

	t.Run("fifo as the part file", func(t *testing.T) {
		vol := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(vol, "data.csv"+partSuffix), 0o644); err != nil {
			t.Fatal(err)
		}
		err := within(t, 10*time.Second, "import onto a FIFO", func() error {
			_, err := c.Import(ctx, id, openRoot(t, vol), "/")
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("import = %v; want a refusal of the planted FIFO", err)
		}
	})
	t.Run("fifo to export", func(t *testing.T) {
		vol := t.TempDir()
		os.Mkdir(filepath.Join(vol, "out"), 0o755)
		if err := syscall.Mkfifo(filepath.Join(vol, "out", "x.bin"), 0o644); err != nil {
			t.Fatal(err)
		}
		root := openRoot(t, vol)
		fi, err := root.Lstat("out/x.bin")
		if err != nil {
			t.Fatal(err)
		}
		// Swapped in after the walk saw a regular file: exportItem is
		// called as the walk would have called it.
		regular := fakeRegular{fi}
		err = within(t, 10*time.Second, "export of a FIFO", func() error {
			_, err := c.exportItem(ctx, root, "out/x.bin", "x.bin", regular, "root", &Stats{})
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("export = %v; want a refusal of the FIFO", err)
		}
	})
}

// fakeRegular is a FileInfo that says regular file, as a Lstat did before
// the sandbox swapped the file for a FIFO.
type fakeRegular struct{ os.FileInfo }

func (fakeRegular) Mode() os.FileMode { return 0o644 }
