package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/fakeapi"
	"github.com/mlagent/mlagent/internal/protocol"
	"github.com/mlagent/mlagent/internal/tools"
)

const testKey = "sbx-test-token"

// recorder collects emitted events.
type recorder struct {
	mu     sync.Mutex
	events []protocol.Event
	notify chan protocol.Event
}

func (r *recorder) emit(ev protocol.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	if r.notify != nil {
		r.notify <- ev
	}
}

func (r *recorder) ofType(typ string) []protocol.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []protocol.Event
	for _, e := range r.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) text() string {
	var b strings.Builder
	for _, e := range r.ofType(protocol.EventTextDelta) {
		b.WriteString(e.Text)
	}
	return b.String()
}

type harness struct {
	t     *testing.T
	srv   *fakeapi.Server
	rec   *recorder
	agent *Agent
	dir   string
	tpath string
	shell *tools.Shell
}

// probeTool is a parallel-safe test tool; with barrier set, each call
// waits until that many calls are running at once, which proves they run
// concurrently without timing anything.
type probeTool struct {
	mu      sync.Mutex
	running int
	barrier int
	cond    *sync.Cond
}

func (p *probeTool) Info() tools.Info {
	return tools.Info{Name: "probe", Description: "test probe", Parallel: true,
		Schema: tools.Schema{Properties: map[string]any{"n": map[string]any{"type": "integer"}}, Required: []string{"n"}}}
}

func (p *probeTool) Run(ctx context.Context, input json.RawMessage) tools.Result {
	var in struct {
		N int `json:"n"`
	}
	if err := tools.Decode(input, &in); err != nil {
		return tools.Errorf("%v", err)
	}
	p.mu.Lock()
	if p.cond == nil {
		p.cond = sync.NewCond(&p.mu)
	}
	p.running++
	p.cond.Broadcast()
	for p.running < p.barrier {
		p.cond.Wait()
	}
	p.mu.Unlock()
	return tools.Result{Output: "probe " + strings.Repeat("x", in.N)}
}

