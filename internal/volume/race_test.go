package volume

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRemoveDoesNotFollowSwappedLinks: a running sandbox can swap a
// directory of its volume with a symlink to anywhere (renameat2
// RENAME_EXCHANGE) while `volume rm` walks it; nothing outside the volume
// may be changed, whatever the timing.
func TestRemoveDoesNotFollowSwappedLinks(t *testing.T) {
	st := New(t.TempDir())
	victim := t.TempDir()
	os.Mkdir(filepath.Join(victim, "sub"), 0o500)
	os.WriteFile(filepath.Join(victim, "keep"), []byte("host file"), 0o600)
	if err := os.Chmod(victim, 0o700); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 30; attempt++ {
		dir, err := st.Ensure("v")
		if err != nil {
			t.Fatal(err)
		}
		a := filepath.Join(dir, "a")
		for i := 0; i < 40; i++ {
			os.MkdirAll(filepath.Join(a, strconv.Itoa(i), "x"), 0o755)
		}
		if err := os.Symlink(victim, filepath.Join(dir, "b")); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, filepath.Join(dir, "b"), unix.RENAME_EXCHANGE) != nil {
					return // gone
				}
			}
		}()
		err = st.Remove("v")
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("attempt %d: Remove: %v", attempt, err)
		}
		for p, want := range map[string]os.FileMode{victim: 0o700, filepath.Join(victim, "sub"): 0o500} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
				t.Fatalf("attempt %d: %s outside the volume: got %v, %v; want mode %v", attempt, p, fi.Mode(), err, want)
			}
		}
		if b, err := os.ReadFile(filepath.Join(victim, "keep")); err != nil || string(b) != "host file" {
			t.Fatalf("attempt %d: a file outside the volume: %q, %v", attempt, b, err)
		}
		if _, err := os.Lstat(dir); !os.IsNotExist(err) {
			t.Fatalf("attempt %d: the volume is still there: %v", attempt, err)
		}
	}
}

// Deep trees and directories a sandbox made unreadable, unwritable or
// unsearchable go too.
func TestRemoveDeepAndLockedTrees(t *testing.T) {
	st := New(t.TempDir())
	dir, _ := st.Ensure("v")
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 levels: more than maxOpenDepth, made with *at calls (the path
	// is longer than PATH_MAX).
	for i := 0; i < 1000; i++ {
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = next
	}
	unix.Close(fd)
	for _, m := range []os.FileMode{0, 0o100, 0o400, 0o500} {
		p := filepath.Join(dir, "locked"+m.String())
		os.MkdirAll(filepath.Join(p, "in"), 0o755)
		os.WriteFile(filepath.Join(p, "in", "f"), []byte("x"), 0o400)
		os.Chmod(filepath.Join(p, "in"), m)
		os.Chmod(p, m)
	}
	if err := st.Remove("v"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("the volume is still there: %v", err)
	}
	if err := st.Remove("v"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove again: got %v; want ErrNotFound", err)
	}
}
