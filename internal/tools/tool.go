// Package tools implements the tools the agent offers the model: a
// persistent bash shell with background jobs, file read/write/edit, glob,
// grep, a todo list, questions to the user, Hugging Face Hub search and
// skills. Errors the model should see are Results with IsError; Go errors
// are kept for the infrastructure.
package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Tool is one tool. Run must be safe to call concurrently with other tools'
// Run; Info().Parallel says whether it may also run concurrently with other
// calls in the same model turn.
type Tool interface {
	Info() Info
	// Run executes one call. input is the raw JSON the model sent. A
	// cancelled ctx (user interrupt) must stop the work promptly.
	Run(ctx context.Context, input json.RawMessage) Result
}

// Info describes a tool to the model.
type Info struct {
	Name        string
	Description string
	// Schema is the JSON schema of the input object.
	Schema Schema
	// Parallel tools (read-only or self-contained) run concurrently with
	// other parallel calls of the same turn; the others run one at a time,
	// in order.
	Parallel bool
}

// Schema is the input_schema of a tool: an object with properties.
type Schema struct {
	Properties map[string]any `json:"properties"`
	Required   []string       `json:"required,omitempty"`
}

// Result is what a call returns to the model.
type Result struct {
	Output  string // the tool_result text
	IsError bool
	// Summary is a short line for the user (tool_end event); empty means
	// the agent derives one.
	Summary string
}

// Errorf returns an error Result.
func Errorf(format string, args ...any) Result {
	return Result{Output: fmt.Sprintf(format, args...), IsError: true, Summary: "error"}
}

// Summarizer is implemented by tools that describe a call in one line for
// the user (tool_start event), e.g. the command of a bash call.
type Summarizer interface {
	Summarize(input json.RawMessage) string
}

// Registry holds the tools offered in a session, in a stable order (the
// tool list is part of the cached prompt prefix, so it must not change
// between requests).
type Registry struct {
	tools  []Tool
	byName map[string]Tool
}

// NewRegistry returns a registry of ts in the given order.
func NewRegistry(ts ...Tool) *Registry {
	r := &Registry{byName: map[string]Tool{}}
	for _, t := range ts {
		r.Add(t)
	}
	return r
}

// Add appends t; a duplicate name panics (a programming error).
func (r *Registry) Add(t Tool) {
	n := t.Info().Name
	if _, dup := r.byName[n]; dup {
		panic("tools: duplicate tool " + n)
	}
	r.tools = append(r.tools, t)
	r.byName[n] = t
}

// Tools returns the tools in order.
func (r *Registry) Tools() []Tool { return r.tools }

// Get returns the named tool.
func (r *Registry) Get(name string) (Tool, bool) {
	t, ok := r.byName[name]
	return t, ok
}

// Names returns the tool names, sorted.
func (r *Registry) Names() []string {
	var n []string
	for k := range r.byName {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Decode decodes a tool input strictly: it must be one JSON object with no
// unknown fields. Error messages are written for the model to fix its call.
func Decode(input json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(input)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return errors.New("input must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid input: %w", err)
	}
	if dec.More() {
		return errors.New("invalid input: trailing data after the JSON object")
	}
	return nil
}

// resolve makes path absolute against dir. The sandbox is the security
// boundary, so any path is allowed; relative ones are relative to the
// workspace, the model's working directory.
func resolve(dir, path string) (string, error) {
	if path == "" {
		return "", errors.New("path is required")
	}
	if strings.ContainsRune(path, 0) {
		return "", errors.New("path contains a NUL byte")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	return filepath.Clean(path), nil
}

// HeadTail caps s at max bytes, keeping the head and the tail (errors are
// usually at the end of a log, the command's context at the start).
func HeadTail(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	marker := fmt.Sprintf("\n[... %d bytes omitted ...]\n", len(s)-max)
	head := max / 2
	tail := max - head
	h := validUTF8Prefix(s[:head])
	t := validUTF8Suffix(s[len(s)-tail:])
	return h + marker + t
}

func validUTF8Prefix(s string) string {
	for i := 0; i < 4 && len(s) > 0 && !utf8ValidEnd(s); i++ {
		s = s[:len(s)-1]
	}
	return s
}

func validUTF8Suffix(s string) string {
	for i := 0; i < 4 && len(s) > 0 && isContinuation(s[0]); i++ {
		s = s[1:]
	}
	return s
}

func isContinuation(b byte) bool { return b&0xC0 == 0x80 }

// utf8ValidEnd reports whether s does not end inside a multi-byte rune.
func utf8ValidEnd(s string) bool {
	n := len(s)
	for i := 1; i <= 4 && i <= n; i++ {
		b := s[n-i]
		if !isContinuation(b) {
			need := 1
			switch {
			case b >= 0xF0:
				need = 4
			case b >= 0xE0:
				need = 3
			case b >= 0xC0:
				need = 2
			}
			return need <= i
		}
	}
	return true
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = validUTF8Prefix(s[:max]) + "…"
	}
	return s
}
