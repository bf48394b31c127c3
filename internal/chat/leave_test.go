package chat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/syncbuf"
)

// TestLeaveWithRunningJob: leaving while a background job runs asks
// first; the answer leaves it running (detach: the session host keeps
// it), stops it (shutdown), or stays; without a host the job is said to
// stop.
func TestLeaveWithRunningJob(t *testing.T) {
	job := &protocol.Job{ID: "job1", Command: "python3 train.py", Status: "running"}
	cases := []struct {
		name      string
		canDetach bool
		say       []string
		detached  bool
		inputs    []string
		out       string
	}{
		{"leave it running", true, []string{"/exit", "1"}, true, []string{"user_message", "detach"}, "Still running: job1 (python3 train.py). Leave it running?"},
		{"stop it", true, []string{"/exit", "2"}, false, []string{"user_message", "shutdown"}, "2) No: stop it and exit"},
		{"stay, then detach", true, []string{"/exit", "3", "/detach"}, true, []string{"user_message", "detach"}, "3) Stay in the chat"},
		{"no host", false, []string{"/exit"}, false, []string{"user_message", "shutdown"}, "stopping the background job(s) still running: job1 (python3 train.py)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fa, in, out := startFake(t, func(a *fakeAgent) {
				a.emit(protocol.Event{Type: protocol.EventReady, Session: "s-7", Model: "m"})
				a.expect(protocol.InputUserMessage)
				a.emit(protocol.Event{Type: protocol.EventJob, Job: job}, protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
			})
			p := newPerson(t)
			var buf bytes.Buffer
			res, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, FirstPrompt: "train",
				CanDetach: c.canDetach, Now: fakeClock(time.Second), OnTurn: func(Turn) { p.say(c.say...) }})
			if err != nil {
				t.Fatal(err)
			}
			if res.Detached != c.detached {
				t.Errorf("got Detached %v; want %v", res.Detached, c.detached)
			}
			if got := inputTypes(fa.received()); !reflect.DeepEqual(got, c.inputs) {
				t.Errorf("got inputs %v; want %v", got, c.inputs)
			}
			if !strings.Contains(buf.String(), c.out) {
				t.Errorf("output lacks %q:\n%s", c.out, buf.String())
			}
		})
	}
}

// TestAttachedElsewhere: a chat that attached to a running turn is busy;
// one that another front end took over ends detached, not failed.
func TestAttachedElsewhere(t *testing.T) {
	_, in, out := startFake(t, func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventAttached, Session: "s-8", Model: "m", Busy: true})
		a.emit(protocol.Event{Type: protocol.EventError, Kind: "detached", Message: "another front end attached"})
		panic(errStop) // the host closes the connection
	})
	p := newPerson(t)
	var buf bytes.Buffer
	res, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, CanDetach: true, Now: fakeClock(time.Second)})
	if err != nil || !res.Detached || res.Session != "s-8" {
		t.Fatalf("got %+v, %v; want detached from s-8 without an error\n%s", res, err, buf.String())
	}
	for _, s := range []string{"attached to session s-8 · a turn is running", "another chat attached to this session"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, buf.String())
		}
	}
}

// TestResumedAndCost: a resumed chat shows where the session left off;
// /cost counts the session across resumes and the budget left.
func TestResumedAndCost(t *testing.T) {
	_, in, out := startFake(t, func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s-9", Model: "m", ResumedMessages: 21, Last: &protocol.Exchange{
			User: "Train it for 15 epochs", Assistant: "Starting the training.\nEpoch 1 of 15…",
			Interrupted: []string{"bash  python3 train.py --epochs 15"}}})
		a.expect(protocol.InputUserMessage)
		a.emit(protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{CostUSD: 1.25}},
			protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	})
	p := newPerson(t)
	var buf bytes.Buffer
	_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, Header: "mlagent · resuming session s-9",
		FirstPrompt: "go on", PriorCostUSD: 2.5, BudgetUSD: 5, Now: fakeClock(time.Second),
		OnTurn: func(Turn) { p.say("/cost", "/exit") }})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"resumed 21 messages\nwhere it left off:\n  > Train it for 15 epochs\n  Starting the training.\n  Epoch 1 of 15…\n  ✗ bash python3 train.py --epochs 15  → interrupted when the last run ended",
		"1 turn(s), $1.25 in this chat · $3.75 for the session · $3.75 left of this sandbox's $5.00 budget",
	} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, buf.String())
		}
	}
}

