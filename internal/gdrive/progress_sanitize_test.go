package gdrive

import (
	"bytes"
	"strings"
	"testing"
)

// File names come from a sandbox's volume (export) or from Drive
// (import): the progress lines show them without control characters.
func TestProgressSanitizesNames(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var buf bytes.Buffer
		p := NewProgress(&buf, tty, "import")
		p.File("evil\x1b]0;pwned\x07\x1b[2K\rname.csv", 3)
		p.Write([]byte("abc"))
		p.Finish()
		if strings.ContainsAny(buf.String(), "\x07") || strings.Contains(buf.String(), "]0;pwned") {
			t.Errorf("tty=%v: progress %q carries the name's escape sequences", tty, buf.String())
		}
	}
}
