package chat

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sanitize"
)

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// renderer turns agent events into what a person reads: styled with a
// spinner on a terminal, plain lines when piped. It is used by the
// driver's one goroutine only.
type renderer struct {
	w     io.Writer
	tty   bool // a person reads this on a terminal: prompts, spinner
	color bool // styled (false with NO_COLOR or when piped)
	now   func() time.Time
	md    *markdown
	ui    *termUI // the live area, when the line editor runs

	busySince time.Time // with ui: when the turn began, for "working"
	asking    bool      // with ui: a question waits for the person
	jobs      int       // background jobs running

	col0    bool // the cursor is at the start of a line
	spinner bool // the last line on screen is the spinner line
	frame   int
	running []*runningTool
	todo    []protocol.TodoItem
}

// maxRunning bounds the tool calls the spinner tracks at once.
const maxRunning = 64

type runningTool struct {
	id, name, summary string
	start             time.Time
}

func newRenderer(w io.Writer, tty, color bool, now func() time.Time) *renderer {
	// The Markdown layout (bullets, aligned tables) is for terminals even
	// without colour; write strips the styling then.
	return &renderer{w: w, tty: tty, color: tty && color, now: now, md: newMarkdown(tty), col0: true}
}

func (r *renderer) style(sgr, s string) string {
	if !r.color {
		return s
	}
	return sgr + s + sgrReset
}

// write prints s, first taking the spinner line off the screen.
func (r *renderer) write(s string) {
	if s == "" {
		return
	}
	if r.tty && !r.color {
		s = stripSGR(s)
	}
	if r.ui != nil {
		r.ui.write(s)
	} else {
		if r.spinner {
			io.WriteString(r.w, clearLine)
			r.spinner = false
		}
		io.WriteString(r.w, s)
	}
	if v := stripTrailingSGR(s); v != "" {
		r.col0 = v[len(v)-1] == '\n'
	}
}

// stripTrailingSGR removes the SGR sequences at the end of s, so that the
// last byte left is the last visible one.
func stripTrailingSGR(s string) string {
	for strings.HasSuffix(s, "m") {
		i := strings.LastIndex(s, "\x1b[")
		if i < 0 || strings.ContainsFunc(s[i+2:len(s)-1], func(r rune) bool { return (r < '0' || r > '9') && r != ';' }) {
			break
		}
		s = s[:i]
	}
	return s
}

// line prints s on a line of its own.
func (r *renderer) line(s string) {
	r.endText()
	r.write(s + "\n")
}

// endText closes a block of streamed assistant text.
func (r *renderer) endText() {
	r.write(r.md.Flush())
	if !r.col0 && !r.spinner {
		r.write("\n")
	}
}

func (r *renderer) text(s string) {
	r.write(r.md.Write(sanitize.Text(s)))
}

func (r *renderer) toolStart(ev protocol.Event) {
	if hiddenTool(ev.Name) {
		return
	}
	r.endText()
	if len(r.running) >= maxRunning {
		// Starts without ends come only from a broken or hostile agent:
		// the oldest leave the spinner rather than pile up.
		r.running = r.running[1:]
	}
	r.running = append(r.running, &runningTool{id: ev.ID, name: oneLine(ev.Name, 40), summary: oneLine(ev.Summary, 100), start: r.now()})
	r.drawSpinner()
}

func (r *renderer) toolEnd(ev protocol.Event) {
	var t *runningTool
	for i, rt := range r.running {
		if rt.id == ev.ID {
			t = rt
			r.running = append(r.running[:i], r.running[i+1:]...)
			break
		}
	}
	if hiddenTool(ev.Name) {
		return
	}
	if t == nil { // an end without a start (resumed, or out of order)
		t = &runningTool{id: ev.ID, name: oneLine(ev.Name, 40), start: r.now()}
	}
	ok := ev.OK == nil || *ev.OK
	mark := r.style(sgrGreen, "✓")
	if !ok {
		mark = r.style(sgrRed, "✗")
	}
	s := mark + " " + r.style(sgrBold, t.name)
	if t.summary != "" {
		s += "  " + t.summary
	}
	if res := oneLine(ev.Summary, 60); res != "" {
		s += r.style(sgrDim, "  → "+res)
	}
	s += r.style(sgrDim, "  "+fmtElapsed(r.now().Sub(t.start)))
	r.endText()
	r.write(s + "\n")
	if !ok && ev.Output != "" {
		for _, l := range lastLines(sanitize.Text(ev.Output), 5) {
			r.write(r.style(sgrDim, "    "+sanitize.Truncate(l, 160)) + "\n")
		}
	}
	r.drawSpinner()
}

// tick advances the spinner; it draws only on a terminal.
func (r *renderer) tick() {
	r.frame++
	r.drawSpinner()
}

func (r *renderer) drawSpinner() {
	if r.ui != nil {
		r.ui.setSpinner(r.spinnerLine())
		return
	}
	if !r.tty || len(r.running) == 0 {
		return
	}
	if !r.col0 && !r.spinner {
		return // text is mid-line; the next tool line redraws it
	}
	s := r.spinnerLine()
	if r.spinner {
		io.WriteString(r.w, clearLine)
	}
	io.WriteString(r.w, s)
	r.spinner = true
	r.col0 = false
}

