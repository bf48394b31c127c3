package chat

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/creack/pty"

	"github.com/mlagent/mlagent/internal/protocol"
)

// vterm is a pseudo-terminal whose far end is a terminal emulator, so a
// test sees the screen a person would see (what is left on it after
// redraws, not just the bytes written) and the program gets the replies
// a real terminal sends to its queries.
type vterm struct {
	t        *testing.T
	ptm, pts *os.File
	mu       sync.Mutex
	emu      *vt.Emulator
}

func newVTerm(t *testing.T, cols, rows int) *vterm {
	t.Helper()
	ptm, pts, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := pty.Setsize(ptm, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)}); err != nil {
		t.Fatal(err)
	}
	v := &vterm{t: t, ptm: ptm, pts: pts, emu: vt.NewEmulator(cols, rows)}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := ptm.Read(buf)
			if n > 0 {
				v.mu.Lock()
				v.emu.Write(buf[:n])
				v.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // the emulator's replies to queries go back as input
		buf := make([]byte, 1024)
		for {
			n, err := v.emu.Read(buf)
			if n > 0 {
				ptm.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	// The emulator is not closed: its Close races with a blocked Read
	// (vt keeps no lock there), so the reply goroutine just stays parked.
	t.Cleanup(func() {
		pts.Close()
		ptm.Close()
	})
	return v
}

func (v *vterm) screen() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.emu.String()
}

// waitScreen waits (generously: not a timing assertion) until ok holds
// for the screen.
func (v *vterm) waitScreen(what string, ok func(screen string) bool) string {
	v.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := v.screen()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("waiting for %s; the screen shows:\n%s", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (v *vterm) waitFor(s string) string {
	v.t.Helper()
	return v.waitScreen(quoted(s), func(screen string) bool { return strings.Contains(screen, s) })
}

func quoted(s string) string { return `"` + s + `"` }

func (v *vterm) send(s string) {
	v.t.Helper()
	if _, err := v.ptm.Write([]byte(s)); err != nil {
		v.t.Fatal(err)
	}
}

// resize changes the window size as a terminal does: the new size on the
// pty, then SIGWINCH.
func (v *vterm) resize(cols, rows int) {
	v.t.Helper()
	v.mu.Lock()
	v.emu.Resize(cols, rows)
	v.mu.Unlock()
	if err := pty.Setsize(v.ptm, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)}); err != nil {
		v.t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
}

// editorChat runs a chat with the line editor on a fresh terminal.
type editorChat struct {
	term *vterm
	errc chan error
	fa   *fakeAgent
}

func startEditorChat(t *testing.T, cols int, history string, script func(a *fakeAgent), tweak ...func(*Options)) *editorChat {
	t.Helper()
	fa, in, out := startFake(t, script)
	term := newVTerm(t, cols, 30)
	o := Options{AgentIn: in, AgentOut: out, In: term.pts, Out: term.pts, TTY: true, Editor: true,
		HistoryPath: history, Env: []string{"TERM=xterm-256color"}}
	for _, f := range tweak {
		f(&o)
	}
	ec := &editorChat{term: term, errc: make(chan error, 1), fa: fa}
	go func() {
		_, err := Run(context.Background(), o)
		ec.errc <- err
	}()
	return ec
}

func (ec *editorChat) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-ec.errc:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("the chat did not end; the screen shows:\n%s", ec.term.screen())
		return nil
	}
}

const (
	keyEnter = "\r"
	keyUp    = "\x1b[A"
	keyDown  = "\x1b[B"
	keyLeft  = "\x1b[D"
	keyEnd   = "\x1b[F"
	keyCtrlC = "\x03"
	keyCtrlD = "\x04"
	keyCtrlJ = "\n"
)

func paste(s string) string { return "\x1b[200~" + s + "\x1b[201~" }

// TestEditorPasteIsOneTurn: a 5,010-character paste of three lines
// arrives whole, as one message, and only when Enter is pressed.
func TestEditorPasteIsOneTurn(t *testing.T) {
	long := strings.Repeat("0123456789", 167) // 1,670
	text := "A" + long + "\nB" + long + "\nC" + long[:len(long)-5]
	if len(text) != 5010 {
		t.Fatalf("test text is %d bytes", len(text))
	}
	got := make(chan string, 1)
	ec := startEditorChat(t, 80, "", func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		got <- a.expect(protocol.InputUserMessage).Text
		a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "received"}, protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	})
	ec.term.waitFor("> ")
	ec.term.send(paste(text))
	// The editor shows the end of a long input (it scrolls), the cursor after it.
	ec.term.waitScreen("the paste's end", func(s string) bool {
		joined := strings.ReplaceAll(strings.ReplaceAll(s, "\n", ""), " ", "")
		return strings.Contains(joined, text[len(text)-300:])
	})
	select {
	case s := <-got:
		t.Fatalf("a paste was sent before Enter: %d bytes", len(s))
	case <-time.After(200 * time.Millisecond):
	}
	ec.term.send(keyEnter)
	if s := <-got; s != text {
		t.Fatalf("the agent got %d bytes (%q…); want the %d pasted", len(s), s[:min(40, len(s))], len(text))
	}
	ec.term.waitFor("received")
	ec.term.send("/exit" + keyEnter)
	if err := ec.wait(t); err != nil {
		t.Fatal(err)
	}
	if got := inputTypes(ec.fa.received()); strings.Join(got, ",") != "user_message,shutdown" {
		t.Errorf("got inputs %v; want one user_message", got)
	}
}