func newHarness(t *testing.T, responder fakeapi.Responder, mod func(*Config)) *harness {
	t.Helper()
	srv := fakeapi.Start(fakeapi.Options{APIKey: testKey, Responder: responder})
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	shell, err := tools.NewShell(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(shell.Close)
	files := &tools.Files{Dir: dir}
	reg := tools.NewRegistry(&tools.BashTool{Shell: shell}, &tools.JobsTool{Shell: shell},
		&tools.ReadTool{Files: files}, &tools.WriteTool{Files: files}, &tools.EditTool{Files: files},
		&tools.GlobTool{Files: files}, &tools.GrepTool{Files: files}, &probeTool{barrier: 2})
	tpath := filepath.Join(t.TempDir(), "sessions", "s1.jsonl")
	tr, err := OpenTranscript(tpath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	rec := &recorder{}
	cfg := Config{
		BaseURL: srv.URL(), APIKey: testKey, Model: "claude-sonnet-5-5", MaxTokens: 1024,
		System: "You are a test agent.", Tools: reg, Transcript: tr, Emit: rec.emit,
		Backoff: Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond}, SessionID: "s1",
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, rec: rec, agent: a, dir: dir, tpath: tpath, shell: shell}
}

func steps(fs ...func(*fakeapi.Request) *fakeapi.Reply) *fakeapi.Script {
	return &fakeapi.Script{Steps: fs}
}

func reply(r *fakeapi.Reply) func(*fakeapi.Request) *fakeapi.Reply {
	return func(*fakeapi.Request) *fakeapi.Reply { return r }
}

// resultsOf returns the tool results of the request's last message as
// "id:error:text" strings.
func resultsOf(req *fakeapi.Request) []string {
	var out []string
	for _, b := range req.LastToolResults() {
		e := "ok"
		if b.IsError {
			e = "error"
		}
		out = append(out, b.ToolUseID+":"+e+":"+req.ToolResultText(b))
	}
	return out
}

func TestMultiToolTurn(t *testing.T) {
	var seen [][]string
	h := newHarness(t, steps(
		reply(fakeapi.ToolCalls("Writing a file.", fakeapi.ToolUse("t1", "write", map[string]any{"path": "a.txt", "content": "hello"}))),
		func(r *fakeapi.Request) *fakeapi.Reply {
			seen = append(seen, resultsOf(r))
			return fakeapi.ToolCalls("", fakeapi.ToolUse("t2", "bash", map[string]any{"command": "cat a.txt && cd /tmp"}),
				fakeapi.ToolUse("t3", "edit", map[string]any{"path": "a.txt", "old_string": "hello", "new_string": "bye"}))
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			seen = append(seen, resultsOf(r))
			return fakeapi.Text("All done.")
		},
	), nil)
	stop := h.agent.Turn(context.Background(), "make a file")
	if stop != StopEndTurn {
		t.Fatalf("stop = %q; want end_turn", stop)
	}
	want := [][]string{
		{"t1:ok:wrote 5 bytes to " + filepath.Join(h.dir, "a.txt")},
		{"t2:ok:hello", "t3:ok:replaced 1 occurrence(s) in " + filepath.Join(h.dir, "a.txt")},
	}
	if len(seen) != 2 || strings.Join(seen[0], "|") != strings.Join(want[0], "|") || strings.Join(seen[1], "|") != strings.Join(want[1], "|") {
		t.Errorf("tool results = %q; want %q", seen, want)
	}
	if got := h.rec.text(); got != "Writing a file.All done." {
		t.Errorf("text = %q", got)
	}
	starts, ends := h.rec.ofType(protocol.EventToolStart), h.rec.ofType(protocol.EventToolEnd)
	if len(starts) != 3 || len(ends) != 3 || starts[1].Summary != "cat a.txt && cd /tmp" || !*ends[1].OK {
		t.Errorf("tool events: starts %+v ends %+v", starts, ends)
	}
	u := h.rec.ofType(protocol.EventUsage)
	if len(u) != 1 || u[0].Usage.Requests != 3 || u[0].Usage.OutputTokens == 0 || u[0].Usage.CostUSD <= 0 {
		t.Errorf("usage events = %+v; want one with 3 requests", u)
	}
	if te := h.rec.ofType(protocol.EventTurnEnd); len(te) != 1 || te[0].StopReason != "end_turn" {
		t.Errorf("turn_end = %+v", te)
	}
	hist, err := LoadTranscript(h.tpath)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 6 || hist[5].Text() != "All done." {
		t.Errorf("transcript has %d messages (last %+v); want 6 ending in All done.", len(hist), hist[len(hist)-1])
	}
	if b, _ := os.ReadFile(filepath.Join(h.dir, "a.txt")); string(b) != "bye" {
		t.Errorf("a.txt = %q; want bye", b)
	}
}

func TestParallelToolCalls(t *testing.T) {
	var got []string
	h := newHarness(t, steps(
		reply(fakeapi.ToolCalls("", fakeapi.ToolUse("p1", "probe", map[string]any{"n": 1}), fakeapi.ToolUse("p2", "probe", map[string]any{"n": 2}))),
		func(r *fakeapi.Request) *fakeapi.Reply {
			got = resultsOf(r)
			return fakeapi.Text("ok")
		},
	), nil)
	// The probe's barrier of 2 only releases if both calls run at once;
	// run the turn with a deadline so a serial engine fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan string)
	go func() { done <- h.agent.Turn(ctx, "probe twice") }()
	select {
	case stop := <-done:
		if stop != StopEndTurn {
			t.Fatalf("stop = %q; want end_turn (parallel calls did not run concurrently?)", stop)
		}
	case <-ctx.Done():
		t.Fatal("parallel tool calls did not run concurrently")
	}
	if strings.Join(got, "|") != "p1:ok:probe x|p2:ok:probe xx" {
		t.Errorf("results = %q; want both, in call order, in one message", got)
	}
}

func TestMalformedToolInput(t *testing.T) {
	var got []string
	h := newHarness(t, steps(
		reply(fakeapi.ToolCalls("",
			fakeapi.ToolUse("m1", "read", map[string]any{"path": 5}),
			fakeapi.ToolUse("m2", "read", map[string]any{"file": "x"}),
			fakeapi.ToolUse("m3", "nosuchtool", map[string]any{}),
			fakeapi.ToolUse("m4", "bash", json.RawMessage(`{"command": "echo fine"}`)),
		)),
		func(r *fakeapi.Request) *fakeapi.Reply {
			got = resultsOf(r)
			return fakeapi.Text("recovered")
		},
	), nil)
	if stop := h.agent.Turn(context.Background(), "go"); stop != StopEndTurn {
		t.Fatalf("stop = %q", stop)
	}
	if len(got) != 4 {
		t.Fatalf("results = %q; want 4", got)
	}
	for i, want := range []string{"m1:error:invalid input", "m2:error:invalid input: json: unknown field \"file\"", "m3:error:unknown tool \"nosuchtool\"", "m4:ok:fine"} {
		if !strings.HasPrefix(got[i], want) {
			t.Errorf("result %d = %q; want prefix %q", i, got[i], want)
		}
	}
}

func TestRetries(t *testing.T) {
	h := newHarness(t, steps(
		reply(&fakeapi.Reply{Status: 529, ErrorType: "overloaded_error", ErrorMessage: "Overloaded"}),
		reply(&fakeapi.Reply{Status: 429, ErrorType: "rate_limit_error", ErrorMessage: "slow down", Header: map[string][]string{"Retry-After-Ms": {"7"}}}),
		reply(&fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: "partial text that is lost"}}, ErrorEventAfter: 3}),
		reply(&fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: "cut off"}}, CutAfterEvents: 4}),
		reply(&fakeapi.Reply{Status: 500, ErrorType: "api_error", ErrorMessage: "boom"}),
		reply(fakeapi.Text("finally")),
	), nil)
	if stop := h.agent.Turn(context.Background(), "hi"); stop != StopEndTurn {
		t.Fatalf("stop = %q", stop)
	}
	retries := h.rec.ofType(protocol.EventRetry)
	if len(retries) != 5 {
		t.Fatalf("retry events = %+v; want 5", retries)
	}
	if retries[1].WaitMS != 7 {
		t.Errorf("retry after 429 waited %dms; want the server's retry-after-ms 7", retries[1].WaitMS)
	}
	for i, r := range retries {
		if r.Attempt != i+1 {
			t.Errorf("retry %d attempt = %d", i, r.Attempt)
		}
	}
	reqs := h.srv.Requests()
	if len(reqs) != 6 {
		t.Fatalf("requests = %d; want 6", len(reqs))
	}
	for i := 1; i < len(reqs); i++ {
		if string(reqs[i].Body) != string(reqs[0].Body) {
			t.Errorf("retry %d sent a different body", i)
		}
	}
	hist := h.agent.History()
	if len(hist) != 2 || hist[1].Text() != "finally" {
		t.Errorf("history = %+v; want user + finally", hist)
	}
}

