package chat

import (
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textarea"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
	"golang.org/x/term"
)

// The interactive terminal front end. The chat's finished lines are
// printed above a live area that Bubble Tea redraws in place (inline, not
// the alternate screen, so the conversation stays in the scrollback):
// the line of model text still being streamed, the running tool's
// spinner, a question's choices, the line editor and a hint or status
// line. Everything in the live area is cut or wrapped to the terminal's
// width, which is followed on resize.

// uiEventKind says what the person did.
type uiEventKind int

const (
	evSubmit    uiEventKind = iota // Enter on text (text may hold newlines)
	evChoose                       // Enter (or a number) on a question's choice
	evInterrupt                    // Ctrl-C on an empty editor
	evEscape                       // Esc
	evEOF                          // Ctrl-D on an empty editor, or the terminal went away
)

type uiEvent struct {
	kind   uiEventKind
	text   string
	choice int // evChoose: 0-based
}

// eventQueue carries the editor's events to the driver without ever
// blocking Bubble Tea's update loop (the driver may itself be waiting to
// send the program a message). Safe for concurrent use.
type eventQueue struct {
	mu    sync.Mutex
	q     []uiEvent
	ready chan struct{} // one token while q is non-empty
}

func newEventQueue() *eventQueue { return &eventQueue{ready: make(chan struct{}, 1)} }

func (q *eventQueue) push(e uiEvent) {
	q.mu.Lock()
	q.q = append(q.q, e)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) drain() []uiEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.q
	q.q = nil
	return evs
}

// Messages from the driver to the live area.
type (
	partialMsg string // the streamed line not yet ended, styled
	spinnerMsg string // the running tool's line, or ""
	askMsg     struct {
		asking  bool
		choices []string // sanitized
		help    string   // under the choices
	}
	busyMsg   bool
	hintMsg   string // transient: a key's meaning, "" clears
	statusMsg string // the status line: model, budget left, jobs
	quitMsg   struct{}
)

// termUI is the driver's handle on the interactive terminal. Its methods
// are called from the driver's goroutine only; they hand messages to the
// program with Send, which is synchronous, so what is printed keeps the
// order in which it was written.
type termUI struct {
	p      *tea.Program
	width  *atomic.Int64
	events *eventQueue
	done   chan struct{}

	color   bool
	partial string // text after the last newline written
	open    string // SGR sequences in effect where partial starts
	shown   string // the partial last sent
}

// uiConfig is how the live area looks and where history lives.
type uiConfig struct {
	color       bool
	historyPath string
	env         []string // for Bubble Tea's colour detection (NO_COLOR, TERM)
}

// startUI takes over the terminal: raw mode on in, the live area on out.
func startUI(in io.Reader, out io.Writer, cfg uiConfig) (*termUI, error) {
	hist, err := loadHistory(cfg.historyPath)
	if err != nil {
		// History is a convenience: start without it.
		hist = &history{}
	}
	u := &termUI{width: new(atomic.Int64), events: newEventQueue(), done: make(chan struct{}), color: cfg.color}
	if f, ok := out.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			u.width.Store(int64(w))
		}
	}
	m := newUIModel(u.events, u.width, hist, cfg.color)
	opts := []tea.ProgramOption{tea.WithInput(in), tea.WithOutput(out), tea.WithoutSignalHandler()}
	if cfg.env != nil {
		opts = append(opts, tea.WithEnvironment(cfg.env))
	}
	u.p = tea.NewProgram(m, opts...)
	go func() {
		defer close(u.done)
		u.p.Run()
		// However it ended (the terminal closed, say), the chat is over.
		u.events.push(uiEvent{kind: evEOF})
	}()
	return u, nil
}

