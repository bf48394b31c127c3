package sanitize

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"plain", "hello\tworld\n", "hello\tworld\n"},
		{"unicode", "héllo → ✓", "héllo → ✓"},
		{"osc 52 clipboard, BEL", "a\x1b]52;c;ZWNobyBwd25lZA==\x07b", "ab"},
		{"osc 0 title, ST", "a\x1b]0;pwned\x1b\\b", "ab"},
		{"csi erase line and CR", "safe\x1b[2K\rforged", "safeforged"},
		{"csi with params", "\x1b[1;31mred\x1b[0m", "red"},
		{"csi private", "\x1b[?1049h", ""},
		{"8-bit csi", "a\u009b2Jb", "ab"},
		{"8-bit osc with 8-bit st", "a\u009d0;t\u009cb", "ab"},
		{"dcs", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab"},
		{"apc", "a\x1b_Gf=100;AAAA\x1b\\b", "ab"},
		{"charset nF", "a\x1b(0b", "ab"},
		{"two-byte", "a\x1bcb\x1b7c", "abc"},
		{"lone esc at end", "a\x1b", "a"},
		{"unterminated osc", "a\x1b]0;title", "a"},
		{"bel bs del nul", "a\x07\x08\x7f\x00b", "ab"},
		{"c1 nel", "a\u0085b", "ab"},
		{"invalid utf-8", "a\xffb\xc0", "a\ufffdb\ufffd"},
		{"raw 8-bit csi byte", "a\x9b2Jb", "a\ufffd2Jb"},
	} {
		if got := Text(c.in); got != c.want {
			t.Errorf("%s: Text(%q) = %q; want %q", c.name, c.in, got, c.want)
		}
	}
}

func TestLine(t *testing.T) {
	if got, want := Line("a\n\x1b]0;x\x07b  c\r\nd", 0), "a b c d"; got != want {
		t.Errorf("Line: got %q; want %q", got, want)
	}
	if got, want := Line("αβγδε", 3), "αβγ…"; got != want {
		t.Errorf("Line cut: got %q; want %q", got, want)
	}
}

func TestJSON(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"kept", `{"v":1,"type":"text_delta","text":"hi \"x\" \\ é"}`, `{"v":1,"type":"text_delta","text":"hi \"x\" \\ é"}`},
		{"whitespace and CR between tokens", "{\"v\":1,\r\n\t \"type\":\"x\"}", `{"v":1,"type":"x"}`},
		{"c1 in a string", "{\"t\":\"a\u009b2Jb\"}", `{"t":"a\u009b2Jb"}`},
		{"del in a string", "{\"t\":\"a\x7fb\"}", `{"t":"a\u007fb"}`},
		{"line separator", "{\"t\":\"a\u2028b\"}", `{"t":"a\u2028b"}`},
		{"invalid utf-8", "{\"t\":\"a\xffb\"}", `{"t":"a\ufffdb"}`},
		{"escaped quote then c1", "{\"t\":\"\\\"\u0085\"}", `{"t":"\"\u0085"}`},
	} {
		got := string(JSON([]byte(c.in)))
		if got != c.want {
			t.Errorf("%s: JSON(%q) = %q; want %q", c.name, c.in, got, c.want)
		}
	}
}

// FuzzText: nothing a terminal would interpret survives, and JSON keeps
// the value of every valid line.
func FuzzText(f *testing.F) {
	for _, s := range []string{"\x1b]52;c;x\x07", "\x1b[2K\r", "\u009b1m", "a\xffb", "\x1bP\x1b\\", "ok"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Text(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Text(%q) = %q: invalid UTF-8", s, got)
		}
		for _, r := range got {
			if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
				t.Fatalf("Text(%q) = %q keeps control %U", s, got, r)
			}
		}
		line, err := json.Marshal(map[string]string{"s": s})
		if err != nil {
			return
		}
		out := JSON(line)
		for _, c := range string(out) {
			if c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) {
				t.Fatalf("JSON(%q) = %q keeps control %U", line, out, c)
			}
		}
		var a, b map[string]string
		if json.Unmarshal(line, &a) != nil || json.Unmarshal(out, &b) != nil || a["s"] != b["s"] {
			t.Fatalf("JSON changed the value: %q → %q", line, out)
		}
		if strings.ContainsAny(string(out), "\r\n") {
			t.Fatalf("JSON(%q) = %q is not one line", line, out)
		}
	})
}
