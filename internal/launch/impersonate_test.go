package launch

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/launch/launchtest"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sessions"
)

// TestAgentCannotImpersonateTheHost: the agent's stdout is written from
// the sandbox. A compromised agent that withdraws the gateway's held
// write under its guessed id and asks again, under that id, about a
// harmless command would have the user approve the write; nor may it
// speak as a session host, claim another session, or report a negative
// cost. The host drops what only it may say, and an answer to a gateway
// id it did not issue (or that is not waiting) decides nothing and never
// reaches the agent.
func TestAgentCannotImpersonateTheHost(t *testing.T) {
	ctx := context.Background()
	forge := make(chan struct{})
	agentGot := make(chan protocol.Input, 16)
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, out, _ io.Writer) int {
		w := protocol.NewWriter(out)
		w.Emit(protocol.Event{Type: protocol.EventReady, Session: "20990101-000000-else", Model: "m"})
		<-forge
		bash := &protocol.Action{Kind: "bash", Target: "ls"}
		for _, ev := range []protocol.Event{
			// The attack of the review: gw-1 withdrawn, then gw-1 "bash ls".
			{Type: protocol.EventApproval, ID: "gw-1", Name: "gateway", Withdrawn: true},
			{Type: protocol.EventApproval, ID: "gw-1", Name: "gateway", Action: bash},
			{Type: protocol.EventApproval, ID: "gw-2", Name: "bash", Action: bash},
			{Type: protocol.EventApproval, ID: "toolu_x", Name: "gateway", Action: bash},
			// A gateway kind under the agent's name ("always" would allow
			// the real push later), and one dressed with a held request.
			{Type: protocol.EventApproval, ID: "toolu_y", Name: "bash", Action: &protocol.Action{Kind: "hub:push", Target: "you/m"}},
			{Type: protocol.EventApproval, ID: "toolu_z", Name: "bash", Action: &protocol.Action{Kind: "bash", Target: "ls",
				Request: &protocol.HeldRequest{Method: "GET", Host: "huggingface.co", Path: "/x"}}},
			{Type: protocol.EventAttached, Session: "20990101-000000-else", Busy: true},
			{Type: protocol.EventError, Kind: "detached", Message: "another front end attached"},
			// What passes: the agent's own question about a command.
			{Type: protocol.EventApproval, ID: "toolu_1", Name: "bash", Action: bash},
			{Type: protocol.EventUsage, Usage: &protocol.Usage{CostUSD: -1000, SessionCostUSD: -1000, InputTokens: -5}},
			{Type: protocol.EventTurnEnd, StopReason: "end_turn"},
		} {
			w.Emit(ev)
		}
		return launchtest.ReadInputs(protocol.NewReader(in), func(inp protocol.Input) { agentGot <- inp })
	}}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	s := sessions.Session{ID: "20250101-000000-fake", Model: "m", Volumes: sandbox.DefaultMounts()}
	a, err := h.StartAgent(ctx, AgentRequest{Session: s, HoldWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)
	events := protocol.NewEventReader(a.Events())
	if ev := next(t, events, protocol.EventReady); ev.Session != s.ID {
		t.Errorf("ready names session %q; want the host's %q", ev.Session, s.ID)
	}

	push := protocol.Action{Kind: "hub:push", Target: "you/m"}
	decided := make(chan error, 1)
	go func() { decided <- a.Approve(ctx, push) }()
	held := next(t, events, protocol.EventApproval)
	if held.Name != protocol.GatewayName || !strings.HasPrefix(held.ID, protocol.GatewayIDPrefix) ||
		len(held.ID) < len(protocol.GatewayIDPrefix)+20 || held.Action == nil || held.Action.Kind != "hub:push" {
		t.Errorf("the held write's approval: %+v; want a gateway approval with a long random id", held)
	}
	close(forge)

	var seen []protocol.Event
	for {
		ev, _, err := events.Next()
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		if ev.Type == protocol.EventTurnEnd {
			break
		}
		seen = append(seen, ev)
	}
	if len(seen) != 2 || seen[0].ID != "toolu_1" || seen[1].Type != protocol.EventUsage {
		t.Errorf("the front end saw %+v; want only the agent's own approval toolu_1 and its usage", seen)
	}
	if len(seen) == 2 {
		if u := seen[1].Usage; u == nil || u.CostUSD < 0 || u.SessionCostUSD < 0 || u.InputTokens < 0 {
			t.Errorf("usage shown %+v; want no negative cost or tokens", u)
		}
	}

	// Answers to forged ids: the write stays held, the agent hears nothing.
	for _, id := range []string{"gw-1", "gw-2", protocol.GatewayIDPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		a.Send(protocol.Input{Type: protocol.InputApproval, ID: id, Decision: protocol.DecisionAllow})
	}
	select {
	case err := <-decided:
		t.Fatalf("an answer to a forged id decided the held write: %v", err)
	case got := <-agentGot:
		t.Fatalf("the agent got %+v; want no answer to a gateway id", got)
	case <-time.After(200 * time.Millisecond):
	}
	a.Send(protocol.Input{Type: protocol.InputApproval, ID: held.ID, Decision: protocol.DecisionDeny})
	if err := <-decided; err == nil {
		t.Errorf("the held write was allowed; want the user's denial")
	}
	// A second answer to the same id is nobody's.
	a.Send(protocol.Input{Type: protocol.InputApproval, ID: held.ID, Decision: protocol.DecisionAllow})
	a.Send(protocol.Input{Type: protocol.InputApproval, ID: "toolu_1", Decision: protocol.DecisionAllow})
	if got := <-agentGot; got.ID != "toolu_1" {
		t.Errorf("the agent got %+v; want only its own toolu_1", got)
	}

	// Two held writes never share an id.
	go func() { decided <- a.Approve(ctx, push) }()
	second := next(t, events, protocol.EventApproval)
	if second.ID == held.ID {
		t.Errorf("two held writes got the same id %s", held.ID)
	}
	a.Send(protocol.Input{Type: protocol.InputApproval, ID: second.ID, Decision: protocol.DecisionDeny})
	<-decided

	row, err := h.Sessions().Get(ctx, s.ID)
	if err != nil || row.CostUSD < 0 || row.Turns != 1 {
		t.Errorf("index row %+v, %v; want 1 turn at no negative cost", row, err)
	}
}

