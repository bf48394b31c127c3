package volume

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newVolume(t *testing.T) (*Store, string) {
	t.Helper()
	st := New(filepath.Join(t.TempDir(), "volumes"))
	dir, err := st.Ensure("data")
	if err != nil {
		t.Fatal(err)
	}
	return st, dir
}

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// A sparse file a sandbox made (truncate -s 16T) costs its data on the
// host, not its size: holes stay holes, and Measure says so beforehand.
// (The copy here is 256 MiB apparent, so that a regression costs this
// host 256 MiB, not its disk; cli's volume test gets a 16 TiB one.)
func TestGetKeepsHoles(t *testing.T) {
	st, dir := newVolume(t)
	sparse := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteAt([]byte("head"), 0)
		f.WriteAt([]byte("middle"), 128<<20)
		if err := f.Truncate(size); err != nil {
			t.Skipf("this filesystem cannot hold a sparse file of %d bytes: %v", size, err)
		}
		return p
	}
	sparse("huge", 15<<40) // ext4 with 4 KiB blocks stops just short of 16 TiB
	u, err := st.Measure("data", "huge")
	if err != nil {
		t.Fatal(err)
	}
	if u.Files != 1 || u.Apparent != 15<<40 || u.Data > 1<<20 {
		t.Errorf("Measure: got %+v; want 1 file, 15 TiB apparent, under 1 MiB of data", u)
	}
	sparse("sparse", 256<<20)
	out := filepath.Join(t.TempDir(), "out")
	c, err := st.Get("data", "sparse", out)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(out)
	if fi.Size() != 256<<20 || c.Bytes > 1<<20 || allocated(t, out) > 1<<20 {
		t.Errorf("copy: size %d, %d bytes written, %d allocated; want 256 MiB apparent with under 1 MiB written and allocated", fi.Size(), c.Bytes, allocated(t, out))
	}
	g, _ := os.Open(out)
	defer g.Close()
	buf := make([]byte, 6)
	g.ReadAt(buf, 128<<20)
	if string(buf) != "middle" {
		t.Errorf("data after the hole: got %q; want middle", buf)
	}
}

// Setuid, setgid and sticky bits never cross; permission bits do.
func TestCopyStripsSetID(t *testing.T) {
	st, dir := newVolume(t)
	p := filepath.Join(dir, "tool")
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	if err := os.Chmod(p, 0o6755|fs.ModeSetuid|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode()&fs.ModeSetuid == 0 {
		t.Fatalf("setup: %v has no setuid bit", fi.Mode())
	}
	out := filepath.Join(t.TempDir(), "tool")
	if _, err := st.Get("data", "tool", out); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("get: mode %v, %v; want the permission bits (executable) without setuid or setgid", fi.Mode(), err)
	}
	host := filepath.Join(t.TempDir(), "h")
	os.WriteFile(host, []byte("x"), 0o755)
	os.Chmod(host, 0o755|fs.ModeSetuid)
	if _, err := st.Put("data", host, "h"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "h")); fi.Mode()&fs.ModeSetuid != 0 {
		t.Errorf("put: mode %v; want no setuid", fi.Mode())
	}
}

