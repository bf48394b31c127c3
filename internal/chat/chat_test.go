package chat

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// conversation is the scripted agent of the golden tests: it plans, runs
// a tool, asks a question with choices, fails a tool, answers, and
// reports usage; then it waits for the next message.
func conversation(a *fakeAgent) {
	a.emit(protocol.Event{Type: protocol.EventReady, Session: "s-1", Model: "claude-test"})
	a.expect(protocol.InputUserMessage)
	a.emit(
		protocol.Event{Type: protocol.EventTextDelta, Text: "# Plan\nI will **tr"},
		protocol.Event{Type: protocol.EventTextDelta, Text: "ain** a `cnn` on the data:\n- load\n- train\n"},
		protocol.Event{Type: protocol.EventTextDelta, Text: "```python\nprint('hi')\n```\nDone\x1b]0;pwned\x07 planning."},
		protocol.Event{Type: protocol.EventToolStart, ID: "t1", Name: "todo", Summary: "2 items"},
		protocol.Event{Type: protocol.EventTodo, Items: []protocol.TodoItem{{Content: "look at the data", Status: "in_progress"}, {Content: "train", Status: "pending"}}},
		protocol.Event{Type: protocol.EventToolEnd, ID: "t1", Name: "todo", OK: protocol.Bool(true)},
		protocol.Event{Type: protocol.EventToolStart, ID: "t2", Name: "bash", Summary: "ls /data"},
		protocol.Event{Type: protocol.EventToolEnd, ID: "t2", Name: "bash", OK: protocol.Bool(true), Summary: "exit 0", Output: "eurosat\n"},
		protocol.Event{Type: protocol.EventToolStart, ID: "t3", Name: "ask_user", Summary: "Which dataset?"},
		protocol.Event{Type: protocol.EventAskUser, ID: "t3", Question: "Which dataset?", Choices: []string{"EuroSAT", "BigEarthNet"}},
	)
	if ans := a.expect(protocol.InputAnswer); ans.ID != "t3" || ans.Text != "EuroSAT" {
		a.t.Errorf("got answer %+v; want id t3 text EuroSAT", ans)
	}
	a.emit(
		protocol.Event{Type: protocol.EventToolEnd, ID: "t3", Name: "ask_user", OK: protocol.Bool(true)},
		protocol.Event{Type: protocol.EventToolStart, ID: "t4", Name: "bash", Summary: "python train.py"},
		protocol.Event{Type: protocol.EventToolEnd, ID: "t4", Name: "bash", OK: protocol.Bool(false), Summary: "exit 1", Output: "Traceback\nValueError: \x1b[31mbad\n"},
		protocol.Event{Type: protocol.EventRetry, Attempt: 1, WaitMS: 1500, Message: "overloaded_error (529)"},
		protocol.Event{Type: protocol.EventTextDelta, Text: "Trained: accuracy **0.91**."},
		protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{InputTokens: 1200, OutputTokens: 340, CacheReadInputTokens: 9000, CostUSD: 0.0123, Requests: 3, SessionCostUSD: 0.0123, SessionCacheReadRatio: 0.88}},
		protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"},
	)
}

