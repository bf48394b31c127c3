package chat

import (
	"strings"
	"unicode/utf8"
)

// SGR sequences the renderer writes. Nothing else that starts with ESC
// reaches the terminal: text from the sandbox is sanitized first.
const (
	sgrReset   = "\x1b[0m"
	sgrBold    = "\x1b[1m"
	sgrDim     = "\x1b[2m"
	sgrCode    = "\x1b[36m"
	sgrHeading = "\x1b[1;4m"
	sgrGreen   = "\x1b[32m"
	sgrRed     = "\x1b[31m"
	sgrYellow  = "\x1b[33m"
	clearLine  = "\r\x1b[K"
)

// sanitize removes control characters (ESC, CSI, BEL, carriage returns…)
// from text that came from the sandbox, so that a model or a program
// inside cannot move the cursor, retitle the window or hide output in
// the user's terminal. Newlines and tabs stay; invalid UTF-8 becomes U+FFFD.
func sanitize(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			// dropped
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// markdown renders streamed Markdown for a terminal as it arrives: it
// holds back only the few characters whose meaning depends on the next
// one (a line's leading "#", "```", "- ", or a "*" that may open "**").
// Plain mode passes the text through unchanged. It is a subset on
// purpose: headings, bullets, bold, inline code and fenced code blocks
// are what the model writes in a chat.
type markdown struct {
	style bool // emit SGR styling

	lineStart bool   // at the start of a line
	pending   string // held-back characters at a line start
	star      bool   // a '*' waits for its successor
	skipLine  bool   // dropping a fence's info string
	fence     bool
	bold      bool
	code      bool
	heading   bool
}

func newMarkdown(style bool) *markdown { return &markdown{style: style, lineStart: true} }

// Write renders s (already sanitized) and returns what to print.
func (m *markdown) Write(s string) string {
	if !m.style {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		m.rune(&b, r)
	}
	return b.String()
}

// Flush emits whatever is held back and ends every open inline style,
// at the end of a block of assistant text.
func (m *markdown) Flush() string {
	if !m.style {
		return ""
	}
	var b strings.Builder
	if m.pending != "" {
		p := m.pending
		m.pending = ""
		m.lineStart = false
		for _, r := range p {
			m.inline(&b, r)
		}
	}
	if m.star {
		m.star = false
		b.WriteByte('*')
	}
	if m.bold || m.code || m.heading {
		m.bold, m.code, m.heading = false, false, false
		b.WriteString(sgrReset)
		if m.fence {
			b.WriteString(sgrDim)
		}
	}
	return b.String()
}

// Reset forgets all state, e.g. when a retry discards partial text.
func (m *markdown) Reset() string {
	out := m.Flush()
	if m.fence {
		out += sgrReset
	}
	*m = markdown{style: m.style, lineStart: true}
	return out
}

func (m *markdown) rune(b *strings.Builder, r rune) {
	if m.skipLine {
		if r == '\n' {
			m.skipLine = false
			m.lineStart = true
		}
		return
	}
	if m.lineStart {
		cand := m.pending + string(r)
		if m.fence {
			if strings.HasPrefix("```", cand) {
				if cand == "```" {
					m.pending = ""
					m.fence = false
					m.skipLine = true
					b.WriteString(sgrReset)
					return
				}
				m.pending = cand
				return
			}
			m.pending = ""
			m.lineStart = false
			b.WriteString(cand)
			if r == '\n' {
				m.lineStart = true
			}
			return
		}
		switch {
		case cand == "```":
			m.pending = ""
			m.fence = true
			m.skipLine = true
			b.WriteString(sgrDim)
			return
		case strings.HasPrefix("```", cand), isHashes(cand) && len(cand) <= 6, cand == "-", cand == "*", cand == "+":
			m.pending = cand
			return
		case r == ' ' && isHashes(m.pending):
			m.pending = ""
			m.lineStart = false
			m.heading = true
			b.WriteString(sgrHeading)
			return
		case r == ' ' && (m.pending == "-" || m.pending == "*" || m.pending == "+"):
			m.pending = ""
			m.lineStart = false
			b.WriteString("  • ")
			return
		}
		p := m.pending
		m.pending = ""
		m.lineStart = false
		for _, pr := range p {
			m.inline(b, pr)
		}
	}
	m.inline(b, r)
}

func isHashes(s string) bool {
	return s != "" && strings.Trim(s, "#") == ""
}

func (m *markdown) inline(b *strings.Builder, r rune) {
	if m.fence {
		b.WriteRune(r)
		if r == '\n' {
			m.lineStart = true
		}
		return
	}
	if m.star {
		m.star = false
		if r == '*' {
			m.bold = !m.bold
			m.apply(b)
			return
		}
		b.WriteByte('*')
	}
	switch r {
	case '*':
		m.star = true
	case '`':
		m.code = !m.code
		m.apply(b)
	case '\n':
		if m.bold || m.code || m.heading {
			m.bold, m.code, m.heading = false, false, false
			b.WriteString(sgrReset)
		}
		b.WriteByte('\n')
		m.lineStart = true
	default:
		b.WriteRune(r)
	}
}

// apply writes the SGR sequence for the current inline style.
func (m *markdown) apply(b *strings.Builder) {
	b.WriteString(sgrReset)
	if m.heading {
		b.WriteString(sgrHeading)
	}
	if m.bold {
		b.WriteString(sgrBold)
	}
	if m.code {
		b.WriteString(sgrCode)
	}
}
