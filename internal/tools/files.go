package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Files holds what the file tools share: the working directory relative
// paths resolve against.
type Files struct{ Dir string }

// ReadTool is the "read" tool.
type ReadTool struct{ Files *Files }

type readInput struct {
	Path   string `json:"path"`
	Offset int    `json:"offset,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

const (
	readDefaultLimit = 2000
	readMaxLineLen   = 2000
	readMaxBytes     = 256 << 10
)

func (t *ReadTool) Info() Info {
	return Info{
		Name:        "read",
		Description: `Read a text file. Lines come numbered ("  12\t…"), starting at line offset (1-based, default 1), at most limit lines (default 2000); very long lines are cut. Binary files are refused: inspect them with bash (file, head -c, python). Relative paths are relative to the workspace.`,
		Schema: Schema{
			Properties: map[string]any{
				"path":   map[string]any{"type": "string"},
				"offset": map[string]any{"type": "integer", "description": "First line to return, 1-based."},
				"limit":  map[string]any{"type": "integer", "description": "Most lines to return."},
			},
			Required: []string{"path"},
		},
		Parallel: true,
	}
}

func (t *ReadTool) Summarize(input json.RawMessage) string {
	var in readInput
	if Decode(input, &in) != nil {
		return ""
	}
	return in.Path
}

func (t *ReadTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in readInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	path, err := resolve(t.Files.Dir, in.Path)
	if err != nil {
		return Errorf("%v", err)
	}
	if in.Offset < 0 || in.Limit < 0 {
		return Errorf("offset and limit must not be negative")
	}
	f, err := os.Open(path)
	if err != nil {
		return Errorf("%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Errorf("%v", err)
	}
	if st.IsDir() {
		return Errorf("%s is a directory; use glob or bash ls", in.Path)
	}
	head := make([]byte, 8192)
	n, _ := io.ReadFull(f, head)
	if isBinary(head[:n]) {
		return Errorf("%s looks binary (%d bytes); use bash to inspect it", in.Path, st.Size())
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Errorf("%v", err)
	}
	start := max(in.Offset, 1)
	limit := in.Limit
	if limit == 0 {
		limit = readDefaultLimit
	}
	var b strings.Builder
	r := bufio.NewReader(f)
	line, shown := 0, 0
	more := false
	for {
		s, err := r.ReadString('\n')
		if s == "" && err != nil {
			break
		}
		line++
		if line < start {
			continue
		}
		if shown == limit || b.Len() > readMaxBytes {
			more = true
			break
		}
		s = strings.TrimRight(s, "\r\n")
		if len(s) > readMaxLineLen {
			s = validUTF8Prefix(s[:readMaxLineLen]) + " [line cut]"
		}
		fmt.Fprintf(&b, "%6d\t%s\n", line, s)
		shown++
		if ctx.Err() != nil {
			return Errorf("interrupted")
		}
	}
	if shown == 0 {
		if line == 0 {
			return Result{Output: "(empty file)", Summary: "empty"}
		}
		return Errorf("offset %d is past the end of the file (%d lines)", start, line)
	}
	if more {
		fmt.Fprintf(&b, "[more lines follow; read again with offset=%d]\n", start+shown)
	}
	return Result{Output: b.String(), Summary: fmt.Sprintf("%d lines", shown)}
}

// isBinary treats NUL bytes or invalid UTF-8 (beyond a rune cut at the
// buffer end) as binary.
func isBinary(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return true
	}
	for i := 0; i < 4 && len(b) > 0 && !utf8.Valid(b); i++ {
		b = b[:len(b)-1]
	}
	return !utf8.Valid(b)
}

// WriteTool is the "write" tool.
type WriteTool struct{ Files *Files }

type writeInput struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

func (t *WriteTool) Info() Info {
	return Info{
		Name:        "write",
		Description: `Create or overwrite a file with content, creating parent directories. Prefer edit for changing part of an existing file.`,
		Schema: Schema{
			Properties: map[string]any{
				"path":    map[string]any{"type": "string"},
				"content": map[string]any{"type": "string"},
			},
			Required: []string{"path", "content"},
		},
	}
}

func (t *WriteTool) Summarize(input json.RawMessage) string {
	var in writeInput
	if Decode(input, &in) != nil {
		return ""
	}
	return in.Path
}

func (t *WriteTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in writeInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	path, err := resolve(t.Files.Dir, in.Path)
	if err != nil {
		return Errorf("%v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Errorf("%v", err)
	}
	if err := writeFileAtomic(path, []byte(in.Content)); err != nil {
		return Errorf("%v", err)
	}
	return Result{Output: fmt.Sprintf("wrote %d bytes to %s", len(in.Content), path), Summary: fmt.Sprintf("%d bytes", len(in.Content))}
}

// writeFileAtomic replaces path via a temporary file so a crash never
// leaves half a file; it keeps an existing file's mode.
func writeFileAtomic(path string, data []byte) error {
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("%s is a directory", path)
		}
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mlagent-write-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// EditTool is the "edit" tool.
type EditTool struct{ Files *Files }

type editInput struct {
	Path       string `json:"path"`
	OldString  string `json:"old_string"`
	NewString  string `json:"new_string"`
	ReplaceAll bool   `json:"replace_all,omitempty"`
}

func (t *EditTool) Info() Info {
	return Info{
		Name:        "edit",
		Description: `Replace old_string with new_string in a file, exactly (whitespace included). old_string must occur exactly once unless replace_all is true; include surrounding lines to make it unique. Read the file first.`,
		Schema: Schema{
			Properties: map[string]any{
				"path":        map[string]any{"type": "string"},
				"old_string":  map[string]any{"type": "string", "description": "Exact text to replace."},
				"new_string":  map[string]any{"type": "string", "description": "Replacement text."},
				"replace_all": map[string]any{"type": "boolean", "description": "Replace every occurrence."},
			},
			Required: []string{"path", "old_string", "new_string"},
		},
	}
}

func (t *EditTool) Summarize(input json.RawMessage) string {
	var in editInput
	if Decode(input, &in) != nil {
		return ""
	}
	return in.Path
}

// Edit errors, shown to the model.
var (
	ErrEditEmpty     = errors.New("old_string is empty; use write to create a file")
	ErrEditSame      = errors.New("old_string and new_string are identical")
	ErrEditNotFound  = errors.New("old_string not found in the file (it must match exactly, whitespace included)")
	ErrEditNotUnique = errors.New("old_string occurs more than once; add surrounding context or set replace_all")
)

// Replace does the edit tool's replacement on content: old must occur once,
// or at least once with all set. It returns the new content and the number
// of replacements.
func Replace(content, old, new string, all bool) (string, int, error) {
	if old == "" {
		return "", 0, ErrEditEmpty
	}
	if old == new {
		return "", 0, ErrEditSame
	}
	n := strings.Count(content, old)
	switch {
	case n == 0:
		return "", 0, ErrEditNotFound
	case n > 1 && !all:
		return "", 0, fmt.Errorf("%w (%d occurrences)", ErrEditNotUnique, n)
	}
	if all {
		return strings.ReplaceAll(content, old, new), n, nil
	}
	return strings.Replace(content, old, new, 1), 1, nil
}

func (t *EditTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in editInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	path, err := resolve(t.Files.Dir, in.Path)
	if err != nil {
		return Errorf("%v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Errorf("%v", err)
	}
	if isBinary(data[:min(len(data), 8192)]) {
		return Errorf("%s looks binary; edit refuses binary files", in.Path)
	}
	out, n, err := Replace(string(data), in.OldString, in.NewString, in.ReplaceAll)
	if err != nil {
		return Errorf("%s: %v", in.Path, err)
	}
	if err := writeFileAtomic(path, []byte(out)); err != nil {
		return Errorf("%v", err)
	}
	return Result{Output: fmt.Sprintf("replaced %d occurrence(s) in %s", n, path), Summary: fmt.Sprintf("%d replacement(s)", n)}
}