// TestEditorEditingAndHistory: ←/→ edit within the line, Ctrl-J starts a
// new one, and ↑ brings back what was sent in an earlier chat.
func TestEditorEditingAndHistory(t *testing.T) {
	hist := filepath.Join(t.TempDir(), "history")
	msgs := make(chan string, 4)
	echo := func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		for {
			in, err := a.next()
			if err != nil || in.Type != protocol.InputUserMessage {
				return
			}
			msgs <- in.Text
			a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "ok " + strings.ReplaceAll(in.Text, "\n", "|")}, protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		}
	}
	ec := startEditorChat(t, 80, hist, echo)
	ec.term.waitFor("> ")
	ec.term.send("helo wrld" + keyLeft + keyLeft + keyLeft + "o")
	for range 5 {
		ec.term.send(keyLeft)
	}
	ec.term.send("l" + keyEnd + keyCtrlJ + "second line" + keyEnter)
	if got, want := <-msgs, "hello world\nsecond line"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	ec.term.waitFor("ok hello world|second line")
	ec.term.send(keyCtrlD)
	if err := ec.wait(t); err != nil {
		t.Fatal(err)
	}

	ec = startEditorChat(t, 80, hist, echo)
	ec.term.waitFor("> ")
	ec.term.send(keyUp + keyEnter)
	if got, want := <-msgs, "hello world\nsecond line"; got != want {
		t.Errorf("after ↑ in a new chat: got %q; want %q", got, want)
	}
	ec.term.send(keyCtrlD)
	if err := ec.wait(t); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(hist)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("history file: %v, mode %v; want 0600", err, fi.Mode())
	}
}

// TestEditorChoices: arrows pick a choice, a number still works, and an
// out-of-range number is questioned rather than sent as an answer.
func TestEditorChoices(t *testing.T) {
	answers := make(chan protocol.Input, 4)
	ec := startEditorChat(t, 80, "", func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		a.expect(protocol.InputUserMessage)
		for i, q := range []string{"Which dataset?", "Which model?", "How many epochs?"} {
			id := string(rune('a' + i))
			a.emit(protocol.Event{Type: protocol.EventAskUser, ID: id, Question: q, Choices: []string{"one", "two", "three"}})
			answers <- a.expect(protocol.InputAnswer)
		}
		a.emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	})
	ec.term.waitFor("> ")
	ec.term.send("go" + keyEnter)
	ec.term.waitFor("Which dataset?")
	ec.term.waitFor("3) three")
	ec.term.send(keyDown + keyDown + keyUp + keyEnter)
	if a := <-answers; a.ID != "a" || a.Text != "two" {
		t.Errorf("arrows: got %+v; want a=two", a)
	}
	ec.term.waitFor("Which model?")
	ec.term.send("3" + keyEnter)
	if a := <-answers; a.ID != "b" || a.Text != "three" {
		t.Errorf("number: got %+v; want b=three", a)
	}
	ec.term.waitFor("How many epochs?")
	ec.term.send("7" + keyEnter)
	ec.term.waitFor("there is no choice 7 (1–3)")
	select {
	case a := <-answers:
		t.Fatalf("an out-of-range number was sent as an answer: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	ec.term.send("7" + keyEnter)
	if a := <-answers; a.ID != "c" || a.Text != "7" {
		t.Errorf("confirmed: got %+v; want c=7", a)
	}
	ec.term.send(keyCtrlD)
	if err := ec.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestEditorResize: a tool line wider than the terminal leaves no copies
// when the window narrows, and model text wraps between words at the new
// width.
func TestEditorResize(t *testing.T) {
	words := strings.Fields(strings.Repeat("satellite imagery classifier accuracy validation ", 12))
	endTool := make(chan struct{})
	ec := startEditorChat(t, 100, "", func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventToolStart, ID: "t1", Name: "bash", Summary: "python train.py --epochs 15 --lr 5e-5 --batch-size 64 --data /data/datasets/eurosat-msi --out /data/runs/x"})
		<-endTool
		a.emit(protocol.Event{Type: protocol.EventToolEnd, ID: "t1", Name: "bash", OK: protocol.Bool(true), Summary: "exit 0"})
		for _, w := range words {
			a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: w + " "})
		}
		a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "\n"}, protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	})
	ec.term.waitFor("> ")
	ec.term.send("train" + keyEnter)
	ec.term.waitFor("python train.py")
	ec.term.resize(40, 30)
	time.Sleep(500 * time.Millisecond) // several spinner frames at the new width
	close(endTool)
	ec.term.waitFor("✓ bash")
	screen := ec.term.waitFor("Enter sends") // the turn has ended
	if n := strings.Count(screen, "validation"); n != 12 {
		t.Errorf("the model's text shows %d of its 12 sentences:\n%s", n, screen)
	}
	for _, f := range spinnerFrames {
		if strings.Contains(screen, f) {
			t.Errorf("a spinner frame %s is left on the screen:\n%s", f, screen)
		}
	}
	if n := strings.Count(screen, "python train.py"); n != 1 {
		t.Errorf("the tool's line is on the screen %d times; want once:\n%s", n, screen)
	}
	known := map[string]bool{}
	for _, w := range words {
		known[w] = true
	}
	for _, line := range strings.Split(screen, "\n") {
		if !strings.Contains(line, "satellite") && !strings.Contains(line, "accuracy") && !strings.Contains(line, "validation") {
			continue
		}
		if w := len([]rune(strings.TrimRight(line, " "))); w > 40 {
			t.Errorf("line wider than the 40-column terminal (%d): %q", w, line)
		}
		for _, w := range strings.Fields(line) {
			if !known[w] {
				t.Errorf("a word was cut at the line's end: %q in %q", w, line)
			}
		}
	}
	ec.term.send(keyCtrlD)
	if err := ec.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestEditorEscAndCtrlC: Esc interrupts the turn without arming exit;
