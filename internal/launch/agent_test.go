package launch

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/launch/launchtest"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/volume"
)

// echoAgent answers each user message with its text and a usage event
// costing $0.25, and exits on shutdown or the end of input.
func echoAgent(_ []string, in io.Reader, out, _ io.Writer) int {
	w := protocol.NewWriter(out)
	w.Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
	r := protocol.NewReader(in)
	for {
		inp, err := r.Next()
		if err != nil || inp.Type == protocol.InputShutdown {
			return 0
		}
		if inp.Type == protocol.InputUserMessage {
			w.Emit(protocol.Event{Type: protocol.EventTextDelta, Text: "echo: " + inp.Text})
			w.Emit(protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{CostUSD: 0.25}})
			w.Emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		}
	}
}

// next reads events until one of type typ.
func next(t *testing.T, r *protocol.EventReader, typ string) protocol.Event {
	t.Helper()
	for {
		ev, _, err := r.Next()
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if ev.Type == typ {
			return ev
		}
	}
}

func TestStartAgentKeepsTheIndex(t *testing.T) {
	ctx := context.Background()
	be := &launchtest.AgentBackend{Play: echoAgent}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	s := sessions.Session{ID: "20250101-000000-abcd", Model: "claude-x", Volumes: sandbox.DefaultMounts()}
	a, err := h.StartAgent(ctx, AgentRequest{Session: s, MaxTurns: 7, BudgetUSD: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The row exists before the first turn, with the sandbox's name.
	row, err := h.Sessions().Get(ctx, s.ID)
	if err != nil || row.Sandbox != a.Sandbox.Name() || row.Turns != 0 {
		t.Fatalf("index row before the first turn: %+v, %v; want sandbox %s, 0 turns", row, err, a.Sandbox.Name())
	}
	if a.Resumed || a.ID() != s.ID {
		t.Errorf("got Resumed %v, ID %q; want a new session %s", a.Resumed, a.ID(), s.ID)
	}

	events := protocol.NewEventReader(a.Events())
	next(t, events, protocol.EventReady)
	for _, msg := range []string{"first message", "second"} {
		if err := a.Send(protocol.Input{Type: protocol.InputUserMessage, Text: msg}); err != nil {
			t.Fatal(err)
		}
		if got := next(t, events, protocol.EventTextDelta).Text; got != "echo: "+msg {
			t.Errorf("got %q; want the echo of %q", got, msg)
		}
		next(t, events, protocol.EventTurnEnd)
	}
	a.Send(protocol.Input{Type: protocol.InputShutdown})
	if _, _, err := events.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after shutdown: got %v; want the end of the events", err)
	}
	if err := a.Wait(ctx); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if err := a.Terminate(ctx); err != nil {
		t.Errorf("Terminate: %v", err)
	}

	row, err = h.Sessions().Get(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if row.Title != "first message" || row.Turns != 2 || row.CostUSD != 0.5 || row.Model != "claude-x" {
		t.Errorf("index row: got %+v; want title from the first message, 2 turns, $0.50, model claude-x", row)
	}
	want := []string{"mlagent", "agent", "--session", s.ID, "--model", "claude-x", "--max-turns", "7"}
	if len(be.Argv()) != 1 || !slices.Equal(be.Argv()[0], want) {
		t.Errorf("agent argv: got %q; want %q", be.Argv(), want)
	}
	checkAllRevoked(t, h, "after Terminate")
}

// A resumed session reloads its transcript when there is one; a session
// killed before its first model request has none and starts afresh.
func TestStartAgentResume(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	be := &launchtest.AgentBackend{Play: echoAgent}
	h := startHost(t, cfg, be)
	defer h.Close()
	s := sessions.Session{ID: "resume-me", Model: "m", Volumes: sandbox.DefaultMounts()}
	if err := h.Sessions().Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		transcript bool
		want       bool
	}{{false, false}, {true, true}} {
		if tc.transcript {
			dir := filepath.Join(cfg.VolumesDir(), volume.Data, sandbox.SessionsSubdir)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, s.ID+".jsonl"), []byte("{}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		a, err := h.StartAgent(ctx, AgentRequest{Session: s, Resume: true})
		if err != nil {
			t.Fatal(err)
		}
		a.Input().Close()
		a.Wait(ctx)
		a.Terminate(ctx)
		argv := be.Argv()[len(be.Argv())-1]
		if a.Resumed != tc.want || slices.Contains(argv, "--resume") != tc.want {
			t.Errorf("transcript %v: got Resumed %v, argv %q; want resumed %v", tc.transcript, a.Resumed, argv, tc.want)
		}
	}
}

// An agent that fails says why, with the tail of its stderr; a stuck one
// is reported when the wait runs out.
func TestStartAgentExitErrors(t *testing.T) {
	ctx := context.Background()
	block := make(chan struct{})
	defer close(block)
	var fail atomic.Bool
	fail.Store(true)
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, _, stderr io.Writer) int {
		if fail.Load() {
			io.WriteString(stderr, "noise\n"+strings.Repeat("x\n", 10)+"mlagent agent: the real reason\n")
			return 3
		}
		<-block
		return 0
	}}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	a, err := h.StartAgent(ctx, AgentRequest{Session: sessions.Session{ID: "fails", Model: "m"}})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "code 3") || !strings.Contains(err.Error(), "the real reason") || strings.Contains(err.Error(), "noise") {
		t.Errorf("got %v; want exit code 3 and the last lines of stderr only", err)
	}
	a.Terminate(ctx)

	fail.Store(false)
	a, err = h.StartAgent(ctx, AgentRequest{Session: sessions.Session{ID: "stuck", Model: "m"}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := a.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stuck agent: got %v; want the deadline", err)
	}
	a.Terminate(ctx)
	wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Wait(wctx); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("after Terminate: got %v; want the agent ended", err)
	}
}

