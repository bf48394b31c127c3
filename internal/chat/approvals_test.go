package chat

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/syncbuf"
)

// TestAgentApprovals: the agent's approvals (commands in ask-all mode)
// are asked, answered by number, word or instruction, and "always"
// answers the next like one without asking.
func TestAgentApprovals(t *testing.T) {
	bash := func(cmd string) *protocol.Action { return &protocol.Action{Kind: "bash", Target: cmd} }
	got := make(chan protocol.Input, 8)
	fa, in, out := startFake(t, func(a *fakeAgent) {
		a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		a.expect(protocol.InputUserMessage)
		for i, cmd := range []string{"rm -rf /workspace/old", "python3 train.py", "curl x", "python3 eval.py"} {
			id := string(rune('a' + i))
			a.emit(protocol.Event{Type: protocol.EventApproval, ID: id, Action: bash(cmd)})
			got <- a.expect(protocol.InputApproval)
		}
		a.emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
	})
	p := newPerson(t)
	var buf bytes.Buffer
	_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, FirstPrompt: "go",
		Permissions: permission.NewPolicy(permission.AskAll, nil), Now: fakeClock(time.Second),
		OnEvent: func(ev protocol.Event) {
			if ev.Type != protocol.EventApproval {
				return
			}
			switch ev.Action.Target {
			case "rm -rf /workspace/old":
				p.say("9", "n")
			case "python3 train.py":
				p.say("3")
			case "curl x":
				p.say("use the hf_search tool instead")
			}
		},
		OnTurn: func(Turn) { p.ctrlD() }})
	if err != nil {
		t.Fatal(err)
	}
	want := []protocol.Input{
		{Type: protocol.InputApproval, ID: "a", Decision: protocol.DecisionDeny, Text: "the user said no"},
		{Type: protocol.InputApproval, ID: "b", Decision: protocol.DecisionAlways},
		{Type: protocol.InputApproval, ID: "c", Decision: protocol.DecisionDeny, Text: "the user said: use the hf_search tool instead"},
		{Type: protocol.InputApproval, ID: "d", Decision: protocol.DecisionAllow},
	}
	for i, w := range want {
		g := <-got
		g.V = 0
		if g != w {
			t.Errorf("approval %d: got %+v; want %+v", i, g, w)
		}
	}
	fa.received()
	for _, s := range []string{"! Allow bash rm -rf /workspace/old?", "3) Always: bash(rm *)", "answer 1 (yes), 2 (no) or 3 (always)", "→ allowed, and bash(python3 *) from now on", "✓ allowed by your rules: bash python3 eval.py"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, buf.String())
		}
	}
	checkNoForeignEscapes(t, buf.String())
}

// TestHostApprovals: the gateway's held writes are asked in the chat and
// the decision goes back to the gateway, not the agent; rules allow
// without asking; a request given up is withdrawn; -p denies what the
// rules do not allow, saying how to allow it.
func TestHostApprovals(t *testing.T) {
	push := protocol.Action{Kind: "hub:push", Target: "you/model", Detail: "POST /hf/api/models/you/model/commit/main"}
	t.Run("asked", func(t *testing.T) {
		h := NewHostApprovals()
		p := newPerson(t)
		var buf syncbuf.Buffer
		waitFor := func(s string) {
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), s); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the chat never showed %q:\n%s", s, buf.String())
					return
				}
			}
		}
		fa, in, out := startFake(t, func(a *fakeAgent) {
			a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
			a.expect(protocol.InputUserMessage)
			a.emit(protocol.Event{Type: protocol.EventToolStart, ID: "t1", Name: "bash", Summary: "python3 push.py"})
			results := make(chan error, 1)
			go func() { results <- h.Approve(context.Background(), push) }()
			waitFor("Allow hub:push you/model?")
			p.say("y")
			if err := <-results; err != nil {
				t.Errorf("approved push: got %v; want nil", err)
			}
			go func() {
				results <- h.Approve(context.Background(), protocol.Action{Kind: "hub:delete", Target: "you/model"})
			}()
			waitFor("Allow hub:delete you/model?")
			p.say("2")
			if err := <-results; err == nil || err.Error() != "the user said no" {
				t.Errorf("denied delete: got %v; want the user said no", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			go func() { results <- h.Approve(ctx, protocol.Action{Kind: "git:push", Target: "github.com/you/r"}) }()
			waitFor("Allow git:push github.com/you/r?")
			cancel()
			if err := <-results; !errors.Is(err, context.Canceled) {
				t.Errorf("withdrawn: got %v", err)
			}
			waitFor("was withdrawn")
			a.emit(protocol.Event{Type: protocol.EventToolEnd, ID: "t1", Name: "bash", OK: protocol.Bool(true)},
				protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		})
		_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, FirstPrompt: "push it",
			HostApprovals: h, Now: fakeClock(time.Second), OnTurn: func(Turn) { p.ctrlD() }})
		if err != nil {
			t.Fatal(err)
		}
		// The answers went to the gateway: the agent got none.
		if got := inputTypes(fa.received()); strings.Join(got, ",") != "user_message,shutdown" {
			t.Errorf("the agent got inputs %v", got)
		}
		if s := "! Allow hub:push you/model? (POST /hf/api/models/you/model/commit/main)"; !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, buf.String())
		}
		if err := h.Approve(context.Background(), push); !errors.Is(err, errChatOver) {
			t.Errorf("after the chat: got %v; want errChatOver", err)
		}
	})
	t.Run("print mode", func(t *testing.T) {
		h := NewHostApprovals()
		rule, _ := permission.ParseRule("hub:push you/*")
		_, in, out := startFake(t, func(a *fakeAgent) {
			a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
			a.expect(protocol.InputUserMessage)
			if err := h.Approve(context.Background(), push); err != nil {
				t.Errorf("allowed by --allow: got %v", err)
			}
			err := h.Approve(context.Background(), protocol.Action{Kind: "hub:delete", Target: "you/model"})
			if err == nil || !strings.Contains(err.Error(), `--allow "hub:delete you/model"`) {
				t.Errorf("-p: got %v; want a denial saying how to allow it", err)
			}
			a.emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		})
		var stdout, stderr bytes.Buffer
		_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &stdout, Err: &stderr, Print: true, FirstPrompt: "go",
			HostApprovals: h, Permissions: permission.NewPolicy(permission.Default, []permission.Rule{rule})})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr.String(), "hub:delete you/model needs approval, which -p cannot ask for") {
			t.Errorf("stderr: %q", stderr.String())
		}
	})
}
