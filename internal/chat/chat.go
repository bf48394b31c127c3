// Package chat drives `mlagent agent` over the JSON-lines protocol and
// shows the conversation to a person: streamed (Markdown-rendered) text,
// one line per tool call with a spinner, the plan, questions with
// choices, usage and cost; or, for scripts, the final answer or every
// event as stream-json. `mlagent run`, `mlagent resume` and `mlagent demo`
// share it.
package chat

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sanitize"
)

// Output formats.
const (
	FormatChat       = "chat"        // the conversation as a person reads it (interactive default)
	FormatText       = "text"        // only the final answer (-p default)
	FormatStreamJSON = "stream-json" // every agent event, one JSON line each
	FormatJSON       = "json"        // one result object at the end (-p)
)

// Errors Run returns.
var (
	// ErrUnanswered: in print mode the agent asked a question that no
	// answer source answers.
	ErrUnanswered = errors.New("the agent asked a question and no answer was given")
	// ErrInterrupted: the user pressed Ctrl-C twice.
	ErrInterrupted = errors.New("interrupted")
	// ErrAgentExited: the agent's event stream ended while it was needed.
	ErrAgentExited = errors.New("the agent exited")
	// ErrTurnFailed: in print mode the turn ended other than normally.
	ErrTurnFailed = errors.New("the turn failed")
)

// Options configures Run.
type Options struct {
	// AgentIn and AgentOut are the agent's stdin and stdout. AgentIn is
	// closed (when it is an io.Closer) once Run is done with it.
	AgentIn  io.Writer
	AgentOut io.Reader

	// In is what the person types (ignored in print mode); Out gets the
	// conversation (or the final answer / events); Err gets errors.
	In       io.Reader
	Out, Err io.Writer
	// TTY styles the output and animates the spinner.
	TTY bool
	// Editor reads the person's input with the line editor: In and Out
	// must be the terminal. It gives multi-line input, bracketed paste,
	// history, arrow-key editing and choices, Esc to interrupt, and a live
	// area (spinner, editor, hints) kept to the terminal's width. Without
	// it, In is read a line at a time.
	Editor bool
	// HistoryPath is the editor's history file, shared by every chat; ""
	// keeps no history.
	HistoryPath string
	// NoColor drops all styling (the NO_COLOR convention); the layout
	// (bullets, aligned tables) stays.
	NoColor bool
	// Env is the environment the editor reads the terminal's type from;
	// nil is the process's.
	Env []string
	// Print runs FirstPrompt to the end of its turn and returns.
	Print bool
	// OutputFormat is FormatChat, FormatText, FormatStreamJSON or
	// FormatJSON; ""
	// means FormatText with Print, else FormatChat.
	OutputFormat string
	// Answers answers ask_user questions before the person is asked; in
	// print mode it is the only source of answers.
	Answers AnswerSource
	// FirstPrompt is sent as the first user message ("" waits for the
	// person to type one).
	FirstPrompt  string
	DashboardURL string
	// Permissions decides which approvals the rules allow without asking
	// (and learns "always" answers); nil is the default mode, no rules.
	Permissions *permission.Policy

	// PriorCostUSD is what the session spent before this chat (a resumed
	// session's total in the sessions index), so /cost shows its total.
	PriorCostUSD float64
	// BudgetUSD is what this chat's sandbox may spend (0: no limit; < 0:
	// not known here, as when attached), for /cost and the status line.
	BudgetUSD float64

	// AttachDir, when set, lets @path in a message attach that file (a
	// relative path from this directory): the CLI's working directory.
	AttachDir string

	// KeySource says where the model key came from ("$ANTHROPIC_API_KEY",
	// `secret "anthropic"`), for the message when the model API rejects it.
	KeySource string

	// Header is the chat's one header line (session, model, sandbox…),
	// shown first; the agent's ready event then adds no line of its own.
	Header string

	// Interrupt delivers Ctrl-C presses.
	Interrupt <-chan struct{}
	// Tick animates the spinner; nil makes a 100ms ticker on a TTY.
	Tick <-chan time.Time
	// Now is the clock for elapsed times; nil is time.Now.
	Now func() time.Time
	// ShutdownWait bounds the wait for the agent to exit after shutdown
	// (default 10s).
	ShutdownWait time.Duration

	// CanDetach: the agent is served by a session host, which keeps the
	// session running when the chat detaches (/detach, or leaving while
	// background jobs run).
	CanDetach bool

	// OnEvent sees every event before it is rendered.
	OnEvent func(protocol.Event)
	// OnUserMessage is called with each message sent to the agent.
	OnUserMessage func(text string)
	// OnTurn is called at the end of each turn.
	OnTurn func(Turn)
}