func TestRetriesGiveUp(t *testing.T) {
	h := newHarness(t, fakeapi.ResponderFunc(func(*fakeapi.Request) *fakeapi.Reply {
		return &fakeapi.Reply{Status: 529, ErrorType: "overloaded_error", ErrorMessage: "Overloaded"}
	}), func(c *Config) { c.MaxRetries = 2 })
	if stop := h.agent.Turn(context.Background(), "hi"); stop != StopError {
		t.Fatalf("stop = %q; want error", stop)
	}
	if n := len(h.srv.Requests()); n != 3 {
		t.Errorf("requests = %d; want 3 (1 + 2 retries)", n)
	}
	errs := h.rec.ofType(protocol.EventError)
	if len(errs) != 1 || errs[0].Kind != protocol.ErrAPI || !strings.Contains(errs[0].Message, "Overloaded") {
		t.Errorf("errors = %+v", errs)
	}
}

func TestBudgetStop(t *testing.T) {
	h := newHarness(t, steps(
		reply(&fakeapi.Reply{Status: 403, ErrorType: "permission_error", ErrorMessage: "sandbox budget of $5.00 exhausted"}),
	), nil)
	if stop := h.agent.Turn(context.Background(), "hi"); stop != StopBudget {
		t.Fatalf("stop = %q; want budget", stop)
	}
	if n := len(h.srv.Requests()); n != 1 {
		t.Errorf("requests = %d; want 1 (a 403 is not retried)", n)
	}
	errs := h.rec.ofType(protocol.EventError)
	if len(errs) != 1 || errs[0].Kind != protocol.ErrBudget || !strings.Contains(errs[0].Message, "budget of $5.00 exhausted") {
		t.Errorf("errors = %+v; want one budget error with the gateway's message", errs)
	}
	if te := h.rec.ofType(protocol.EventTurnEnd); len(te) != 1 || te[0].StopReason != StopBudget {
		t.Errorf("turn_end = %+v", te)
	}
	if len(h.rec.ofType(protocol.EventRetry)) != 0 {
		t.Error("a 403 was retried")
	}
}

