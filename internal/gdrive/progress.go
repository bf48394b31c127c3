package gdrive

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/sanitize"
)

// Progress draws one status line for a transfer: bytes done (of the total
// when known), the rate and the current file. On a terminal the line is
// redrawn in place at most ten times a second; elsewhere (logs, CI) one
// line is printed per file. Safe for concurrent use.
type Progress struct {
	w    io.Writer
	tty  bool
	verb string

	mu               sync.Mutex
	total, done, cur int64
	name             string
	size             int64
	start, last      time.Time
	drawn            bool
}

// NewProgress writes to w; tty says whether w is a terminal. verb is
// "import" or "export".
func NewProgress(w io.Writer, tty bool, verb string) *Progress {
	return &Progress{w: w, tty: tty, verb: verb, start: time.Now()}
}

// SetTotal sets the bytes the whole transfer will move, when known.
func (p *Progress) SetTotal(n int64) {
	p.mu.Lock()
	p.total = n
	p.mu.Unlock()
}

// File starts a new file of size bytes (0 if unknown).
func (p *Progress) File(name string, size int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += p.cur
	// Names come from a sandbox's volume or from Drive.
	name = sanitize.Line(name, 200)
	p.cur, p.name, p.size = 0, name, size
	if !p.tty {
		fmt.Fprintf(p.w, "%s %s (%s)\n", p.verb, name, human(size))
		return
	}
	p.drawLocked(true)
}

// Write counts bytes of the current file, so a Progress can sit in an
// io.MultiWriter.
func (p *Progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.cur += int64(len(b))
	p.drawLocked(false)
	p.mu.Unlock()
	return len(b), nil
}

// Reset sets the bytes done of the current file (a restarted download, an
// upload's progress report).
func (p *Progress) Reset(n int64) {
	p.mu.Lock()
	p.cur = n
	p.drawLocked(false)
	p.mu.Unlock()
}

// Finish draws the final line and ends it.
func (p *Progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += p.cur
	p.cur, p.name = 0, ""
	if p.tty && p.drawn {
		p.drawLocked(true)
		fmt.Fprintln(p.w)
	}
}

func (p *Progress) drawLocked(force bool) {
	if !p.tty {
		return
	}
	now := time.Now()
	if !force && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.drawn = now, true
	done := p.done + p.cur
	var b strings.Builder
	b.WriteString("\r\x1b[K")
	if p.total > 0 {
		frac := min(float64(done)/float64(p.total), 1)
		const width = 24
		n := int(frac * width)
		fmt.Fprintf(&b, "[%s%s] %3.0f%% ", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100)
		fmt.Fprintf(&b, "%s / %s", human(done), human(p.total))
	} else {
		b.WriteString(human(done))
	}
	if secs := now.Sub(p.start).Seconds(); secs > 0.5 {
		fmt.Fprintf(&b, "  %s/s", human(int64(float64(done)/secs)))
	}
	if p.name != "" {
		name := p.name
		if r := []rune(name); len(r) > 40 {
			name = "…" + string(r[len(r)-39:])
		}
		b.WriteString("  " + name)
	}
	io.WriteString(p.w, b.String())
}

// human formats a byte count in binary units.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
