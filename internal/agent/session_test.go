package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/tools"
)

func TestCompaction(t *testing.T) {
	big := strings.Repeat("0123456789", 300) // ~750 tokens per result in the fake's count
	var summaryReq *fakeapi.Request
	var afterCompaction *fakeapi.Request
	n := 0
	h := newHarness(t, fakeapi.ResponderFunc(func(r *fakeapi.Request) *fakeapi.Reply {
		if strings.Contains(r.LastUserText(), "about to be compacted") {
			if summaryReq == nil {
				summaryReq = r
			}
			return fakeapi.Text("SUMMARY: user wants big outputs; ran echo 5 times.")
		}
		if summaryReq != nil && afterCompaction == nil {
			afterCompaction = r
		}
		n++
		if n <= 6 {
			return fakeapi.ToolCalls("", fakeapi.ToolUse("b"+string(rune('0'+n)), "bash", map[string]any{"command": "printf " + big}))
		}
		return fakeapi.Text("done")
	}), func(c *Config) {
		c.ContextWindow = 4000
		c.CompactAt = 0.5
		c.KeepMessages = 4
	})
	if stop := h.agent.Turn(context.Background(), "fill the context"); stop != StopEndTurn {
		t.Fatalf("stop = %q", stop)
	}
	cs := h.rec.ofType(protocol.EventCompaction)
	if len(cs) == 0 || summaryReq == nil || afterCompaction == nil {
		t.Fatalf("compaction events %+v; summary request %v", cs, summaryReq != nil)
	}
	c := cs[0].Compaction
	if c.MessagesAfter >= c.MessagesBefore || c.TokensBefore <= 2000 || c.SummaryChars == 0 {
		t.Errorf("compaction = %+v", c)
	}
	first := afterCompaction.Messages[0]
	if first.Role != "user" || !strings.Contains(first.Content[0].Text, "SUMMARY: user wants big outputs") {
		t.Errorf("first message after compaction = %+v; want the summary", first)
	}
	reqs := h.srv.Requests()
	for i, r := range reqs {
		if strings.Contains(r.LastUserText(), "about to be compacted") {
			if i == 0 || i == len(reqs)-1 {
				t.Fatalf("summary request at %d of %d", i, len(reqs))
			}
			// The next request sends exactly the compacted history, shorter
			// than the one that was summarised.
			if got := len(reqs[i+1].Messages); got != c.MessagesAfter || got >= c.MessagesBefore {
				t.Errorf("after compaction %d messages; want %d (< %d)", got, c.MessagesAfter, c.MessagesBefore)
			}
			break
		}
	}
	// The summary request reuses the cached prefix: same tools and system.
	if string(mustJSON(summaryReq.Tools)) != string(mustJSON(h.srv.Requests()[0].Tools)) {
		t.Error("summary request changed the tools (cache miss)")
	}
	// The transcript replays to the compacted history.
	hist, err := LoadTranscript(h.tpath)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(hist), mustJSON(h.agent.History()); string(got) != string(want) {
		t.Errorf("transcript replay differs from the live history:\n%s\n%s", got, want)
	}
}