func TestConversationGolden(t *testing.T) {
	for _, tty := range []bool{false, true} {
		name := "conversation.plain.golden"
		if tty {
			name = "conversation.tty.golden"
		}
		t.Run(name, func(t *testing.T) {
			fa, in, out := startFake(t, conversation)
			p := newPerson(t)
			var buf bytes.Buffer
			var prompts []string
			res, err := Run(context.Background(), Options{
				AgentIn: in, AgentOut: out, In: p.r, Out: &buf, TTY: tty,
				Tick: make(chan time.Time), Now: fakeClock(1500 * time.Millisecond),
				DashboardURL: "http://127.0.0.1:8792/",
				OnEvent: func(ev protocol.Event) {
					switch {
					case ev.Type == protocol.EventReady:
						p.say("Train a satellite classifier")
					case ev.Type == protocol.EventAskUser:
						p.say("1")
					}
				},
				OnUserMessage: func(s string) { prompts = append(prompts, s) },
				OnTurn: func(turn Turn) {
					if turn.StopReason != "end_turn" || turn.Usage == nil || turn.Usage.CostUSD != 0.0123 {
						t.Errorf("got turn %+v; want end_turn with the usage", turn)
					}
					p.say("/cost", "/todo", "/dashboard", "/nope", "/exit")
				},
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			want := Result{Session: "s-1", Model: "claude-test", Turns: 1, CostUSD: 0.0123, StopReason: "end_turn", Final: "Trained: accuracy **0.91**."}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("got result %+v; want %+v", res, want)
			}
			if !reflect.DeepEqual(prompts, []string{"Train a satellite classifier"}) {
				t.Errorf("got user messages %q", prompts)
			}
			got := inputTypes(fa.received())
			if want := []string{"user_message", "answer", "shutdown"}; !reflect.DeepEqual(got, want) {
				t.Errorf("got inputs %v; want %v", got, want)
			}
			checkNoForeignEscapes(t, buf.String())
			golden(t, name, buf.Bytes())
		})
	}
}

var sgrRE = regexp.MustCompile(`\x1b\[[0-9;]*m|\r\x1b\[K`)

// checkNoForeignEscapes fails if out has an escape sequence other than
// the renderer's own styling: text from the sandbox must not reach the
// terminal as control sequences.
func checkNoForeignEscapes(t *testing.T, out string) {
	t.Helper()
	rest := sgrRE.ReplaceAllString(out, "")
	if i := strings.IndexFunc(rest, func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f)
	}); i >= 0 {
		t.Errorf("output has a control character %q at %d: %q", rest[i], i, rest[max(0, i-20):min(len(rest), i+20)])
	}
}

