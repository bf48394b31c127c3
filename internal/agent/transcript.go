package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mlagent/mlagent/internal/protocol"
)

// A transcript is a JSON-lines file, one record a line, appended and
// fsync'd before the next model request, so a crash loses nothing that was
// answered. Records are messages, or a compaction that replaces the history
// before it. Loading replays them.
type record struct {
	Kind    string    `json:"kind"` // "message" or "compaction"
	Time    time.Time `json:"time"`
	Message *Message  `json:"message,omitempty"`
	// History is the whole conversation after a compaction.
	History []Message `json:"history,omitempty"`
}

// Transcript appends records to a session's file.
type Transcript struct {
	path string
	f    *os.File
}

// Compiled on first use, not at every start of the binary.
var sessionIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`) })

// TranscriptPath returns dir/<id>.jsonl, refusing ids that could escape dir.
func TranscriptPath(dir, id string) (string, error) {
	if !sessionIDRE().MatchString(id) {
		return "", fmt.Errorf("session id %q: want letters, digits, '.', '_' or '-'", id)
	}
	return filepath.Join(dir, id+".jsonl"), nil
}

// OpenTranscript opens (creating) the transcript for appending.
func OpenTranscript(path string) (*Transcript, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("transcript dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open transcript: %w", err)
	}
	return &Transcript{path: path, f: f}, nil
}

// Path returns the file path.
func (t *Transcript) Path() string { return t.path }

// AppendMessage writes m and syncs.
func (t *Transcript) AppendMessage(m Message) error {
	return t.write(record{Kind: "message", Time: time.Now().UTC(), Message: &m})
}

// AppendCompaction writes the compacted history and syncs.
func (t *Transcript) AppendCompaction(history []Message) error {
	return t.write(record{Kind: "compaction", Time: time.Now().UTC(), History: history})
}

func (t *Transcript) write(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode transcript record: %w", err)
	}
	b = append(b, '\n')
	if _, err := t.f.Write(b); err != nil {
		return fmt.Errorf("write transcript: %w", err)
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("sync transcript: %w", err)
	}
	return nil
}

// Close closes the file.
func (t *Transcript) Close() error { return t.f.Close() }

// LoadTranscript replays the transcript at path. A missing file is an
// error (resuming a session that does not exist is a mistake). A torn last
// line (a crash mid-write) is ignored; a corrupt line elsewhere is an error.
func LoadTranscript(path string) ([]Message, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no transcript at %s: %w", path, err)
		}
		return nil, fmt.Errorf("open transcript: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 256<<20)
	var history []Message
	var pendingErr error
	line := 0
	for s.Scan() {
		line++
		if pendingErr != nil {
			return nil, pendingErr
		}
		if len(s.Bytes()) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(s.Bytes(), &r); err != nil {
			pendingErr = fmt.Errorf("transcript %s line %d: %w", path, line, err)
			continue
		}
		switch r.Kind {
		case "message":
			if r.Message == nil {
				return nil, fmt.Errorf("transcript %s line %d: message record without message", path, line)
			}
			history = append(history, *r.Message)
		case "compaction":
			history = append([]Message(nil), r.History...)
		default:
			return nil, fmt.Errorf("transcript %s line %d: unknown record kind %q", path, line, r.Kind)
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read transcript: %w", err)
	}
	return history, nil
}

// Repair makes a loaded history valid to continue: an assistant message
// whose tool calls never got results (the agent died while running them)
// gets is_error "interrupted" results. It returns the messages to append.
func Repair(history []Message) []Message {
	if len(history) == 0 {
		return nil
	}
	last := history[len(history)-1]
	if last.Role != "assistant" {
		return nil
	}
	uses := last.ToolUses()
	if len(uses) == 0 {
		return nil
	}
	m := Message{Role: "user"}
	for _, u := range uses {
		m.Content = append(m.Content, ToolResult(u.ID, "interrupted: the agent stopped before this tool finished; its effects are unknown, check before relying on them", true))
	}
	return []Message{m}
}

// LastExchange is where a conversation left off: the user's last
// message, the assistant's text since (its end, when long), and the tool
// calls that repaired answers "interrupted". summarize describes a call
// in one line (nil: the tool's name only).
func LastExchange(history, repaired []Message, summarize func(name string, input json.RawMessage) string) *protocol.Exchange {
	const maxUser, maxAssistant = 400, 800
	ex := &protocol.Exchange{}
	start := -1
	for i := len(history) - 1; i >= 0; i-- {
		if m := history[i]; m.Role == "user" && m.Text() != "" {
			start = i
			break
		}
	}
	if start >= 0 {
		ex.User = clip(history[start].Text(), maxUser, false)
		var b strings.Builder
		for _, m := range history[start+1:] {
			if m.Role == "assistant" {
				if t := m.Text(); t != "" {
					if b.Len() > 0 {
						b.WriteString("\n")
					}
					b.WriteString(t)
				}
			}
		}
		ex.Assistant = clip(b.String(), maxAssistant, true)
	}
	cut := map[string]bool{}
	for _, m := range repaired {
		for _, c := range m.Content {
			if c.Type == "tool_result" {
				cut[c.ToolUseID] = true
			}
		}
	}
	if len(cut) > 0 && len(history) > 0 {
		for _, m := range history {
			for _, u := range m.ToolUses() {
				if !cut[u.ID] {
					continue
				}
				line := u.Name
				if summarize != nil {
					if s := summarize(u.Name, u.Input); s != "" {
						line += "  " + s
					}
				}
				ex.Interrupted = append(ex.Interrupted, clip(line, 200, false))
			}
		}
	}
	if ex.User == "" && ex.Assistant == "" && len(ex.Interrupted) == 0 {
		return nil
	}
	return ex
}

// clip cuts s to about n bytes at a rune boundary, keeping its start (or,
// with tail, its end).
func clip(s string, n int, tail bool) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	if tail {
		i := len(s) - n
		for i < len(s) && !utf8.RuneStart(s[i]) {
			i++
		}
		return "…" + s[i:]
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