// A FIFO a sandbox left (or swapped in for a file) blocks nothing: get
// and put skip it or fail at once.
func TestFIFOsDoNotBlock(t *testing.T) {
	st, dir := newVolume(t)
	os.MkdirAll(filepath.Join(dir, "tree"), 0o755)
	if err := unix.Mkfifo(filepath.Join(dir, "tree", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tree", "f"), []byte("x"), 0o644)
	if err := unix.Mkfifo(filepath.Join(dir, "put-here"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	os.WriteFile(src, []byte("y"), 0o644)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := st.Get("data", "tree", filepath.Join(t.TempDir(), "out"))
		if err != nil || c.Files != 1 || c.Skipped != 1 {
			t.Errorf("Get: %+v, %v; want 1 file and the FIFO skipped", c, err)
		}
		if _, err := st.Put("data", src, "put-here"); err == nil {
			t.Errorf("Put onto a FIFO: got nil; want an error")
		}
		if _, err := st.Cat("data", "tree/pipe", &bytes.Buffer{}); err == nil {
			t.Errorf("Cat of a FIFO: got nil; want an error")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a FIFO in the volume blocked the copy")
	}
}

// cp's rules: into an existing directory under the source's name, else
// as the destination.
func TestCopyFollowsCpRules(t *testing.T) {
	st, _ := newVolume(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "ds", "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "ds", "sub", "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(src, "file.txt"), []byte("f"), 0o644)
	steps := []struct {
		what      string
		put       func() (Copied, error)
		wantInVol string
	}{
		{"dir to the root", func() (Copied, error) { return st.Put("data", filepath.Join(src, "ds"), "/") }, "ds/sub/a"},
		{"dir into an existing dir", func() (Copied, error) { return st.Put("data", filepath.Join(src, "ds"), "ds") }, "ds/ds/sub/a"},
		{"dir to a new name", func() (Copied, error) { return st.Put("data", filepath.Join(src, "ds"), "renamed") }, "renamed/sub/a"},
		{"file to the root", func() (Copied, error) { return st.Put("data", filepath.Join(src, "file.txt"), "") }, "file.txt"},
		{"file into a dir", func() (Copied, error) { return st.Put("data", filepath.Join(src, "file.txt"), "renamed") }, "renamed/file.txt"},
		{"file to a new name", func() (Copied, error) { return st.Put("data", filepath.Join(src, "file.txt"), "new/name.txt") }, "new/name.txt"},
		{"file into a new dir/", func() (Copied, error) { return st.Put("data", filepath.Join(src, "file.txt"), "newdir/") }, "newdir/file.txt"},
	}
	for _, s := range steps {
		c, err := s.put()
		if err != nil || c.Dest == "" {
			t.Fatalf("%s: %+v, %v", s.what, c, err)
		}
		if _, err := os.Stat(filepath.Join(st.Dir, "data", filepath.FromSlash(s.wantInVol))); err != nil {
			t.Errorf("%s: %s not in the volume (copied to %s)", s.what, s.wantInVol, c.Dest)
		}
	}
	out := t.TempDir()
	if _, err := st.Get("data", "ds", out); err != nil { // into the existing dir
		t.Fatal(err)
	}
	if _, err := st.Get("data", "renamed", filepath.Join(out, "fresh")); err != nil { // as a new name
		t.Fatal(err)
	}
	if _, err := st.Get("data", "/", filepath.Join(out, "all")); err != nil { // the whole volume
		t.Fatal(err)
	}
	if _, err := st.Get("data", "new/name.txt", filepath.Join(out, "into")+"/"); err != nil { // into a new dir/
		t.Fatal(err)
	}
	for _, p := range []string{"ds/sub/a", "fresh/sub/a", "fresh/file.txt", "all/new/name.txt", "into/name.txt"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("get: %s missing", p)
		}
	}
}

func TestReadDirAndRemovePath(t *testing.T) {
	st, dir := newVolume(t)
	os.MkdirAll(filepath.Join(dir, "runs", "r1"), 0o755)
	os.WriteFile(filepath.Join(dir, "runs", "r1", "model.pt"), bytes.Repeat([]byte("x"), 3000), 0o644)
	os.WriteFile(filepath.Join(dir, "runs", "log.csv"), []byte("a,b\n"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "runs", "link"))
	es, truncated, err := st.ReadDir("data", "/runs")
	if err != nil || truncated || len(es) != 3 {
		t.Fatalf("ReadDir: %+v, %v, %v; want 3 entries", es, truncated, err)
	}
	if es[0].Name != "runs/link" || es[0].Target != "/etc/passwd" || es[1].Name != "runs/log.csv" || es[1].Size != 4 || !es[2].Mode.IsDir() {
		t.Errorf("ReadDir: got %+v", es)
	}
	if es, _, err := st.ReadDir("data", "runs/r1/model.pt"); err != nil || len(es) != 1 || es[0].Size != 3000 {
		t.Errorf("ReadDir of a file: %+v, %v", es, err)
	}
	if es, _, err := st.ReadDir("data", "runs/link/"); err != nil || len(es) != 1 || es[0].Target != "/etc/passwd" {
		t.Errorf("ReadDir of a symlink out of the volume: %+v, %v; want the link itself, not followed", es, err)
	}
	if err := st.RemovePath("data", "runs/r1", false); err == nil || !strings.Contains(err.Error(), "-r") {
		t.Errorf("RemovePath of a directory without recursive: %v; want a hint at -r", err)
	}
	if err := st.RemovePath("data", "runs/link", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatalf("removing a link removed its target: %v", err)
	}
	if err := st.RemovePath("data", "runs/r1", true); err != nil {
		t.Fatal(err)
	}
	if err := st.RemovePath("data", "/", true); err == nil {
		t.Errorf("RemovePath of the root: got nil; want an error")
	}
	if es, _, _ := st.ReadDir("data", "runs"); len(es) != 1 {
		t.Errorf("after removes: %+v; want only log.csv", es)
	}
	if _, _, err := st.ReadDir("nope", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadDir of a missing volume: %v; want ErrNotFound", err)
	}
}

// nest makes dir/a/a/…/a, n levels, through descriptors (as a sandbox can,
// however long the path grows), with a file at the bottom.
func nest(t *testing.T, dir string, n int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := unix.Mkdirat(fd, "a", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "a", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	f, err := unix.Openat(fd, "bottom", unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err == nil {
		unix.Close(f)
	}
	unix.Close(fd)
}

// A sandbox can nest directories without end; copying out walks a
// bounded depth and says so, rather than grinding for minutes through a
// tree no host path could hold.
func TestGetRefusesEndlessNesting(t *testing.T) {
	st, dir := newVolume(t)
	nest(t, filepath.Join(dir), MaxDepth+1)
	start := time.Now()
	if _, err := st.Measure("data", "."); !errors.Is(err, ErrTooDeep) {
		t.Errorf("Measure: got %v; want ErrTooDeep", err)
	}
	out := t.TempDir()
	if _, err := st.Get("data", ".", out+"/"); !errors.Is(err, ErrTooDeep) {
		t.Errorf("Get: got %v; want ErrTooDeep", err)
	}
	t.Logf("refused %d levels in %v", MaxDepth+1, time.Since(start).Round(time.Millisecond))
	// MaxDepth levels copy.
	st2, dir2 := newVolume(t)
	nest(t, dir2, MaxDepth-1)
	if u, err := st2.Measure("data", "."); err != nil || u.Files != 1 {
		t.Errorf("Measure of %d levels: %+v, %v; want the file counted", MaxDepth-1, u, err)
	}
}