func TestResumeCutOffTurn(t *testing.T) {
	dir := t.TempDir()
	tr, err := OpenTranscript(dir + "/s.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	// The previous process died while running a tool: the assistant's
	// tool_use has no result. A torn last line is left too.
	for _, m := range []Message{
		{Role: "user", Content: []Block{TextBlock("train it")}},
		{Role: "assistant", Content: []Block{TextBlock("Starting."), {Type: "tool_use", ID: "t9", Name: "bash", Input: json.RawMessage(`{"command":"python train.py"}`)}}},
	} {
		if err := tr.AppendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	tr.Close()
	f, _ := os.OpenFile(dir+"/s.jsonl", os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"kind":"message","message":{"role":"user","con`)
	f.Close()

	hist, err := LoadTranscript(dir + "/s.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	fix := Repair(hist)
	if len(hist) != 2 || len(fix) != 1 || !fix[0].Content[0].IsError || fix[0].Content[0].ToolUseID != "t9" {
		t.Fatalf("history %d messages, repair %+v", len(hist), fix)
	}
	var got *fakeapi.Request
	h := newHarness(t, steps(func(r *fakeapi.Request) *fakeapi.Reply {
		got = r
		return fakeapi.Text("resumed")
	}), func(c *Config) { c.History = append(hist, fix...) })
	if stop := h.agent.Turn(context.Background(), "go on"); stop != StopEndTurn {
		t.Fatalf("stop = %q (errors %+v)", stop, h.rec.ofType(protocol.EventError))
	}
	if len(got.Messages) != 3 {
		t.Fatalf("messages = %d; want 3 (user, assistant, user with result + text)", len(got.Messages))
	}
	last := got.Messages[2]
	if last.Content[0].Type != "tool_result" || !last.Content[0].IsError || !strings.Contains(got.ToolResultText(last.Content[0]), "interrupted") || got.LastUserText() != "go on" {
		t.Errorf("last message = %+v", last)
	}
	// A corrupt line in the middle is an error, not silently dropped data.
	os.WriteFile(dir+"/bad.jsonl", []byte("{bad\n{\"kind\":\"message\",\"message\":{\"role\":\"user\",\"content\":[]}}\n"), 0o600)
	if _, err := LoadTranscript(dir + "/bad.jsonl"); err == nil {
		t.Error("corrupt transcript loaded without error")
	}
	if _, err := TranscriptPath(dir, "../escape"); err == nil {
		t.Error("session id with .. accepted")
	}
}

// sessionHarness runs Serve over pipes.
type sessionHarness struct {
	in     *io.PipeWriter
	events chan protocol.Event
	done   chan error
}

func startSession(t *testing.T, responder fakeapi.Responder, mods ...func(*Session, *Config)) (*sessionHarness, *harness) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	sess := &Session{ID: "s1", Model: "m", Out: protocol.NewWriter(outW)}
	h := newHarness(t, responder, func(c *Config) {
		c.Emit = sess.Emit
		c.Tools.Add(&tools.AskUserTool{Asker: sess})
		for _, m := range mods {
			m(sess, c)
		}
	})
	sess.Agent = h.agent
	sh := &sessionHarness{in: inW, events: make(chan protocol.Event, 100), done: make(chan error, 1)}
	go func() {
		s := bufio.NewScanner(outR)
		for s.Scan() {
			var ev protocol.Event
			if err := json.Unmarshal(s.Bytes(), &ev); err != nil {
				t.Errorf("bad event line %q", s.Text())
				continue
			}
			sh.events <- ev
		}
		close(sh.events)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	go func() {
		sh.done <- sess.Serve(ctx, inR)
		outW.Close()
	}()
	return sh, h
}

func (s *sessionHarness) send(t *testing.T, in protocol.Input) {
	t.Helper()
	b, _ := json.Marshal(in)
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

// until reads events until one of type typ arrives and returns it.
func (s *sessionHarness) until(t *testing.T, typ string) protocol.Event {
	t.Helper()
	for ev := range s.events {
		if ev.Type == typ {
			return ev
		}
	}
	t.Fatalf("event stream ended before %s", typ)
	return protocol.Event{}
}

func TestSessionAskUser(t *testing.T) {
	var answer []string
	sh, _ := startSession(t, steps(
		reply(fakeapi.ToolCalls("", fakeapi.ToolUse("q1", "ask_user", map[string]any{"question": "Which dataset?", "choices": []string{"imdb", "sst2"}}))),
		func(r *fakeapi.Request) *fakeapi.Reply {
			answer = resultsOf(r)
			return fakeapi.Text("Using imdb.")
		},
	))
	if ev := sh.until(t, protocol.EventReady); ev.Session != "s1" || ev.V != protocol.Version {
		t.Errorf("ready = %+v", ev)
	}
	sh.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "train something"})
	ask := sh.until(t, protocol.EventAskUser)
	if ask.ID != "q1" || ask.Question != "Which dataset?" || len(ask.Choices) != 2 {
		t.Errorf("ask_user = %+v", ask)
	}
	sh.send(t, protocol.Input{Type: protocol.InputAnswer, ID: "nope", Text: "x"})
	if ev := sh.until(t, protocol.EventError); ev.Kind != protocol.ErrProtocol {
		t.Errorf("answer to unknown id: %+v", ev)
	}
	sh.send(t, protocol.Input{Type: protocol.InputAnswer, ID: "q1", Text: "imdb"})
	if ev := sh.until(t, protocol.EventTurnEnd); ev.StopReason != StopEndTurn {
		t.Errorf("turn_end = %+v", ev)
	}
	if strings.Join(answer, "") != "q1:ok:The user answered: imdb" {
		t.Errorf("tool result = %q", answer)
	}
	sh.send(t, protocol.Input{Type: protocol.InputShutdown})
	if err := <-sh.done; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// TestSessionApproval: with commands asking first (ask-all), a command
// runs only once approved; a denied one does not run and the model reads
// why.
func TestSessionApproval(t *testing.T) {
	var results []string
	marker := filepath.Join(t.TempDir(), "ran")
	sh, _ := startSession(t, steps(
		reply(fakeapi.ToolCalls("", fakeapi.ToolUse("b1", "bash", map[string]any{"command": "touch " + marker, "description": "make a file"}))),
		func(r *fakeapi.Request) *fakeapi.Reply {
			results = append(results, resultsOf(r)...)
			return fakeapi.ToolCalls("", fakeapi.ToolUse("b2", "bash", map[string]any{"command": "echo approved"}))
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			results = append(results, resultsOf(r)...)
			return fakeapi.Text("done")
		},
	), func(sess *Session, c *Config) {
		for _, tl := range c.Tools.Tools() {
			if b, ok := tl.(*tools.BashTool); ok {
				b.Approver = sess
			}
		}
	})
	sh.until(t, protocol.EventReady)
	sh.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "go"})
	ap := sh.until(t, protocol.EventApproval)
	if ap.ID != "b1" || ap.Action == nil || ap.Action.Kind != "bash" || ap.Action.Target != "touch "+marker || ap.Action.Detail != "make a file" {
		t.Fatalf("approval = %+v", ap)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the command ran before it was approved")
	}
	sh.send(t, protocol.Input{Type: protocol.InputApproval, ID: "nope", Decision: protocol.DecisionAllow})
	if ev := sh.until(t, protocol.EventError); ev.Kind != protocol.ErrProtocol {
		t.Errorf("approval of an unknown id: %+v", ev)
	}
	sh.send(t, protocol.Input{Type: protocol.InputApproval, ID: "b1", Decision: protocol.DecisionDeny, Text: "the user said: not in the workspace"})
	if ap := sh.until(t, protocol.EventApproval); ap.ID != "b2" {
		t.Fatalf("second approval = %+v", ap)
	}
	sh.send(t, protocol.Input{Type: protocol.InputApproval, ID: "b2", Decision: protocol.DecisionAlways})
	sh.until(t, protocol.EventTurnEnd)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a denied command ran")
	}
	want := []string{"b1:error:The user did not approve this command, so it did not run: the user said: not in the workspace. Do not retry it as it is; ask the user or do something else.", "b2:ok:approved\n"}
	if strings.Join(results, "|") != strings.Join(want, "|") {
		t.Errorf("results = %q; want %q", results, want)
	}
	sh.send(t, protocol.Input{Type: protocol.InputShutdown})
	<-sh.done
}

func TestSessionInterrupt(t *testing.T) {
	var afterInterrupt *fakeapi.Request
	sh, _ := startSession(t, steps(
		reply(fakeapi.ToolCalls("", fakeapi.ToolUse("s1", "bash", map[string]any{"command": "echo started; sleep 300"}))),
		func(r *fakeapi.Request) *fakeapi.Reply {
			afterInterrupt = r
			return fakeapi.Text("ok, stopped")
		},
	))
	sh.until(t, protocol.EventReady)
	sh.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "sleep"})
	sh.until(t, protocol.EventToolStart)
	sh.send(t, protocol.Input{Type: protocol.InputInterrupt})
	end := sh.until(t, protocol.EventToolEnd)
	if *end.OK || !strings.Contains(end.Output, "interrupted") {
		t.Errorf("tool_end = %+v; want interrupted error", end)
	}
	if ev := sh.until(t, protocol.EventTurnEnd); ev.StopReason != StopInterrupted {
		t.Errorf("turn_end = %+v; want interrupted", ev)
	}
	sh.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "never mind"})
	sh.until(t, protocol.EventTurnEnd)
	res := resultsOf(afterInterrupt)
	if len(res) != 1 || !strings.HasPrefix(res[0], "s1:error:") || afterInterrupt.LastUserText() != "never mind" {
		t.Errorf("request after interrupt: results %q, text %q", res, afterInterrupt.LastUserText())
	}
	// Input closing ends the session once idle.
	sh.in.Close()
	if err := <-sh.done; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestSessionEOFAnswersQuestions(t *testing.T) {
	var res []string
	sh, _ := startSession(t, steps(
		reply(fakeapi.ToolCalls("", fakeapi.ToolUse("q1", "ask_user", map[string]any{"question": "Which model?"}))),
		func(r *fakeapi.Request) *fakeapi.Reply {
			res = resultsOf(r)
			return fakeapi.Text("assuming resnet")
		},
	))
	sh.until(t, protocol.EventReady)
	sh.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "go"})
	sh.until(t, protocol.EventAskUser)
	sh.in.Close()
	sh.until(t, protocol.EventTurnEnd)
	if err := <-sh.done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if len(res) != 1 || !strings.HasPrefix(res[0], "q1:error:no answer") {
		t.Errorf("results = %q; want an error result", res)
	}
}