// TestPrintJSON: --output-format json writes one result object, also
// when the turn fails.
func TestPrintJSON(t *testing.T) {
	for _, stop := range []string{"end_turn", "max_turns"} {
		_, in, out := startFake(t, func(a *fakeAgent) {
			a.emit(protocol.Event{Type: protocol.EventReady, Session: "s-j", Model: "m"})
			a.expect(protocol.InputUserMessage)
			if stop != "end_turn" {
				a.emit(protocol.Event{Type: protocol.EventError, Kind: protocol.ErrMaxTurns, Message: "too many"})
			}
			a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "Done \x1b[31m."},
				protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{CostUSD: 0.5}},
				protocol.Event{Type: protocol.EventTurnEnd, StopReason: stop})
		})
		var buf, errb bytes.Buffer
		Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &buf, Err: &errb, Print: true, FirstPrompt: "go", OutputFormat: FormatJSON})
		want := `{"type":"result","is_error":false,"result":"Done .","session_id":"s-j","model":"m","num_turns":1,"cost_usd":0.5,"stop_reason":"end_turn"}` + "\n"
		if stop != "end_turn" {
			want = `{"type":"result","is_error":true,"result":"Done .","error":"error (max_turns): too many","session_id":"s-j","model":"m","num_turns":1,"cost_usd":0.5,"stop_reason":"max_turns"}` + "\n"
		}
		if buf.String() != want {
			t.Errorf("%s: got\n%s\nwant\n%s", stop, buf.String(), want)
		}
	}
}

// TestModelClearCompact: /model, /clear and /compact reach the agent
// between turns and say what they did.
func TestModelClearCompact(t *testing.T) {
	fa, in, out := startFake(t, func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "claude-a"})
		if in := a.expect(protocol.InputSetModel); in.Text != "claude-b" {
			t.Errorf("set_model %q", in.Text)
		}
		a.emit(protocol.Event{Type: protocol.EventModel, Model: "claude-b"})
		a.expect(protocol.InputClear)
		a.emit(protocol.Event{Type: protocol.EventCompaction, Compaction: &protocol.Compaction{MessagesBefore: 12}})
		a.expect(protocol.InputCompact)
		a.emit(protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{}}, protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	})
	p := newPerson(t)
	var buf syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		res, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, Now: fakeClock(time.Second),
			OnEvent: func(ev protocol.Event) {
				switch ev.Type {
				case protocol.EventReady:
					p.say("/model", "/model claude-b")
				case protocol.EventModel:
					p.say("/clear")
				case protocol.EventCompaction:
					p.say("/compact")
				}
			},
			OnTurn: func(Turn) { p.say("/model", "/exit") }})
		if err == nil && res.Turns != 0 {
			err = fmt.Errorf("a /compact counted as a turn: %d", res.Turns)
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fa.received()
	for _, s := range []string{"model: claude-a · /model NAME switches", "model claude-b from the next request on",
		"(conversation cleared: 12 messages forgotten", "(too little conversation to summarise yet)", "model: claude-b"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, buf.String())
		}
	}
}

// TestAttachFiles: @path attaches a text file of the person's machine;
// a name that is no file stays as it is; a directory, a binary or a big
// file is not attached, saying why.
func TestAttachFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "train.py"), []byte("print('hi')\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "model.bin"), []byte{0, 1, 2}, 0o644)
	os.WriteFile(filepath.Join(dir, "big.txt"), bytes.Repeat([]byte("x"), maxAttach+1), 0o644)
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	got, notes := attach("look at @train.py, and ask @someone; also @model.bin @big.txt @data", dir)
	want := "look at @train.py, and ask @someone; also @model.bin @big.txt @data\n\n<attached-file path=\"train.py\">\nprint('hi')\n</attached-file>"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	wantNotes := []string{"attached train.py (12 B)", "@model.bin is not text", "@big.txt is 256 KiB, over", "@data is a directory"}
	if len(notes) != len(wantNotes) {
		t.Fatalf("notes %q", notes)
	}
	for i, w := range wantNotes {
		if !strings.HasPrefix(notes[i], w) {
			t.Errorf("note %d: %q; want %q…", i, notes[i], w)
		}
	}
}