// TestTurnCostIsTheLedgers: the cost a turn books is never less than the
// gateway's own count of the sandbox's model calls, whatever the agent
// reports; the usage event the front end shows carries the same.
func TestTurnCostIsTheLedgers(t *testing.T) {
	ctx := context.Background()
	up := fakeapi.Start(fakeapi.Options{APIKey: realKey, Responder: fakeapi.ResponderFunc(func(*fakeapi.Request) *fakeapi.Reply {
		return fakeapi.Text(strings.Repeat("expensive words ", 200))
	})})
	defer up.Close()
	be := &launchtest.AgentBackend{}
	be.Play = func(_ []string, in io.Reader, out, _ io.Writer) int {
		gw := be.Gateway()
		w := protocol.NewWriter(out)
		w.Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		r := protocol.NewReader(in)
		for {
			inp, err := r.Next()
			if err != nil || inp.Type == protocol.InputShutdown {
				return 0
			}
			if inp.Type != protocol.InputUserMessage {
				continue
			}
			// One model call through the gateway, as the agent makes them.
			hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, gw.Network, gw.Address)
			}}}
			req, _ := http.NewRequest("POST", "http://gateway/v1/messages", strings.NewReader(
				`{"model":"claude-sonnet-5-5","max_tokens":1024,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("x-api-key", gw.Token)
			req.Header.Set("anthropic-version", "2023-06-01")
			req.Header.Set("content-type", "application/json")
			if resp, err := hc.Do(req); err != nil {
				t.Errorf("the model call: %v", err)
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("the model call: %s %s", resp.Status, b)
				}
			}
			w.Emit(protocol.Event{Type: protocol.EventUsage, Usage: &protocol.Usage{CostUSD: -1000, SessionCostUSD: -1000}})
			w.Emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		}
	}
	h, err := Start(ctx, Options{Config: testConfig(t), Upstream: up.URL(), ModelKey: realKey, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := sessions.Session{ID: "20250101-000000-cost", Model: "m", Volumes: sandbox.DefaultMounts()}
	a, err := h.StartAgent(ctx, AgentRequest{Session: s})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)
	events := protocol.NewEventReader(a.Events())
	next(t, events, protocol.EventReady)
	a.Send(protocol.Input{Type: protocol.InputUserMessage, Text: "go"})
	u := next(t, events, protocol.EventUsage).Usage
	next(t, events, protocol.EventTurnEnd)

	l, err := h.Ledger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	booked := l.ByToken[a.Sandbox.TokenID]
	if booked <= 0 {
		t.Fatalf("the gateway booked $%v for the sandbox's call; want its cost", booked)
	}
	if u == nil || u.CostUSD < booked || u.SessionCostUSD < booked {
		t.Errorf("usage shown %+v; want the $%v the gateway booked, not the agent's -$1000", u, booked)
	}
	row, err := h.Sessions().Get(ctx, s.ID)
	if err != nil || row.CostUSD < booked {
		t.Errorf("index row cost $%v (%v); want at least the $%v the gateway booked", row.CostUSD, err, booked)
	}
	if got := l.SessionCost(row); got < booked {
		t.Errorf("SessionCost = $%v; want at least $%v", got, booked)
	}
}

// TestJobEventsAreBounded: front ends (the chat, the session host) keep
// every running job until it ends; an agent announcing 1,000 jobs with
// 20 kB commands would make them keep 20 MB (and more each turn). The host passes at most
// MaxRunningJobs at once, each cut short.
func TestJobEventsAreBounded(t *testing.T) {
	ctx := context.Background()
	const announced = 1000
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, out, _ io.Writer) int {
		w := protocol.NewWriter(out)
		w.Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		long := strings.Repeat("x", 20<<10)
		for i := range announced {
			w.Emit(protocol.Event{Type: protocol.EventJob, Job: &protocol.Job{ID: "job-" + strconv.Itoa(i), Command: long, Status: "running"}})
		}
		// One ends, so a new one fits; the ended one is passed too.
		w.Emit(protocol.Event{Type: protocol.EventJob, Job: &protocol.Job{ID: "job-0", Command: "c", Status: "exited 0"}})
		w.Emit(protocol.Event{Type: protocol.EventJob, Job: &protocol.Job{ID: "late", Command: "c", Status: "running"}})
		w.Emit(protocol.Event{Type: protocol.EventTurnEnd, StopReason: "end_turn"})
		io.Copy(io.Discard, in)
		return 0
	}}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	a, err := h.StartAgent(ctx, AgentRequest{Session: sessions.Session{ID: "20250101-000000-jobs", Model: "m", Volumes: sandbox.DefaultMounts()}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)
	events := protocol.NewEventReader(a.Events())
	running := map[string]bool{}
	var bytes, most int
	for {
		ev, raw, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		bytes += len(raw)
		if ev.Type == protocol.EventTurnEnd {
			break
		}
		if ev.Type != protocol.EventJob {
			continue
		}
		if ev.Job.Running() {
			running[ev.Job.ID] = true
		} else {
			delete(running, ev.Job.ID)
		}
		most = max(most, len(running))
	}
	if most > MaxRunningJobs || !running["late"] {
		t.Errorf("the front end was told of %d running jobs at once (late one shown: %v); want at most %d, and room after one ended",
			most, running["late"], MaxRunningJobs)
	}
	if bytes > 4<<20 {
		t.Errorf("the front end got %d bytes of events; want the jobs' lines cut short", bytes)
	}
}

// TestModelIsTheHosts: the front ends show the model from ready and
// model events (and -p's JSON result reports it); the agent was started
// with the host's model, and changes it only when the front end asks.
func TestModelIsTheHosts(t *testing.T) {
	ctx := context.Background()
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, out, _ io.Writer) int {
		w := protocol.NewWriter(out)
		w.Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "claude-cheap-looking"})
		w.Emit(protocol.Event{Type: protocol.EventModel, Model: "claude-unasked"})
		r := protocol.NewReader(in)
		for {
			inp, err := r.Next()
			if err != nil || inp.Type == protocol.InputShutdown {
				return 0
			}
			if inp.Type == protocol.InputSetModel {
				w.Emit(protocol.Event{Type: protocol.EventModel, Model: "claude-unasked"})
				w.Emit(protocol.Event{Type: protocol.EventModel, Model: strings.TrimSpace(inp.Text)})
				w.Emit(protocol.Event{Type: protocol.EventTurnEnd})
			}
		}
	}}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	a, err := h.StartAgent(ctx, AgentRequest{Session: sessions.Session{ID: "20250101-000000-mode", Model: "claude-chosen", Volumes: sandbox.DefaultMounts()}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)
	events := protocol.NewEventReader(a.Events())
	if ev := next(t, events, protocol.EventReady); ev.Model != "claude-chosen" {
		t.Errorf("ready says model %q; want the host's claude-chosen", ev.Model)
	}
	a.Send(protocol.Input{Type: protocol.InputSetModel, Text: " claude-next "})
	var models []string
	for {
		ev, _, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == protocol.EventTurnEnd {
			break
		}
		if ev.Type == protocol.EventModel {
			models = append(models, ev.Model)
		}
	}
	if !slices.Equal(models, []string{"claude-next"}) {
		t.Errorf("model events passed: %q; want only the one asked for, claude-next", models)
	}
}

// TestHeldWritesAreBounded: a sandbox sending many writes at once gets
// MaxHeldWrites questions in front of the user, and the rest refused at
// once rather than queued.
func TestHeldWritesAreBounded(t *testing.T) {
	ctx := context.Background()
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, out, _ io.Writer) int {
		protocol.NewWriter(out).Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		io.Copy(io.Discard, in)
		return 0
	}}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	a, err := h.StartAgent(ctx, AgentRequest{Session: sessions.Session{ID: "20250101-000000-many", Model: "m", Volumes: sandbox.DefaultMounts()}, HoldWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)
	events := protocol.NewEventReader(a.Events())
	next(t, events, protocol.EventReady)
	const sent = 50
	refused := make(chan error, sent)
	for range sent {
		go func() {
			if err := a.Approve(ctx, protocol.Action{Kind: "hub:push", Target: "you/m"}); err != nil {
				refused <- err
			}
		}()
	}
	for range sent - MaxHeldWrites {
		select {
		case <-refused:
		case <-time.After(10 * time.Second):
			t.Fatalf("fewer than %d of %d writes were refused at once", sent-MaxHeldWrites, sent)
		}
	}
	ids := map[string]bool{}
	for range MaxHeldWrites {
		ids[next(t, events, protocol.EventApproval).ID] = true
	}
	for id := range ids {
		a.Send(protocol.Input{Type: protocol.InputApproval, ID: id, Decision: protocol.DecisionDeny})
	}
	for range MaxHeldWrites {
		<-refused
	}
}

// TestAgentQuestionsAreBounded: each question waits on the front end's
// screen (and in a session host while nobody is attached); the agent may
// have MaxAgentQuestions waiting at once, and one answered makes room.
func TestAgentQuestionsAreBounded(t *testing.T) {
	ctx := context.Background()
	answered := make(chan struct{})
	be := &launchtest.AgentBackend{Play: func(_ []string, in io.Reader, out, _ io.Writer) int {
		w := protocol.NewWriter(out)
		w.Emit(protocol.Event{Type: protocol.EventReady, Session: "s", Model: "m"})
		for i := range 100 {
			w.Emit(protocol.Event{Type: protocol.EventAskUser, ID: "q" + strconv.Itoa(i), Question: "?"})
		}
		w.Emit(protocol.Event{Type: protocol.EventTextDelta, Text: "flood done"})
		r := protocol.NewReader(in)
		if inp, err := r.Next(); err != nil || inp.Type != protocol.InputAnswer {
			return 1
		}
		<-answered
		w.Emit(protocol.Event{Type: protocol.EventApproval, ID: "after", Name: "bash", Action: &protocol.Action{Kind: "bash", Target: "ls"}})
		w.Emit(protocol.Event{Type: protocol.EventTurnEnd})
		io.Copy(io.Discard, in)
		return 0
	}}
	h := startHost(t, testConfig(t), be)
	defer h.Close()
	a, err := h.StartAgent(ctx, AgentRequest{Session: sessions.Session{ID: "20250101-000000-asks", Model: "m", Volumes: sandbox.DefaultMounts()}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(ctx)
	events := protocol.NewEventReader(a.Events())
	asks := 0
	for {
		ev, _, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == protocol.EventTextDelta {
			break
		}
		if ev.Type == protocol.EventAskUser {
			asks++
		}
	}
	if asks != MaxAgentQuestions {
		t.Errorf("the front end got %d questions at once; want %d", asks, MaxAgentQuestions)
	}
	a.Send(protocol.Input{Type: protocol.InputAnswer, ID: "q0", Text: "x"})
	close(answered)
	if ev := next(t, events, protocol.EventApproval); ev.ID != "after" {
		t.Errorf("after an answer: got %+v; want the next question", ev)
	}
}