// write prints s above the live area. Text is word-wrapped to the
// terminal's width as it streams: a row is printed as soon as the next
// word has started the row below it (greedy wrapping never moves a word
// back), so the live area holds at most the one row still growing.
func (u *termUI) write(s string) {
	u.partial += s
	for {
		i := strings.IndexByte(u.partial, '\n')
		if i < 0 {
			break
		}
		rows := u.wrap(u.partial[:i])
		u.partial = u.partial[i+1:]
		u.printRows(rows)
	}
	if rows := u.wrap(u.partial); len(rows) > 1 {
		u.printRows(rows[:len(rows)-1])
		u.partial = rows[len(rows)-1]
	}
	p := ""
	if u.partial != "" {
		p = u.open + u.partial
	}
	if p != u.shown {
		u.shown = p
		u.p.Send(partialMsg(p))
	}
}

// wrap splits a line into the rows it takes on screen. One column is
// left free: a row that fills the last column leaves the cursor in the
// terminal's pending-wrap state, where erasing the rest of the line (as
// the redraw does) erases that last character.
func (u *termUI) wrap(line string) []string {
	w := int(u.width.Load())
	if w <= 1 {
		return []string{line}
	}
	return strings.Split(ansi.Wrap(line, w-1, ""), "\n")
}

// printRows prints finished rows above the live area, re-applying the
// styles open where each began: rows are printed on their own, and the
// live area is drawn in between.
func (u *termUI) printRows(rows []string) {
	var b strings.Builder
	for i, row := range rows {
		if i > 0 {
			b.WriteByte('\n')
		}
		full := u.open + row
		u.open = openStyles(u.open, row)
		if strings.Contains(full, "\x1b[") {
			full += sgrReset
		}
		if full == "" {
			full = " " // an empty message prints nothing; a blank row must show
		}
		b.WriteString(full)
	}
	u.p.Send(tea.Println(b.String())())
}

// openStyles returns the SGR sequences in effect after line, given those
// in effect before it.
func openStyles(open, line string) string {
	for {
		i := strings.Index(line, "\x1b[")
		if i < 0 {
			return open
		}
		j := i + 2
		for j < len(line) && (line[j] >= '0' && line[j] <= '9' || line[j] == ';') {
			j++
		}
		if j == len(line) || line[j] != 'm' {
			line = line[i+2:]
			continue
		}
		if p := line[i+2 : j]; p == "" || p == "0" {
			open = ""
		} else {
			open += line[i : j+1]
		}
		line = line[j+1:]
	}
}

func (u *termUI) setSpinner(s string) { u.p.Send(spinnerMsg(s)) }
func (u *termUI) setBusy(b bool)      { u.p.Send(busyMsg(b)) }
func (u *termUI) hint(s string)       { u.p.Send(hintMsg(s)) }
func (u *termUI) status(s string)     { u.p.Send(statusMsg(s)) }

func (u *termUI) ask(choices []string, help string) {
	u.p.Send(askMsg{asking: true, choices: choices, help: help})
}
func (u *termUI) endAsk() { u.p.Send(askMsg{}) }

// close clears the live area and gives the terminal back.
func (u *termUI) close() {
	u.p.Send(quitMsg{})
	select {
	case <-u.done:
	case <-time.After(2 * time.Second):
		u.p.Kill()
		<-u.done
	}
}

// uiModel is the live area's state, owned by Bubble Tea's goroutine.
type uiModel struct {
	ta    textarea.Model
	q     *eventQueue
	width *atomic.Int64
	color bool

	hist    *history
	histPos int    // index into hist.entries; len(entries) when not browsing
	draft   string // what was typed before browsing began

	partial  string
	spinner  string
	asking   bool
	choices  []string
	help     string
	sel      int
	busy     bool
	hint     string
	status   string
	quitting bool
}