// Turn summarises one finished turn.
type Turn struct {
	StopReason string
	Usage      *protocol.Usage // nil when the agent sent none
}

// Result is what a chat came to.
type Result struct {
	Session, Model string
	Turns          int
	CostUSD        float64 // reported by the agent for this chat
	StopReason     string  // of the last turn
	Final          string  // the last assistant text of the last turn
	// Detached: the chat left the session running (its session host
	// keeps it) rather than ending it.
	Detached bool
	// Failure is the error that ended a print-mode turn, already written
	// to Options.Err.
	Failure string
}

type agentLine struct {
	ev  protocol.Event
	raw []byte
}

// Run holds the conversation until the person exits (/exit, Ctrl-D, a
// second Ctrl-C), or, in print mode, until the first turn ends. It asks
// the agent to shut down before it returns.
func Run(ctx context.Context, o Options) (Result, error) {
	d := newDriver(o)
	return d.run(ctx)
}

type driver struct {
	o      Options
	r      *renderer
	format string
	res    Result

	events  <-chan agentLine
	readErr chan error
	lines   <-chan string

	ui      *termUI // the line editor and live area; nil without Editor
	uiReady <-chan struct{}

	busy        bool
	lastCtrlC   time.Time // a Ctrl-C within exitWindow of it exits
	hintUntil   time.Time // when the editor's hint goes away
	confirmFree string    // an out-of-range number the person must type again
	// asks are the questions waiting for the person, the one shown first:
	// ask_user events, and approvals (with a question and choices made
	// for them).
	asks       []protocol.Event
	perm       *permission.Policy
	jobs       map[string]protocol.Job // running background jobs
	compacting bool                    // /compact sent, no compaction seen yet
	elsewhere  bool                    // another front end attached: this one is detached
	queued     []string
	turnText   strings.Builder // the turn's last text, at most maxFinal bytes
	textCut    bool            // turnText lost what came beyond maxFinal
	turnUsage  *protocol.Usage
	failed     string // print mode: why the turn failed
}

func newDriver(o Options) *driver {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ShutdownWait == 0 {
		o.ShutdownWait = 10 * time.Second
	}
	if o.Err == nil {
		o.Err = io.Discard
	}
	f := o.OutputFormat
	if f == "" {
		f = FormatChat
		if o.Print {
			f = FormatText
		}
	}
	var w io.Writer = o.Out
	if f != FormatChat {
		w = io.Discard
	}
	perm := o.Permissions
	if perm == nil {
		perm = permission.NewPolicy(permission.Default, nil)
	}
	return &driver{o: o, format: f, perm: perm, r: newRenderer(w, o.TTY && f == FormatChat, !o.NoColor, o.Now)}
}

// exitWindow is how soon a second Ctrl-C must follow the first to exit.
const exitWindow = 2 * time.Second