func TestPrintMode(t *testing.T) {
	oneTurn := func(stop string, ask bool) func(a *fakeAgent) {
		return func(a *fakeAgent) {
			a.emit(protocol.Event{Type: protocol.EventReady, Session: "s-2", Model: "m"})
			a.expect(protocol.InputUserMessage)
			a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "Looking."},
				protocol.Event{Type: protocol.EventToolStart, ID: "t1", Name: "bash", Summary: "ls"},
				protocol.Event{Type: protocol.EventToolEnd, ID: "t1", Name: "bash", OK: protocol.Bool(true)})
			if ask {
				a.emit(protocol.Event{Type: protocol.EventAskUser, ID: "q1", Question: "What is your Hugging Face username?"})
				in, err := a.next()
				if err != nil {
					panic(errStop)
				}
				if in.Type == protocol.InputInterrupt {
					a.emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "interrupted"})
					return
				}
				a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "User is " + in.Text + ". "})
			}
			if stop != "end_turn" {
				a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrBudget, Message: "budget exhausted"})
			}
			a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "All done."},
				protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{CostUSD: 0.5}},
				protocol.Event{Type: protocol.EventTurnEnd, StopReason: stop})
		}
	}
	answers, err := ParseAnswers([]byte(`{"hugging face username": "ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		script  func(a *fakeAgent)
		answers AnswerSource
		format  string
		out     string
		errIs   error
		inputs  []string
	}{
		{name: "final answer", script: oneTurn("end_turn", false), out: "All done.\n", inputs: []string{"user_message", "shutdown"}},
		{name: "answered question", script: oneTurn("end_turn", true), answers: answers, out: "User is ada. All done.\n", inputs: []string{"user_message", "answer", "shutdown"}},
		{name: "unanswered question fails", script: oneTurn("end_turn", true), errIs: ErrUnanswered, inputs: []string{"interrupt", "shutdown"}},
		{name: "failed turn", script: oneTurn("budget", false), out: "All done.\n", errIs: ErrTurnFailed, inputs: []string{"user_message", "shutdown"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fa, in, out := startFake(t, c.script)
			var buf, errb bytes.Buffer
			_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &buf, Err: &errb,
				Print: true, FirstPrompt: "go", Answers: c.answers, OutputFormat: c.format})
			if c.errIs == nil && err != nil || c.errIs != nil && !errors.Is(err, c.errIs) {
				t.Fatalf("got error %v; want %v (stderr %q)", err, c.errIs, errb.String())
			}
			if buf.String() != c.out {
				t.Errorf("got stdout %q; want %q", buf.String(), c.out)
			}
			got := inputTypes(fa.received())
			if c.name == "unanswered question fails" {
				// The question was asked after the prompt; the fake
				// script reads the interrupt as its "answer".
				got = got[1:]
			}
			if !reflect.DeepEqual(got, c.inputs) {
				t.Errorf("got inputs %v; want %v", got, c.inputs)
			}
		})
	}
}

func TestPrintStreamJSON(t *testing.T) {
	var lines bytes.Buffer
	fa, in, out := startFake(t, func(a *fakeAgent) {
		evs := []protocol.Event{
			{Type: protocol.EventReady, Session: "s", Model: "m"},
			{Type: protocol.EventTextDelta, Text: "hi"},
			{Type: protocol.EventTurnEnd, StopReason: "end_turn"},
		}
		w := protocol.NewWriter(&lines)
		a.emit(evs[0])
		w.Emit(evs[0])
		a.expect(protocol.InputUserMessage)
		for _, ev := range evs[1:] {
			a.emit(ev)
			w.Emit(ev)
		}
		// Not an event: skipped, never echoed.
		a.outW.Write([]byte("garbage\n"))
	})
	var buf bytes.Buffer
	if _, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &buf, Print: true, FirstPrompt: "go", OutputFormat: FormatStreamJSON}); err != nil {
		t.Fatal(err)
	}
	fa.received()
	if buf.String() != lines.String() {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), lines.String())
	}
}

func TestCtrlC(t *testing.T) {
	toolRunning := make(chan struct{})
	fa, in, out := startFake(t, func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventToolStart, ID: "t1", Name: "bash", Summary: "sleep 1000"})
		close(toolRunning)
		a.expect(protocol.InputInterrupt)
		a.emit(protocol.Event{Type: protocol.EventToolEnd, ID: "t1", Name: "bash", OK: protocol.Bool(false), Summary: "interrupted"},
			protocol.Event{Type: protocol.EventTurnEnd, StopReason: "interrupted"})
	})
	intr := make(chan struct{})
	var buf bytes.Buffer
	p := newPerson(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, FirstPrompt: "sleep",
			Interrupt: intr, Tick: make(chan time.Time), Now: fakeClock(time.Second),
			OnTurn: func(turn Turn) {
				if turn.StopReason != "interrupted" {
					t.Errorf("got stop reason %q; want interrupted", turn.StopReason)
				}
				go func() { intr <- struct{}{}; intr <- struct{}{} }()
			}})
		errc <- err
	}()
	<-toolRunning
	intr <- struct{}{}
	if err := <-errc; !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v; want ErrInterrupted after the second Ctrl-C", err)
	}
	if got, want := inputTypes(fa.received()), []string{"user_message", "interrupt", "shutdown"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got inputs %v; want %v", got, want)
	}
	for _, s := range []string{"^C interrupting the turn", "✗ bash  sleep 1000  → interrupted", "(turn ended: interrupted)", "Ctrl-C again"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, buf.String())
		}
	}
}

func TestCtrlDAndQueue(t *testing.T) {
	fa, in, out := startFake(t, func(a *fakeAgent) {
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "one"}, protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		if in := a.expect(protocol.InputUserMessage); in.Text != "second" {
			t.Errorf("got %q; want the queued message", in.Text)
		}
		a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "two"}, protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	})
	p := newPerson(t)
	var buf bytes.Buffer
	turns := 0
	res, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, FirstPrompt: "first",
		OnUserMessage: func(s string) {
			if s == "first" {
				p.say("second")
			}
		},
		OnEvent: func(ev protocol.Event) {},
		OnTurn: func(Turn) {
			turns++
			if turns == 2 {
				p.ctrlD()
			}
		},
		Now: fakeClock(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Turns != 2 || res.Final != "two" {
		t.Errorf("got %+v; want 2 turns ending in two", res)
	}
	if got, want := inputTypes(fa.received()), []string{"user_message", "user_message", "shutdown"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got inputs %v; want %v", got, want)
	}
}

func TestTypedWhileBusyIsQueued(t *testing.T) {
	var buf, agentIn bytes.Buffer
	d := newDriver(Options{Out: &buf, AgentIn: &agentIn, Now: fakeClock(time.Second)})
	d.busy = true
	if exit, err := d.typed(context.Background(), "later please\n"); exit || err != nil {
		t.Fatalf("typed: got %v, %v", exit, err)
	}
	if agentIn.Len() != 0 || !reflect.DeepEqual(d.queued, []string{"later please"}) {
		t.Fatalf("got sent %q, queued %q; want nothing sent and the line queued", agentIn.String(), d.queued)
	}
	if _, err := d.turnEnd(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"}); err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"type":"user_message","text":"later please"}` + "\n"; agentIn.String() != want {
		t.Errorf("after the turn: got %q sent; want %q", agentIn.String(), want)
	}
	if !strings.Contains(buf.String(), "(queued until this turn ends)") {
		t.Errorf("output lacks the queued notice:\n%s", buf.String())
	}
}

func TestAgentExitsMidTurn(t *testing.T) {
	_, in, out := startFake(t, func(a *fakeAgent) {
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "partial"})
		panic(errStop)
	})
	_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &bytes.Buffer{}, In: newPerson(t).r, FirstPrompt: "x"})
	if !errors.Is(err, ErrAgentExited) {
		t.Fatalf("got %v; want ErrAgentExited", err)
	}
}

