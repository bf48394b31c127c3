package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// MaxShareBytes is the largest file share_file offers; front ends refuse
// bigger ones too.
const MaxShareBytes = 100 << 20

// ShareFileTool is the "share_file" tool: it hands a file the agent made
// (a results CSV, a plot) to the user. The tool checks the file; the
// front end does the sharing when it sees the call succeed (the Slack
// front end uploads it to the thread; the terminal says where it is).
type ShareFileTool struct {
	// Dir resolves relative paths.
	Dir string
}

type shareInput struct {
	Path    string `json:"path"`
	Comment string `json:"comment,omitempty"`
}

func (t *ShareFileTool) Info() Info {
	return Info{
		Name: "share_file",
		Description: `Share a file you produced with the user (results CSV, plot, report). In Slack it is uploaded to the thread; in the terminal the user is told its path. ` +
			`Use it when the user asks for a file or when a result is best seen as a file. At most 100 MB; regular files only.`,
		Schema: Schema{
			Properties: map[string]any{
				"path":    map[string]any{"type": "string", "description": "absolute path, or relative to the working directory"},
				"comment": map[string]any{"type": "string", "description": "one line shown with the file"},
			},
			Required: []string{"path"},
		},
		Parallel: true,
	}
}

func (t *ShareFileTool) abs(p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(t.Dir, p)
	}
	return filepath.Clean(p)
}

// Summarize is the file's absolute path: front ends read it from the
// tool_start event to know what to share.
func (t *ShareFileTool) Summarize(input json.RawMessage) string {
	var in shareInput
	if Decode(input, &in) != nil || in.Path == "" {
		return ""
	}
	return t.abs(in.Path)
}

func (t *ShareFileTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in shareInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if in.Path == "" {
		return Errorf("path is required")
	}
	p := t.abs(in.Path)
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return Errorf("%s: %v", p, err)
	case !fi.Mode().IsRegular():
		return Errorf("%s is not a regular file (symlinks and directories cannot be shared; zip a directory first)", p)
	case fi.Size() == 0:
		return Errorf("%s is empty", p)
	case fi.Size() > MaxShareBytes:
		return Errorf("%s is %d bytes; at most %d can be shared (compress it, or tell the user its path in /data)", p, fi.Size(), MaxShareBytes)
	}
	return Result{Output: fmt.Sprintf("Shared %s (%d bytes) with the user.", p, fi.Size()), Summary: p}
}
