package chat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// History bounds: a person's prompts, not a log. An entry over
// maxHistoryEntry bytes (a pasted file, say) is kept for the session but
// not written.
const (
	maxHistory      = 500
	maxHistoryEntry = 16 << 10
	maxHistoryRead  = 4 << 20
)

// history is what the person typed, oldest first, shared by every chat
// through one file of JSON strings, one a line (appended, so concurrent
// chats interleave rather than overwrite). Used by the editor's goroutine
// only.
type history struct {
	path    string
	entries []string
}

// loadHistory reads the history file; a missing file is an empty
// history, and an unreadable line is skipped (the file is the user's,
// but it may be cut by a crash mid-append).
func loadHistory(path string) (*history, error) {
	h := &history{path: path}
	if path == "" {
		return h, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	// Only the tail of an overgrown file matters.
	if fi, err := f.Stat(); err == nil && fi.Size() > maxHistoryRead {
		if _, err := f.Seek(fi.Size()-maxHistoryRead, io.SeekStart); err != nil {
			return h, fmt.Errorf("history: %w", err)
		}
	}
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 2*maxHistoryEntry+64)
	for s.Scan() {
		var e string
		if json.Unmarshal(s.Bytes(), &e) == nil && strings.TrimSpace(e) != "" {
			h.entries = append(h.entries, e)
		}
	}
	if len(h.entries) > maxHistory {
		h.entries = h.entries[len(h.entries)-maxHistory:]
		h.rewrite()
	}
	return h, nil
}

// add records an entry (not twice in a row) and appends it to the file.
func (h *history) add(e string) {
	if strings.TrimSpace(e) == "" || len(h.entries) > 0 && h.entries[len(h.entries)-1] == e {
		return
	}
	h.entries = append(h.entries, e)
	if h.path == "" || len(e) > maxHistoryEntry {
		return
	}
	b, _ := json.Marshal(e)
	if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(h.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return // history is a convenience: never fail a chat for it
	}
	f.Write(append(b, '\n'))
	f.Close()
}

// rewrite replaces the file with the kept entries, through a temporary
// file so that a crash leaves the old one.
func (h *history) rewrite() {
	if h.path == "" {
		return
	}
	var buf bytes.Buffer
	for _, e := range h.entries {
		if len(e) > maxHistoryEntry {
			continue
		}
		b, _ := json.Marshal(e)
		buf.Write(append(b, '\n'))
	}
	tmp := h.path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return
	}
	if os.Rename(tmp, h.path) != nil {
		os.Remove(tmp)
	}
}
