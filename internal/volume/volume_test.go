package volume

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPutGetListRemove(t *testing.T) {
	st := New(filepath.Join(t.TempDir(), "volumes"))
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "my.tif"), []byte("tiff"), 0o644)
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "b.txt"), []byte("bb"), 0o644)

	if _, err := st.Put("data", filepath.Join(src, "my.tif"), "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Put into a missing volume: got %v; want ErrNotFound", err)
	}
	if err := st.Create("data"); err != nil {
		t.Fatal(err)
	}
	if err := st.Create("data"); !errors.Is(err, ErrExists) {
		t.Fatalf("Create twice: got %v; want ErrExists", err)
	}
	if c, err := st.Put("data", filepath.Join(src, "my.tif"), "datasets/my.tif"); err != nil || c.Files != 1 {
		t.Fatalf("Put file: got %+v, %v; want 1 file", c, err)
	}
	if c, err := st.Put("data", src, "tree"); err != nil || c.Files != 2 {
		t.Fatalf("Put tree: got %+v, %v; want 2 files", c, err)
	}
	got, err := os.ReadFile(filepath.Join(st.Dir, "data", "datasets", "my.tif"))
	if err != nil || string(got) != "tiff" {
		t.Fatalf("volume file: got %q, %v; want tiff", got, err)
	}
	out := t.TempDir()
	if c, err := st.Get("data", "tree", filepath.Join(out, "t")); err != nil || c.Files != 2 {
		t.Fatalf("Get tree: got %+v, %v; want 2 files", c, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "t", "sub", "b.txt")); string(b) != "bb" {
		t.Errorf("Get tree: got %q; want bb", b)
	}
	vols, err := st.List()
	if err != nil || len(vols) != 1 || vols[0].Name != "data" || vols[0].Files != 3 || vols[0].Bytes != 10 {
		t.Errorf("List: got %+v, %v; want data with 3 files, 10 bytes", vols, err)
	}
	if err := st.Remove("data"); err != nil {
		t.Fatal(err)
	}
	if err := st.Remove("data"); err == nil {
		t.Errorf("Remove twice: got nil; want ErrNotFound")
	}
}

// A sandbox can leave symlinks in a volume; get must not follow them out.
func TestGetDoesNotFollowSymlinksOut(t *testing.T) {
	st := New(t.TempDir())
	dir, _ := st.Ensure("data")
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)
	os.Symlink(secret, filepath.Join(dir, "link"))
	os.Symlink(filepath.Dir(secret), filepath.Join(dir, "dirlink"))
	out := t.TempDir()
	for _, rel := range []string{"link", "dirlink/secret"} {
		_, err := st.Get("data", rel, filepath.Join(out, "x"))
		if err == nil || !strings.Contains(err.Error(), "escapes") && !strings.Contains(err.Error(), "path escapes") {
			b, _ := os.ReadFile(filepath.Join(out, "x"))
			t.Errorf("Get %s: got %v (copied %q); want a path-escape error", rel, err, b)
		}
	}
	// Put through a symlinked directory is refused too.
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, []byte("x"), 0o644)
	if _, err := st.Put("data", src, "dirlink/planted"); err == nil {
		t.Errorf("Put through a symlink: got nil; want an error")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(secret), "planted")); err == nil {
		t.Errorf("Put wrote outside the volume")
	}
}

func TestCleanRel(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"a/b", "a/b", true}, {"/abs/x", "abs/x", true}, {"a/../b", "b", true},
		{"..", "", false}, {"../x", "", false}, {"a/../../x", "", false}, {"", "", false}, {".", "", false}, {"a\x00b", "", false},
	} {
		got, err := CleanRel(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("CleanRel(%q): got %q, %v; want %q ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzCleanRel(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/", "a/../../b", "./.", "x/./y/..", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := CleanRel(s)
		if err != nil {
			return
		}
		if got == ".." || strings.HasPrefix(got, "../") || strings.HasPrefix(got, "/") || got == "." {
			t.Errorf("CleanRel(%q) = %q leaves the volume", s, got)
		}
		if !filepath.IsLocal(got) {
			t.Errorf("CleanRel(%q) = %q is not local", s, got)
		}
	})
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{Data, true}, {Trackio, true}, {"My_vol.2-x", true}, {strings.Repeat("a", 63), true},
		{"", false}, {".", false}, {"..", false}, {".hidden", false}, {"-x", false}, {"a/b", false},
		{"a\x00b", false}, {"é", false}, {strings.Repeat("a", 64), false},
	} {
		err := ValidName(tc.name)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidName)) {
			t.Errorf("ValidName(%q) = %v; want ok %v", tc.name, err, tc.ok)
		}
	}
}
