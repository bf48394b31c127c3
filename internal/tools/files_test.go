package tools

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadWriteEdit(t *testing.T) {
	dir := t.TempDir()
	fsx := &Files{Dir: dir}
	read, write, edit := &ReadTool{fsx}, &WriteTool{fsx}, &EditTool{fsx}
	if r := runJSON(t, write, map[string]any{"path": "a/b.txt", "content": "one\ntwo\nthree\ntwo\n"}); r.IsError {
		t.Fatalf("write: %s", r.Output)
	}
	tests := []struct {
		name  string
		tool  Tool
		in    map[string]any
		want  string
		isErr bool
	}{
		{"read all", read, map[string]any{"path": "a/b.txt"}, "     1\tone\n     2\ttwo\n     3\tthree\n     4\ttwo\n", false},
		{"read range", read, map[string]any{"path": "a/b.txt", "offset": 2, "limit": 2}, "     2\ttwo\n     3\tthree\n[more lines follow; read again with offset=4]\n", false},
		{"read past end", read, map[string]any{"path": "a/b.txt", "offset": 9}, "past the end", true},
		{"read missing", read, map[string]any{"path": "nope"}, "no such file", true},
		{"read dir", read, map[string]any{"path": "a"}, "is a directory", true},
		{"read unknown field", read, map[string]any{"path": "a/b.txt", "lines": 3}, "unknown field", true},
		{"edit ambiguous", edit, map[string]any{"path": "a/b.txt", "old_string": "two", "new_string": "2"}, "more than once", true},
		{"edit missing", edit, map[string]any{"path": "a/b.txt", "old_string": "four", "new_string": "4"}, "not found", true},
		{"edit unique", edit, map[string]any{"path": "a/b.txt", "old_string": "three", "new_string": "3"}, "replaced 1", false},
		{"edit all", edit, map[string]any{"path": "a/b.txt", "old_string": "two", "new_string": "2", "replace_all": true}, "replaced 2", false},
		{"read edited", read, map[string]any{"path": filepath.Join(dir, "a/b.txt")}, "     1\tone\n     2\t2\n     3\t3\n     4\t2\n", false},
		{"edit no path", edit, map[string]any{"old_string": "x", "new_string": "y"}, "path is required", true},
		{"write wrong type", write, map[string]any{"path": "x", "content": 5}, "invalid input", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runJSON(t, tt.tool, tt.in)
			if r.IsError != tt.isErr || !strings.Contains(r.Output, tt.want) {
				t.Errorf("got %q (error %v); want %q (error %v)", r.Output, r.IsError, tt.want, tt.isErr)
			}
		})
	}
}

func TestReadBinary(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), []byte{0x80, 0x03, 0, 1, 2}, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runJSON(t, &ReadTool{&Files{dir}}, map[string]any{"path": "w.bin"})
	if !r.IsError || !strings.Contains(r.Output, "binary") {
		t.Errorf("got %q; want a binary refusal", r.Output)
	}
}