// TestModelNotFoundListsModels: a model past its end of life (the old
// default, claude-sonnet-4-5) gets an error that says which models the
// key can use, not only the API's "model: …".
func TestModelNotFoundListsModels(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.Model = "claude-sonnet-4-5" })
	if stop := h.agent.Turn(context.Background(), "hi"); stop != StopError {
		t.Fatalf("stop = %q; want error", stop)
	}
	errs := h.rec.ofType(protocol.EventError)
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "model: claude-sonnet-4-5") ||
		!strings.Contains(errs[0].Message, "models this key can use: claude-fable-5-2, claude-haiku-5-5, claude-sonnet-5-5") ||
		!strings.Contains(errs[0].Message, "--model claude-sonnet-5-5") {
		t.Errorf("errors = %+v; want the usable models named", errs)
	}
}

func TestMaxTurns(t *testing.T) {
	h := newHarness(t, fakeapi.ResponderFunc(func(r *fakeapi.Request) *fakeapi.Reply {
		return fakeapi.ToolCalls("", fakeapi.ToolUse("loop"+strings.Repeat("x", len(r.Messages)), "probe", map[string]any{"n": 0}))
	}), func(c *Config) {
		c.MaxTurns = 3
		c.Tools = tools.NewRegistry(&probeTool{barrier: 1})
	})
	if stop := h.agent.Turn(context.Background(), "loop"); stop != StopMaxTurns {
		t.Fatalf("stop = %q; want max_turns", stop)
	}
	if n := len(h.srv.Requests()); n != 3 {
		t.Errorf("requests = %d; want 3", n)
	}
}

func TestStopReasons(t *testing.T) {
	h := newHarness(t, steps(
		reply(&fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: "long answer cut"}}, StopReason: "max_tokens"}),
		func(r *fakeapi.Request) *fakeapi.Reply {
			if !strings.Contains(r.LastUserText(), "Continue exactly where you stopped") {
				t.Errorf("after max_tokens the last user text is %q", r.LastUserText())
			}
			return &fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: " paused"}}, StopReason: "pause_turn"}
		},
		func(r *fakeapi.Request) *fakeapi.Reply {
			if last := r.Messages[len(r.Messages)-1]; last.Role != "assistant" {
				t.Errorf("after pause_turn the last message is %s; want the assistant's, sent back", last.Role)
			}
			return &fakeapi.Reply{Content: []fakeapi.ReplyBlock{{Type: "text", Text: " no."}}, StopReason: "refusal"}
		},
	), nil)
	if stop := h.agent.Turn(context.Background(), "hi"); stop != StopRefusal {
		t.Fatalf("stop = %q; want refusal", stop)
	}
	if errs := h.rec.ofType(protocol.EventError); len(errs) != 1 || errs[0].Kind != protocol.ErrRefusal {
		t.Errorf("errors = %+v", errs)
	}
}