func (d *driver) run(ctx context.Context) (Result, error) {
	o := d.o
	switch d.format {
	case FormatChat, FormatText, FormatStreamJSON, FormatJSON:
	default:
		return d.res, fmt.Errorf("output format %q: want %s, %s, %s or %s", d.format, FormatChat, FormatText, FormatStreamJSON, FormatJSON)
	}
	if d.format == FormatJSON {
		defer func() { d.writeResult() }()
	}
	if o.Print && strings.TrimSpace(o.FirstPrompt) == "" {
		return d.res, errors.New("print mode needs a prompt")
	}
	defer d.closeAgentIn()
	quit := make(chan struct{})
	defer close(quit)
	d.readErr = make(chan error, 1)
	d.events = readEvents(o.AgentOut, d.readErr, quit)
	switch {
	case o.Print:
	case o.Editor && d.format == FormatChat:
		ui, err := startUI(o.In, o.Out, uiConfig{color: !o.NoColor, historyPath: o.HistoryPath, env: o.Env})
		if err != nil {
			return d.res, err
		}
		d.ui, d.r.ui, d.uiReady = ui, ui, ui.events.ready
		defer ui.close()
	case o.In != nil:
		d.lines = readLines(o.In)
	}
	tick := o.Tick
	if tick == nil && d.r.tty {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}

	if o.Header != "" && d.format == FormatChat {
		d.r.line(d.r.style(sgrDim, oneLine(o.Header, 400)))
	}
	if p := strings.TrimSpace(o.FirstPrompt); p != "" {
		if d.ui != nil {
			d.echo(p)
		}
		if err := d.send(ctx, p); err != nil {
			return d.res, err
		}
	}
	// Without a first prompt, the prompt appears once the agent is ready.

	for {
		var exit bool
		var err error
		select {
		case <-ctx.Done():
			exit, err = true, ctx.Err()
		case al, ok := <-d.events:
			if !ok {
				err := <-d.readErr
				if d.elsewhere && err == nil {
					d.r.endText()
					d.res.Detached = true
					return d.res, nil
				}
				if errors.Is(err, protocol.ErrViolation) {
					d.r.endText()
					return d.res, err
				}
				if err == nil {
					err = ErrAgentExited
				} else {
					err = fmt.Errorf("%w: %w", ErrAgentExited, err)
				}
				d.r.endText()
				return d.res, err
			}
			exit, err = d.handle(ctx, al)
			if exit && err == nil && d.o.Print {
				err = d.finishPrint()
			}
			exit = exit || err != nil
		case line, ok := <-d.lines:
			if !ok {
				d.lines = nil
				exit, err = d.eof()
				break
			}
			exit, err = d.typed(ctx, line)
		case <-d.uiReady:
			for _, ev := range d.ui.events.drain() {
				if exit, err = d.uiEvent(ctx, ev); exit || err != nil {
					break
				}
			}
		case <-o.Interrupt:
			exit, err = d.ctrlC()
		case <-tick:
			d.r.tick()
			if !d.hintUntil.IsZero() && d.o.Now().After(d.hintUntil) {
				d.hintUntil = time.Time{}
				d.ui.hint("")
			}
		}
		if errors.Is(err, protocol.ErrViolation) {
			// Nothing more is read from this agent, nor waited for.
			d.r.endText()
			d.closeAgentOut()
			return d.res, err
		}
		if exit || err != nil {
			if d.res.Detached && err == nil || d.res.Detached && errors.Is(err, ErrInterrupted) {
				d.detach()
				return d.res, nil
			}
			d.shutdown(context.WithoutCancel(ctx))
			return d.res, err
		}
	}
}

// uiEvent acts on what the person did in the editor.
func (d *driver) uiEvent(ctx context.Context, ev uiEvent) (exit bool, err error) {
	switch ev.kind {
	case evSubmit:
		d.echo(ev.text)
		return d.typed(ctx, ev.text)
	case evChoose:
		if len(d.asks) == 0 || ev.choice < 0 || ev.choice >= len(d.asks[0].Choices) {
			return false, nil
		}
		return d.typed(ctx, strconv.Itoa(ev.choice+1))
	case evInterrupt:
		return d.ctrlC()
	case evEscape:
		if d.busy {
			d.r.notice("interrupting the turn (Esc)…")
			return false, d.sendInput(protocol.Input{Type: protocol.InputInterrupt})
		}
	case evEOF:
		return d.eof()
	}
	return false, nil
}

// echo shows what the person sent above the live area, as the terminal
// would have echoed it.
func (d *driver) echo(text string) {
	p := "> "
	if len(d.asks) > 0 {
		p = "answer> "
	}
	lines := strings.Split(strings.TrimRight(sanitize.Text(text), "\n"), "\n")
	for i, l := range lines {
		if i > 0 {
			p = strings.Repeat(" ", len(p))
		}
		d.r.line(d.r.style(sgrBold, p) + l)
	}
}

// ctrlC handles a Ctrl-C press: the first interrupts a running turn (or,
// between turns, says what a second does); a second within exitWindow
// exits.
func (d *driver) ctrlC() (exit bool, err error) {
	now := d.o.Now()
	if len(d.asks) > 0 && d.asks[0].Type == leaveQuestion {
		// Ctrl-C at "leave it running?": leave, losing nothing.
		d.popAsk()
		d.res.Detached = true
		return true, nil
	}
	if !d.lastCtrlC.IsZero() && now.Sub(d.lastCtrlC) <= exitWindow {
		d.hint("")
		if !d.leave() {
			return false, nil
		}
		d.r.notice("exiting")
		return true, ErrInterrupted
	}
	d.lastCtrlC = now
	if !d.busy {
		d.hint("Ctrl-C again within 2 s exits · Ctrl-D or /exit also leave")
		return false, nil
	}
	d.r.notice("^C interrupting the turn: running tools stop, background jobs keep running")
	d.hint("Ctrl-C again within 2 s exits")
	return false, d.sendInput(protocol.Input{Type: protocol.InputInterrupt})
}

