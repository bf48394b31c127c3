package tools

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// skipDirs are never descended into by glob and grep: huge, and not what
// the model is looking for.
var skipDirs = map[string]bool{".git": true, "node_modules": true, "__pycache__": true, ".venv": true, "hf-cache": true}

const maxSearchResults = 500

// matchGlob matches a slash-separated relative path against pattern, where
// "**" matches any number of path segments and each other segment is a
// path.Match pattern.
func matchGlob(pattern, path string) bool {
	return matchSegs(strings.Split(pattern, "/"), strings.Split(path, "/"))
}

func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 1 && pat[1] == "**" {
				pat = pat[1:]
			}
			if len(pat) == 1 {
				return true
			}
			for i := 0; i <= len(segs); i++ {
				if matchSegs(pat[1:], segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		ok, err := filepath.Match(pat[0], segs[0])
		if err != nil || !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}

// GlobTool is the "glob" tool.
type GlobTool struct{ Files *Files }

type globInput struct {
	Pattern string `json:"pattern"`
	Path    string `json:"path,omitempty"`
}

func (t *GlobTool) Info() Info {
	return Info{
		Name:        "glob",
		Description: `Find files by name pattern, e.g. "**/*.py" or "src/*.json" ("**" spans directories). Searches under path (default the workspace); skips .git, node_modules, __pycache__, .venv, hf-cache. Returns matching paths relative to path, sorted, at most 500.`,
		Schema: Schema{
			Properties: map[string]any{
				"pattern": map[string]any{"type": "string"},
				"path":    map[string]any{"type": "string", "description": "Directory to search (default the workspace)."},
			},
			Required: []string{"pattern"},
		},
		Parallel: true,
	}
}

func (t *GlobTool) Summarize(input json.RawMessage) string {
	var in globInput
	if Decode(input, &in) != nil {
		return ""
	}
	return strings.TrimSpace(in.Pattern + " " + in.Path)
}

func (t *GlobTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in globInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if in.Pattern == "" {
		return Errorf("pattern is required")
	}
	if _, err := filepath.Match(strings.ReplaceAll(in.Pattern, "**", "x"), ""); err != nil {
		return Errorf("bad pattern %q: %v", in.Pattern, err)
	}
	root := in.Path
	if root == "" {
		root = "."
	}
	root, err := resolve(t.Files.Dir, root)
	if err != nil {
		return Errorf("%v", err)
	}
	pattern := strings.TrimPrefix(filepath.ToSlash(in.Pattern), "./")
	var found []string
	truncated := false
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable entries are skipped, not fatal
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() && p != root && skipDirs[d.Name()] {
			return filepath.SkipDir
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if matchGlob(pattern, filepath.ToSlash(rel)) {
			if len(found) == maxSearchResults {
				truncated = true
				return filepath.SkipAll
			}
			found = append(found, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return Errorf("%v", err)
	}
	if len(found) == 0 {
		return Result{Output: "no files match " + in.Pattern, Summary: "0 files"}
	}
	sort.Strings(found)
	out := strings.Join(found, "\n") + "\n"
	if truncated {
		out += fmt.Sprintf("[stopped at %d results; narrow the pattern]\n", maxSearchResults)
	}
	return Result{Output: out, Summary: fmt.Sprintf("%d files", len(found))}
}

// GrepTool is the "grep" tool.
type GrepTool struct{ Files *Files }

type grepInput struct {
	Pattern    string `json:"pattern"`
	Path       string `json:"path,omitempty"`
	Include    string `json:"include,omitempty"`
	IgnoreCase bool   `json:"ignore_case,omitempty"`
	FilesOnly  bool   `json:"files_only,omitempty"`
}

func (t *GrepTool) Info() Info {
	return Info{
		Name:        "grep",
		Description: `Search file contents with a regular expression (Go RE2 syntax). Searches path (a file or a directory, default the workspace), only files whose name matches include (a glob such as "*.py"; with a slash it matches the relative path, "**" allowed), skipping binary files and .git. Returns "path:line: text" lines (at most 500), or only file names with files_only.`,
		Schema: Schema{
			Properties: map[string]any{
				"pattern":     map[string]any{"type": "string", "description": "RE2 regular expression."},
				"path":        map[string]any{"type": "string"},
				"include":     map[string]any{"type": "string", "description": "File name glob, e.g. *.py; with a slash it matches the relative path (**/ allowed)."},
				"ignore_case": map[string]any{"type": "boolean"},
				"files_only":  map[string]any{"type": "boolean", "description": "List matching files only."},
			},
			Required: []string{"pattern"},
		},
		Parallel: true,
	}
}

func (t *GrepTool) Summarize(input json.RawMessage) string {
	var in grepInput
	if Decode(input, &in) != nil {
		return ""
	}
	return oneLine(strings.TrimSpace(in.Pattern+" "+in.Path+" "+in.Include), 120)
}

func (t *GrepTool) Run(ctx context.Context, input json.RawMessage) Result {
	var in grepInput
	if err := Decode(input, &in); err != nil {
		return Errorf("%v", err)
	}
	if in.Pattern == "" {
		return Errorf("pattern is required")
	}
	expr := in.Pattern
	if in.IgnoreCase {
		expr = "(?i)" + expr
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return Errorf("bad regular expression: %v", err)
	}
	root := in.Path
	if root == "" {
		root = "."
	}
	root, err = resolve(t.Files.Dir, root)
	if err != nil {
		return Errorf("%v", err)
	}
	st, err := os.Stat(root)
	if err != nil {
		return Errorf("%v", err)
	}
	var lines []string
	files := 0
	truncated := false
	searchFile := func(p, rel string) error {
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		br := bufio.NewReaderSize(f, 64<<10)
		head, _ := br.Peek(8192)
		if isBinary(head) {
			return nil
		}
		matched := false
		n := 0
		for {
			line, err := br.ReadString('\n')
			if line == "" && err != nil {
				if err != io.EOF {
					return nil
				}
				break
			}
			n++
			line = strings.TrimRight(line, "\r\n")
			if !re.MatchString(line) {
				continue
			}
			if !matched {
				matched = true
				files++
				if in.FilesOnly {
					lines = append(lines, rel)
				}
			}
			if in.FilesOnly {
				break
			}
			if len(line) > 300 {
				line = validUTF8Prefix(line[:300]) + "…"
			}
			lines = append(lines, fmt.Sprintf("%s:%d: %s", rel, n, line))
			if len(lines) >= maxSearchResults {
				truncated = true
				return filepath.SkipAll
			}
		}
		if len(lines) >= maxSearchResults {
			truncated = true
			return filepath.SkipAll
		}
		return nil
	}
	if !st.IsDir() {
		_ = searchFile(root, in.Path)
	} else {
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if d.IsDir() {
				if p != root && skipDirs[d.Name()] {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			rel = filepath.ToSlash(rel)
			if in.Include != "" {
				target := d.Name()
				if strings.Contains(in.Include, "/") {
					target = rel
				}
				if !matchGlob(in.Include, target) {
					return nil
				}
			}
			return searchFile(p, rel)
		})
		if err != nil {
			return Errorf("%v", err)
		}
	}
	if len(lines) == 0 {
		return Result{Output: "no matches for " + in.Pattern, Summary: "0 matches"}
	}
	out := strings.Join(lines, "\n") + "\n"
	if truncated {
		out += fmt.Sprintf("[stopped at %d results; narrow the search]\n", maxSearchResults)
	}
	return Result{Output: out, Summary: fmt.Sprintf("%d files", files)}
}