func TestPromptTooLongCompacts(t *testing.T) {
	n := 0
	refused := false
	h := newHarness(t, fakeapi.ResponderFunc(func(r *fakeapi.Request) *fakeapi.Reply {
		if strings.Contains(r.LastUserText(), "about to be compacted") {
			return fakeapi.Text("SUMMARY")
		}
		n++
		switch {
		case n <= 4:
			return fakeapi.ToolCalls("", fakeapi.ToolUse("x"+string(rune('0'+n)), "bash", map[string]any{"command": "echo hi"}))
		case !refused:
			refused = true
			return &fakeapi.Reply{Status: 400, ErrorType: "invalid_request_error", ErrorMessage: "prompt is too long: 210000 tokens > 200000 maximum"}
		}
		if !strings.Contains(r.Messages[0].Content[0].Text, "SUMMARY") {
			t.Errorf("request after the refusal was not compacted: first message %+v", r.Messages[0])
		}
		return fakeapi.Text("done")
	}), func(c *Config) { c.KeepMessages = 2 })
	if stop := h.agent.Turn(context.Background(), "go"); stop != StopEndTurn {
		t.Fatalf("stop = %q; errors %+v", stop, h.rec.ofType(protocol.EventError))
	}
	if len(h.rec.ofType(protocol.EventCompaction)) != 1 || len(h.rec.ofType(protocol.EventError)) != 0 {
		t.Errorf("compactions %d, errors %+v; want 1 and none", len(h.rec.ofType(protocol.EventCompaction)), h.rec.ofType(protocol.EventError))
	}
}