// blocksNoCache returns the request's messages as JSON with cache_control
// dropped, one string per block.
func blocksNoCache(r *fakeapi.Request) []string {
	var out []string
	for _, m := range r.Messages {
		for _, b := range m.Content {
			b.CacheControl = nil
			j, _ := json.Marshal(struct {
				Role string
				B    fakeapi.Block
			}{m.Role, b})
			out = append(out, string(j))
		}
	}
	return out
}

func breakpoints(r *fakeapi.Request) []int {
	var out []int
	i := 0
	for _, m := range r.Messages {
		for _, b := range m.Content {
			if len(b.CacheControl) > 0 && string(b.CacheControl) != "null" {
				out = append(out, i)
			}
			i++
		}
	}
	return out
}

func TestStableCachePrefix(t *testing.T) {
	h := newHarness(t, steps(
		reply(fakeapi.ToolCalls("one", fakeapi.ToolUse("c1", "bash", map[string]any{"command": "echo 1"}))),
		reply(fakeapi.ToolCalls("two", fakeapi.ToolUse("c2", "probe", map[string]any{"n": 1}), fakeapi.ToolUse("c3", "bash", map[string]any{"command": "echo 3"}))),
		reply(fakeapi.Text("turn one done")),
		reply(fakeapi.ToolCalls("", fakeapi.ToolUse("c4", "read", map[string]any{"path": "nope"}))),
		reply(fakeapi.Text("turn two done")),
	), func(c *Config) { c.Tools.Get("probe"); setBarrier(c.Tools, 1) })
	h.agent.Turn(context.Background(), "first")
	h.agent.Turn(context.Background(), "second")
	reqs := h.srv.Requests()
	if len(reqs) != 5 {
		t.Fatalf("requests = %d; want 5", len(reqs))
	}
	for i := 1; i < len(reqs); i++ {
		prev, cur := reqs[i-1], reqs[i]
		if string(mustJSON(prev.Tools)) != string(mustJSON(cur.Tools)) || string(prev.System) != string(cur.System) {
			t.Errorf("request %d: tools or system changed", i)
		}
		pb, cb := blocksNoCache(prev), blocksNoCache(cur)
		if len(cb) <= len(pb) {
			t.Errorf("request %d has %d blocks; want more than the previous %d", i, len(cb), len(pb))
			continue
		}
		for j := range pb {
			if pb[j] != cb[j] {
				t.Errorf("request %d block %d differs from the previous request:\n%s\n%s", i, j, pb[j], cb[j])
				break
			}
		}
		// The previous request's final breakpoint is again a breakpoint,
		// so its whole prefix is read from the cache.
		pbp, cbp := breakpoints(prev), breakpoints(cur)
		lastPrev := pbp[len(pbp)-1]
		if lastPrev != len(pb)-1 || !contains(cbp, lastPrev) || cbp[len(cbp)-1] != len(cb)-1 {
			t.Errorf("request %d breakpoints %v (previous %v); want the previous end (%d) and the new end (%d)", i, cbp, pbp, len(pb)-1, len(cb)-1)
		}
		if len(cbp) > 2 {
			t.Errorf("request %d has %d message breakpoints; the API allows 4 with tools and system", i, len(cbp))
		}
	}
	// Tools carry one breakpoint, on the last tool; system one.
	var last struct {
		CacheControl json.RawMessage `json:"cache_control"`
	}
	json.Unmarshal(reqs[0].Tools[len(reqs[0].Tools)-1], &last)
	if len(last.CacheControl) == 0 {
		t.Error("last tool has no cache_control")
	}
	if !strings.Contains(string(reqs[0].System), "cache_control") {
		t.Error("system has no cache_control")
	}
	u := h.rec.ofType(protocol.EventUsage)
	if len(u) != 2 || u[1].Usage.CacheReadInputTokens == 0 || u[1].Usage.SessionCacheReadRatio <= 0 {
		t.Errorf("usage = %+v; want cache reads in the second turn", u)
	}
}

func setBarrier(reg *tools.Registry, n int) {
	t, _ := reg.Get("probe")
	t.(*probeTool).barrier = n
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
