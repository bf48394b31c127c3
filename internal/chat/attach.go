package chat

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// @path in a message attaches that file of the person's machine: its
// text goes with the message, so the agent sees it without the file
// being in the sandbox. A word after @ that names no file (@someone) is
// left as it is.

// maxAttach bounds one attached file; bigger ones are better mounted.
const maxAttach = 256 << 10

// Compiled on first use: the binary is also every sandbox's PID 1.
var attachRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(^|\s)@([^\s@]+)`) })

// attach returns text with the files it names appended, and notes on
// what was attached or why not.
func attach(text, dir string) (string, []string) {
	var files []string
	var notes []string
	seen := map[string]bool{}
	for _, m := range attachRE().FindAllStringSubmatch(text, -1) {
		name := strings.TrimRight(m[2], ".,;:!?)")
		if seen[name] {
			continue
		}
		seen[name] = true
		p := name
		if strings.HasPrefix(p, "~/") {
			if home, err := os.UserHomeDir(); err == nil {
				p = filepath.Join(home, p[2:])
			}
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		st, err := os.Stat(p)
		if err != nil {
			continue // not a file: @someone, an e-mail handle
		}
		switch {
		case st.IsDir():
			notes = append(notes, fmt.Sprintf("@%s is a directory: mount it with --mount to share it", name))
			continue
		case !st.Mode().IsRegular():
			continue
		case st.Size() > maxAttach:
			notes = append(notes, fmt.Sprintf("@%s is %d KiB, over the %d KiB an attachment may be: mount its directory with --mount instead", name, st.Size()>>10, maxAttach>>10))
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			notes = append(notes, fmt.Sprintf("@%s: %v", name, err))
			continue
		}
		b, err := io.ReadAll(io.LimitReader(f, maxAttach+1))
		f.Close()
		if err != nil || len(b) > maxAttach {
			notes = append(notes, fmt.Sprintf("@%s could not be read whole", name))
			continue
		}
		if !utf8.Valid(b) || strings.ContainsRune(string(b), 0) {
			notes = append(notes, fmt.Sprintf("@%s is not text: mount its directory with --mount to share it", name))
			continue
		}
		files = append(files, fmt.Sprintf("<attached-file path=%q>\n%s\n</attached-file>", name, strings.TrimRight(string(b), "\n")))
		notes = append(notes, fmt.Sprintf("attached %s (%s)", name, fmtSize(len(b))))
	}
	if len(files) == 0 {
		return text, notes
	}
	return text + "\n\n" + strings.Join(files, "\n\n"), notes
}

func fmtSize(n int) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}