// spinnerLine is the running tool's line (the latest, with a count of the
// others), or with the editor, "working" while the model is at it.
func (r *renderer) spinnerLine() string {
	frame := r.style(sgrYellow, spinnerFrames[r.frame%len(spinnerFrames)])
	if len(r.running) == 0 {
		if r.busySince.IsZero() || r.asking {
			return ""
		}
		return frame + " " + r.style(sgrDim, "working  "+fmtElapsed(r.now().Sub(r.busySince))+"  · Esc interrupts")
	}
	t := r.running[len(r.running)-1]
	s := frame + " " + r.style(sgrBold, t.name)
	if t.summary != "" {
		s += "  " + t.summary
	}
	s += r.style(sgrDim, "  "+fmtElapsed(r.now().Sub(t.start)))
	if n := len(r.running) - 1; n > 0 {
		s += r.style(sgrDim, fmt.Sprintf("  (+%d running)", n))
	}
	return s
}

// clearSpinner takes the spinner off the screen before a prompt.
func (r *renderer) clearSpinner() {
	if r.ui != nil {
		r.ui.setSpinner("")
		return
	}
	if r.spinner {
		io.WriteString(r.w, clearLine)
		r.spinner = false
		r.col0 = true
	}
}

func (r *renderer) setTodo(items []protocol.TodoItem) {
	r.todo = append([]protocol.TodoItem(nil), items...)
	r.showTodo()
}

func (r *renderer) showTodo() {
	r.endText()
	if len(r.todo) == 0 {
		r.write(r.style(sgrDim, "no plan yet") + "\n")
		return
	}
	var b strings.Builder
	b.WriteString(r.style(sgrBold, "Plan") + "\n")
	for _, it := range r.todo {
		switch it.Status {
		case "completed":
			b.WriteString("  " + r.style(sgrGreen, "✓") + " " + r.style(sgrDim, oneLine(it.Content, 100)) + "\n")
		case "in_progress":
			b.WriteString("  " + r.style(sgrYellow, "▸") + " " + r.style(sgrBold, oneLine(it.Content, 100)) + "\n")
		default:
			b.WriteString("  ○ " + oneLine(it.Content, 100) + "\n")
		}
	}
	r.write(b.String())
	r.drawSpinner()
}

func (r *renderer) usage(u *protocol.Usage) {
	if u == nil {
		return
	}
	s := fmt.Sprintf("%s in · %s out", fmtTokens(u.InputTokens+u.CacheCreationInputTokens+u.CacheReadInputTokens), fmtTokens(u.OutputTokens))
	if u.SessionCacheReadRatio > 0 {
		s += fmt.Sprintf(" · %.0f%% cached", 100*u.SessionCacheReadRatio)
	}
	s += fmt.Sprintf(" · %s this turn · %s session", fmtUSD(u.CostUSD), fmtUSD(u.SessionCostUSD))
	r.line(r.style(sgrDim, "  "+s))
}

func (r *renderer) ask(ev protocol.Event, auto string) {
	r.endText()
	r.clearSpinner()
	var b strings.Builder
	if ev.Type == protocol.EventApproval {
		b.WriteString(r.style(sgrYellow, "! "+oneLine(ev.Question, 400)) + "\n")
	} else {
		b.WriteString(r.style(sgrBold, "? "+oneLineKeepBreaks(ev.Question)) + "\n")
	}
	if r.ui != nil && auto == "" {
		r.write(b.String()) // the choices are in the live area, to pick with the arrows
		return
	}
	for i, c := range ev.Choices {
		fmt.Fprintf(&b, "  %d) %s\n", i+1, oneLine(c, 200))
	}
	switch {
	case auto != "":
		fmt.Fprintf(&b, "answer> %s\n", oneLine(auto, 200))
	case ev.Type == protocol.EventApproval:
		b.WriteString(r.style(sgrDim, "  (1, 2 or 3, or y/n/a; or say what to do instead)") + "\n")
	case len(ev.Choices) > 0:
		b.WriteString(r.style(sgrDim, "  (a number, or your own answer)") + "\n")
	}
	r.write(b.String())
}

func (r *renderer) notice(s string) { r.line(r.style(sgrDim, s)) }
func (r *renderer) warn(s string)   { r.line(r.style(sgrYellow, s)) }
func (r *renderer) fail(s string)   { r.line(r.style(sgrRed, s)) }

// prompt shows the input prompt on a terminal; the cursor stays after
// it. Piped output gets no prompts: they would only be noise in a log.
func (r *renderer) prompt(p string) {
	if !r.tty || r.ui != nil {
		return // the editor shows its own prompt
	}
	r.endText()
	r.clearSpinner()
	r.write(r.style(sgrBold, p))
}

// hiddenTool reports tools whose call line would repeat what the chat
// shows anyway: ask_user (the question) and todo (the plan).
func hiddenTool(name string) bool { return name == "ask_user" || name == "todo" }

func fmtElapsed(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d >= 10*time.Second:
		return fmt.Sprintf("%ds", int(d/time.Second))
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func fmtTokens(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	case n >= 1_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func fmtUSD(v float64) string {
	if v < 1 {
		return fmt.Sprintf("$%.4f", v)
	}
	return fmt.Sprintf("$%.2f", v)
}

// oneLine sanitizes s, joins its lines and cuts it to n runes.
func oneLine(s string, n int) string { return sanitize.Line(s, n) }

func oneLineKeepBreaks(s string) string {
	lines := strings.Split(strings.TrimSpace(sanitize.Text(s)), "\n")
	return strings.Join(lines, "\n  ")
}

func lastLines(s string, n int) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// stripSGR removes the renderer's styling, for NO_COLOR.
func stripSGR(s string) string {
	if !strings.Contains(s, "\x1b[") {
		return s
	}
	return sgrOnly().ReplaceAllString(s, "")
}

var sgrOnly = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\x1b\[[0-9;]*m`) })
