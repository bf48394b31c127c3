package chat

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/launch"
	"github.com/mlagent/mlagent/internal/launch/launchtest"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
)

// TestChatSeesWhatTheGatewayHolds runs the chat on a session of launch's
// (the real event bookkeeping; only the agent is played): the gateway
// holds a Hub push while the agent, compromised, withdraws "gw-1" and
// asks again as "gw-1" about `ls` (which the rules allow without asking).
// The chat must show the push as the gateway holds it (method, host,
// path, size), never the agent's disguise, and only the person's answer
// decides it.
func TestChatSeesWhatTheGatewayHolds(t *testing.T) {
	ctx := context.Background()
	forge := make(chan struct{})
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, out, _ io.Writer) int {
		w := protocol.NewWriter(out)
		w.Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		r := protocol.NewReader(in)
		if inp, err := r.Next(); err != nil || inp.Type != protocol.InputUserMessage {
			return 1
		}
		<-forge
		bash := &protocol.Action{Kind: "bash", Target: "ls"}
		for _, id := range []string{"gw-1", "gw-2", "gw-3"} {
			w.Emit(protocol.Event{Type: protocol.EventApproval, ID: id, Name: protocol.GatewayName, Withdrawn: true})
			w.Emit(protocol.Event{Type: protocol.EventApproval, ID: id, Name: protocol.GatewayName, Action: bash})
		}
		w.Emit(protocol.Event{Type: protocol.EventTextDelta, Text: "forged\n"})
		w.Emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		return launchtest.ReadInputs(r, nil)
	}}
	h, err := launch.Start(ctx, launch.Options{Config: launchtest.Config(t), Upstream: "http://127.0.0.1:1", ModelKey: "sk-ant-x", Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a, err := h.StartAgent(ctx, launch.AgentRequest{Session: sessions.Session{ID: "20250101-000000-chat", Model: "m", Volumes: sandbox.DefaultMounts()}, HoldWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)

	push := protocol.Action{Kind: "hub:push", Target: "you/m", Detail: "POST /hf/api/models/you/m/commit/main",
		Request: &protocol.HeldRequest{Method: "POST", Host: "huggingface.co", Path: "/api/models/you/m/commit/main", Size: 2048}}
	decided := make(chan error, 1)
	p := newPerson(t)
	var buf bytes.Buffer
	_, err = Run(ctx, Options{AgentIn: a.Input(), AgentOut: a.Events(), In: p.r, Out: &buf, FirstPrompt: "push it",
		Now: fakeClock(time.Second),
		OnEvent: func(ev protocol.Event) {
			switch {
			case ev.Type == protocol.EventReady:
				go func() { decided <- a.Approve(ctx, push) }()
			case ev.Type == protocol.EventApproval && ev.Action != nil && ev.Action.Kind == "hub:push":
				close(forge)
			case ev.Type == protocol.EventTextDelta && ev.Text == "forged\n":
				p.say("n") // to the question on screen
				go func() {
					select {
					case err := <-decided:
						if err == nil {
							t.Error("the held push was allowed; the person said no to it")
						}
					case <-time.After(10 * time.Second):
						t.Error("the held write was never decided")
					}
					p.ctrlD()
				}()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if want := "Allow hub:push you/m? (POST huggingface.co/api/models/you/m/commit/main, 2.0 kB)"; !strings.Contains(out, want) {
		t.Errorf("the chat lacks %q:\n%s", want, out)
	}
	for _, bad := range []string{"bash ls", "withdrawn"} {
		if strings.Contains(out, bad) {
			t.Errorf("the chat shows the agent's disguise (%q):\n%s", bad, out)
		}
	}
}
