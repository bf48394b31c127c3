package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
)

// AnswerSource answers the agent's questions without a person, for -p
// runs and the demo. Safe for concurrent use.
type AnswerSource interface {
	// Answer returns the answer to question, or ok=false when it has none.
	Answer(question string, choices []string) (answer string, ok bool)
}

// Answers is an AnswerSource read from an --answers file. The file is
// either a JSON object mapping a question (or a distinctive part of it,
// matched case-insensitively) to its answer, a JSON array of answers
// given in order, or plain text with one answer a line in order (blank
// lines and lines starting with # are skipped).
type Answers struct {
	mu     sync.Mutex
	byText map[string]string // lower-cased question or fragment → answer
	order  []string
	next   int
}

// LoadAnswers reads an answers file.
func LoadAnswers(path string) (*Answers, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("answers file: %w", err)
	}
	a, err := ParseAnswers(data)
	if err != nil {
		return nil, fmt.Errorf("answers file %s: %w", path, err)
	}
	return a, nil
}

// ParseAnswers reads the answers file format described on Answers.
func ParseAnswers(data []byte) (*Answers, error) {
	a := &Answers{byText: map[string]string{}}
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		var m map[string]string
		if err := json.Unmarshal(trimmed, &m); err != nil {
			return nil, fmt.Errorf("want a JSON object of question → answer strings: %w", err)
		}
		for q, ans := range m {
			q = strings.ToLower(strings.TrimSpace(q))
			if q == "" {
				return nil, fmt.Errorf("empty question key")
			}
			a.byText[q] = ans
		}
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &a.order); err != nil {
			return nil, fmt.Errorf("want a JSON array of answer strings: %w", err)
		}
	default:
		for _, l := range strings.Split(string(data), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			a.order = append(a.order, l)
		}
	}
	return a, nil
}

// Answer implements AnswerSource: an exact question match wins, then
// the longest fragment found in the question, then the next answer in
// order.
func (a *Answers) Answer(question string, choices []string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := strings.ToLower(strings.TrimSpace(question))
	if ans, ok := a.byText[q]; ok {
		return ans, true
	}
	best, bestLen := "", 0
	for frag, ans := range a.byText {
		if len(frag) > bestLen && strings.Contains(q, frag) {
			best, bestLen = ans, len(frag)
		}
	}
	if bestLen > 0 {
		return best, true
	}
	if a.next < len(a.order) {
		a.next++
		return a.order[a.next-1], true
	}
	return "", false
}

// Len is how many answers the source holds.
func (a *Answers) Len() int { return len(a.byText) + len(a.order) }