func TestParseAnswers(t *testing.T) {
	cases := []struct {
		name, file string
		asks       []string
		want       []string // "" = no answer
	}{
		{name: "object by fragment", file: `{"dataset": "EuroSAT", "Hugging Face username?": "ada"}`,
			asks: []string{"Which DATASET should I use?", "What is your Hugging Face username?", "Other?"}, want: []string{"EuroSAT", "ada", ""}},
		{name: "array in order", file: `["a", "b"]`, asks: []string{"q1", "q2", "q3"}, want: []string{"a", "b", ""}},
		{name: "lines", file: "# answers\nEuroSAT\n\nada\n", asks: []string{"q1", "q2", "q3"}, want: []string{"EuroSAT", "ada", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := ParseAnswers([]byte(c.file))
			if err != nil {
				t.Fatal(err)
			}
			for i, q := range c.asks {
				got, ok := a.Answer(q, nil)
				if ok != (c.want[i] != "") || got != c.want[i] {
					t.Errorf("Answer(%q) = %q, %v; want %q", q, got, ok, c.want[i])
				}
			}
		})
	}
	for _, bad := range []string{`{"q": 1}`, `["a", 2]`, `{"": "x"}`} {
		if _, err := ParseAnswers([]byte(bad)); err == nil {
			t.Errorf("ParseAnswers(%s): got nil error; want one", bad)
		}
	}
}