func newUIModel(q *eventQueue, width *atomic.Int64, hist *history, color bool) *uiModel {
	ta := textarea.New()
	ta.ShowLineNumbers = false
	ta.CharLimit = 0
	ta.MaxWidth = 0
	ta.DynamicHeight = true
	ta.MinHeight = 1
	ta.MaxHeight = 12 // rows shown; longer input scrolls inside the editor
	ta.MaxContentHeight = 1 << 20
	ta.SetVirtualCursor(false)
	ta.KeyMap.InsertNewline = key.NewBinding(key.WithKeys("ctrl+j", "alt+enter", "shift+enter"))
	// Ctrl-D and the arrows are handled here first (end of input,
	// history, choices); the editor keeps its other bindings.
	ta.KeyMap.DeleteCharacterForward = key.NewBinding(key.WithKeys("delete", "ctrl+d"))
	st := textarea.Styles{}
	plain := textarea.StyleState{
		Base: lipgloss.NewStyle(), Text: lipgloss.NewStyle(), CursorLine: lipgloss.NewStyle(),
		Placeholder: lipgloss.NewStyle(), Prompt: lipgloss.NewStyle(), EndOfBuffer: lipgloss.NewStyle(),
	}
	if color {
		plain.Placeholder = lipgloss.NewStyle().Faint(true)
		plain.Prompt = lipgloss.NewStyle().Bold(true)
	}
	st.Focused, st.Blurred = plain, plain
	st.Cursor = textarea.CursorStyle{Shape: tea.CursorBar}
	ta.SetStyles(st)
	ta.Focus()
	m := &uiModel{ta: ta, q: q, width: width, color: color, hist: hist, histPos: len(hist.entries)}
	m.setPrompt()
	if w := int(width.Load()); w > 0 {
		m.ta.SetWidth(w)
	}
	return m
}

const (
	placeholderIdle = "Enter sends · Ctrl-J new line · ↑ history · /help"
	placeholderBusy = "type ahead (sent when the turn ends) · Esc interrupts"
)

// setPrompt shows "> " or "answer> " on the first line, aligned
// continuation on the others.
func (m *uiModel) setPrompt() {
	p := "> "
	if m.asking {
		p = "answer> "
	}
	n := len(p)
	m.ta.SetPromptFunc(n, func(pi textarea.PromptInfo) string {
		if pi.LineNumber == 0 {
			return p
		}
		return strings.Repeat(" ", n)
	})
	m.ta.Placeholder = placeholderIdle
	if m.busy && !m.asking {
		m.ta.Placeholder = placeholderBusy
	}
	m.ta.SetWidth(max(int(m.width.Load()), n+2))
}

func (m *uiModel) Init() tea.Cmd { return nil }

func (m *uiModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width.Store(int64(msg.Width))
		m.ta.SetWidth(msg.Width)
		return m, nil
	case partialMsg:
		m.partial = string(msg)
		return m, nil
	case spinnerMsg:
		m.spinner = string(msg)
		return m, nil
	case busyMsg:
		m.busy = bool(msg)
		m.setPrompt()
		return m, nil
	case hintMsg:
		m.hint = string(msg)
		return m, nil
	case statusMsg:
		m.status = string(msg)
		return m, nil
	case askMsg:
		m.asking, m.choices, m.help, m.sel = msg.asking, msg.choices, msg.help, 0
		m.setPrompt()
		return m, nil
	case quitMsg:
		m.quitting = true
		return m, tea.Quit
	case tea.PasteMsg:
		// A paste is text, newlines included, never a submission.
		var cmd tea.Cmd
		m.ta, cmd = m.ta.Update(msg)
		return m, cmd
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m *uiModel) key(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	empty := m.ta.Value() == ""
	switch msg.String() {
	case "ctrl+c":
		if !empty {
			m.ta.Reset()
			m.histPos = len(m.hist.entries)
			return m, nil
		}
		m.q.push(uiEvent{kind: evInterrupt})
		return m, nil
	case "esc":
		m.q.push(uiEvent{kind: evEscape})
		return m, nil
	case "ctrl+d":
		if empty {
			m.q.push(uiEvent{kind: evEOF})
			return m, nil
		}
	case "enter":
		return m.enter()
	case "up":
		if m.asking && len(m.choices) > 0 && empty {
			m.sel = max(0, m.sel-1)
			return m, nil
		}
		if m.onFirstRow() && m.histPos > 0 && !m.asking {
			if m.histPos == len(m.hist.entries) {
				m.draft = m.ta.Value()
			}
			m.histPos--
			m.ta.SetValue(m.hist.entries[m.histPos])
			return m, nil
		}
	case "down":
		if m.asking && len(m.choices) > 0 && empty {
			m.sel = min(len(m.choices)-1, m.sel+1)
			return m, nil
		}
		if m.onLastRow() && m.histPos < len(m.hist.entries) && !m.asking {
			m.histPos++
			if m.histPos == len(m.hist.entries) {
				m.ta.SetValue(m.draft)
			} else {
				m.ta.SetValue(m.hist.entries[m.histPos])
			}
			return m, nil
		}
	}
	var cmd tea.Cmd
	m.ta, cmd = m.ta.Update(msg)
	return m, cmd
}