// hint says what a key does next: under the editor for a moment, or as a
// line of its own without one.
func (d *driver) hint(s string) {
	if d.ui == nil {
		if s != "" {
			d.r.notice("(" + s + ")")
			d.reprompt()
		}
		return
	}
	d.ui.hint(s)
	d.hintUntil = time.Time{}
	if s != "" {
		d.hintUntil = d.o.Now().Add(exitWindow)
	}
}

// eof is Ctrl-D (or the end of piped input): leave; at a question, stop
// the turn first.
func (d *driver) eof() (exit bool, err error) {
	d.r.endText()
	if len(d.asks) > 0 && d.asks[0].Type == leaveQuestion {
		d.popAsk()
		d.res.Detached = true
		return true, nil
	}
	switch {
	case d.ui != nil:
		if !d.leave() {
			return false, nil
		}
	case d.o.CanDetach && len(d.runningJobs()) > 0:
		// Piped input that ended cannot say; losing nothing is the answer.
		d.r.notice("input ended while background jobs run: leaving them running")
		d.res.Detached = true
		return true, nil
	}
	if d.busy && len(d.asks) > 0 {
		d.sendInput(protocol.Input{Type: protocol.InputInterrupt})
	}
	return true, nil
}

// handle renders one event and reacts to it; done means print mode is
// finished.
func (d *driver) handle(ctx context.Context, al agentLine) (done bool, err error) {
	ev := al.ev
	if d.o.OnEvent != nil {
		d.o.OnEvent(ev)
	}
	if d.format == FormatStreamJSON {
		d.writeJSON(al.raw)
	}
	switch ev.Type {
	case protocol.EventReady, protocol.EventAttached, protocol.EventUsage, protocol.EventJob:
		defer d.showStatus()
	}
	r := d.r
	switch ev.Type {
	case protocol.EventReady:
		d.res.Session, d.res.Model = ev.Session, ev.Model
		r.clearSpinner()
		switch {
		case d.o.Header == "":
			s := "session " + oneLine(ev.Session, 80) + " · " + oneLine(ev.Model, 60)
			if ev.ResumedMessages > 0 {
				s += fmt.Sprintf(" · resumed %d messages", ev.ResumedMessages)
			}
			r.line(r.style(sgrDim, s))
		case ev.ResumedMessages > 0:
			r.notice(fmt.Sprintf("resumed %d messages", ev.ResumedMessages))
		}
		if ev.ResumedMessages > 0 && ev.Last != nil && d.format == FormatChat {
			d.showLast(ev.Last)
		}
		if !d.busy && !d.o.Print {
			r.prompt("> ")
		}
	case protocol.EventTextDelta:
		d.keepText(ev.Text)
		r.text(ev.Text)
	case protocol.EventThinking:
		// Not shown: the chat shows what the agent says and does.
	case protocol.EventToolStart:
		d.resetText()
		r.toolStart(ev)
	case protocol.EventToolEnd:
		r.toolEnd(ev)
	case protocol.EventTodo:
		r.setTodo(ev.Items)
	case protocol.EventAskUser:
		return false, d.ask(ctx, ev)
	case protocol.EventApproval:
		return false, d.approval(ev)
	case protocol.EventJob:
		d.job(ev)
	case protocol.EventAttached:
		d.res.Session, d.res.Model = ev.Session, ev.Model
		s := "attached to session " + oneLine(ev.Session, 80)
		if ev.Busy {
			s += " · a turn is running"
			d.busy = true
			if d.ui != nil {
				d.r.busySince = d.o.Now()
				d.ui.setBusy(true)
			}
		}
		r.notice(s)
	case protocol.EventUsage:
		d.turnUsage = ev.Usage
		if ev.Usage != nil && ev.Usage.CostUSD > 0 {
			d.res.CostUSD += ev.Usage.CostUSD
		}
		r.usage(ev.Usage)
	case protocol.EventCompaction:
		d.compacting = false
		switch c := ev.Compaction; {
		case c == nil:
		case c.MessagesAfter == 0 && c.SummaryChars == 0:
			r.notice(fmt.Sprintf("(conversation cleared: %d messages forgotten; the next message starts afresh)", c.MessagesBefore))
		default:
			r.notice(fmt.Sprintf("(conversation summarised: %d messages → %d)", c.MessagesBefore, c.MessagesAfter))
		}
	case protocol.EventModel:
		d.res.Model = ev.Model
		r.notice("model " + oneLine(ev.Model, 80) + " from the next request on")
		d.showStatus()
	case protocol.EventRetry:
		d.resetText()
		r.write(r.md.Reset())
		r.warn(fmt.Sprintf("retrying (attempt %d, in %s): %s", ev.Attempt, fmtElapsed(time.Duration(ev.WaitMS)*time.Millisecond), oneLine(ev.Message, 200)))
	case protocol.EventError:
		if ev.Kind == "detached" {
			d.elsewhere = true
			r.notice("another chat attached to this session; this one is detached")
			break
		}
		msg := fmt.Sprintf("error (%s): %s", oneLine(ev.Kind, 20), oneLine(ev.Message, 500))
		switch ev.Kind {
		case protocol.ErrKey:
			msg = d.keyRejected(ev.Message)
		case protocol.ErrBudget:
			msg += "; to go on, mlagent resume " + d.res.Session + " --budget-usd N gives the session a new budget"
		}
		r.fail(msg)
		if d.format != FormatChat {
			fmt.Fprintln(d.o.Err, "mlagent: "+msg)
			d.res.Failure = msg
		}
		if d.failed == "" {
			d.failed = msg
		}
	case protocol.EventTurnEnd:
		return d.turnEnd(ev)
	default:
		// A newer agent's event type: ignore it rather than fail.
	}
	return false, nil
}

