package bwrap

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHostEntries(t *testing.T) {
	dir := t.TempDir()
	mk := func(p string, mode os.FileMode) string {
		p = filepath.Join(dir, p)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode) // past the umask
		return p
	}
	small := filepath.Join(dir, "small")
	os.MkdirAll(filepath.Join(small, "sub"), 0o755)
	mk("small/a.conf", 0o644)
	mk("small/sub/run", 0o755)
	os.Symlink("/usr/share/x", filepath.Join(small, "link"))
	big := filepath.Join(dir, "big")
	os.Mkdir(big, 0o755)
	for i := range maxCopied + 1 {
		mk("big/f"+strconv.Itoa(i), 0o644)
	}
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o755)
	mk("private/key", 0o600)
	os.Symlink(filepath.Join(dir, "small/a.conf"), filepath.Join(dir, "toplink"))
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		path string
		ok   bool
		n    int
	}{
		{small, true, 5},                         // dir, a.conf, link, sub, sub/run
		{filepath.Join(dir, "toplink"), true, 1}, // followed, as a bind would
		{filepath.Join(dir, "missing"), true, 0},
		{big, false, 0},
		{private, false, 0}, // not readable by anyone: bound, as before
		{fifo, false, 0},
	} {
		es, ok := hostEntries(c.path)
		if ok != c.ok || len(es) != c.n {
			t.Errorf("%s: got %d entries, ok %v; want %d, %v", c.path, len(es), ok, c.n, c.ok)
		}
		for _, e := range es {
			if e.f != nil {
				e.f.Close()
			}
		}
	}
	es, _ := hostEntries(small)
	defer func() {
		for _, e := range es {
			if e.f != nil {
				e.f.Close()
			}
		}
	}()
	want := map[string]string{small: "dir 0755", small + "/a.conf": "file 0644", small + "/link": "link /usr/share/x",
		small + "/sub": "dir 0755", small + "/sub/run": "file 0755"}
	for _, e := range es {
		got := "link " + e.target
		switch {
		case e.dir:
			got = fmt.Sprintf("dir %04o", e.perm)
		case e.f != nil:
			got = fmt.Sprintf("file %04o", e.perm)
		}
		if got != want[e.dest] {
			t.Errorf("%s: got %q, want %q", e.dest, got, want[e.dest])
		}
	}
}