func TestMarkdown(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain text\n", "plain text\n"},
		{"# Title\nbody\n", sgrHeading + "Title" + sgrReset + "\nbody\n"},
		{"a **b** c", "a " + sgrReset + sgrBold + "b" + sgrReset + " c"},
		{"use `x`", "use " + sgrReset + sgrCode + "x" + sgrReset},
		{"- one\n* two\n", "  • one\n  • two\n"},
		{"```go\nx := 1\n```\nafter", sgrDim + "x := 1\n" + sgrReset + "after"},
		{"2 * 3 = 6", "2 * 3 = 6"},
		{"#hashtag", "#hashtag"},
		{"--", "--"},
		{"tail *", "tail *"},
		{"Results:\n| Class | Acc |\n|---|---:|\n| **Forest** | 98% |\n| Sea\\|Lake | 7% |\nDone\n",
			"Results:\n" +
				"  " + sgrBold + "Class   " + sgrReset + "  " + sgrBold + "Acc" + sgrReset + "\n" +
				"  " + sgrDim + "────────" + sgrReset + "  " + sgrDim + "───" + sgrReset + "\n" +
				"  Forest    98%\n" +
				"  Sea|Lake   7%\n" +
				"Done\n"},
		{"| a | b |\n| c |", "| a | b |\n| c |\n"},
		{"| a | b |\n|---|---|\n| long | z |\n",
			"  " + sgrBold + "a   " + sgrReset + "  " + sgrBold + "b" + sgrReset + "\n" +
				"  " + sgrDim + "────" + sgrReset + "  " + sgrDim + "─" + sgrReset + "\n" +
				"  long  z\n"},
		{"| x |\n|:-:|\n| y |", "  " + sgrBold + "x" + sgrReset + "\n  " + sgrDim + "─" + sgrReset + "\n  y\n"},
	}
	for _, c := range cases {
		m := newMarkdown(true)
		// Feed one rune at a time: streaming must not change the result.
		var got strings.Builder
		for _, r := range c.in {
			got.WriteString(m.Write(string(r)))
		}
		got.WriteString(m.Flush())
		if got.String() != c.want {
			t.Errorf("render %q: got %q; want %q", c.in, got.String(), c.want)
		}
	}
}

// FuzzRender feeds arbitrary agent output through the driver's renderer:
// it must not panic, and nothing but the renderer's own styling may reach
// the terminal, whatever the sandbox writes.
func FuzzRender(f *testing.F) {
	f.Add(`{"v":1,"type":"text_delta","text":"# hi **x** \u001b[2J"}`, true)
	f.Add(`{"v":1,"type":"tool_end","id":"a","name":"bash\u0007","ok":false,"output":"\u009b31m"}`, true)
	f.Add(`{"v":1,"type":"ask_user","id":"q","question":"\u001b]0;x\u0007?","choices":["\r1"]}`, false)
	f.Add(`{"v":1,"type":"todo","items":[{"content":"\u001bc","status":"in_progress"}]}`, true)
	f.Add("```\n`\u001b[m", true)
	f.Fuzz(func(t *testing.T, line string, tty bool) {
		var buf bytes.Buffer
		d := newDriver(Options{Out: &buf, AgentIn: &bytes.Buffer{}, TTY: tty, Tick: make(chan time.Time), Now: fakeClock(time.Second)})
		if ev, err := protocol.ParseEvent([]byte(line)); err == nil {
			d.handle(context.Background(), agentLine{ev: ev, raw: []byte(line)})
		}
		d.r.text(line)
		d.r.endText()
		checkNoForeignEscapes(t, buf.String())
	})
}

// TestSlashHelpListsEveryCommand: /help is generated from the table, so a
// new command shows up in it, and each name (and alias) is handled.
func TestSlashHelpListsEveryCommand(t *testing.T) {
	var buf bytes.Buffer
	d := newDriver(Options{Out: &buf, AgentIn: &bytes.Buffer{}, Now: fakeClock(time.Second)})
	if exit, handled := d.slash("/help"); exit || !handled {
		t.Fatalf("/help: got exit %v handled %v; want false, true", exit, handled)
	}
	for _, c := range slashCommands {
		if !strings.Contains(buf.String(), "/"+c.name) || !strings.Contains(buf.String(), c.help) {
			t.Errorf("/help lacks /%s (%s):\n%s", c.name, c.help, buf.String())
		}
	}
	for _, tc := range []struct {
		line          string
		exit, handled bool
	}{
		{"/exit", true, true},
		{"/quit", true, true},
		{"/cost", false, true},
		{"/nope", false, true},
		{"/usr/bin/python3 train.py", false, false},
	} {
		if exit, handled := d.slash(tc.line); exit != tc.exit || handled != tc.handled {
			t.Errorf("%s: got exit %v handled %v; want %v, %v", tc.line, exit, handled, tc.exit, tc.handled)
		}
	}
}