func (d *driver) turnEnd(ev protocol.Event) (bool, error) {
	d.busy = false
	// The agent's questions die with the turn; the gateway's held
	// requests (a background job's push) wait on.
	head := ""
	if len(d.asks) > 0 {
		head = d.asks[0].ID
	}
	held := d.asks[:0]
	for _, q := range d.asks {
		if protocol.IsGatewayApproval(q) || q.Type == leaveQuestion {
			held = append(held, q)
		}
	}
	d.asks = held
	d.confirmFree = ""
	d.r.busySince = time.Time{}
	d.r.asking = len(d.asks) > 0
	if d.ui != nil {
		if len(d.asks) == 0 {
			d.ui.endAsk()
		}
		d.ui.setBusy(false)
	}
	if d.compacting {
		d.compacting = false
		d.r.notice("(too little conversation to summarise yet)")
	} else {
		d.res.Turns++
	}
	d.res.StopReason = ev.StopReason
	d.res.Final = strings.TrimSpace(d.turnText.String())
	if d.textCut {
		d.res.Final += fmt.Sprintf("\n[the answer was longer than %d bytes and is cut here]", maxFinal)
	}
	d.resetText()
	d.r.endText()
	d.r.running = nil
	d.r.clearSpinner()
	if ev.StopReason != "" && ev.StopReason != "end_turn" {
		d.r.notice("(turn ended: " + oneLine(ev.StopReason, 40) + ")")
	}
	if d.o.OnTurn != nil {
		d.o.OnTurn(Turn{StopReason: ev.StopReason, Usage: d.turnUsage})
	}
	d.turnUsage = nil
	if d.o.Print {
		return true, nil
	}
	if len(d.queued) > 0 {
		next := d.queued[0]
		d.queued = d.queued[1:]
		d.r.line(d.r.style(sgrBold, "> ") + oneLine(next, 200))
		return false, d.send(context.Background(), next)
	}
	if len(d.asks) > 0 {
		if d.asks[0].ID != head {
			d.showAsk()
		} else {
			d.reprompt()
		}
		return false, nil
	}
	d.r.prompt("> ")
	return false, nil
}

// finishPrint writes print mode's result and says whether it failed.
func (d *driver) finishPrint() error {
	if d.format == FormatText && d.res.Final != "" {
		fmt.Fprintln(d.o.Out, sanitize.Text(d.res.Final))
	}
	if d.res.StopReason != "end_turn" {
		if d.failed != "" {
			return fmt.Errorf("%w: %s", ErrTurnFailed, d.failed)
		}
		return fmt.Errorf("%w: stop reason %q", ErrTurnFailed, d.res.StopReason)
	}
	return nil
}

