package tools

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShareFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.csv"), []byte("a,b\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "link"))
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	tool := &ShareFileTool{Dir: dir}
	tests := []struct {
		in      string
		wantErr string
	}{
		{`{"path":"r.csv"}`, ""},
		{`{"path":"` + filepath.Join(dir, "r.csv") + `","comment":"results"}`, ""},
		{`{"path":"link"}`, "not a regular file"},
		{`{"path":"d"}`, "not a regular file"},
		{`{"path":"empty"}`, "empty"},
		{`{"path":"missing"}`, "no such file"},
		{`{}`, "path is required"},
		{`{"path":"r.csv","x":1}`, "unknown"},
	}
	for _, tt := range tests {
		r := tool.Run(context.Background(), json.RawMessage(tt.in))
		if tt.wantErr == "" {
			if r.IsError || r.Summary != filepath.Join(dir, "r.csv") || !strings.Contains(r.Output, "Shared") {
				t.Errorf("%s: got %+v; want shared with the path as summary", tt.in, r)
			}
			continue
		}
		if !r.IsError || !strings.Contains(r.Output, tt.wantErr) {
			t.Errorf("%s: got %+v; want an error with %q", tt.in, r, tt.wantErr)
		}
	}
	if got := tool.Summarize(json.RawMessage(`{"path":"sub/../r.csv"}`)); got != filepath.Join(dir, "r.csv") {
		t.Errorf("Summarize = %q; want the cleaned absolute path", got)
	}
}
