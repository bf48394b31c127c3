package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVolumeCLIRoundTrip(t *testing.T) {
	e := newCLIEnv(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o644)
	os.MkdirAll(filepath.Join(src, "dir", "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "dir", "sub", "b.txt"), []byte("beta"), 0o644)

	steps := []struct {
		name     string
		args     []string
		wantOut  string // substring of stdout
		wantCode int
	}{
		{"ls empty", []string{"volume", "ls"}, "no volumes", 0},
		{"put file", []string{"volume", "put", "data", filepath.Join(src, "a.txt"), "in/a.txt"}, "copied 1 file(s)", 0},
		{"put dir", []string{"volume", "put", "data", filepath.Join(src, "dir"), "tree"}, "copied 1 file(s)", 0},
		{"ls", []string{"volume", "ls"}, "data", 0},
		{"put escapes with ..", []string{"volume", "put", "data", filepath.Join(src, "a.txt"), "../escape.txt"}, "", 1},
		{"put escapes deeper", []string{"volume", "put", "data", filepath.Join(src, "a.txt"), "in/../../escape.txt"}, "", 1},
		{"get escapes", []string{"volume", "get", "data", "../../mlagent.db", filepath.Join(src, "stolen")}, "", 1},
		{"bad volume name", []string{"volume", "put", "../x", filepath.Join(src, "a.txt"), "a.txt"}, "", 1},
		{"get file", []string{"volume", "get", "data", "in/a.txt", filepath.Join(src, "out-a.txt")}, "copied 1 file(s)", 0},
		{"get dir", []string{"volume", "get", "data", "tree", filepath.Join(src, "out-tree")}, "copied 1 file(s)", 0},
		{"usage", []string{"volume", "put", "data"}, "", 2},
		{"rm", []string{"volume", "rm", "data"}, "removed volume data", 0},
		{"ls after rm", []string{"volume", "ls"}, "no volumes", 0},
	}
	for _, s := range steps {
		out, errOut, code := e.run(t, s.args...)
		if code != s.wantCode || !strings.Contains(out, s.wantOut) {
			t.Errorf("%s: got exit %d, stdout %q (stderr %q); want %d and %q", s.name, code, out, errOut, s.wantCode, s.wantOut)
		}
	}
	for path, want := range map[string]string{"out-a.txt": "alpha", "out-tree/sub/b.txt": "beta"} {
		if got, err := os.ReadFile(filepath.Join(src, path)); err != nil || string(got) != want {
			t.Errorf("%s: got %q, %v; want %q", path, got, err, want)
		}
	}
	for _, p := range []string{filepath.Join(e.home, "volumes", "escape.txt"), filepath.Join(e.home, "escape.txt"), filepath.Join(src, "stolen")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists; want every ../ path rejected", p)
		}
	}
}