// maxFinal bounds the text kept of a turn (its final answer): the agent's
// events come from the sandbox, and the rest has been shown already.
const maxFinal = 1 << 20

// maxAsks bounds the questions waiting for the person at once; the agent
// asks one at a time (a few with parallel tool calls).
const maxAsks = 32

func (d *driver) keepText(s string) {
	if room := maxFinal - d.turnText.Len(); len(s) > room {
		s, d.textCut = s[:max(room, 0)], true
	}
	d.turnText.WriteString(s)
}

func (d *driver) resetText() {
	d.turnText.Reset()
	d.textCut = false
}

// writeJSON passes an event line on for stream-json, escaped for a
// terminal.
func (d *driver) writeJSON(raw []byte) {
	d.o.Out.Write(append(sanitize.JSON(raw), '\n'))
}

func (d *driver) ask(ctx context.Context, ev protocol.Event) error {
	if d.o.Answers != nil {
		if a, ok := d.o.Answers.Answer(ev.Question, ev.Choices); ok {
			d.r.ask(ev, a)
			return d.sendInput(protocol.Input{Type: protocol.InputAnswer, ID: ev.ID, Text: a})
		}
	}
	if d.o.Print {
		d.r.ask(ev, "")
		fmt.Fprintf(d.o.Err, "mlagent: the agent asked %q; give its answer with --answers FILE\n", oneLine(ev.Question, 200))
		d.sendInput(protocol.Input{Type: protocol.InputInterrupt})
		return fmt.Errorf("%w: %q", ErrUnanswered, oneLine(ev.Question, 200))
	}
	if len(d.asks) >= maxAsks {
		return fmt.Errorf("%w: more than %d questions at once", protocol.ErrViolation, maxAsks)
	}
	d.asks = append(d.asks, ev)
	if len(d.asks) == 1 {
		d.showAsk()
	}
	return nil
}

func (d *driver) showAsk() {
	d.r.ask(d.asks[0], "")
	if d.ui != nil {
		var cs []string
		for _, c := range d.asks[0].Choices {
			cs = append(cs, oneLine(c, 200))
		}
		help := "↑/↓ Enter to choose · a number · or type your own answer"
		switch d.asks[0].Type {
		case protocol.EventApproval:
			help = "↑/↓ Enter to choose · y/n/a · or say what to do instead"
		case leaveQuestion:
			help = "↑/↓ Enter to choose · 1, 2 or 3 · Ctrl-C leaves it running"
		}
		d.ui.ask(cs, help)
		d.r.asking = true
		d.r.drawSpinner()
		return
	}
	d.r.prompt("answer> ")
}

// typed handles a line the person typed.
func (d *driver) typed(ctx context.Context, line string) (exit bool, err error) {
	line = strings.TrimRight(line, "\r\n")
	text := strings.TrimSpace(line)
	d.lastCtrlC = time.Time{}
	if d.r.tty && d.ui == nil {
		d.r.col0 = true // the terminal echoed the newline
	}
	if strings.HasPrefix(text, "/") && !strings.Contains(text, "\n") {
		if exit, handled := d.slash(text); handled {
			if !exit {
				d.reprompt()
			}
			return exit, nil
		}
	}
	if !d.r.tty {
		d.r.col0 = true
	}
	switch {
	case len(d.asks) > 0:
		q := d.asks[0]
		if text == "" {
			d.showAsk()
			return false, nil
		}
		if q.Type == protocol.EventApproval {
			return false, d.answerApproval(q, text)
		}
		if q.Type == leaveQuestion {
			return d.answerLeave(text), nil
		}
		ans := text
		if n, err := strconv.Atoi(text); err == nil && len(q.Choices) > 0 {
			switch {
			case n >= 1 && n <= len(q.Choices):
				ans = q.Choices[n-1]
				d.r.notice("  → " + oneLine(ans, 200))
			case d.confirmFree != text:
				// A typo for a choice more likely than an answer: ask.
				d.confirmFree = text
				d.r.warn(fmt.Sprintf("there is no choice %d (1–%d); type %s again to send it as your own answer", n, len(q.Choices), text))
				d.reprompt()
				return false, nil
			}
		}
		d.popAsk()
		if err := d.sendInput(protocol.Input{Type: protocol.InputAnswer, ID: q.ID, Text: ans}); err != nil {
			return false, err
		}
	case text == "":
		if !d.busy {
			d.r.prompt("> ")
		}
	case d.busy:
		d.queued = append(d.queued, text)
		d.r.notice("(queued until this turn ends)")
	default:
		return false, d.send(ctx, text)
	}
	return false, nil
}