// TestLastExchange: a resumed session's ready event says where it left
// off: the user's last message, the end of the answer, and the calls the
// end of the last run cut short.
func TestLastExchange(t *testing.T) {
	use := func(id, cmd string) Block {
		in, _ := json.Marshal(map[string]string{"command": cmd})
		return Block{Type: "tool_use", ID: id, Name: "bash", Input: in}
	}
	history := []Message{
		{Role: "user", Content: []Block{{Type: "text", Text: "first"}}},
		{Role: "assistant", Content: []Block{{Type: "text", Text: "ok"}}},
		{Role: "user", Content: []Block{{Type: "text", Text: "Train it for 15 epochs"}}},
		{Role: "assistant", Content: []Block{{Type: "text", Text: "Starting the training."}, use("t1", "python3 train.py --epochs 15")}},
	}
	repaired := Repair(history)
	got := LastExchange(append(history, repaired...), repaired, func(name string, in json.RawMessage) string {
		var v struct{ Command string }
		json.Unmarshal(in, &v)
		return v.Command
	})
	want := &protocol.Exchange{User: "Train it for 15 epochs", Assistant: "Starting the training.", Interrupted: []string{"bash  python3 train.py --epochs 15"}}
	if got == nil || got.User != want.User || got.Assistant != want.Assistant || strings.Join(got.Interrupted, "|") != strings.Join(want.Interrupted, "|") {
		t.Errorf("got %+v; want %+v", got, want)
	}
	long := strings.Repeat("é", 1000)
	got = LastExchange([]Message{{Role: "user", Content: []Block{{Type: "text", Text: long}}}, {Role: "assistant", Content: []Block{{Type: "text", Text: long + "END"}}}}, nil, nil)
	if len(got.User) > 410 || !strings.HasSuffix(got.Assistant, "END") || len(got.Assistant) > 810 || !utf8.ValidString(got.User) || !utf8.ValidString(got.Assistant) {
		t.Errorf("long exchange: user %d bytes, assistant %d bytes (%q…)", len(got.User), len(got.Assistant), got.Assistant[:20])
	}
}

