package chat

import (
	"strings"
	"unicode/utf8"
)

// SGR sequences the renderer writes. Nothing else that starts with ESC
// reaches the terminal: text from the sandbox goes through
// sanitize.Text first.
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

// markdown renders streamed Markdown for a terminal as it arrives: it
// holds back only the few characters whose meaning depends on the next
// one (a line's leading "#", "```", "- ", or a "*" that may open "**").
// Plain mode passes the text through unchanged. It is a subset on
// purpose: headings, bullets, bold, inline code and fenced code blocks
// are what the model writes in a chat, and tables, which are held until
// their last row so that columns can be aligned.
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

	inRow bool     // inside a line that began with '|'
	row   string   // that line so far
	rows  []string // the table's complete lines
}

// A table is held until its last row; these bound what is held, since
// the text comes from the sandbox: a longer line or table is shown
// unaligned.
const (
	maxTableRow  = 4 << 10
	maxTableRows = 500
)

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
	if m.inRow {
		m.rows = append(m.rows, m.row)
		m.inRow, m.row = false, ""
	}
	if len(m.rows) > 0 {
		m.flushTable(&b)
	}
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
	if m.inRow {
		if r == '\n' {
			m.rows = append(m.rows, m.row)
			m.inRow, m.row = false, ""
			m.lineStart = true
			if len(m.rows) >= maxTableRows {
				m.flushTable(b)
			}
			return
		}
		if len(m.row) >= maxTableRow {
			// Too long to hold for alignment: what is held goes out
			// as it is, and the line goes on as text.
			row := m.row
			m.inRow, m.row = false, ""
			if len(m.rows) > 0 {
				m.flushTable(b)
			}
			m.lineStart = false
			for _, c := range row {
				m.inline(b, c)
			}
			m.inline(b, r)
			return
		}
		m.row += string(r)
		return
	}
	if m.lineStart && !m.fence && m.pending == "" {
		if r == '|' {
			m.inRow, m.row = true, "|"
			return
		}
		if len(m.rows) > 0 {
			m.flushTable(b)
		}
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

// flushTable writes the held table lines: aligned columns with a bold
// header and a rule when they form a table (a header row, then a
// delimiter row like |---|:--:|), else as the text they are.
func (m *markdown) flushTable(b *strings.Builder) {
	rows := m.rows
	m.rows = nil
	var cells [][]string
	for _, r := range rows {
		cells = append(cells, splitRow(r))
	}
	if len(cells) < 2 || !isDelimiterRow(cells[1]) {
		for _, r := range rows {
			for _, c := range r + "\n" {
				m.inline(b, c)
			}
		}
		return
	}
	right := make([]bool, len(cells[1]))
	for i, c := range cells[1] {
		right[i] = strings.HasSuffix(strings.TrimSpace(c), ":") && !strings.HasPrefix(strings.TrimSpace(c), ":")
	}
	body := append([][]string{cells[0]}, cells[2:]...)
	var width []int
	for _, row := range body {
		for i, c := range row {
			c = plainCell(c)
			row[i] = c
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(row []string, style string) {
		b.WriteString("  ")
		for i := range width {
			c := ""
			if i < len(row) {
				c = row[i]
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if style != "" {
				b.WriteString(style)
			}
			switch {
			case i < len(right) && right[i]:
				b.WriteString(pad + c)
			case i == len(width)-1:
				b.WriteString(c) // no trailing blanks
			default:
				b.WriteString(c + pad)
			}
			if style != "" {
				b.WriteString(sgrReset)
			}
		}
		b.WriteByte('\n')
	}
	line(body[0], sgrBold)
	rule := make([]string, len(width))
	for i, w := range width {
		rule[i] = strings.Repeat("─", w)
	}
	line(rule, sgrDim)
	for _, row := range body[1:] {
		line(row, "")
	}
}

// splitRow splits a table line into its cells; "\|" is a literal bar.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, "\\|") {
		line = line[:len(line)-1]
	}
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, cur.String())
}

func isDelimiterRow(cells []string) bool {
	for _, c := range cells {
		c = strings.TrimSpace(c)
		c = strings.TrimPrefix(strings.TrimSuffix(c, ":"), ":")
		if c == "" || strings.Trim(c, "-") != "" {
			return false
		}
	}
	return true
}

// plainCell is a cell's text without the emphasis and code markers that a
// column-aligned layout cannot style piecewise.
func plainCell(c string) string {
	c = strings.TrimSpace(c)
	c = strings.ReplaceAll(c, "**", "")
	return strings.ReplaceAll(c, "`", "")
}