// TestHeldWritesAreTheFrontEnds: with HoldWrites, a write the gateway
// holds appears among the events as an approval named "gateway"; the
// front end's approval input decides it and never reaches the agent; a
// request given up is withdrawn; the agent is told to ask before
// commands with AskBeforeBash.
func TestHeldWritesAreTheFrontEnds(t *testing.T) {
	ctx := context.Background()
	agentGot := make(chan protocol.Input, 8)
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, out, _ io.Writer) int {
		protocol.NewWriter(out).Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		return launchtest.ReadInputs(protocol.NewReader(in), func(inp protocol.Input) { agentGot <- inp })
	}}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	s := sessions.Session{ID: "20250101-000000-held", Model: "m", Volumes: sandbox.DefaultMounts()}
	a, err := h.StartAgent(ctx, AgentRequest{Session: s, HoldWrites: true, AskBeforeBash: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)
	events := protocol.NewEventReader(a.Events())
	next(t, events, protocol.EventReady)

	push := protocol.Action{Kind: "hub:push", Target: "you/m"}
	decided := make(chan error, 1)
	go func() { decided <- a.Approve(ctx, push) }()
	ev := next(t, events, protocol.EventApproval)
	if ev.Name != "gateway" || ev.Action == nil || *ev.Action != push || !strings.HasPrefix(ev.ID, "gw-") {
		t.Fatalf("approval event: %+v", ev)
	}
	a.Send(protocol.Input{Type: protocol.InputApproval, ID: ev.ID, Decision: protocol.DecisionDeny, Text: "the user said: not yet"})
	if err := <-decided; err == nil || err.Error() != "the user said: not yet" {
		t.Errorf("denied: got %v", err)
	}
	go func() { decided <- a.Approve(ctx, push) }()
	ev = next(t, events, protocol.EventApproval)
	a.Send(protocol.Input{Type: protocol.InputApproval, ID: ev.ID, Decision: protocol.DecisionAlways})
	if err := <-decided; err != nil {
		t.Errorf("allowed: got %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { decided <- a.Approve(cctx, push) }()
	ev = next(t, events, protocol.EventApproval)
	cancel()
	if w := next(t, events, protocol.EventApproval); !w.Withdrawn || w.ID != ev.ID {
		t.Errorf("after the request was given up: got %+v; want %s withdrawn", w, ev.ID)
	}
	<-decided

	// The agent's own approval inputs pass through.
	a.Send(protocol.Input{Type: protocol.InputApproval, ID: "toolu_1", Decision: protocol.DecisionAllow})
	if got := <-agentGot; got.ID != "toolu_1" {
		t.Errorf("the agent got %+v; want its own approval only", got)
	}
	select {
	case got := <-agentGot:
		t.Errorf("the agent also got %+v", got)
	default:
	}
	if argv := be.Argv()[0]; !slices.Contains(argv, "--permission-mode") || argv[len(argv)-1] != "ask-all" {
		t.Errorf("agent argv %q; want --permission-mode ask-all", argv)
	}
}