func TestGlobGrep(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"train.py":            "import torch\nprint('hi')\n",
		"src/model.py":        "class Model:\n    lr = 3e-4\n",
		"src/deep/x/util.py":  "def f():\n    return 'LR'\n",
		"README.md":           "# lr finder\n",
		".git/config":         "lr = 1\n",
		"data/blob.bin":       "lr\x00\x01",
		"node_modules/m/a.py": "lr\n",
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fsx := &Files{Dir: dir}
	tests := []struct {
		name string
		tool Tool
		in   map[string]any
		want string
	}{
		{"glob py", &GlobTool{fsx}, map[string]any{"pattern": "**/*.py"}, "src/deep/x/util.py\nsrc/model.py\ntrain.py\n"},
		{"glob top", &GlobTool{fsx}, map[string]any{"pattern": "*.py"}, "train.py\n"},
		{"glob under", &GlobTool{fsx}, map[string]any{"pattern": "*.py", "path": "src"}, "model.py\n"},
		{"glob none", &GlobTool{fsx}, map[string]any{"pattern": "*.rs"}, "no files match *.rs"},
		{"grep", &GrepTool{fsx}, map[string]any{"pattern": `lr\b`}, "README.md:1: # lr finder\nsrc/model.py:2:     lr = 3e-4\n"},
		{"grep case", &GrepTool{fsx}, map[string]any{"pattern": `^\s+\w+ = |'lr'`, "ignore_case": true, "include": "*.py"}, "src/deep/x/util.py:2:     return 'LR'\nsrc/model.py:2:     lr = 3e-4\n"},
		{"grep files", &GrepTool{fsx}, map[string]any{"pattern": "lr", "files_only": true, "include": "src/**"}, "src/model.py\n"},
		{"grep file", &GrepTool{fsx}, map[string]any{"pattern": "torch", "path": "train.py"}, "train.py:1: import torch\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runJSON(t, tt.tool, tt.in)
			if r.IsError || r.Output != tt.want {
				t.Errorf("got %q (error %v); want %q", r.Output, r.IsError, tt.want)
			}
		})
	}
	r := runJSON(t, &GrepTool{fsx}, map[string]any{"pattern": "("})
	if !r.IsError {
		t.Errorf("bad regexp: got %q; want error", r.Output)
	}
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pat, path string
		want      bool
	}{
		{"**", "a/b/c", true},
		{"**/*.py", "x.py", true},
		{"**/*.py", "a/b/x.py", true},
		{"a/**/c", "a/c", true},
		{"a/**/c", "a/x/y/c", true},
		{"a/**/c", "a/x/y/d", false},
		{"*.py", "a/x.py", false},
		{"[", "[", false},
	}
	for _, tt := range tests {
		if got := matchGlob(tt.pat, tt.path); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v; want %v", tt.pat, tt.path, got, tt.want)
		}
	}
}

func FuzzReplace(f *testing.F) {
	f.Add("one two two", "two", "2", false)
	f.Add("one two two", "two", "2", true)
	f.Add("aaa", "aa", "a", true)
	f.Add("x", "", "y", false)
	f.Add("héllo", "é", "e", false)
	f.Fuzz(func(t *testing.T, content, old, new string, all bool) {
		out, n, err := Replace(content, old, new, all)
		if err != nil {
			if out != "" || n != 0 {
				t.Fatalf("error %v with output %q, n=%d", err, out, n)
			}
			return
		}
		count := strings.Count(content, old)
		if !all && (count != 1 || n != 1) {
			t.Fatalf("replaced %d of %d occurrences without replace_all", n, count)
		}
		if all && n != count {
			t.Fatalf("replace_all: n=%d; want %d", n, count)
		}
		if want := len(content) + n*(len(new)-len(old)); len(out) != want {
			t.Fatalf("len(out)=%d; want %d", len(out), want)
		}
		if !all {
			i := strings.Index(content, old)
			if out != content[:i]+new+content[i+len(old):] {
				t.Fatalf("single replacement changed more than the match")
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"path":"a","old_string":"x","new_string":"y"}`))
	f.Add([]byte(`{"path":"a","extra":1}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"path":"a"} {"path":"b"}`))
	f.Add([]byte(`{"replace_all":"yes"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, input []byte) {
		// Every tool must survive any input without panicking.
		dir := t.TempDir()
		for _, tool := range []Tool{&ReadTool{&Files{dir}}, &EditTool{&Files{dir}}, &GlobTool{&Files{dir}}, &GrepTool{&Files{dir}}} {
			tool.Run(t.Context(), input)
		}
		var in editInput
		if err := Decode(input, &in); err != nil {
			return
		}
		// Whatever decoded must round-trip to an equal value: nothing
		// invented, nothing unknown accepted.
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var again editInput
		if err := Decode(b, &again); err != nil || again != in {
			t.Fatalf("round trip: %v %+v != %+v", err, again, in)
		}
	})
}
