// Package sanitize makes text that came from a sandbox safe to show in
// the user's terminal: file names, skill descriptions, the agent's
// stderr, model text, session titles. Whatever a program inside writes,
// no escape sequence, control character or invalid UTF-8 of it reaches
// the terminal, so it cannot retitle the window, write the clipboard
// (OSC 52), move the cursor or erase what the user was shown.
package sanitize

import (
	"strings"
	"unicode/utf8"
)

// Text returns s without control characters: C0 (but newline and tab),
// DEL, C1, and whole escape sequences (CSI, OSC, DCS, SOS, PM, APC, and
// two- or three-byte ESC sequences), their 8-bit forms included. Invalid
// UTF-8 becomes U+FFFD. A sequence cut off at the end of s is dropped to
// the end, so text that arrives in pieces never leaks a sequence either:
// what follows in the next piece is plain text without its ESC.
func Text(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
			i++
		case r == '\n' || r == '\t':
			b.WriteByte(byte(r))
			i++
		case r == 0x1b:
			i = skipEscape(s, i+1)
		case r == 0x9b: // 8-bit CSI
			i = skipCSI(s, i+size)
		case r == 0x90 || r == 0x9d || r == 0x98 || r == 0x9e || r == 0x9f: // DCS, OSC, SOS, PM, APC
			i = skipString(s, i+size)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			i += size
		default:
			b.WriteString(s[i : i+size])
			i += size
		}
	}
	return b.String()
}

// clean reports whether s is printable ASCII, newlines and tabs: the
// common case, returned as it is.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// skipEscape returns the index after the escape sequence whose ESC ends
// just before i.
func skipEscape(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch c := s[i]; {
	case c == '[':
		return skipCSI(s, i+1)
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		return skipString(s, i+1)
	case c >= 0x20 && c <= 0x2f:
		// nF: intermediates, then one final byte (ESC ( B, …).
		for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
			i++
		}
		if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
			i++
		}
		return i
	case c >= 0x30 && c <= 0x7e:
		return i + 1 // ESC 7, ESC c, ESC M, …
	}
	return i // a lone ESC: drop it, keep what follows
}

// skipCSI skips parameter and intermediate bytes and the final byte.
func skipCSI(s string, i int) int {
	for i < len(s) {
		c := s[i]
		i++
		if c >= 0x40 && c <= 0x7e {
			return i
		}
		if c < 0x20 || c >= 0x7f {
			// Not a CSI byte: the sequence is malformed; terminals
			// abort it here. Drop that byte too (it is a control
			// character or the start of something else unsafe).
			return i
		}
	}
	return i
}

// skipString skips a control string (OSC, DCS, …) up to and including its
// terminator: BEL, ESC \ or the 8-bit ST; or to the end of s.
func skipString(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == 0x07:
			return i + 1
		case s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\':
			return i + 2
		case s[i] == 0xc2 && i+1 < len(s) && s[i+1] == 0x9c: // U+009C ST
			return i + 2
		}
		i++
	}
	return i
}

// Line is Text on one line: runs of white space (newlines included)
// become one space, and the result is cut to n runes with "…" (n ≤ 0:
// no limit).
func Line(s string, n int) string {
	return Truncate(strings.Join(strings.Fields(Text(s)), " "), n)
}

// Truncate cuts s to n runes, marking the cut with "…"; n ≤ 0 keeps s.
func Truncate(s string, n int) string {
	if n <= 0 {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}

// JSON makes one line of JSON (an agent's event, already known to parse)
// safe for a terminal while keeping its meaning: white space between
// tokens goes, and DEL, C1 controls, U+2028/U+2029 and invalid UTF-8
// inside strings become \u escapes. Valid JSON holds no raw C0 control
// character inside a string, and every byte ≥ 0x7f is inside one.
func JSON(line []byte) []byte {
	out := make([]byte, 0, len(line)+1)
	inString, escaped := false, false
	for i := 0; i < len(line); {
		c := line[i]
		if !inString {
			switch c {
			case ' ', '\t', '\r', '\n':
			case '"':
				inString = true
				out = append(out, c)
			default:
				out = append(out, c)
			}
			i++
			continue
		}
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inString = false
		}
		if c < 0x7f && c >= 0x20 {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(line[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			out = append(out, `\ufffd`...)
			size = 1
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029:
			out = append(out, `\u00`...)
			if r >= 0x100 {
				out = out[:len(out)-2]
				out = append(out, hex[r>>12&0xf], hex[r>>8&0xf])
			}
			out = append(out, hex[r>>4&0xf], hex[r&0xf])
		default:
			out = append(out, line[i:i+size]...)
		}
		i += size
	}
	return out
}

const hex = "0123456789abcdef"