// TestSessionModelClearCompact: between turns the front end can change
// the model, forget the conversation, and summarise it now.
func TestSessionModelClearCompact(t *testing.T) {
	var reqs []*fakeapi.Request
	sh, _ := startSession(t, fakeapi.ResponderFunc(func(r *fakeapi.Request) *fakeapi.Reply {
		reqs = append(reqs, r)
		if strings.Contains(r.LastUserText(), "about to be compacted") {
			return fakeapi.Text("SUMMARY of the talk")
		}
		return fakeapi.Text("ok " + r.LastUserText())
	}), func(_ *Session, c *Config) { c.KeepMessages = 2 })
	sh.until(t, protocol.EventReady)
	sh.send(t, protocol.Input{Type: protocol.InputSetModel, Text: "claude-haiku-5-5"})
	if ev := sh.until(t, protocol.EventModel); ev.Model != "claude-haiku-5-5" {
		t.Errorf("model event: %+v", ev)
	}
	for _, m := range []string{"one", "two", "three"} {
		sh.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: m})
		sh.until(t, protocol.EventTurnEnd)
	}
	if got := reqs[0].Model; got != "claude-haiku-5-5" {
		t.Errorf("request model %q; want the one set", got)
	}
	sh.send(t, protocol.Input{Type: protocol.InputCompact})
	if ev := sh.until(t, protocol.EventCompaction); ev.Compaction.MessagesBefore != 6 || ev.Compaction.SummaryChars == 0 {
		t.Errorf("compaction: %+v", ev.Compaction)
	}
	sh.until(t, protocol.EventTurnEnd)
	sh.send(t, protocol.Input{Type: protocol.InputClear})
	if ev := sh.until(t, protocol.EventCompaction); ev.Compaction.MessagesAfter != 0 || ev.Compaction.MessagesBefore == 0 {
		t.Errorf("clear: %+v", ev.Compaction)
	}
	sh.send(t, protocol.Input{Type: protocol.InputUserMessage, Text: "afresh"})
	sh.until(t, protocol.EventTurnEnd)
	if last := reqs[len(reqs)-1]; len(last.Messages) != 1 || last.LastUserText() != "afresh" {
		t.Errorf("after /clear the request has %d messages; want only the new one", len(last.Messages))
	}
	sh.send(t, protocol.Input{Type: protocol.InputShutdown})
	<-sh.done
}

// TestMountsAndMemory: the user's mounted directories are named in the
// system prompt, with their AGENTS.md and the data volume's MLAGENT.md
// as project memory, bounded.
func TestMountsAndMemory(t *testing.T) {
	proj, data := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(proj, "AGENTS.md"), []byte("Use tabs.\n"), 0o644)
	os.WriteFile(filepath.Join(data, "MLAGENT.md"), []byte(strings.Repeat("é", 20000)), 0o644)
	mem := LoadMemory([]string{proj, data}, slog.New(slog.DiscardHandler))
	if len(mem) != 2 || mem[0].Text != "Use tabs.\n" || !strings.HasSuffix(mem[1].Text, "[cut: the file is longer than 32 KiB]") || !utf8.ValidString(mem[1].Text) {
		t.Fatalf("memory: %d files; %q", len(mem), mem)
	}
	p := SystemPrompt(PromptOptions{Mounts: []Mount{{Path: "/workspace/proj"}}, Memory: mem[:1]})
	for _, s := range []string{"/workspace/proj is the user's own directory, mounted read-only", "# Project memory", "From " + filepath.Join(proj, "AGENTS.md") + ":\nUse tabs."} {
		if !strings.Contains(p, s) {
			t.Errorf("system prompt lacks %q", s)
		}
	}
}
