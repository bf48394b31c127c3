package chat

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/permission"
	"github.com/mlagent/mlagent/internal/protocol"
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

// TestGatewayApprovals: the gateway's held writes arrive as approval
// events named "gateway"; the decision goes back as an approval input;
// they outlive the turn (a background job's push), a withdrawn one is
// dropped, and -p denies what the rules do not allow, saying how to
// allow it.
func TestGatewayApprovals(t *testing.T) {
	push := &protocol.Action{Kind: "hub:push", Target: "you/model", Detail: "POST /hf/api/models/you/model/commit/main"}
	held := func(id string, a *protocol.Action) protocol.Event {
		return protocol.Event{Type: protocol.EventApproval, ID: id, Name: "gateway", Action: a}
	}
	t.Run("asked", func(t *testing.T) {
		p := newPerson(t)
		got := make(chan protocol.Input, 4)
		fa, in, out := startFake(t, func(a *fakeAgent) {
			a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
			a.expect(protocol.InputUserMessage)
			a.emit(held("gw-1", push), protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
			got <- a.expect(protocol.InputApproval)
			a.emit(held("gw-2", &protocol.Action{Kind: "git:push", Target: "github.com/you/r"}),
				held("gw-3", &protocol.Action{Kind: "hub:delete", Target: "you/model"}),
				protocol.Event{Type: protocol.EventApproval, ID: "gw-2", Name: "gateway", Withdrawn: true})
			got <- a.expect(protocol.InputApproval)
			a.emit(protocol.Event{Type: protocol.EventTextDelta, Text: "bye"})
		})
		var buf bytes.Buffer
		_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, In: p.r, Out: &buf, FirstPrompt: "push it",
			Now: fakeClock(time.Second),
			OnEvent: func(ev protocol.Event) {
				switch {
				case ev.ID == "gw-1":
					p.say("y")
				case ev.ID == "gw-2" && ev.Withdrawn:
					p.say("2") // to gw-3, now shown
				case ev.Text == "bye":
					p.ctrlD()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		if a := <-got; a.ID != "gw-1" || a.Decision != protocol.DecisionAllow {
			t.Errorf("after the turn: got %+v; want gw-1 allowed", a)
		}
		if a := <-got; a.ID != "gw-3" || a.Decision != protocol.DecisionDeny || a.Text != "the user said no" {
			t.Errorf("got %+v; want gw-3 denied (gw-2 was withdrawn)", a)
		}
		fa.received()
		for _, s := range []string{"! Allow hub:push you/model? (POST /hf/api/models/you/model/commit/main)", "(the request for git:push github.com/you/r was withdrawn)"} {
			if !strings.Contains(buf.String(), s) {
				t.Errorf("output lacks %q:\n%s", s, buf.String())
			}
		}
	})
	t.Run("print mode", func(t *testing.T) {
		rule, _ := permission.ParseRule("hub:push you/*")
		got := make(chan protocol.Input, 2)
		_, in, out := startFake(t, func(a *fakeAgent) {
			a.emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
			a.expect(protocol.InputUserMessage)
			a.emit(held("gw-1", push))
			got <- a.expect(protocol.InputApproval)
			a.emit(held("gw-2", &protocol.Action{Kind: "hub:delete", Target: "you/model", Request: &protocol.HeldRequest{Method: "DELETE", Host: "huggingface.co", Path: "/api/repos/delete", Size: 42}}))
			got <- a.expect(protocol.InputApproval)
			a.emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		})
		var stdout, stderr bytes.Buffer
		_, err := Run(context.Background(), Options{AgentIn: in, AgentOut: out, Out: &stdout, Err: &stderr, Print: true, FirstPrompt: "go",
			Permissions: permission.NewPolicy(permission.Default, []permission.Rule{rule})})
		if err != nil {
			t.Fatal(err)
		}
		if a := <-got; a.Decision != protocol.DecisionAllow {
			t.Errorf("allowed by --allow: got %+v", a)
		}
		if a := <-got; a.Decision != protocol.DecisionDeny || !strings.Contains(a.Text, `--allow "hub:delete you/model"`) {
			t.Errorf("-p: got %+v; want a denial saying how to allow it", a)
		}
		// What is held, as the gateway holds it, not only the agent's words.
		if !strings.Contains(stderr.String(), "hub:delete you/model  (DELETE huggingface.co/api/repos/delete, 42 bytes) needs approval, which -p cannot ask for") {
			t.Errorf("stderr: %q", stderr.String())
		}
	})
}