// popAsk takes the answered question off the queue and shows the next.
func (d *driver) popAsk() {
	d.confirmFree = ""
	d.asks = d.asks[1:]
	if len(d.asks) > 0 {
		d.showAsk()
		return
	}
	if d.ui != nil {
		d.ui.endAsk()
		d.r.asking = false
		d.r.drawSpinner()
	}
}

func (d *driver) reprompt() {
	switch {
	case len(d.asks) > 0:
		d.r.prompt("answer> ")
	case !d.busy:
		d.r.prompt("> ")
	}
}

// slash runs a slash command; handled is false for text that merely
// starts with a slash (a path, say).
func (d *driver) slash(cmd string) (exit, handled bool) {
	name, args, _ := strings.Cut(cmd, " ")
	for _, c := range slashCommands {
		if name == "/"+c.name || slices.Contains(c.aliases, strings.TrimPrefix(name, "/")) {
			return c.run(d, strings.TrimSpace(args)), true
		}
	}
	if strings.Count(name, "/") > 1 {
		return false, false
	}
	d.r.line("unknown command " + oneLine(name, 40) + "; /help lists them")
	return false, true
}

// send starts a turn with a user message.
func (d *driver) send(ctx context.Context, text string) error {
	if d.o.OnUserMessage != nil {
		d.o.OnUserMessage(text)
	}
	if d.o.AttachDir != "" && strings.Contains(text, "@") {
		var notes []string
		text, notes = attach(text, d.o.AttachDir)
		for _, n := range notes {
			if d.format == FormatChat {
				d.r.notice("  " + oneLine(n, 300))
			} else {
				fmt.Fprintln(d.o.Err, "mlagent: "+oneLine(n, 300))
			}
		}
	}
	d.busy = true
	d.resetText()
	if d.ui != nil {
		d.r.busySince = d.o.Now()
		d.ui.setBusy(true)
		d.r.drawSpinner()
	}
	return d.sendInput(protocol.Input{Type: protocol.InputUserMessage, Text: text})
}

func (d *driver) sendInput(in protocol.Input) error {
	b, err := protocol.MarshalInput(in)
	if err != nil {
		return err
	}
	if _, err := d.o.AgentIn.Write(b); err != nil {
		return fmt.Errorf("%w: send %s: %w", ErrAgentExited, in.Type, err)
	}
	return nil
}