// enter submits the editor's text; a trailing backslash asks for a new
// line instead (as in a shell), and an empty editor at a question picks
// the highlighted choice.
func (m *uiModel) enter() (tea.Model, tea.Cmd) {
	v := m.ta.Value()
	if strings.HasSuffix(v, "\\") {
		m.ta.SetValue(strings.TrimSuffix(v, "\\") + "\n")
		return m, nil
	}
	if strings.TrimSpace(v) == "" {
		if m.asking && len(m.choices) > 0 {
			m.q.push(uiEvent{kind: evChoose, choice: m.sel})
		}
		return m, nil
	}
	m.q.push(uiEvent{kind: evSubmit, text: v})
	if !m.asking {
		m.hist.add(v)
	}
	m.histPos = len(m.hist.entries)
	m.draft = ""
	m.ta.Reset()
	return m, nil
}

func (m *uiModel) onFirstRow() bool {
	return m.ta.Line() == 0 && m.ta.LineInfo().RowOffset == 0
}

func (m *uiModel) onLastRow() bool {
	li := m.ta.LineInfo()
	return m.ta.Line() == m.ta.LineCount()-1 && li.RowOffset == li.Height-1
}

func (m *uiModel) style(sgr, s string) string {
	if !m.color {
		return s
	}
	return sgr + s + sgrReset
}

func (m *uiModel) View() tea.View {
	if m.quitting {
		return tea.NewView("")
	}
	w := int(m.width.Load())
	var rows []string
	if m.partial != "" {
		p := m.partial
		if w > 0 {
			p = ansi.Wrap(p, w, "")
		}
		rows = append(rows, strings.Split(p, "\n")...)
	}
	if m.spinner != "" {
		rows = append(rows, fit(m.spinner, w))
	}
	if m.asking && len(m.choices) > 0 {
		for i, c := range m.choices {
			line := "  " + strconv.Itoa(i+1) + ") " + c
			if i == m.sel {
				line = m.style(sgrBold, "❯ "+strconv.Itoa(i+1)+") "+c)
			}
			rows = append(rows, fit(line, w))
		}
		rows = append(rows, fit(m.style(sgrDim, "  "+m.help), w))
	}
	top := len(rows)
	rows = append(rows, m.ta.View())
	switch {
	case m.hint != "":
		rows = append(rows, fit(m.style(sgrDim, m.hint), w))
	case m.status != "":
		rows = append(rows, fit(m.style(sgrDim, m.status), w))
	}
	v := tea.NewView(strings.Join(rows, "\n"))
	if c := m.ta.Cursor(); c != nil {
		c.Y += top
		v.Cursor = c
	}
	return v
}

// fit cuts a line of the live area to the terminal's width: a line that
// wrapped would leave a copy behind at the next redraw.
func fit(s string, w int) string {
	if w <= 0 {
		return s
	}
	return ansi.Truncate(s, w, "…")
}