// a Ctrl-C between turns says what a second one does, which exits.
func TestEditorEscAndCtrlC(t *testing.T) {
	ec := startEditorChat(t, 80, "", func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventToolStart, ID: "t1", Name: "bash", Summary: "sleep 1000"})
		a.expect(protocol.InputInterrupt)
		a.emit(protocol.Event{Type: protocol.EventToolEnd, ID: "t1", Name: "bash", OK: protocol.Bool(false), Summary: "interrupted"},
			protocol.Event{Type: protocol.EventTurnEnd, StopReason: "interrupted"})
	})
	ec.term.waitFor("> ")
	ec.term.send("sleep" + keyEnter)
	ec.term.waitFor("sleep 1000")
	ec.term.send("\x1b")
	ec.term.waitFor("(turn ended: interrupted)")
	ec.term.send(keyCtrlC)
	ec.term.waitFor("Ctrl-C again within 2 s exits")
	ec.term.send(keyCtrlC)
	if err := ec.wait(t); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v; want ErrInterrupted after the second Ctrl-C", err)
	}
	if got := strings.Join(inputTypes(ec.fa.received()), ","); got != "user_message,interrupt,shutdown" {
		t.Errorf("got inputs %s; want user_message,interrupt,shutdown", got)
	}
}

// TestEditorNoColor: with NO_COLOR nothing on the screen is styled.
func TestEditorNoColor(t *testing.T) {
	ec := startEditorChat(t, 80, "", func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "# Title\n**bold** and `code`\n"},
			protocol.Event{Type: protocol.EventToolStart, ID: "t1", Name: "bash", Summary: "ls"},
			protocol.Event{Type: protocol.EventToolEnd, ID: "t1", Name: "bash", OK: protocol.Bool(false), Summary: "exit 1"},
			protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	}, func(o *Options) { o.NoColor = true; o.Env = append(o.Env, "NO_COLOR=1") })
	ec.term.waitFor("> ")
	ec.term.send("go" + keyEnter)
	ec.term.waitFor("✗ bash")
	ec.term.mu.Lock()
	for y := range ec.term.emu.Height() {
		for x := range ec.term.emu.Width() {
			if c := ec.term.emu.CellAt(x, y); c != nil && c.Content != " " && c.Content != "" && !c.Style.IsZero() {
				t.Errorf("cell (%d,%d) %q is styled: %+v", x, y, c.Content, c.Style)
			}
		}
	}
	ec.term.mu.Unlock()
	if s := ec.term.screen(); !strings.Contains(s, "bold and code") || strings.Contains(s, "**") {
		t.Errorf("the Markdown was not laid out:\n%s", s)
	}
	ec.term.send(keyCtrlD)
	if err := ec.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestEditorStatusLine: under the editor, the model, the budget left and
// the jobs running.
func TestEditorStatusLine(t *testing.T) {
	ec := startEditorChat(t, 100, "", func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "claude-x"})
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventJob, Job: &protocol.Job{ID: "job1", Command: "python3 train.py", Status: "running"}},
			protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{CostUSD: 1}},
			protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	}, func(o *Options) { o.BudgetUSD = 5 })
	ec.term.waitFor("claude-x · $5.00 left")
	ec.term.send("go" + keyEnter)
	ec.term.waitFor("claude-x · $4.00 left · job1 running (python3 train.py)")
	ec.term.send("/detach" + keyEnter)
	ec.term.waitFor("this chat cannot detach")
	ec.term.send(keyCtrlD)
	if err := ec.wait(t); err != nil {
		t.Fatal(err)
	}
}