// shutdown asks the agent to finish and waits (bounded) for it to close
// its output, rendering what it still says.
func (d *driver) shutdown(ctx context.Context) {
	d.sendInput(protocol.Input{Type: protocol.InputShutdown})
	d.closeAgentIn()
	timer := time.NewTimer(d.o.ShutdownWait)
	defer timer.Stop()
	for {
		select {
		case al, ok := <-d.events:
			if !ok {
				d.r.endText()
				d.r.clearSpinner()
				return
			}
			if d.format == FormatStreamJSON {
				d.writeJSON(al.raw)
			}
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (d *driver) closeAgentOut() {
	if c, ok := d.o.AgentOut.(io.Closer); ok {
		c.Close()
	}
}

func (d *driver) closeAgentIn() {
	if c, ok := d.o.AgentIn.(io.Closer); ok {
		c.Close()
	}
}

// readEvents parses the agent's stdout, which is untrusted: a line that
// is not an event is skipped, and a stream that breaks the protocol's
// limits (protocol.EventReader) is cut off: r is closed, so the writer
// fails rather than blocks, and errc gets the reason. It stops when quit
// is closed.
func readEvents(r io.Reader, errc chan<- error, quit <-chan struct{}) <-chan agentLine {
	ch := make(chan agentLine, 64)
	go func() {
		defer close(ch)
		er := protocol.NewEventReader(r)
		for {
			ev, raw, err := er.Next()
			if err != nil {
				if errors.Is(err, protocol.ErrViolation) {
					if c, ok := r.(io.Closer); ok {
						c.Close()
					}
				}
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errc <- err
				return
			}
			select {
			case ch <- agentLine{ev: ev, raw: raw}:
			case <-quit:
				return
			}
		}
	}()
	return ch
}

func readLines(r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				ch <- line
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// keyRejected says that the model API refused the user's own key, where
// that key came from, and how to set another.
func (d *driver) keyRejected(apiMsg string) string {
	s := "the model API rejected your API key"
	if d.o.KeySource != "" {
		s += " (from " + oneLine(d.o.KeySource, 60) + ")"
	}
	s += ": " + oneLine(strings.TrimPrefix(apiMsg, "the model API rejected the API key (401): "), 300) +
		". Set a valid one with: mlagent secret set anthropic ANTHROPIC_API_KEY=sk-ant-..."
	if strings.HasPrefix(d.o.KeySource, "$") {
		s += " (an exported ANTHROPIC_API_KEY wins over the stored one: unset it to use the store)"
	}
	return s
}

// showLast shows where a resumed session left off: the user's last
// message, the end of the answer, and the calls the last run cut short.
func (d *driver) showLast(x *protocol.Exchange) {
	r := d.r
	r.notice("where it left off:")
	if x.User != "" {
		r.line("  " + r.style(sgrBold, "> ") + oneLine(x.User, 300))
	}
	if x.Assistant != "" {
		lines := strings.Split(strings.TrimSpace(sanitize.Text(x.Assistant)), "\n")
		if len(lines) > 6 {
			lines = append([]string{"…"}, lines[len(lines)-6:]...)
		}
		for _, l := range lines {
			r.line("  " + sanitize.Truncate(l, 300))
		}
	}
	for _, t := range x.Interrupted {
		r.line("  " + r.style(sgrRed, "✗") + " " + oneLine(t, 200) + r.style(sgrDim, "  → interrupted when the last run ended; check what it left"))
	}
}

// costLine is /cost: this chat's spending, the session's total (as
// mlagent sessions counts it, across resumes) and the budget left.
func (d *driver) costLine() string {
	s := fmt.Sprintf("%d turn(s), %s in this chat · %s for the session", d.res.Turns, fmtUSD(d.res.CostUSD), fmtUSD(d.o.PriorCostUSD+d.res.CostUSD))
	if b := d.o.BudgetUSD; b > 0 {
		left := max(0, b-d.res.CostUSD)
		s += fmt.Sprintf(" · %s left of this sandbox's %s budget", fmtUSD(left), fmtUSD(b))
		if left == 0 {
			s += " (mlagent resume " + d.res.Session + " --budget-usd N gives a new one)"
		}
	} else if d.o.BudgetUSD == 0 {
		s += " · no budget limit"
	}
	return s
}

// statusLine is shown under the editor: the model, the budget left and
// the jobs running.
func (d *driver) statusLine() string {
	var parts []string
	if d.res.Model != "" {
		parts = append(parts, oneLine(d.res.Model, 60))
	}
	if b := d.o.BudgetUSD; b > 0 {
		parts = append(parts, fmtUSD(max(0, b-d.res.CostUSD))+" left")
	}
	for _, j := range d.runningJobs() {
		parts = append(parts, oneLine(j.ID, 20)+" running ("+oneLine(j.Command, 40)+")")
	}
	return strings.Join(parts, " · ")
}

// showStatus refreshes the status line under the editor.
func (d *driver) showStatus() {
	if d.ui != nil {
		d.ui.status(d.statusLine())
	}
}

// jsonResult is --output-format json: the whole run as one object.
type jsonResult struct {
	Type       string  `json:"type"` // "result"
	IsError    bool    `json:"is_error"`
	Result     string  `json:"result"`
	Error      string  `json:"error,omitempty"`
	Session    string  `json:"session_id"`
	Model      string  `json:"model"`
	Turns      int     `json:"num_turns"`
	CostUSD    float64 `json:"cost_usd"`
	StopReason string  `json:"stop_reason"`
}

// writeResult writes the run's result object (json format).
func (d *driver) writeResult() {
	r := jsonResult{Type: "result", Result: sanitize.Text(d.res.Final), Session: d.res.Session, Model: d.res.Model,
		Turns: d.res.Turns, CostUSD: d.res.CostUSD, StopReason: d.res.StopReason}
	if d.res.StopReason != "end_turn" {
		r.IsError = true
		r.Error = d.failed
		if r.Error == "" {
			r.Error = "the turn did not end normally: " + oneLine(d.res.StopReason, 40)
		}
	}
	b, _ := json.Marshal(r)
	d.o.Out.Write(append(b, '\n'))
}
